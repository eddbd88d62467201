"""A minimal request/response pair over raw ASGI: less overhead than a framework on the hot path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs


class Request:
    __slots__ = (
        "_body",
        "_query",
        "body_done",
        "body_started",
        "headers",
        "method",
        "path",
        "raw_path",
        "raw_query",
        "receive",
        "scope",
    )

    def __init__(self, scope, receive):
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.raw_path: str = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
        self.path: str = scope["path"]
        self.raw_query: str = scope.get("query_string", b"").decode("latin-1")
        # Header names lower-cased; repeated headers joined with "," as HTTP allows.
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        self.headers = headers
        self._body: bytes | None = None
        self._query: dict[str, list[str]] | None = None
        # How far the body has been read: an answer given before the end may have to close the connection.
        self.body_started = False
        self.body_done = not _declares_body(headers)

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parse_qs(self.raw_query, keep_blank_values=True)
        return self._query

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    async def stream(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, as the client sends it (for large uploads)."""
        if self._body is not None:
            yield self._body
            return
        self.body_started = True
        while True:
            message = await self.receive()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                self.body_done = True
                break

    @property
    def declared_length(self) -> int | None:
        length = self.headers.get("content-length", "")
        return int(length) if length.isdigit() else None

    async def body(self, limit: int | None = None) -> bytes:
        """The whole body; past ``limit`` bytes, BodyTooLarge, raised as soon as the limit is crossed
        (at once when Content-Length says so), so an oversized body is never held in memory."""
        if self._body is None:
            if limit is not None and (self.declared_length or 0) > limit:
                raise BodyTooLarge(limit)
            # Read here rather than through stream(): most bodies arrive in one message, kept as it came
            # (no copy), and an async generator per request costs more than the small body it reads.
            self.body_started = True
            message = await self.receive()
            first = message.get("body", b"")
            if not message.get("more_body", False):
                self.body_done = True
                if limit is not None and len(first) > limit:
                    raise BodyTooLarge(limit)
                self._body = bytes(first)  # already bytes (uvicorn's) costs nothing
                return self._body
            data = bytearray(first)
            while True:
                if limit is not None and len(data) > limit:
                    raise BodyTooLarge(limit)
                message = await self.receive()
                data += message.get("body", b"")
                if not message.get("more_body", False):
                    self.body_done = True
                    break
            if limit is not None and len(data) > limit:
                raise BodyTooLarge(limit)
            self._body = bytes(data)
        elif limit is not None and len(self._body) > limit:
            raise BodyTooLarge(limit)
        return self._body

    def must_close_unread(self) -> bool:
        """Answered with body bytes still unread: must the connection close?

        A client waiting for ``100 Continue`` never sends the body once answered, so the
        connection cannot carry another request. Otherwise uvicorn discards the rest as it
        arrives and keeps the connection, so the client, still sending, reads its answer; past
        CLOSE_UNREAD_ABOVE bytes, closing is cheaper than swallowing what we refused.
        """
        if self.body_done:
            return False
        if self.headers.get("expect", "").lower() == "100-continue" and not self.body_started:
            return True
        return (self.declared_length or 0) > CLOSE_UNREAD_ABOVE


CLOSE_UNREAD_ABOVE = 64 << 20


class BodyTooLarge(Exception):
    """The body is larger than the protocol allows; each protocol answers in its own words."""

    def __init__(self, limit: int):
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


def _declares_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length", "0")
    return "transfer-encoding" in headers or not length.isdigit() or int(length) > 0


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    # For large downloads: the body arrives in chunks and `body` is ignored.
    stream: AsyncIterator[bytes] | None = None

    async def send(self, send) -> None:
        headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in self.headers]
        if self.stream is None and not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        if self.stream is None:
            await send({"type": "http.response.body", "body": self.body})
            return
        async for chunk in self.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
