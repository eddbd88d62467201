// The lineage graph: Cytoscape.js laid out by dagre, grown on click by one QueryLineage association at a
// time (the server's /lineage/expand). The entities are also a table of buttons, for the keyboard.
"use strict";

(() => {
  const data = Console.jsonData("lineage-data");
  const container = document.getElementById("lineage-graph");
  if (!data || !container) return;
  const panel = document.getElementById("entity-panel");
  const table = document.querySelector("#entities tbody");
  const COLOURS = { Artifact: "--series-1", Action: "--series-5", Context: "--series-3", TrialComponent: "--series-4" };

  cytoscape.use(cytoscapeDagre);
  const cy = cytoscape({
    container,
    wheelSensitivity: 0.3,
    maxZoom: 1.6,
    style: [
      {
        selector: "node",
        style: {
          shape: "round-rectangle", label: "data(text)", "text-wrap": "wrap", "text-max-width": 150,
          "text-valign": "center", "font-size": 10, width: 160, height: 46, color: Console.cssColour("--node-text"),
          "background-color": Console.cssColour("--not-started"), "border-width": 1, "border-color": Console.cssColour("--border"),
        },
      },
      ...Object.entries(COLOURS).map(([kind, colour]) => ({
        selector: `node[lineage = '${kind}']`, style: { "background-color": Console.cssColour(colour) },
      })),
      { selector: "node[?start]", style: { "border-width": 3, "border-color": Console.cssColour("--text") } },
      { selector: "node:selected", style: { "border-width": 3, "border-color": Console.cssColour("--focus") } },
      {
        selector: "edge",
        style: {
          width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle", label: "data(kind)", "font-size": 9,
          color: Console.cssColour("--text"), "line-color": Console.cssColour("--edge"), "target-arrow-color": Console.cssColour("--edge"),
        },
      },
    ],
  });
  window.consoleGraph = cy; // for the browser tests and the curious

  const expanded = new Set();
  const READABLE_ZOOM = 0.8;

  function add(graph) {
    const added = [];
    for (const n of graph.nodes) {
      if (cy.getElementById(n.id).nonempty()) continue;
      const text = n.label + "\n" + [n.lineage, n.type].filter(Boolean).join(" · ");
      added.push({ group: "nodes", data: { id: n.id, text, label: n.label, lineage: n.lineage, type: n.type, source: n.source, start: n.id === data.start } });
    }
    for (const e of graph.edges) {
      const id = e.source + " -> " + e.target;
      if (cy.getElementById(id).nonempty()) continue;
      added.push({ group: "edges", data: { id, source: e.source, target: e.target, kind: e.kind } });
    }
    cy.add(added);
    cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 20, rankSep: 45, animate: false }).run();
    // A long chain fitted whole would be unreadably small: past that, the selected entity stays in view.
    if (cy.zoom() < READABLE_ZOOM) {
      cy.zoom(READABLE_ZOOM);
      cy.center(cy.$("node:selected").nonempty() ? cy.$("node:selected") : cy.getElementById(data.start));
    }
    refreshTable();
    return added.length;
  }

  function refreshTable() {
    table.replaceChildren(...cy.nodes().map((node) => {
      const row = document.createElement("tr");
      row.dataset.arn = node.id();
      const cell = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link entity-link";
      button.textContent = node.data("label");
      button.title = node.id();
      button.addEventListener("click", () => select(node.id(), "Both"));
      cell.append(button);
      const lineage = document.createElement("td");
      lineage.textContent = node.data("lineage");
      const type = document.createElement("td");
      type.textContent = node.data("type");
      row.append(cell, lineage, type);
      return row;
    }));
  }

  async function grow(arn, direction) {
    const key = arn + " " + direction;
    if (expanded.has(key)) return 0;
    expanded.add(key);
    const url = container.dataset.expand + "?" + new URLSearchParams({ arn, direction });
    const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const graph = await answer.json();
    if (graph.error) {
      expanded.delete(key);
      show(arn, graph.error);
      return 0;
    }
    return add(graph);
  }

  function pair(dl, term, value, mono) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    if (mono) dd.className = "mono";
    dl.append(dt, dd);
  }

  function show(arn, message) {
    const node = cy.getElementById(arn);
    const heading = document.createElement("h3");
    heading.textContent = node.data("label") || arn;
    const dl = document.createElement("dl");
    dl.className = "pairs";
    pair(dl, "ARN", arn, true);
    if (node.data("lineage")) pair(dl, "Lineage type", node.data("lineage"));
    if (node.data("type")) pair(dl, "Type", node.data("type"));
    if (node.data("source")) pair(dl, "Source", node.data("source"), true);
    const buttons = document.createElement("div");
    buttons.className = "actions";
    for (const [direction, label] of [["Ascendants", "Expand upstream"], ["Descendants", "Expand downstream"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.id = direction === "Ascendants" ? "expand-up" : "expand-down";
      button.textContent = label;
      button.addEventListener("click", () => grow(arn, direction));
      buttons.append(button);
    }
    const parts = [heading, dl, buttons];
    if (message) {
      const p = document.createElement("p");
      p.className = "failure";
      p.textContent = message;
      parts.push(p);
    }
    panel.replaceChildren(...parts);
  }

  async function select(arn, direction) {
    cy.elements().unselect();
    cy.getElementById(arn).select();
    show(arn);
    await grow(arn, direction);
  }

  add(data.graph);
  expanded.add(data.start + " Both");
  cy.on("tap", "node", (event) => select(event.target.id(), "Both"));
  show(data.start);
})();
