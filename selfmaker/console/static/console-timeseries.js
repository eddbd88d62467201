// Time series charts with uPlot (an endpoint's invocation metrics): one chart per title, one line per
// series, kept up to date by server-sent "metrics" events carrying the whole window again.
"use strict";

(() => {
  const data = Console.jsonData("metric-data");
  const holder = document.getElementById("metric-charts");
  if (!data || !holder) return;
  const palette = ["--series-1", "--series-2", "--series-3", "--series-4", "--series-5"].map(Console.cssColour);
  const charts = new Map(); // title -> {plot, labels}
  // The x axis is the window asked for, whatever points it has (one point alone would span years).
  let range = [data.start, data.end];

  // uPlot wants one x array per chart: the union of its lines' times, null where a line has no point.
  function columns(lines) {
    const xs = [...new Set(lines.flatMap((l) => l.x))].sort((a, b) => a - b);
    return [xs, ...lines.map((l) => {
      const at = new Map(l.x.map((x, i) => [x, l.y[i]]));
      return xs.map((x) => (at.has(x) ? at.get(x) : null));
    })];
  }

  function make(chart) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.title = chart.title;
    const caption = document.createElement("figcaption");
    caption.textContent = chart.title;
    figure.append(caption);
    holder.append(figure);
    const axis = { stroke: Console.cssColour("--text"), grid: { stroke: Console.cssColour("--border") } };
    const plot = new uPlot(
      {
        width: Math.min(holder.clientWidth || 800, 900),
        height: 220,
        // Counts and latencies are never negative: the y axis starts at 0.
        scales: { x: { time: true, range: () => range }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [axis, axis],
        series: [
          { label: "time" },
          ...chart.lines.map((l, i) => ({ label: l.label, stroke: palette[i % palette.length], width: 2, points: { show: true, size: 4 } })),
        ],
      },
      columns(chart.lines),
      figure,
    );
    charts.set(chart.title, { plot, labels: chart.lines.map((l) => l.label).join("\n") });
  }

  function show(update) {
    range = [update.start, update.end];
    const list = update.charts;
    for (const chart of list) {
      const known = charts.get(chart.title);
      if (known && known.labels === chart.lines.map((l) => l.label).join("\n")) {
        known.plot.setData(columns(chart.lines));
      } else {
        // The lines changed (a variant came or went in a deployment): the chart is made again.
        if (known) { known.plot.root.closest("figure").remove(); charts.delete(chart.title); }
        make(chart);
      }
    }
    holder.dataset.points = String(list.reduce((n, c) => n + c.lines.reduce((m, l) => m + l.x.length, 0), 0));
  }

  show(data);
  window.consoleCharts = charts;
  if (!holder.dataset.events) return;
  const source = new EventSource(holder.dataset.events);
  source.addEventListener("metrics", (event) => show(JSON.parse(event.data)));
  source.addEventListener("status", (event) => {
    const value = JSON.parse(event.data);
    const status = document.getElementById("endpoint-status");
    if (status && status.firstElementChild && status.firstElementChild.textContent !== value.status) {
      status.firstElementChild.replaceWith(Console.statusElement(value.status));
    }
    for (const [name, v] of Object.entries(value.variants)) {
      const row = document.querySelector(`#variants tr[data-variant="${CSS.escape(name)}"], #shadow-variants tr[data-variant="${CSS.escape(name)}"]`);
      const cell = row && row.querySelector("[data-field=instances]");
      if (cell && typeof v.desired === "number") cell.textContent = `${v.current ?? 0} / ${v.desired}`;
    }
  });
  source.addEventListener("failure", () => source.close());
})();
