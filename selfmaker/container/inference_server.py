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
free one), and writes the port it got to ``SELFMAKER_PORT_FILE``. The stdlib threading
HTTP/1.1 server with keep-alive keeps the added latency well under a
millisecond (headers read without the email package, each answer in one write);
only numpy and the framework of the model are imported.
"""

from __future__ import annotations

import email.parser
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
from http import HTTPStatus
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


class Headers:
    """Request headers as http.server's HTTPMessage answers the handlers: ``get`` by any case (the first of
    a repeated name), ``items`` in order."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]]):
        self._pairs = pairs
        self._first: dict[str, str] = {}
        for name, value in pairs:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, default=None):
        return self._first.get(name.lower(), default)

    def __getitem__(self, name: str):
        return self._first.get(name.lower())

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._first

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)


_DATE: list = [None, ""]  # (second, its Date header text), shared by the request threads

MAX_HEADER_LINE = 65536  # http.client's limits, answered as http.server answers them (431)
MAX_HEADERS = 100
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # what the email package reads as a header's name


class QuickHeaders:
    """http.server's parse_request for the requests the router sends (``POST /invocations HTTP/1.1`` and a
    few plain headers), without the email package: its header parser costs more than decoding and
    predicting a small request. Anything else (another version, folded or malformed header lines) goes
    through http.server's own parsing."""

    def parse_request(self) -> bool:
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0") or words[1].startswith("//"):
            return super().parse_request()
        self.requestline = requestline
        self.command, self.path, self.request_version = words
        self.close_connection = words[2] != "HTTP/1.1"
        lines = []  # read as http.client reads them (the blank line ending them counts towards the limit)
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", "header line")
                return False
            lines.append(line)
            if len(lines) > MAX_HEADERS:
                self.send_error(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "Too many headers",
                    f"got more than {MAX_HEADERS} headers",
                )
                return False
            if line in (b"\r\n", b"\n", b""):
                break
        end = lines.pop()
        pairs = []
        for line in lines:
            name, colon, value = str(line, "iso-8859-1").partition(":")
            if not colon or not _HEADER_NAME.fullmatch(name):
                # a folded or malformed line: the email package's reading, exactly as http.server's
                text = b"".join([*lines, end]).decode("iso-8859-1")
                self.headers = email.parser.Parser(_class=self.MessageClass).parsestr(text)
                return self._after_headers()
            pairs.append((name, value.lstrip(" \t").rstrip("\r\n")))
        self.headers = Headers(pairs)
        return self._after_headers()

    def _after_headers(self) -> bool:
        conntype = (self.headers.get("Connection") or "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive":
            self.close_connection = False
        expect = (self.headers.get("Expect") or "").lower()
        if expect == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True


def make_handler(handlers: Handlers, default_accept: str, max_concurrent: int):
    execution_parameters = json.dumps(
        {"MaxConcurrentTransforms": max_concurrent, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
    ).encode()

    class RequestHandler(QuickHeaders, BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection carries every request of a client
        # On TCP (a Ray node): an answer never waits for the router's delayed ACK (Nagle's algorithm holds a
        # small write back while an earlier one is unacknowledged, 40 ms per request).
        disable_nagle_algorithm = not os.environ.get("SELFMAKER_BIND_TO_SOCKET")

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
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            # Headers and body in one write: two would wake the router twice per answer (and, on TCP without
            # TCP_NODELAY, let Nagle's algorithm hold the body back until the router's delayed ACK).
            self._headers_buffer.append(b"\r\n")
            self._headers_buffer.append(body)
            self.flush_headers()

        def do_GET(self):
            if self.path == "/ping":
                self._answer(200)
            elif self.path == "/execution-parameters":
                self._answer(200, execution_parameters, "application/json")
            else:
                self._answer(404, b"Not Found", "text/plain")

        def do_POST(self):
            with IN_FLIGHT:
                self._post()

        def _post(self):
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            if self.path != "/invocations":
                return self._answer(404, b"Not Found", "text/plain")
            content_type = self.headers.get("Content-Type") or "application/json"
            accept = self.headers.get("Accept")
            if not accept or accept == ANY:
                accept = default_accept
            try:
                handlers.context.begin({k.lower(): v for k, v in self.headers.items()})
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
