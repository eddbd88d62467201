"""Security: a caller's pattern is matched by the server in bounded time. An EventBridge ``wildcard`` with a few
stars, over an event's long value, once backtracked for hours on a request thread (TestEventPattern) or the
delivery worker (PutEvents); it is now matched piece by piece, and still means what it meant."""

from __future__ import annotations

import json
import time

from support.server import ACCOUNT, REGION

# Six stars between a's and a final b: as a regex, a value of 4,000 a's took longer than any test would wait.
STARS = "*a" * 6 + "*b"


def event(value: str) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "Pattern Check",
            "source": "my.app",
            "account": ACCOUNT,
            "time": "2024-01-01T00:00:00Z",
            "region": REGION,
            "resources": [],
            "detail": {"name": value},
        }
    )


def test_a_wildcard_over_a_long_value_is_answered_at_once(client):
    events = client("events")
    pattern = json.dumps({"detail": {"name": [{"wildcard": STARS}]}})
    started = time.monotonic()
    assert events.test_event_pattern(EventPattern=pattern, Event=event("a" * 4000))["Result"] is False
    assert events.test_event_pattern(EventPattern=pattern, Event=event("a" * 4000 + "b"))["Result"] is True
    assert time.monotonic() - started < 10
    # anything-but takes the same matcher.
    other = json.dumps({"detail": {"name": [{"anything-but": {"wildcard": STARS}}]}})
    assert events.test_event_pattern(EventPattern=other, Event=event("a" * 4000))["Result"] is True
