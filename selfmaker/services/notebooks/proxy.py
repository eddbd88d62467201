"""The way into a notebook instance: presigned URLs, the session cookie they set, and the reverse proxy.

``CreatePresignedNotebookInstanceUrl`` answers ``http://<this server>/_selfmaker/notebooks/<account>/<region>/
<name>/?authToken=...``: a token this server signed (the store's token key) naming the instance, good for
:data:`URL_SECONDS` as on AWS. Opening it sets a session cookie scoped to the instance's path, valid for the
SessionExpirationDurationInSeconds asked for, and redirects to JupyterLab. Every request under that path
(HTTP, streamed both ways, and WebSocket, so kernels work) is then relayed to the instance's Jupyter on its
private Unix socket; without a valid token or cookie, or once it has expired, the proxy answers 403.
"""

from __future__ import annotations

import contextlib
import html
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

import anyio
import h11

from ...backends import Backends
from ...server.operations import Context
from ...store.resources import Record
from . import jupyter

URL_SECONDS = 300  # an AWS presigned notebook URL is good for five minutes
DEFAULT_SESSION_SECONDS = 43200  # SessionExpirationDurationInSeconds' default: 12 hours
COOKIE = "selfmaker-notebook"
# Hop-by-hop headers (RFC 9110 7.6.1), never relayed; framing is redone on each side.
HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
}


def _host(ctx: Context) -> str:
    return (ctx.headers or {}).get("host") or f"127.0.0.1:{ctx.settings.port}"


def public_url(ctx: Context, record: Record) -> str:
    """Describe's Url: where the instance is served, without a scheme as AWS gives it."""
    return _host(ctx) + jupyter.base_path(record.account_id, record.region, record.name)


def presigned_url(ctx: Context, record: Record, session_seconds: int, now: float) -> str:
    token = ctx.backends.resources.sign(
        {"nb": "url", "arn": record.arn, "exp": now + URL_SECONDS, "session": session_seconds}
    )
    return f"http://{public_url(ctx, record)}?{urlencode({'authToken': token})}"


def check(backends: Backends, token: str | None, use: str, arn: str, now: float) -> dict | None:
    """The payload of a valid, unexpired ``use`` token for the instance ``arn``; None otherwise."""
    payload = backends.resources.unsign(token) if token else None
    if not isinstance(payload, dict) or payload.get("nb") != use or payload.get("arn") != arn:
        return None
    return payload if isinstance(payload.get("exp"), (int, float)) and payload["exp"] > now else None


# -- the ASGI side -------------------------------------------------------------------------------------------


async def handle(backends: Backends, scope, receive, send) -> None:
    """An HTTP or WebSocket request under /_selfmaker/notebooks/."""
    parts = scope["path"][len(jupyter.PROXY_PREFIX) + 1 :].split("/", 3)
    if len(parts) < 3 or not all(parts[:3]):
        return await _refuse(scope, send, 404, "No such notebook instance.")
    account, region, name = parts[:3]
    base = jupyter.base_path(account, region, name)
    arn = f"arn:aws:sagemaker:{region}:{account}:notebook-instance/{name.lower()}"
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    now = time.time()
    url_token = next((v for k, v in query if k == "authToken"), None)
    if url_token is not None and scope["type"] == "http":
        payload = check(backends, url_token, "url", arn, now)
        if payload is None:
            return await _refuse(scope, send, 403, "This notebook instance URL is not valid or has expired.")
        return await _log_in(backends, scope, send, base, arn, int(payload.get("session") or 0), query)
    if check(backends, _cookie(scope), "session", arn, now) is None:
        return await _refuse(
            scope,
            send,
            403,
            "Open this notebook instance through a URL from CreatePresignedNotebookInstanceUrl "
            "(no valid session, or it has expired).",
        )
    record = await anyio.to_thread.run_sync(backends.resources.get_by_arn, arn)
    status = record.data["NotebookInstanceStatus"] if record else "deleted"
    if status != "InService":
        return await _refuse(scope, send, 503, f"The notebook instance is not InService (it is {status}).")
    if not scope["path"].startswith(base):
        return await _redirect(send, base)  # ".../name" without the slash
    files = jupyter.Files(backends, account, region, name)
    if scope["type"] == "websocket":
        return await _relay_websocket(scope, receive, send, str(files.socket))
    return await _relay_http(scope, receive, send, str(files.socket))


def _cookie(scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            with contextlib.suppress(Exception):
                jar.load(value.decode("latin-1"))
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


async def _log_in(backends, scope, send, base: str, arn: str, session: int, query: list) -> None:
    expires = time.time() + session
    token = backends.resources.sign({"nb": "session", "arn": arn, "exp": expires})
    rest = [(k, v) for k, v in query if k != "authToken"]
    target = scope["path"] if scope["path"] != base else f"{base}lab"
    if rest:
        target += "?" + urlencode(rest)
    cookie = f"{COOKIE}={token}; Path={base}; Max-Age={session}; HttpOnly; SameSite=Lax"
    await _redirect(send, target, [(b"set-cookie", cookie.encode())])


async def _redirect(send, location: str, headers: list | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [(b"location", location.encode()), (b"content-length", b"0"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _refuse(scope, send, status: int, message: str) -> None:
    if scope["type"] == "websocket":  # closed before accept: the client sees HTTP 403
        await send({"type": "websocket.close", "code": 4403, "reason": message[:120]})
        return
    body = f"<!doctype html><title>SelfMaker</title><p>{html.escape(message)}</p>\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _forwarded_headers(scope) -> list[tuple[bytes, bytes]]:
    """The request's headers for Jupyter: hop-by-hop ones and our session cookie left out."""
    out = []
    for key, value in scope.get("headers", []):
        if key in HOP or key.startswith(b"sec-websocket-"):
            continue
        if key == b"cookie":
            kept = "; ".join(
                c.strip() for c in value.decode("latin-1").split(";") if not c.strip().startswith(f"{COOKIE}=")
            )
            if not kept:
                continue
            value = kept.encode("latin-1")
        out.append((key, value))
    return out


def _target(scope) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return (path + (b"?" + query if query else b"")).decode("latin-1")


async def _relay_http(scope, receive, send, socket_path: str) -> None:
    try:
        stream = await anyio.connect_unix(socket_path)
    except OSError:
        return await _refuse(scope, send, 502, "The notebook instance's JupyterLab does not answer.")
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        headers = _forwarded_headers(scope)
        has_length = any(k == b"content-length" for k, _ in headers)
        if not has_length and scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            headers.append((b"transfer-encoding", b"chunked"))
        headers.append((b"connection", b"close"))
        await stream.send(conn.send(h11.Request(method=scope["method"], target=_target(scope), headers=headers)))
        while True:  # the request body, streamed
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            if message.get("body"):
                await stream.send(conn.send(h11.Data(data=message["body"])))
            if not message.get("more_body"):
                break
        await stream.send(conn.send(h11.EndOfMessage()))
        while True:  # the response, streamed
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive(65536))
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    conn.receive_data(b"")
                continue
            if isinstance(event, h11.Response):
                kept = [(k, v) for k, v in event.headers if k not in HOP]
                await send({"type": "http.response.start", "status": event.status_code, "headers": kept})
            elif isinstance(event, h11.Data):
                await send({"type": "http.response.body", "body": bytes(event.data), "more_body": True})
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                await send({"type": "http.response.body", "body": b""})
                return None


async def _relay_websocket(scope, receive, send, socket_path: str) -> None:
    from websockets.asyncio.client import unix_connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    if (await receive())["type"] != "websocket.connect":
        return
    headers = dict(_forwarded_headers(scope))
    host = headers.pop(b"host", b"localhost").decode("latin-1")
    origin = headers.pop(b"origin", None)
    extra = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.items() if k in (b"cookie",)]
    try:
        upstream = await unix_connect(
            socket_path,
            f"ws://{host}{_target(scope)}",
            subprotocols=scope.get("subprotocols") or None,
            origin=origin.decode("latin-1") if origin else None,
            additional_headers=extra,
            compression=None,
            max_size=None,
            open_timeout=10,
        )
    except (
        OSError,
        TimeoutError,
        InvalidHandshake,
    ) as err:  # refused by Jupyter, or it is not there: the client sees a failed upgrade
        await send({"type": "websocket.close", "code": 1011, "reason": str(err)[:120]})
        return
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

    async def from_client(group) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close()
                break
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])
        group.cancel_scope.cancel()

    async def from_jupyter(group) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                key = "text" if isinstance(message, str) else "bytes"
                await send({"type": "websocket.send", key: message})
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": upstream.close_code or 1000})
        group.cancel_scope.cancel()

    async with upstream, anyio.create_task_group() as group:
        group.start_soon(from_client, group)
        group.start_soon(from_jupyter, group)
