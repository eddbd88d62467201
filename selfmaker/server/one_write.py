"""uvicorn's httptools protocol, with a response's head and body leaving in one write.

uvicorn writes the status line and headers as soon as the app sends
``http.response.start``, and the body at ``http.response.body``: two writes,
so a small answer (every InvokeEndpoint) wakes the client twice, and the
client parses the head before waiting again for the body. Here the head is
held back until the body's first write, or until the event loop's next turn
when the body is not sent at once (a streamed download's first chunk, a
notebook proxy waiting on its upstream), so nothing ever waits on the hold.
Everything else is uvicorn's own code. It leans on two attributes of uvicorn's
request cycle (``transport``, ``response_started``): where a uvicorn release
lacks them, responses go out as uvicorn writes them (two writes, still correct).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadWithBody:
    """A connection's transport for one request/response cycle: the head's write joins the body's."""

    __slots__ = ("_cycle", "_head", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle, loop: asyncio.AbstractEventLoop):
        self._transport, self._cycle, self._loop = transport, cycle, loop
        self._head: bytes | None = None
        self._held = False  # the head comes once per cycle: later writes (body chunks) go straight out

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif not self._held and self._cycle.response_started:
            # uvicorn marks the response started just before writing its head (a "100 Continue" sent
            # before that, while the app reads the body, goes out at once).
            self._held, self._head = True, data
            self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self._flush()  # a head already given goes out before the connection closes, as uvicorn's would
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()  # makes the request's cycle and schedules (not runs) its app task
        cycle = self.cycle
        if cycle is not None and cycle is not previous and _holdable(cycle):
            cycle.transport = HeadWithBody(self.transport, cycle, self.loop)  # type: ignore[assignment]


def _holdable(cycle) -> bool:
    """The cycle has what HeadWithBody relies on (uvicorn's own attributes, not a public API)."""
    return hasattr(cycle, "transport") and isinstance(getattr(cycle, "response_started", None), bool)
