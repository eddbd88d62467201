// A tuning job's objective value of each trial, in the order the trials were created (uPlot, points only).
"use strict";

(() => {
  const data = Console.jsonData("objective-data");
  const holder = document.getElementById("objective-chart");
  if (!data || !holder) return;
  const figure = document.createElement("figure");
  figure.className = "chart";
  const caption = document.createElement("figcaption");
  caption.textContent = data.title;
  figure.append(caption);
  holder.append(figure);
  const axis = { stroke: Console.cssColour("--text"), grid: { stroke: Console.cssColour("--border") } };
  const xs = data.points.map((p, i) => i + 1);
  window.consoleObjective = new uPlot(
    {
      width: Math.min(holder.clientWidth || 800, 900),
      height: 240,
      scales: { x: { time: false } },
      axes: [{ ...axis, label: "trial" }, axis],
      series: [
        { label: "trial" },
        { label: data.title, stroke: Console.cssColour("--series-1"), width: 0, points: { show: true, size: 7, fill: Console.cssColour("--series-1") } },
      ],
    },
    [xs, data.points.map((p) => p[1])],
    figure,
  );
})();
