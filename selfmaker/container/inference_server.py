"""A SageMaker model server: GET /ping, POST /invocations, GET /execution-parameters.

``python -m selfmaker.container.inference_server`` inside the sandbox serves the
model in /opt/ml/model (ModelDataUrl already extracted there) with the handler
semantics of the sagemaker-inference-toolkit (``transformer.py``):

* the user's module, ``SAGEMAKER_PROGRAM`` (default ``inference.py``) from
  /opt/ml/model/code or a local ``SAGEMAKER_SUBMIT_DIRECTORY``, its
  requirements.txt installed first;
* ``model_fn(model_dir)`` once, then per request ``transform_fn(model, data,
  content_type, accept)`` or ``output_fn(predict_fn(input_fn(data,
  content_type), model), accept)``; each handler may take a trailing
  ``context``; missing ones fall back to the framework's defaults
  (scikit-learn, XGBoost's ``xgboost-model``, ONNX), and transform_fn with any
  of the other three is an error;
* ``Accept`` missing or ``*/*`` means ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``
  (default application/json); application/json and text/csv bodies reach the
  handlers decoded to ``str``;
* an error answers its ``status_code`` (the toolkit's errors carry one), else
  500, with the message and the traceback as the body.

It listens on ``SAGEMAKER_BIND_TO_PORT`` (default 8080) or, when
``SELFMAKER_BIND_TO_SOCKET`` names a path, on that Unix socket (how SelfMaker's
batch transform reaches a sandbox whatever its network). On a Ray node it
listens on TCP on ``SELFMAKER_BIND_TO_HOST`` (the node's address), port 0 (a
free one), and writes the port it got to ``SELFMAKER_PORT_FILE``.

It is the stdlib threading HTTP/1.1 server with keep-alive (only numpy and the
framework of the model are imported), with a lean loop for what the router
sends: a ``POST /invocations`` or ``GET /ping`` whose head is already received
and plain (``quick_head``) is read without the email package and answered,
status line, headers and body, in one write. Anything else (a head still
arriving, folded or repeated headers, ``Expect``, other paths, too many
headers) goes through http.server's own code, so both read a request alike.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import signal
import socketserver
import subprocess
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import inference_handlers

BASE = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
MODEL_DIR = BASE / "model"
ANY = "*/*"
DRAIN_SECONDS = 25.0  # SageMaker sends SIGKILL 30 s after SIGTERM: finish what is in flight before that
UTF8_TYPES = ("application/json", "text/csv")


class ServerError(Exception):
    """The model cannot be served (bad user module, failing model_fn); ends the server with this message."""


class Context:
    """What the toolkit passes as a handler's trailing ``context`` argument (the parts user code uses).

    Requests run on threads of their own, so a request's headers, and the headers a
    handler sets on its answer (e.g. X-Amzn-SageMaker-Custom-Attributes, which the
    caller of InvokeEndpoint gets back), are kept per thread.
    """

    def __init__(self, model_dir: Path):
        self.system_properties = {
            "model_dir": str(model_dir),
            "gpu_id": None,
            "batch_size": 1,
            "server_name": "SelfMaker",
            "server_version": "1",
        }
        self._request = threading.local()

    def begin(self, request_headers: dict[str, str]) -> None:
        self._request.headers = request_headers
        self._request.response_headers = {}

    @property
    def request_headers(self) -> dict[str, str]:
        return getattr(self._request, "headers", {})

    def get_request_header(self, idx: int, key: str):
        return self.request_headers.get(key.lower())

    def set_response_header(self, idx: int, key: str, value) -> None:
        if not hasattr(self._request, "response_headers"):
            self._request.response_headers = {}
        self._request.response_headers[key] = str(value)

    def response_headers(self) -> dict[str, str]:
        return getattr(self._request, "response_headers", {})


def _takes_context(function, given: int) -> bool:
    """Whether ``function`` takes ``context`` after its ``given`` arguments (the toolkit's rule)."""
    try:
        count = len(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        count = given
    if count not in (given, given + 1):
        raise TypeError(
            f"{function.__name__} takes {count} arguments; the toolkit passes {given} (or {given + 1} with context)"
        )
    return count == given + 1


def _call(function, context: Context, *args):
    """Call a handler with its arguments, plus ``context`` if it takes one more."""
    return function(*args, context) if _takes_context(function, len(args)) else function(*args)


def _handler(function, context: Context, given: int):
    """``function`` as a callable of its ``given`` arguments, ``context`` appended if it takes one more.

    Decided once, when the model loads (inspect.signature per request costs more than decoding a small
    request); a handler whose arguments do not fit still fails each request with the same TypeError.
    """
    try:
        with_context = _takes_context(function, given)
    except TypeError as err:
        message = str(err)

        def refuse(*args):
            raise TypeError(message)

        return refuse
    return (lambda *args: function(*args, context)) if with_context else function


def code_directory() -> Path | None:
    code = MODEL_DIR / "code"
    submit = os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submit.startswith("file://"):
        submit = submit[len("file://") :]
    if submit and not submit.startswith("s3://") and Path(submit).is_dir():
        return Path(submit)
    return code if code.is_dir() else None


def _install_requirements(code: Path) -> None:
    requirements = code / "requirements.txt"
    if requirements.exists():
        print(f"SelfMaker: installing {requirements}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-r", str(requirements)],
            stdout=sys.stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        if result.returncode != 0:
            raise ServerError(f"pip install -r requirements.txt failed: {result.stderr.strip()[-500:]}")


def user_module():
    """The user's inference module, or None if there is none."""
    code = code_directory()
    program = os.environ.get("SAGEMAKER_PROGRAM") or "inference.py"
    if code is None or not (code / program).exists():
        if os.environ.get("SAGEMAKER_PROGRAM") and code is not None:
            raise ServerError(f"SAGEMAKER_PROGRAM {program} was not found in {code}")
        return None
    _install_requirements(code)
    sys.path.insert(0, str(code))
    spec = importlib.util.spec_from_file_location(Path(program).stem, code / program)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Handlers:
    """The handler chain of a served model: the user's functions over the framework's defaults."""

    def __init__(self, module, framework: inference_handlers.Framework, model_dir: Path):
        self.context = Context(model_dir)
        found = {
            name: getattr(module, name, None)
            for name in ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
        }
        if found["transform_fn"] and any(found[n] for n in ("input_fn", "predict_fn", "output_fn")):
            raise ServerError(
                "Cannot use transform_fn implementation in conjunction with input_fn, predict_fn, "
                "and/or output_fn implementation"
            )
        self.model = _call(found["model_fn"] or framework.model_fn, self.context, str(model_dir))
        # A handler whose arguments do not fit fails on each request (a 500 naming it), as the toolkit's does.
        self.input_fn = _handler(found["input_fn"] or framework.input_fn, self.context, 2)
        self.predict_fn = _handler(found["predict_fn"] or framework.predict_fn, self.context, 2)
        self.output_fn = _handler(found["output_fn"] or framework.output_fn, self.context, 2)
        transform_fn = found["transform_fn"]
        self.transform_fn = _handler(transform_fn, self.context, 4) if transform_fn else None

    def transform(self, data, content_type: str, accept: str):
        if self.transform_fn is not None:
            result = self.transform_fn(self.model, data, content_type, accept)
        else:
            features = self.input_fn(data, content_type)
            prediction = self.predict_fn(features, self.model)
            result = self.output_fn(prediction, accept)
        return result if isinstance(result, tuple) else (result, accept)


def _as_bytes(body) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (list, tuple)) and len(body) == 1:  # MMS handlers answer a one-item list
        return _as_bytes(body[0])
    return json.dumps(body).encode()


class InFlight:
    """Requests being answered, so a SIGTERM lets them finish (a deployment never cuts one off)."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def __enter__(self):
        with self._lock:
            self.count += 1

    def __exit__(self, *exc):
        with self._lock:
            self.count -= 1

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.count and time.monotonic() < deadline:
            time.sleep(0.01)


IN_FLIGHT = InFlight()


_DATE: list = [None, ""]  # (second, its Date header text), shared by the request threads

MAX_HEADERS = 100  # http.client's limit: more header lines are answered 431 by http.server
# The head of the common request in the shape http.server reads without question: one of the two requests,
# single spaces, CRLF line ends, header names as the email package reads them (no folding, no other line).
_QUICK_HEAD = re.compile(
    rb"(POST /invocations|GET /ping) (HTTP/1\.[01])\r\n((?:[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r\n)*)\r\n"
)
_HEADER = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*)\r\n")  # a value loses its leading blanks


def quick_head(buffered: bytes):
    """The head of the common request, read from the bytes already received as http.server would read it:
    ``(command, path, version, close_connection, fields by lower-case name, head length, Content-Length)``.

    None for anything else, which http.server's own code then reads (nothing is consumed here): a head not
    yet wholly received, another request or shape of request line, bare CR or LF line ends, folded or
    malformed header lines, too many headers (http.server's 431), a repeated header (http.server answers the
    first), ``Expect``, a Content-Length that is not plain digits.
    """
    head = _QUICK_HEAD.match(buffered)
    if head is None:
        return None
    pairs = _HEADER.findall(str(head[3], "iso-8859-1"))
    fields = {name.lower(): value for name, value in pairs}
    length = fields.get("content-length", "0")
    if len(fields) != len(pairs) or len(pairs) >= MAX_HEADERS or "expect" in fields:
        return None
    if not (length.isascii() and length.isdigit()):
        return None
    command, path = str(head[1], "ascii").split(" ")
    version = str(head[2], "ascii")
    connection = fields.get("connection", "").lower()
    close = connection == "close" if connection in ("close", "keep-alive") else version != "HTTP/1.1"
    return command, path, version, close, fields, head.end(), int(length)


def make_handler(handlers: Handlers, default_accept: str, max_concurrent: int):
    execution_parameters = json.dumps(
        {"MaxConcurrentTransforms": max_concurrent, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
    ).encode()

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection carries every request of a client
        # On TCP (a Ray node): an answer never waits for the router's delayed ACK (Nagle's algorithm holds a
        # small write back while an earlier one is unacknowledged, 40 ms per request).
        disable_nagle_algorithm = not os.environ.get("SELFMAKER_BIND_TO_SOCKET")
        first_lines: dict[int, str] = {}  # status -> the status line and the Server header

        def handle_one_request(self):
            """The common request (POST /invocations, GET /ping) read from what is already buffered and
            answered without http.server's per-request machinery (a fifth of the model server's CPU for a
            small model); anything else goes through http.server's own code."""
            quick = quick_head(self.rfile.peek())
            if quick is None:
                return super().handle_one_request()
            self.command, self.path, self.request_version, self.close_connection, fields, head_length, length = quick
            self.rfile.read(head_length)
            if self.command == "GET":
                return self._answer(200)
            with IN_FLIGHT:
                data = self.rfile.read(length)
                self._invoke(data, fields.get("content-type"), fields.get("accept"), fields)

        def log_message(self, format, *args):  # the access log would be one line per record
            pass

        def date_time_string(self, timestamp=None):
            """The Date header, formatted once a second rather than once per answer."""
            if timestamp is not None:
                return super().date_time_string(timestamp)
            second = int(time.time())
            if _DATE[0] != second:  # threads racing here write the same text
                _DATE[:] = [second, super().date_time_string(second)]
            return _DATE[1]

        def _answer(self, status: int, body: bytes = b"", content_type: str | None = None, headers: dict | None = None):
            """What send_response, send_header and end_headers write, formatted in one go and written with
            the body in one write: two would wake the router twice per answer (and, on TCP without
            TCP_NODELAY, let Nagle's algorithm hold the body back until the router's delayed ACK)."""
            if self.request_version == "HTTP/0.9":  # http.server answers such a request with the body alone
                self.wfile.write(body)
                return
            first = self.first_lines.get(status)
            if first is None:
                phrase = self.responses[status][0] if status in self.responses else ""
                first = self.first_lines[status] = (
                    f"{self.protocol_version} {status} {phrase}\r\nServer: {self.version_string()}\r\n"
                )
            head = f"{first}Date: {self.date_time_string()}\r\n"
            if content_type:
                head += f"Content-Type: {content_type}\r\n"
            for key, value in (headers or {}).items():
                head += f"{key}: {value}\r\n"
                if key.lower() == "connection" and value.lower() in ("close", "keep-alive"):
                    self.close_connection = value.lower() == "close"  # as send_header reads it
            head += f"Content-Length: {len(body)}\r\n\r\n"
            self.wfile.write(head.encode("latin-1") + body)

        def do_GET(self):
            if self.path == "/ping":
                self._answer(200)
            elif self.path == "/execution-parameters":
                self._answer(200, execution_parameters, "application/json")
            else:
                self._answer(404, b"Not Found", "text/plain")

        def do_POST(self):
            with IN_FLIGHT:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/invocations":
                    return self._answer(404, b"Not Found", "text/plain")
                request_headers = {k.lower(): v for k, v in self.headers.items()}
                self._invoke(data, self.headers.get("Content-Type"), self.headers.get("Accept"), request_headers)

        def _invoke(self, data: bytes, content_type: str | None, accept: str | None, request_headers: dict):
            content_type = content_type or "application/json"
            if not accept or accept == ANY:
                accept = default_accept
            try:
                handlers.context.begin(request_headers)
                body = data.decode("utf-8") if content_type in UTF8_TYPES else data
                response, response_type = handlers.transform(body, content_type, accept)
                self._answer(200, _as_bytes(response), response_type, handlers.context.response_headers())
            except Exception as e:  # the toolkit's handle_error: the error's status, message and traceback
                status = getattr(e, "status_code", None)
                status = status if isinstance(status, int) and 400 <= status < 600 else 500
                message = getattr(e, "message", None) or str(e)
                trace = traceback.format_exc()
                print(trace, file=sys.stderr, flush=True)
                self._answer(status, f"{message}\n{trace}".encode(), "text/plain")

    return RequestHandler


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port) client address


def build_server(handlers: Handlers):
    default_accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "application/json"
    max_concurrent = int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or os.cpu_count() or 1)
    handler = make_handler(handlers, default_accept, max_concurrent)
    socket_path = os.environ.get("SELFMAKER_BIND_TO_SOCKET")
    if socket_path:
        Path(socket_path).unlink(missing_ok=True)
        return _UnixHTTPServer(socket_path, handler)
    ThreadingHTTPServer.daemon_threads = True
    host = os.environ.get("SELFMAKER_BIND_TO_HOST") or "0.0.0.0"
    server = ThreadingHTTPServer((host, int(os.environ.get("SAGEMAKER_BIND_TO_PORT") or 8080)), handler)
    if os.environ.get("SELFMAKER_PORT_FILE"):  # port 0 asked the kernel for a free one: say which (a Ray node)
        port_file = Path(os.environ["SELFMAKER_PORT_FILE"])
        port_file.with_suffix(".tmp").write_text(str(server.server_address[1]))
        port_file.with_suffix(".tmp").rename(port_file)
    return server


def main() -> int:
    try:
        framework = inference_handlers.framework(os.environ.get("SELFMAKER_INFERENCE_FRAMEWORK"), MODEL_DIR)
        handlers = Handlers(user_module(), framework, MODEL_DIR)
    except Exception as e:
        print(
            f"SelfMaker model server: the model could not be loaded: {type(e).__name__}: {e}",
            file=sys.stderr,
            flush=True,
        )
        traceback.print_exc()
        return 1
    server = build_server(handlers)
    where = os.environ.get("SELFMAKER_BIND_TO_SOCKET") or f"port {server.server_address[1]}"
    print(f"SelfMaker model server: serving the model on {where}", flush=True)
    # SIGTERM (an instance being replaced or retired): stop accepting, let requests in flight finish, exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.socket.close()  # new connections are refused at once (the router retries them elsewhere)
    if os.environ.get("SELFMAKER_BIND_TO_SOCKET"):
        Path(os.environ["SELFMAKER_BIND_TO_SOCKET"]).unlink(missing_ok=True)
    IN_FLIGHT.drain(DRAIN_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
