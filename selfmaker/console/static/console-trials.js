// A running tuning job's trials: the table, the trial counts and the objective chart follow the job over
// server-sent events (the server renders the table as the page does); the page loads once more at the end,
// through console-status.js, to show the final best.
"use strict";

(() => {
  const holder = document.querySelector("[data-trials-events]");
  if (!holder) return;
  const source = new EventSource(holder.dataset.trialsEvents);
  source.addEventListener("trials", (event) => {
    const update = JSON.parse(event.data);
    // Rendered and escaped by the server's template, from the same API answers as the page itself.
    holder.innerHTML = update.table;
    Console.localTimes(holder);
    const counters = document.getElementById("trial-counters");
    if (counters) counters.textContent = update.counters;
    if (window.consoleObjective && update.chart.points.length) {
      window.consoleObjective.setData([update.chart.points.map((p, i) => i + 1), update.chart.points.map((p) => p[1])]);
    }
    document.body.dataset.trialsUpdated = String(Number(document.body.dataset.trialsUpdated || 0) + 1);
  });
  const close = () => source.close();
  source.addEventListener("end", close);
  source.addEventListener("failure", close);
})();
