// A job's logs, followed over server-sent events until the job has ended and its last lines are in.
"use strict";

(() => {
  const log = document.getElementById("log");
  if (!log || !log.dataset.events) return;
  const note = document.getElementById("log-note");
  const source = new EventSource(log.dataset.events);
  source.addEventListener("lines", (event) => {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const text = JSON.parse(event.data).map((line) => line.message).join("\n") + "\n";
    log.append(document.createTextNode(text));
    if (atBottom) log.scrollTop = log.scrollHeight;
  });
  source.addEventListener("status", (event) => {
    const status = document.getElementById("job-status");
    const value = JSON.parse(event.data);
    if (status && status.firstElementChild && status.firstElementChild.textContent !== value) {
      status.firstElementChild.replaceWith(Console.statusElement(value));
    }
  });
  const finish = (message) => {
    source.close();
    log.dataset.complete = "true";
    if (note) note.textContent = message;
  };
  source.addEventListener("end", () => finish("The job has ended; these are all its logs."));
  source.addEventListener("failure", (event) => finish(JSON.parse(event.data).message));
})();
