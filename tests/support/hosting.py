"""SelfMaker in the test process, with the endpoint router's parts a test publishes itself.

Tests of the router publish Routes (what the endpoint controller does once instances are ready) to
small in-test containers on Unix sockets, and reach the server's Backends directly.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import uvicorn

from selfmaker.config import Settings
from selfmaker.server.app import create_app
from selfmaker.server.one_write import OneWriteHttpToolsProtocol
from selfmaker.services.hosting.routes import Route, Target
from support.server import ACCOUNT, REGION, free_port
from support.waiting import wait_for


class InProcessServer:
    """SelfMaker in this process (uvicorn in a thread), so tests reach its Backends."""

    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.app = create_app(Settings(data_dir=data_dir, port=self.port))
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                http=OneWriteHttpToolsProtocol,  # as `selfmaker serve` runs it
                log_level="warning",
                access_log=False,
                lifespan="on",
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backends(self):
        return self.app.backends

    def start(self) -> InProcessServer:
        self.thread.start()

        def started() -> bool:
            assert self.thread.is_alive(), "the in-process server thread ended"
            return self.server.started

        wait_for(started, timeout=30, interval=0.02, what="the in-process server to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class Container:
    """A minimal container on a Unix socket, in a thread: ``answer(body, headers) -> (status, headers, body)``."""

    def __init__(self, path: Path, answer):
        self.path = str(path)
        self.requests: list[tuple[bytes, dict]] = []
        container = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                container.requests.append((body, headers))
                status, out_headers, out = answer(body, headers)
                if status is None:  # die before answering
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(status)
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self):
                request, _ = super().get_request()
                container.connections.append(request)
                return request, ("local", 0)

            def handle_error(self, request, client_address):
                pass  # a client that hung up on purpose (oversized answers) is not news

        self.connections: list[socket.socket] = []
        Path(self.path).unlink(missing_ok=True)
        self.server = Server(self.path, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop as a process would: its socket file and every open connection go away."""
        self.server.shutdown()
        self.server.server_close()
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        Path(self.path).unlink(missing_ok=True)


def echo(status: int = 200, content_type: str = "application/json", **headers):
    def answer(body, received):
        return status, {"Content-Type": content_type, **headers}, body

    return answer


def route(name, traffic, shadows=(), capture=None) -> Route:
    return Route(
        ACCOUNT,
        REGION,
        name,
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}",
        tuple(traffic),
        tuple(shadows),
        capture,
    )


def target(variant, sockets, weight=1.0) -> Target:
    return Target(variant, weight, tuple(str(s) for s in sockets), "config-1")
