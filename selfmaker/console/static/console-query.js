// An Athena query that is still running: its state follows over server-sent events, and the page is
// loaded once more when the query has ended, to show its rows.
"use strict";

(() => {
  const state = document.getElementById("query-state");
  if (!state || !state.dataset.events) return;
  const source = new EventSource(state.dataset.events);
  source.addEventListener("state", (event) => {
    state.replaceChildren(Console.statusElement(JSON.parse(event.data)));
  });
  source.addEventListener("end", () => { source.close(); window.location.reload(); });
  source.addEventListener("failure", () => source.close());
})();
