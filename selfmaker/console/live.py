"""Live views: server-sent events fed by polling the API on the server's side.

A live view's ``poll`` runs the same operations its page does and returns the events to send (name, data)
and whether the thing watched has ended. The stream ends when it has, when the browser goes away (its
disconnect is read from the ASGI channel while waiting between polls, so an abandoned tab costs nothing
after its next interval), or after ``LIFETIME`` seconds, when the browser's EventSource reconnects by itself:
no stream lives forever.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from ..server.errors import AWSError
from ..server.http import Request, Response
from .web import SECURITY_HEADERS

LIFETIME = 300.0
INTERVAL = 1.0

Poll = Callable[[], Awaitable[tuple[list[tuple[str, object]], bool]]]


def event(name: str, data) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _gone(request: Request, seconds: float) -> bool:
    """Wait ``seconds``, or less if the client disconnects: True when it did."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        with anyio.move_on_after(left):
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return True
            if not message.get("more_body"):
                # The (empty) body of the GET is over: from here on, receive() returns only at a disconnect.
                continue
    return False


def event_stream(request: Request, poll: Poll, interval: float = INTERVAL) -> Response:
    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        ends = time.monotonic() + LIFETIME
        while True:
            try:
                events, done = await poll()
            except AWSError as err:  # the thing watched went away, or the caller may no longer see it
                yield event("failure", {"code": err.code, "message": err.message})
                return
            for name, data in events:
                yield event(name, data)
            if done:
                yield event("end", {})
                return
            if time.monotonic() > ends or await _gone(request, interval):
                return

    headers = [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        ("X-Accel-Buffering", "no"),  # a proxy in front must pass events on as they come
        *SECURITY_HEADERS,
    ]
    return Response(200, b"", headers, stream=stream())


def status_stream(request: Request, describe: Callable[[], Awaitable[dict]], member: str, changing: set) -> Response:
    """``status`` events of ``describe()[member]`` while it is one of ``changing``, then ``end``."""
    last: list[str | None] = [None]

    async def poll():
        status = (await describe()).get(member)
        events: list[tuple[str, object]] = [("status", status)] if status != last[0] else []
        last[0] = status
        return events, status not in changing

    return event_stream(request, poll)
