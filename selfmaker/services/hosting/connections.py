"""HTTP/1.1 to model server instances, on the server's event loop.

An instance's address is a Unix socket path (an instance on this machine) or
``host:port`` (an instance on a Ray node, listening on TCP on the node's
address; asyncio turns Nagle's algorithm off on TCP connections, so a request
is never held back for a delayed ACK).

InvokeEndpoint is a coroutine: forwarding a request is waiting on a socket,
and doing it on the event loop spares every request two thread hand-offs
(and the GIL ping-pong they cause under load). Each instance socket has a
pool of idle keep-alive connections (whatever its transport); everything here runs on one loop, so the
pools need no locks.

Only what a model server speaks is spoken: ``POST /invocations`` with a
Content-Length body; answers with Content-Length, chunked, or until close.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
MAX_IDLE = 64  # idle connections kept per instance
HEAD_LIMIT = 64 * 1024  # bytes of status line and headers


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


def is_socket(address: str) -> bool:
    """Whether an instance address is a Unix socket path (else it is ``host:port``)."""
    return address.startswith("/")


def host_port(address: str) -> tuple[str, int]:
    """The host and port of a ``host:port`` address (an IPv6 host in brackets)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def _connect(address: str) -> Stream:
    if is_socket(address):
        return await asyncio.open_unix_connection(address, limit=HEAD_LIMIT)
    host, port = host_port(address)
    return await asyncio.open_connection(host, port, limit=HEAD_LIMIT)


class ModelTimeout(Exception):
    pass


class ResponseTooLarge(Exception):
    def __init__(self, status: int, size: int | None):
        super().__init__(status, size)
        self.status, self.size = status, size


class BadResponse(Exception):
    """The instance answered something that is not HTTP/1.1."""


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Instances:
    """Idle keep-alive connections per instance address, and the exchange of one invocation."""

    def __init__(self):
        self._idle: dict[str, list[Stream]] = {}

    async def _acquire(self, path: str) -> tuple[Stream, bool]:
        """A connection, and whether it was used before (and so may have been closed by the server)."""
        idle = self._idle.get(path)
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return (reader, writer), True
            writer.close()
        if idle is None:
            # An address not seen before usually means others were retired: forget those that are gone (a
            # socket removed; a TCP address whose idle connections its server has all closed).
            for gone in [a for a, pool in self._idle.items() if _gone(a, pool)]:
                for _, writer in self._idle.pop(gone):
                    writer.close()
            self._idle[path] = []
        try:
            return await _connect(path), False
        except (OSError, ValueError) as err:
            raise InstanceGone(f"cannot connect: {getattr(err, 'strerror', None) or err}") from None

    def _release(self, path: str, stream: Stream) -> None:
        idle = self._idle.get(path)
        if idle is not None and len(idle) < MAX_IDLE:
            idle.append(stream)
        else:
            stream[1].close()

    async def exchange(self, path: str, invocation: Invocation, timeout: float, max_payload: int) -> Answer:
        """POST /invocations to the instance at ``path`` (a socket or host:port); ModelTimeout after ``timeout`` seconds."""
        head = _request_head(invocation)
        while True:
            (reader, writer), reused = await self._acquire(path)
            started = time.perf_counter()
            keep = False  # whether the connection goes back to the pool; anything unexpected closes it
            try:
                async with asyncio.timeout(timeout):
                    writer.writelines((head, invocation.body))
                    await writer.drain()
                    status, headers = await _read_head(reader)
                    body = await _read_body(reader, headers, status, max_payload)
                keep = headers.get("connection", "").lower() != "close"
            except TimeoutError:
                raise ModelTimeout() from None
            except (OSError, asyncio.IncompleteReadError) as err:
                if reused:
                    continue  # the server closed this idle connection: open a fresh one
                raise InstanceGone(f"{type(err).__name__}: {err}") from None
            finally:
                if keep:
                    self._release(path, (reader, writer))
                else:
                    writer.close()
            return Answer(
                status,
                body,
                headers.get("content-type"),
                headers.get(CUSTOM_ATTRIBUTES.lower()),
                time.perf_counter() - started,
            )


def _gone(address: str, pool: list[Stream]) -> bool:
    if is_socket(address):
        return not os.path.exists(address)
    return all(reader.at_eof() or writer.is_closing() for reader, writer in pool)


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


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BadResponse(f"status line and headers longer than {HEAD_LIMIT} bytes") from None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadResponse(f"not an HTTP/1.1 status line: {lines[0][:100]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], status: int, max_payload: int) -> bytes:
    if status in (204, 304) or status < 200:
        return b""
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise BadResponse(f"bad Content-Length {headers['content-length']!r}") from None
        if length > max_payload:
            raise ResponseTooLarge(status, length)
        return await reader.readexactly(length)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise BadResponse(f"bad chunk size {line[:40]!r}") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return bytes(body)
            body += await reader.readexactly(size + 2)
            del body[-2:]
            if len(body) > max_payload:
                raise ResponseTooLarge(status, None)
    body = bytearray()  # no length: the body runs to the end of the connection
    while chunk := await reader.read(65536):
        body += chunk
        if len(body) > max_payload:
            raise ResponseTooLarge(status, None)
    headers["connection"] = "close"
    return bytes(body)
