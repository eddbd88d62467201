// Shared by every page: times in the reader's time zone (UTC stays in the title, shown on hover), and
// confirmation of buttons marked data-confirm. No inline script anywhere: the CSP forbids it.
"use strict";

const Console = (() => {
  // Made at the first time shown: a formatter with a time zone name costs tens of milliseconds to build.
  let formatter = null;
  const format = {
    format(moment) {
      formatter = formatter || new Intl.DateTimeFormat(undefined, {
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
        timeZoneName: "short",
      });
      return formatter.format(moment);
    },
  };

  function localTimes(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      const moment = new Date(el.getAttribute("datetime"));
      if (!isNaN(moment)) el.textContent = format.format(moment);
    }
  }

  function timeElement(epochSeconds) {
    const el = document.createElement("time");
    if (epochSeconds === undefined || epochSeconds === null) return el;
    const moment = new Date(epochSeconds * 1000);
    el.setAttribute("datetime", moment.toISOString());
    el.title = moment.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
    el.textContent = format.format(moment);
    return el;
  }

  const STATUS_CLASSES = {
    succeeded: ["Succeeded", "Completed", "Approved", "InService", "Created", "Available", "Active", "Ready", "Started", "SUCCEEDED", "CreateCompleted", "UpdateCompleted", "AVAILABLE"],
    failed: ["Failed", "Rejected", "CompletedWithFailures", "Error", "FAILED", "CreateFailed", "UpdateFailed", "DeleteFailed", "ERROR", "TAINTED"],
    running: ["Executing", "InProgress", "Starting", "Stopping", "Creating", "Updating", "Training", "Pending", "QUEUED", "RUNNING", "Baking", "ActivatingTraffic", "Running", "CreateInProgress", "UpdateInProgress", "DeleteInProgress", "UNDER_CHANGE"],
    stopped: ["Stopped", "Deleting", "Deleted", "CANCELLED", "Cancelled"],
  };

  function statusClass(status) {
    for (const [name, words] of Object.entries(STATUS_CLASSES)) {
      if (words.includes(status)) return "status-" + name;
    }
    return "status-other";
  }

  function statusElement(status) {
    const el = document.createElement("span");
    el.className = "status " + statusClass(status);
    el.textContent = status || "";
    return el;
  }

  function cssColour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function jsonData(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    for (const button of document.querySelectorAll("[data-confirm]")) {
      button.addEventListener("click", (event) => {
        if (!window.confirm(button.dataset.confirm)) event.preventDefault();
      });
    }
  });

  return { localTimes, timeElement, statusClass, statusElement, cssColour, jsonData };
})();
