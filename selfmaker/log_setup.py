"""How `selfmaker serve` logs: SelfMaker's own lines at the chosen level, other libraries' warnings only.

Alembic (migrations at start-up), uvicorn and the database and AWS client libraries
report at WARNING and above whatever the level, so the default output is SelfMaker's
own INFO lines. ``--log-format json`` writes one JSON object per line for log
collectors: time (UTC, ISO 8601), level, logger, message and, on an error, the
exception's traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, log_format: str) -> None:
    """Route every logger to stderr: ``selfmaker.*`` at ``level``, everything else at WARNING or above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    own = logging.getLevelName(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(own, logging.WARNING))
    logging.getLogger("selfmaker").setLevel(own)
