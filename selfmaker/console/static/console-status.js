// A resource still changing (a notebook instance starting, a tuning job running): its status follows over
// server-sent events, and when it settles the page is loaded once more, to show what that state offers.
"use strict";

(() => {
  const holder = document.querySelector("[data-status-events]");
  if (!holder) return;
  const source = new EventSource(holder.dataset.statusEvents);
  source.addEventListener("status", (event) => {
    const status = JSON.parse(event.data);
    if (holder.firstElementChild && holder.firstElementChild.textContent !== status) {
      holder.firstElementChild.replaceWith(Console.statusElement(status));
    }
  });
  source.addEventListener("end", () => { source.close(); window.location.reload(); });
  source.addEventListener("failure", () => source.close());
})();
