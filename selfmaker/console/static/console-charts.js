// Metric curves with uPlot: one chart per metric, one line per run, by step or by time.
"use strict";

(() => {
  const data = Console.jsonData("chart-data");
  const holder = document.getElementById("charts");
  if (!data || !holder) return;
  const palette = ["--series-1", "--series-2", "--series-3", "--series-4", "--series-5"].map(Console.cssColour);
  const byTime = data.axis === "time";

  for (const [metric, runs] of Object.entries(data.series)) {
    // uPlot wants one x array for all lines: the union of the runs' x values, with gaps where a run has none.
    const xs = [...new Set(runs.flatMap((r) => r.x))].sort((a, b) => a - b);
    const columns = runs.map((r) => {
      const at = new Map(r.x.map((x, i) => [x, r.y[i]]));
      return xs.map((x) => (at.has(x) ? at.get(x) : null));
    });
    const figure = document.createElement("figure");
    figure.className = "chart";
    const caption = document.createElement("figcaption");
    caption.textContent = metric;
    figure.append(caption);
    holder.append(figure);
    const notes = runs.filter((r) => r.status !== "Complete" && r.message).map((r) => r.run + ": " + r.message);
    if (notes.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = notes.join(" ");
      figure.append(p);
    }
    new uPlot(
      {
        width: Math.min(holder.clientWidth || 800, 900),
        height: 260,
        scales: { x: { time: byTime } },
        axes: [
          { stroke: Console.cssColour("--text"), grid: { stroke: Console.cssColour("--border") }, label: byTime ? "" : "step" },
          { stroke: Console.cssColour("--text"), grid: { stroke: Console.cssColour("--border") } },
        ],
        series: [
          { label: byTime ? "time" : "step" },
          ...runs.map((r, i) => ({ label: r.run, stroke: palette[i % palette.length], width: 2, spanGaps: true, points: { show: xs.length < 60 } })),
        ],
      },
      [xs, ...columns],
      figure,
    );
  }
})();
