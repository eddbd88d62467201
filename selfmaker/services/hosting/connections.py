"""HTTP/1.1 to model server instances, on the server's event loop.

An instance's address is a Unix socket path (an instance on this machine) or
``host:port`` (an instance on a Ray node, listening on TCP on the node's
address; asyncio turns Nagle's algorithm off on TCP connections, so a request
is never held back for a delayed ACK).

InvokeEndpoint is a coroutine: forwarding a request is waiting on a socket,
and doing it on the event loop spares every request two thread hand-offs
(and the GIL ping-pong they cause under load). Each instance address has a
pool of idle keep-alive connections; everything here runs on one loop, so the
pools need no locks.

Each connection is an ``asyncio.Protocol`` (``_Connection``), not a pair of
asyncio streams: it parses the answer as its bytes arrive and completes one
future per exchange, the request goes out in one ``transport.write`` and the
model's timeout is one timer handle. Streams cost, per request, a
StreamReader's waiter per readuntil/readexactly, a drain and the
``asyncio.timeout`` context manager (cProfile put the streams' exchange at
about a fifth of the event loop's CPU per InvokeEndpoint); an answer that
arrives in one read (the usual: answers are small) now costs one
``data_received`` and one future, and the loop's CPU per InvokeEndpoint
fell by about a tenth.

Only what a model server speaks is spoken: ``POST /invocations`` with a
Content-Length body, one exchange at a time per connection (never
pipelined); answers with Content-Length, chunked (trailers skipped), or until
close (as an HTTP/1.0 answer without keep-alive), after any interim 1xx
answer; the body is capped while it arrives.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
MAX_IDLE = 64  # idle connections kept per instance
HEAD_LIMIT = 64 * 1024  # bytes of status line and headers (and of a chunk-size line, and of the trailers)
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")  # a hex length; int(, 16) alone would take "-1", "0x1" or "1_0"


@dataclass(frozen=True, slots=True)
class Invocation:
    body: bytes
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    inference_id: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str | None
    custom_attributes: str | None
    model_seconds: float


class InstanceGone(Exception):
    """The instance closed the connection, or its socket or port vanished, before answering."""


class ModelTimeout(Exception):
    pass


class ResponseTooLarge(Exception):
    def __init__(self, status: int, size: int | None):
        super().__init__(status, size)
        self.status, self.size = status, size


class BadResponse(Exception):
    """The instance answered something that is not HTTP/1.1."""


def is_socket(address: str) -> bool:
    """Whether an instance address is a Unix socket path (else it is ``host:port``)."""
    return address.startswith("/")


def host_port(address: str) -> tuple[str, int]:
    """The host and port of a ``host:port`` address (an IPv6 host in brackets)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Instances:
    """Idle keep-alive connections per instance address, and the exchange of one invocation."""

    def __init__(self):
        self._idle: dict[str, list[_Connection]] = {}

    async def exchange(self, path: str, invocation: Invocation, timeout: float, max_payload: int) -> Answer:
        """POST /invocations to the instance at ``path`` (a socket or host:port); ModelTimeout after ``timeout`` seconds."""
        request = _request_head(invocation) + invocation.body
        connection = self._pooled(path)
        reused = connection is not None
        while True:
            if connection is None or not reused:
                connection = await self._connect(path)
            started = time.perf_counter()
            try:
                status, headers, body = await connection.send(request, timeout, max_payload)
            except InstanceGone:
                if reused and not connection.answered:
                    reused = False  # the server closed this idle connection as the request went: once more, anew
                    continue
                raise
            finally:
                if connection.idle:
                    self._release(path, connection)
                else:  # a timeout, an error, a cancelled caller, Connection: close: never reused
                    connection.close()
            return Answer(
                status,
                body,
                headers.get("content-type"),
                headers.get(CUSTOM_ATTRIBUTES.lower()),
                time.perf_counter() - started,
            )

    def _pooled(self, path: str) -> _Connection | None:
        """An idle connection to ``path`` (used before, so maybe since closed by the server), if there is one."""
        idle = self._idle.get(path)
        while idle:
            connection = idle.pop()
            if connection.idle:
                return connection
            connection.close()
        if idle is None:
            # An address not seen before usually means others were retired: forget those that are gone (a
            # socket removed; a TCP address whose idle connections its server has all closed).
            for gone in [a for a, pool in self._idle.items() if _gone(a, pool)]:
                for connection in self._idle.pop(gone):
                    connection.close()
            self._idle[path] = []
        return None

    async def _connect(self, path: str) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            if is_socket(path):
                _, connection = await loop.create_unix_connection(lambda: _Connection(loop), path)
            else:
                _, connection = await loop.create_connection(lambda: _Connection(loop), *host_port(path))
        except (OSError, ValueError) as err:
            raise InstanceGone(f"cannot connect: {getattr(err, 'strerror', None) or err}") from None
        return connection

    def _release(self, path: str, connection: _Connection) -> None:
        idle = self._idle.get(path)
        if idle is not None and len(idle) < MAX_IDLE:
            idle.append(connection)
        else:
            connection.close()


def _gone(address: str, pool: list[_Connection]) -> bool:
    if is_socket(address):
        return not os.path.exists(address)
    return not any(connection.idle for connection in pool)


def _request_head(invocation: Invocation) -> bytes:
    lines = ["POST /invocations HTTP/1.1", "Host: localhost", f"Content-Length: {len(invocation.body)}"]
    if invocation.content_type:
        lines.append(f"Content-Type: {invocation.content_type}")
    if invocation.accept:
        lines.append(f"Accept: {invocation.accept}")
    if invocation.custom_attributes:
        lines.append(f"{CUSTOM_ATTRIBUTES}: {invocation.custom_attributes}")
    # Header values reach here validated as ASCII by the API model, so latin-1 never fails.
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one exchange at a time, its answer parsed as the bytes arrive.

    ``_step`` is the parser's state: a method that consumes what it can of ``_buffer`` and says whether
    to go on (True) or wait for more bytes (False). The buffer never holds more than the payload cap and
    one read: a body's declared size is checked before its bytes are waited for.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._answer: asyncio.Future | None = None  # the exchange in progress, if any
        self._timer: asyncio.TimerHandle | None = None
        self.answered = False  # whether any byte of the current answer arrived (if not, a retry is safe)
        self._buffer = bytearray()
        self._step = self._head
        self._scanned = 0  # how far the buffer was searched for the end of the head
        self._max_payload = 0
        self._status = 0
        self._headers: dict[str, str] = {}
        self._keep = True
        self._remaining = 0  # bytes still to come: of a Content-Length body, a chunk, or allowed of trailers
        self._body = bytearray()  # the chunks so far
        self._until_close = False

    @property
    def idle(self) -> bool:
        """Open, with no exchange in progress: fit to be pooled and reused."""
        return self._answer is None and not self._closed and not self._transport.is_closing()

    def send(self, request: bytes, timeout: float, max_payload: int) -> asyncio.Future:
        """Write the request; the future's result is the answer's (status, headers, body)."""
        if not self.idle:
            raise InstanceGone("the connection closed")
        self._answer = answer = self._loop.create_future()
        self._timer = self._loop.call_later(timeout, self._time_out)
        self._max_payload = max_payload
        self.answered = False
        self._transport.write(request)  # a failure to write comes back as connection_lost
        return answer

    def close(self) -> None:
        self._closed = True
        self._answer = None
        if self._timer is not None:
            self._timer.cancel()
        self._transport.close()

    # --- asyncio.Protocol

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # bytes nobody asked for: what follows on this connection cannot be trusted
            self.close()
            return
        self.answered = True
        self._buffer += data
        try:
            while self._step():
                pass
        except (BadResponse, ResponseTooLarge) as err:
            self._fail(err)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._answer is None:
            return
        if self._until_close:
            body = bytes(self._buffer)
            self._buffer.clear()
            self._finish(body)
        else:
            reason = f"{type(exc).__name__}: {exc}" if exc else "the instance closed the connection"
            self._fail(InstanceGone(f"{reason} before answering" if not self.answered else f"{reason} mid-answer"))

    # --- the end of an exchange

    def _finish(self, body: bytes) -> bool:
        answer, self._answer = self._answer, None
        self._timer.cancel()
        if not self._keep or self._until_close or self._buffer:  # leftover bytes: the server spoke out of turn
            self.close()
        result = (self._status, self._headers, body)
        self._step, self._scanned, self._keep, self._until_close, self._body = self._head, 0, True, False, bytearray()
        if not answer.done():  # (a cancelled caller)
            answer.set_result(result)
        return False

    def _time_out(self) -> None:
        self._fail(ModelTimeout())

    def _fail(self, err: Exception) -> None:
        answer = self._answer
        self.close()
        if answer is not None and not answer.done():
            answer.set_exception(err)

    # --- the parser's states

    def _head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n", self._scanned)
        if end < 0 or end + 4 > HEAD_LIMIT:
            if len(buffer) > HEAD_LIMIT:
                raise BadResponse(f"status line and headers longer than {HEAD_LIMIT} bytes")
            self._scanned = max(0, len(buffer) - 3)
            return False
        lines = buffer[:end].decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        self._scanned = 0
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise BadResponse(f"not an HTTP/1.1 status line: {lines[0][:100]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            if status == 101:
                raise BadResponse("101 Switching Protocols, to nothing asked for")
            return True  # an interim answer (100 Continue, 103 Early Hints): the final one follows
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        self._status, self._headers = status, headers
        self._keep = connection != "close" and (parts[0] != "HTTP/1.0" or connection == "keep-alive")
        if status in (204, 304):
            return self._finish(b"")
        if "chunked" in headers.get("transfer-encoding", "").lower():  # it overrides any Content-Length
            self._step = self._chunk_size
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise BadResponse(f"bad Content-Length {length[:40]!r}")
            if int(length) > self._max_payload:
                raise ResponseTooLarge(status, int(length))
            self._remaining, self._step = int(length), self._fixed
        else:  # no length: the body runs to the end of the connection
            self._until_close, self._step = True, self._to_close
        return True

    def _fixed(self) -> bool:
        buffer, length = self._buffer, self._remaining
        if len(buffer) < length:
            return False
        body = bytes(buffer[:length])
        del buffer[:length]
        return self._finish(body)

    def _chunk_size(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > HEAD_LIMIT:
                raise BadResponse(f"a chunk-size line longer than {HEAD_LIMIT} bytes")
            return False
        size = bytes(buffer[:end]).split(b";", 1)[0].strip()
        del buffer[: end + 2]
        if not _CHUNK_SIZE.fullmatch(size):
            raise BadResponse(f"bad chunk size {size[:40]!r}")
        self._remaining = int(size, 16)
        if self._remaining == 0:
            self._remaining, self._step = HEAD_LIMIT, self._trailers
        elif len(self._body) + self._remaining > self._max_payload:
            raise ResponseTooLarge(self._status, None)
        else:
            self._step = self._chunk_data
        return True

    def _chunk_data(self) -> bool:
        buffer, size = self._buffer, self._remaining
        if len(buffer) < size + 2:
            return False
        if buffer[size : size + 2] != b"\r\n":
            raise BadResponse("a chunk longer than its size")
        self._body += buffer[:size]
        del buffer[: size + 2]
        self._step = self._chunk_size
        return True

    def _trailers(self) -> bool:
        buffer = self._buffer
        while (end := buffer.find(b"\r\n")) >= 0:
            del buffer[: end + 2]
            self._remaining -= end + 2
            if end == 0:
                return self._finish(bytes(self._body))
        if self._remaining < 0 or len(buffer) > self._remaining:
            raise BadResponse(f"trailers longer than {HEAD_LIMIT} bytes")
        return False

    def _to_close(self) -> bool:
        if len(self._buffer) > self._max_payload:
            raise ResponseTooLarge(self._status, None)
        return False  # connection_lost finishes
