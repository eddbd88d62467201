// The pipeline graph: Cytoscape.js, steps coloured by status; on an execution's page the steps follow the
// execution live over server-sent events, and a selected step shows its details.
// The server sends the steps' positions with the graph (Graphviz laid it out: selfmaker/console/graphviz.py),
// placed as they are (a "preset" layout). Only where it could not does dagre lay the graph out here, once per
// graph and account: its positions go back to the server (selfmaker/console/layouts.py) for later views.
"use strict";

(() => {
  const graph = Console.jsonData("graph-data");
  const container = document.getElementById("graph");
  if (!graph || !container) return;
  performance.mark("graph-start");
  let state = Console.jsonData("state-data");
  const STATUS_VARS = {
    "status-succeeded": "--succeeded", "status-failed": "--failed", "status-running": "--running",
    "status-stopped": "--stopped", "status-other": "--not-started",
  };

  function stepStatus(name) {
    const step = state && state.steps[name];
    return step ? step.StepStatus : null;
  }
  const statusOf = (name) => stepStatus(name) || "NotStarted";

  // Each status class's colour, read from the stylesheet once (getComputedStyle per node costs a style pass).
  const colours = new Map();
  function colourOf(status) {
    const variable = STATUS_VARS[Console.statusClass(status)] || "--not-started";
    if (!colours.has(variable)) colours.set(variable, Console.cssColour(variable));
    return colours.get(variable);
  }

  const positions = graph.positions || null;
  const elements = [
    ...graph.nodes.map((n) => {
      const status = statusOf(n.id);
      const node = { data: { id: n.id, label: n.label + "\n" + n.type, type: n.type, status, colour: colourOf(status) } };
      if (positions) node.position = { x: positions[n.id][0], y: positions[n.id][1] };
      return node;
    }),
    ...graph.edges.map((e, i) => ({
      data: { id: "e" + i, source: e.source, target: e.target, kind: e.kind, label: e.kind === "depends" ? "" : e.kind },
    })),
  ];
  if (!positions) cytoscape.use(cytoscapeDagre);
  const cy = cytoscape({
    container,
    elements,
    wheelSensitivity: 0.3,
    maxZoom: 1.6, // a small pipeline is drawn at a readable size, not blown up to fill the box
    style: [
      {
        selector: "node",
        style: {
          shape: "round-rectangle", label: "data(label)", "text-wrap": "wrap", "text-valign": "center",
          // Labels too small to read (a large pipeline fitted whole) are not drawn until one zooms in.
          "font-size": 11, "min-zoomed-font-size": 6, width: 150, height: 44, color: Console.cssColour("--node-text"),
          // The colour is the step's data, mapped once: no style bypass per node.
          "background-color": "data(colour)", "border-width": 1,
          "border-color": Console.cssColour("--border"),
        },
      },
      { selector: "node[type = 'Condition']", style: { shape: "diamond", width: 110, height: 60 } },
      { selector: "node:selected", style: { "border-width": 3, "border-color": Console.cssColour("--focus") } },
      {
        selector: "edge",
        style: {
          // Straight: a pipeline has no parallel edges for bezier to bend apart, and straight edges cost about
          // half as much to lay and draw on a 200-step graph (benchmarks/console.py).
          width: 1.5, "curve-style": "straight", "target-arrow-shape": "triangle",
          "line-color": Console.cssColour("--edge"), "target-arrow-color": Console.cssColour("--edge"),
        },
      },
      {
        // Only a condition's branches are labelled (if/else): an empty label still costs a text layout per edge.
        selector: "edge[kind != 'depends']",
        style: { label: "data(label)", "font-size": 10, "min-zoomed-font-size": 6, color: Console.cssColour("--text") },
      },
      { selector: "edge[kind = 'else']", style: { "line-style": "dashed" } },
    ],
    // Ranks by longest path: dagre's default (network simplex) costs far more on a 200-step pipeline, for
    // ranks that differ only where a step could sit a rank later (benchmarks/console.py).
    layout: positions
      ? { name: "preset", fit: true, padding: 30 }
      : { name: "dagre", rankDir: "LR", nodeSep: 30, rankSep: 60, ranker: "longest-path" },
  });
  performance.mark("graph-laid-out");
  if (!positions && graph.layout) keepLayout();

  // The positions dagre gave, for the server to send with this graph from now on (best effort: a refusal
  // or a lost request only means dagre runs again next time).
  function keepLayout() {
    const placed = {};
    cy.nodes().forEach((node) => {
      const p = node.position();
      placed[node.id()] = [Math.round(p.x * 10) / 10, Math.round(p.y * 10) / 10];
    });
    const body = new URLSearchParams({ csrf: graph.layout.csrf, key: graph.layout.key, positions: JSON.stringify(placed) });
    fetch(graph.layout.url, { method: "POST", body, credentials: "same-origin" }).catch(() => {});
  }
  window.consoleGraph = cy; // for the browser tests and the curious

  function paint() {
    cy.batch(() => {  // one style pass and one redraw for the steps that changed, not one per step
      cy.nodes().forEach((node) => {
        const status = statusOf(node.id());
        if (node.data("status") !== status) node.data({ status, colour: colourOf(status) });
      });
    });
  }

  const panel = document.getElementById("step-panel");
  let selected = null;

  function jobLink(metadata) {
    const families = { TrainingJob: "training", ProcessingJob: "processing", TransformJob: "transform" };
    for (const [key, family] of Object.entries(families)) {
      if (metadata && metadata[key] && metadata[key].Arn) {
        const name = metadata[key].Arn.split("/").pop();
        const a = document.createElement("a");
        a.href = "/console/jobs/" + family + "/" + encodeURIComponent(name);
        a.textContent = name + " (" + key + ")";
        return a;
      }
    }
    return null;
  }

  function showStep(name) {
    selected = name;
    panel.replaceChildren();
    const node = graph.nodes.find((n) => n.id === name);
    const heading = document.createElement("h3");
    heading.textContent = name;
    panel.append(heading);
    const list = document.createElement("dl");
    list.className = "pairs";
    const add = (term, value) => {
      if (value === undefined || value === null || value === "") return;
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      if (value instanceof Node) dd.append(value); else dd.textContent = value;
      list.append(dt, dd);
    };
    const step = state && state.steps[name];
    add("Type", node && node.type);
    if (node && node.description) add("Description", node.description);
    if (state) add("Status", Console.statusElement(step ? step.StepStatus : "NotStarted"));
    if (step) {
      add("Started", step.StartTime ? Console.timeElement(step.StartTime) : "");
      add("Ended", step.EndTime ? Console.timeElement(step.EndTime) : "");
      add("Attempts", step.AttemptCount);
      add("Job", jobLink(step.Metadata));
      add("Failure reason", step.FailureReason);
      if (step.Metadata) {
        const pre = document.createElement("pre");
        pre.textContent = JSON.stringify(step.Metadata, null, 2);
        add("Metadata", pre);
      }
    }
    panel.append(list);
  }

  cy.on("tap", "node", (event) => showStep(event.target.id()));
  for (const button of document.querySelectorAll(".step-link")) {
    button.addEventListener("click", () => {
      cy.$(":selected").unselect();
      cy.getElementById(button.dataset.step).select();
      showStep(button.dataset.step);
    });
  }

  function updateTable() {
    for (const row of document.querySelectorAll("#steps-table tr[data-step]")) {
      const step = state.steps[row.dataset.step];
      row.querySelector(".step-status").replaceChildren(Console.statusElement(step ? step.StepStatus : "NotStarted"));
      row.querySelector(".step-failure").textContent = step && step.FailureReason ? step.FailureReason : "";
      const cells = row.querySelectorAll("td");
      cells[3].replaceChildren(step && step.StartTime ? Console.timeElement(step.StartTime) : "");
      cells[4].replaceChildren(step && step.EndTime ? Console.timeElement(step.EndTime) : "");
    }
    const status = document.getElementById("execution-status");
    if (status) status.replaceChildren(Console.statusElement(state.status));
    const failure = document.getElementById("execution-failure");
    if (failure) failure.textContent = state.failure || "";
    const stop = document.getElementById("stop");
    if (stop) stop.disabled = state.status !== "Executing";
    const retry = document.getElementById("retry");
    if (retry) retry.disabled = !["Failed", "Stopped"].includes(state.status);
  }

  // When the laid-out graph has been drawn (Cytoscape draws on the next frame): benchmarks/console.py reads it.
  requestAnimationFrame(() => requestAnimationFrame(() => {
    container.dataset.drawnAt = String(Math.round(performance.now()));
  }));
  const live = document.getElementById("live");
  if (live && live.dataset.events) {
    const source = new EventSource(live.dataset.events);
    source.addEventListener("state", (event) => {
      state = JSON.parse(event.data);
      paint();
      updateTable();
      if (selected) showStep(selected);
    });
    const finish = () => {
      source.close();
      const note = document.getElementById("live-note");
      if (note) note.textContent = "The execution has ended.";
      document.body.dataset.liveEnded = "true";
    };
    source.addEventListener("end", finish);
    source.addEventListener("failure", finish);
  }
})();
