"""Server-rendered HTML: the Jinja2 environment of the console's templates and the filters they share.

Autoescaping is on for every template; values meant for scripts go through ``tojson`` into
``<script type="application/json">`` blocks (Jinja escapes ``<``, ``>``, ``&`` and quotes there), which the
page's own scripts read: the Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

# Status words of every family, grouped into the few colours a page shows (see console.css, .status-*).
_STATUS_CLASSES = {
    "succeeded": {
        "Succeeded",
        "Completed",
        "Approved",
        "InService",
        "Created",
        "Available",
        "Active",
        "Ready",
        "Started",
        "SUCCEEDED",
        "CreateCompleted",  # projects, and their Service Catalog provisioned products
        "UpdateCompleted",
        "AVAILABLE",
    },
    "failed": {
        "Failed",
        "Rejected",
        "CompletedWithFailures",
        "Error",
        "FAILED",
        "CreateFailed",
        "UpdateFailed",
        "DeleteFailed",
        "ERROR",
        "TAINTED",
    },
    "running": {
        "Executing",
        "InProgress",
        "Starting",
        "Stopping",
        "Creating",
        "Updating",
        "Training",
        "Pending",
        "QUEUED",
        "RUNNING",
        "Baking",
        "ActivatingTraffic",
        "Running",
        "CreateInProgress",
        "UpdateInProgress",
        "DeleteInProgress",
        "UNDER_CHANGE",
    },
    "stopped": {"Stopped", "Deleting", "Deleted", "CANCELLED", "Cancelled"},
}


def status_class(status: str | None) -> str:
    for name, words in _STATUS_CLASSES.items():
        if status in words:
            return f"status-{name}"
    return "status-other"


def when(epoch: float | None) -> Markup:
    """A time, shown in UTC by the server and in the reader's time zone by console.js, UTC on hover."""
    if not isinstance(epoch, (int, float)):  # absent (None, or Undefined in a template)
        return Markup("")
    moment = dt.datetime.fromtimestamp(float(epoch), tz=dt.UTC)
    iso = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    utc = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{0}" title="{1}">{1}</time>').format(iso, utc)


def duration(start: float | None, end: float | None) -> str:
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return ""
    seconds = max(0, int(float(end) - float(start)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02}m {seconds:02}s" if hours else f"{minutes}m {seconds:02}s"


def status(value: str | None) -> Markup:
    if not value:
        return Markup("")
    return Markup('<span class="status {}">{}</span>').format(status_class(value), escape(value))


def console_url(path: str, **query) -> str:
    values = {k: v for k, v in query.items() if v not in (None, "")}
    return "/console" + path + (f"?{urlencode(values, doseq=True)}" if values else "")


def last_segment(arn: str | None) -> str:
    return (arn or "").rsplit("/", 1)[-1]


# The navigation, in order: (label, path below /console). Areas still to come (projects) add their entry when
# their pages land.
NAVIGATION = (
    ("Overview", "/"),
    ("Pipelines", "/pipelines"),
    ("Training jobs", "/jobs/training"),
    ("Processing jobs", "/jobs/processing"),
    ("Transform jobs", "/jobs/transform"),
    ("Experiments", "/experiments"),
    ("Model registry", "/models"),
    ("Endpoints", "/endpoints"),
    ("Shadow tests", "/shadow-tests"),
    ("Feature store", "/featurestore"),
    ("Lineage", "/lineage"),
    ("Tuning jobs", "/tuning"),
    ("Notebook instances", "/notebooks"),
    ("Projects", "/projects"),
)

_ENV = Environment(
    loader=PackageLoader("selfmaker.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(when=when, status=status, status_class=status_class, last_segment=last_segment)
_ENV.globals.update(url=console_url, duration=duration, navigation=NAVIGATION)


def render(template: str, **values) -> str:
    return _ENV.get_template(template).render(**values)
