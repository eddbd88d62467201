"""The model server (selfmaker/container/inference_server.py) in the XGBoost runtime, over HTTP."""

from __future__ import annotations

import http.client
import http.server
import io
import json
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from support import xgboost_runtime
from support.waiting import wait_for

MODULE = "selfmaker.container.inference_server"


class Server:
    """A model server subprocess on a free TCP port, or on a Unix socket."""

    def __init__(self, base: Path, env: dict | None = None, unix: bool = False):
        self.base = base
        self.socket_path = str(base / "server.sock") if unix else None
        self.port = None
        if unix:
            env = {**(env or {}), "SELFMAKER_BIND_TO_SOCKET": self.socket_path}
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            env = {**(env or {}), "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        self.proc = xgboost_runtime.popen_module(MODULE, base, env)

    def wait_ready(self, timeout: float = 60) -> None:
        def pinged() -> bool:
            assert self.proc.poll() is None, self.proc.stdout.read()
            return self.request("GET", "/ping")[0] == 200

        wait_for(pinged, timeout=timeout, interval=0.05, ignore=(OSError,), what="the model server to answer /ping")

    def connection(self) -> http.client.HTTPConnection:
        if self.socket_path:
            connection = http.client.HTTPConnection("localhost")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.socket_path)
            connection.sock = sock
            return connection
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None):
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type"), response.read()
        finally:
            connection.close()

    def invoke(self, body, content_type: str, accept: str | None = None):
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        return self.request("POST", "/invocations", body, headers)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            output, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
        return output


def model_dir(base: Path, maker: str | None = None, code: dict[str, str] | None = None) -> Path:
    model = base / "model"
    model.mkdir(parents=True)
    if maker:
        subprocess.run([xgboost_runtime.python(), "-c", maker, str(model)], check=True)
    for name, text in (code or {}).items():
        (model / "code").mkdir(exist_ok=True)
        (model / "code" / name).write_text(textwrap.dedent(text))
    return model


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(maker=None, code=None, env=None, unix=False, ready=True):
        model_dir(tmp_path, maker, code)
        server = Server(tmp_path, env, unix)
        servers.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


def test_xgboost_model_csv_libsvm_json_and_errors(serve):
    server = serve(xgboost_runtime.MAKE_XGBOOST_MODEL, unix=True)
    assert server.request("GET", "/ping")[0] == 200
    status, content_type, body = server.request("GET", "/execution-parameters")
    assert status == 200 and json.loads(body)["BatchStrategy"] == "MULTI_RECORD"
    status, content_type, body = server.invoke("3,2\n1,0\n", "text/csv", "text/csv")
    assert status == 200 and content_type == "text/csv"
    first, second = map(float, body.decode().split(","))
    assert abs(first - 8) < 1 and abs(second - 2) < 1
    # As the AWS container: an empty field is a missing value, a word is an error (415), not a NaN.
    status, _, body = server.invoke("3,\n,2\n", "text/csv", "text/csv")
    assert status == 200 and len(body.decode().split(",")) == 2
    for bad in ("3,abc\n", "3,2\n1\n"):
        status, _, body = server.invoke(bad, "text/csv", "text/csv")
        assert status == 415 and b"Loading text/csv data failed" in body, (bad, body)
    status, _, body = server.invoke("0 0:3 1:2\n", "text/libsvm", "text/csv")
    assert status == 200 and abs(float(body) - first) < 1e-5
    status, content_type, body = server.invoke("[[3, 2]]", "application/json", "application/json")
    assert status == 200 and content_type == "application/json"
    assert abs(json.loads(body)["predictions"][0]["score"] - first) < 1e-5
    status, _, body = server.invoke("3,2", "text/csv")  # no Accept: the default accept, JSON
    assert status == 200 and "predictions" in json.loads(body)
    status, _, body = server.invoke(b"\x00\x01", "application/x-recordio-protobuf", "text/csv")
    assert status == 415 and b"application/x-recordio-protobuf is not supported" in body
    status, _, body = server.invoke("3,2", "text/csv", "application/x-npy")
    assert status == 406 and b"is not an accepted Accept type" in body
    assert server.request("GET", "/nowhere")[0] == 404


def test_xgboost_batch_answers_one_line_per_record(serve):
    server = serve(xgboost_runtime.MAKE_XGBOOST_MODEL, env={"SAGEMAKER_BATCH": "True"})
    status, _, body = server.invoke("3,2\n1,0\n6,1\n", "text/csv", "text/csv")
    assert status == 200 and len(body.decode().splitlines()) == 3 and body.endswith(b"\n")


def test_sklearn_defaults_with_a_joblib_model(serve):
    server = serve(xgboost_runtime.MAKE_SKLEARN_MODEL, env={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    status, content_type, body = server.invoke("3,2\n", "text/csv", "*/*")
    assert status == 200 and content_type == "text/csv" and abs(float(body) - 8) < 1e-6
    status, content_type, body = server.invoke("[[1, 1]]", "application/json", "application/json")
    assert status == 200 and json.loads(body) == [pytest.approx(3)]
    status, _, body = server.invoke("a", "image/png", "application/json")
    assert status == 415 and body.startswith(b"Content type image/png is not supported by this framework.")


def test_user_handlers_with_context(serve):
    server = serve(
        xgboost_runtime.MAKE_SKLEARN_MODEL,
        code={
            "inference.py": """
        import json, os, joblib
        def model_fn(model_dir, context):
            assert context.system_properties["model_dir"] == model_dir
            return joblib.load(os.path.join(model_dir, "model.joblib"))
        def input_fn(body, content_type):
            assert isinstance(body, str)  # application/json arrives decoded
            return json.loads(body)["rows"]
        def predict_fn(rows, model):
            if rows == [[9, 9]]:
                raise ValueError("nine is not allowed")
            if rows == [[7, 7]]:
                error = RuntimeError("teapot")
                error.status_code = 418
                raise error
            return model.predict(rows)
        def output_fn(prediction, accept, context):
            return json.dumps({"out": [round(p, 3) for p in prediction]}), "application/vnd.mine+json"
    """
        },
    )
    status, content_type, body = server.invoke('{"rows": [[3, 2], [1, 0]]}', "application/json", "text/csv")
    assert status == 200 and content_type == "application/vnd.mine+json"
    assert json.loads(body) == {"out": [8.0, 2.0]}
    status, _, body = server.invoke('{"rows": [[9, 9]]}', "application/json")
    assert status == 500 and body.startswith(b"nine is not allowed\nTraceback")
    status, _, body = server.invoke('{"rows": [[7, 7]]}', "application/json")
    assert status == 418 and body.startswith(b"teapot\n")


def test_transform_fn_and_a_named_program(serve):
    server = serve(
        xgboost_runtime.MAKE_SKLEARN_MODEL,
        env={"SAGEMAKER_PROGRAM": "serve_me.py"},
        code={
            "serve_me.py": """
        def transform_fn(model, data, content_type, accept):
            return f"{type(model).__name__} {content_type} {accept} {len(data)}"
    """
        },
    )
    status, content_type, body = server.invoke(b"\x01\x02\x03", "application/octet-stream", "text/plain")
    assert status == 200 and content_type == "text/plain"
    assert body == b"LinearRegression application/octet-stream text/plain 3"


def test_a_handler_taking_the_wrong_arguments_fails_each_request(serve):
    server = serve(
        xgboost_runtime.MAKE_SKLEARN_MODEL,
        code={
            "inference.py": """
        def predict_fn(rows, model, context, extra):
            return [1]
    """
        },
    )
    for _ in range(2):  # checked when the model loads, answered on every request as the toolkit does
        status, _, body = server.invoke("1,2", "text/csv")
        assert status == 500
        assert body.startswith(b"predict_fn takes 4 arguments; the toolkit passes 2 (or 3 with context)\n")


def test_transform_fn_with_input_fn_is_refused(serve):
    server = serve(
        xgboost_runtime.MAKE_SKLEARN_MODEL,
        ready=False,
        code={
            "inference.py": """
        def transform_fn(model, data, content_type, accept): return data
        def input_fn(data, content_type): return data
    """
        },
    )
    assert server.proc.wait(timeout=60) == 1
    assert "Cannot use transform_fn implementation in conjunction with input_fn" in server.proc.stdout.read()


def test_a_failing_model_fn_ends_the_server_with_its_message(serve):
    server = serve(
        ready=False,
        code={
            "inference.py": """
        def model_fn(model_dir):
            raise FileNotFoundError("no weights here")
    """
        },
    )
    assert server.proc.wait(timeout=60) == 1
    assert "FileNotFoundError: no weights here" in server.proc.stdout.read()


SLOW_HANDLER = """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    time.sleep(1.0)
    return "done", "text/plain"
"""


def test_sigterm_lets_requests_in_flight_finish(serve):
    """An instance retired by a deployment answers what it has accepted, then exits; new connections are refused."""
    import threading

    server = serve(code={"inference.py": SLOW_HANDLER}, unix=True)
    answers = []
    request = threading.Thread(target=lambda: answers.append(server.invoke("x", "text/csv")))
    request.start()
    time.sleep(0.3)  # the request is inside transform_fn
    server.proc.terminate()
    request.join(10)
    assert answers and answers[0][0] == 200 and answers[0][2] == b"done"
    assert server.proc.wait(10) == 0
    with pytest.raises(OSError):
        server.request("GET", "/ping")


class _Parsed(http.server.BaseHTTPRequestHandler):
    """A request handler over bytes in memory, to compare how a request is read."""

    protocol_version = "HTTP/1.1"

    def __init__(self, raw: bytes):
        self.rfile, self.wfile = io.BytesIO(raw), io.BytesIO()
        self.raw_requestline = self.rfile.readline(65537)
        self.request_version, self.client_address = "HTTP/1.1", ("local", 0)

    def log_message(self, *args):
        pass

    def state(self):
        ok = self.parse_request()
        headers = self.headers if ok else None
        names = ("content-type", "Content-Length", "ACCEPT", "x-y", "Connection", "missing")
        return (
            ok,
            (self.command, getattr(self, "path", None), self.request_version, self.close_connection),
            None if headers is None else (list(headers.items()), [headers.get(n) for n in names]),
            self.wfile.getvalue().split(b"\r\n", 1)[0],  # an error's status line
            self.rfile.read(),  # where the body starts
        )


ROUTER_REQUEST = (  # what the router sends (services/hosting/connections.py)
    b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Type: text/csv\r\n"
    b"Accept: application/json\r\nX-Amzn-SageMaker-Custom-Attributes: a=1\r\n\r\nabc"
)


@pytest.mark.parametrize(
    "raw, quick",
    [
        (ROUTER_REQUEST, True),
        (ROUTER_REQUEST + b"POST /invocations HTTP/1.1\r\n", True),  # a second request behind it
        (b"GET /ping HTTP/1.1\r\n\r\n", True),
        (b"POST /invocations HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc", True),
        (b"POST /invocations HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", True),
        (b"POST /invocations HTTP/1.1\r\nConnection: CLOSE\r\nX-Y:   spaced  \r\nEmpty:\r\n\r\n", True),
        (b"POST /invocations HTTP/1.1\r\nX-Y: \xe9t\xe9\r\n\r\n", True),
        (b"POST /invocations HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(99)) + b"\r\n", True),
        (b"POST /invocations HTTP/1.1\r\nConnection: close\r\nX-Y: a\r\nx-y: again\r\n\r\n", False),
        (b"POST /invocations HTTP/1.1\r\nX-Y: a\r\n  folded\r\n\r\n", False),
        (b"POST /invocations HTTP/1.1\r\nBad Name: a\r\nnocolon\r\n\r\n", False),
        (b"POST /invocations HTTP/1.1\nX-Y: \xe9t\xe9\n\n", False),
        (b"POST /invocations HTTP/1.1\r\nX-Y: a\rb\r\n\r\n", False),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", False),
        (b"POST  /invocations HTTP/1.1\r\n\r\n", False),
        (b"POST /invocations HTTP/1.1\r\nHost: localhost\r\n", False),  # the head not wholly received yet
        (b"POST //elsewhere HTTP/1.1\r\nX-Y: 1\r\n\r\n", False),
        (b"POST /x HTTP/2.0\r\n\r\n", False),
        (b"POST /invocations HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", False),
        (b"POST /invocations HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(100)) + b"\r\n", False),
        (b"POST /x HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", False),
    ],
)
def test_requests_are_read_as_http_server_reads_them(raw, quick):
    """The model server's quick reading of the common request is http.server's own; it leaves anything
    else to http.server."""
    from selfmaker.container.inference_server import quick_head  # stdlib only: importable here

    read = quick_head(raw)
    assert (read is not None) == quick
    if read is None:
        return
    command, path, version, close, fields, head_length, length = read
    ok, request, (items, values), _, rest = _Parsed(raw).state()
    assert ok and request == (command, path, version, close)
    assert fields == {name.lower(): value for name, value in items}
    names = ("content-type", "Content-Length", "ACCEPT", "x-y", "Connection", "missing")
    assert [fields.get(name.lower()) for name in names] == values
    assert raw[head_length:] == rest and length == int(fields.get("content-length", 0))


ECHO_HANDLER = """
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept, context):
    attributes = context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", f"seen={attributes}")
    return data, content_type
"""


class RawConnection:
    """A keep-alive connection to the model server written byte by byte, its answers read one by one."""

    def __init__(self, server: Server):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(server.socket_path)
        self.sock.settimeout(30)
        self.reader = self.sock.makefile("rb")

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        status = int(self.reader.readline().split()[1])
        headers = {}
        while (line := self.reader.readline()) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.lower()] = value.strip()
        return status, headers, self.reader.read(int(headers.get("content-length", 0)))

    def closed(self) -> bool:
        return self.reader.read(1) == b""

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _post(body: bytes, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST /invocations %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%s\r\n%s" % (
        version,
        len(body),
        extra,
        body,
    )


def test_requests_over_one_connection_pipelined_split_and_long(serve):
    """The router's requests on one keep-alive connection, however their bytes arrive."""
    server = serve(code={"inference.py": ECHO_HANDLER}, unix=True)
    connection = RawConnection(server)
    try:
        attributes = b"X-Amzn-SageMaker-Custom-Attributes: trace=7\r\n"
        connection.sock.sendall(_post(b"first", attributes) + _post(b"second") + b"GET /ping HTTP/1.1\r\n\r\n")
        status, headers, body = connection.answer()
        assert (status, body, headers["content-type"]) == (200, b"first", "application/octet-stream")
        assert headers["x-amzn-sagemaker-custom-attributes"] == "seen=trace=7"
        assert headers["server"].startswith("BaseHTTP/") and headers["date"].endswith(" GMT")
        status, headers, body = connection.answer()  # the context's headers are the request's own
        assert (status, body, headers["x-amzn-sagemaker-custom-attributes"]) == (200, b"second", "seen=None")
        status, headers, body = connection.answer()
        assert (status, body, headers["content-length"]) == (200, b"", "0") and "content-type" not in headers

        request = _post(b"split", attributes)
        connection.sock.sendall(request[:12])  # a head arriving in pieces, cut mid-line and mid-header
        time.sleep(0.05)
        connection.sock.sendall(request[12:40])
        time.sleep(0.05)
        connection.sock.sendall(request[40:-2])  # and its body too
        time.sleep(0.05)
        connection.sock.sendall(request[-2:])
        status, headers, body = connection.answer()
        assert (status, body, headers["x-amzn-sagemaker-custom-attributes"]) == (200, b"split", "seen=trace=7")

        long = bytes(range(256)) * 2000  # many reads' worth
        connection.sock.sendall(_post(long)[:100])
        time.sleep(0.05)
        connection.sock.sendall(_post(long)[100:])
        assert connection.answer()[::2] == (200, long)

        connection.sock.sendall(b"GET /nowhere HTTP/1.1\r\n\r\n" + _post(b"after a 404"))
        assert connection.answer()[::2] == (404, b"Not Found")
        assert connection.answer()[::2] == (200, b"after a 404")
    finally:
        connection.close()


@pytest.mark.parametrize(
    "request_bytes, closes",
    [
        (_post(b"x", version=b"HTTP/1.0"), True),
        (_post(b"x", b"Connection: keep-alive\r\n", version=b"HTTP/1.0"), False),
        (_post(b"x", b"Connection: close\r\n"), True),
        (_post(b"x", b"Connection: Keep-Alive\r\n"), False),
        (_post(b"x"), False),
    ],
)
def test_http_1_0_and_connection_headers_decide_whether_the_connection_stays_open(serve, request_bytes, closes):
    server = serve(code={"inference.py": ECHO_HANDLER}, unix=True)
    connection = RawConnection(server)
    try:
        connection.sock.sendall(request_bytes)
        assert connection.answer()[::2] == (200, b"x")
        if closes:
            assert connection.closed()
        else:
            connection.sock.sendall(_post(b"again"))
            assert connection.answer()[::2] == (200, b"again")
    finally:
        connection.close()


def test_expect_100_continue_too_many_headers_and_http_0_9_as_http_server_answers_them(serve):
    server = serve(code={"inference.py": ECHO_HANDLER}, unix=True)
    connection = RawConnection(server)
    try:
        connection.sock.sendall(
            _post(b"", b"Expect: 100-continue\r\n").replace(b"Content-Length: 0", b"Content-Length: 4")
        )
        assert connection.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert connection.reader.readline() == b"\r\n"
        connection.sock.sendall(b"body")
        assert connection.answer()[::2] == (200, b"body")
        connection.sock.sendall(_post(b"x", b"".join(b"H%d: v\r\n" % i for i in range(100))))
        assert connection.answer()[0] == 431
    finally:
        connection.close()
    connection = RawConnection(server)
    try:  # an HTTP/0.9 request: http.server answers it with the body alone, then closes
        connection.sock.sendall(b"GET /execution-parameters\r\n\r\n")  # (http.server reads headers even so)
        assert json.loads(connection.reader.read())["BatchStrategy"] == "MULTI_RECORD"
    finally:
        connection.close()
