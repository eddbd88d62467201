"""Where one InvokeEndpoint's time goes: three measurements of the same request, one after the other.

    python benchmarks/serving_profile.py [--seconds 6] [--runtimes-dir DIR] [--rounds 2]
    python benchmarks/against.py <commit> --runs 2 -- serving_profile.py --rounds 1   (another commit's code)

* **SelfMaker's own request logic, in process**: the ASGI app called as uvicorn calls it
  (scope, receive, send) with a botocore-shaped signed request, the model's answer stubbed:
  routing, authentication (open mode), the rest-json input, validation, the router's choice,
  metrics, the rest-json output. No sockets, no uvicorn: microseconds of CPU per request.
* **The floor of this design**: uvicorn (httptools, uvloop, server/one_write.py's protocol) with a
  bare ASGI app that forwards the body through the router's own model-server client
  (services/hosting/connections.py) to SelfMaker's model server, and nothing else.
* **SelfMaker**: `selfmaker serve`, an endpoint deployed with CreateEndpoint, signed requests replayed
  raw at concurrency 1.

The last two report the client's p50 and the CPU each process spent per request (Linux /proc), so the
difference between them is what SelfMaker's API layer adds to a request on the wire; the first says
how much of that is its Python logic rather than uvicorn's and the kernel's. All use the scikit-learn
model and CSV row of benchmarks/serving.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HttpConnection, free_port, load_average, log, machine, selfmaker_server, sign_requests
from serving import CSV_ROW, IMAGE, SAVE_JOBLIB, deploy, start_model_server

from selfmaker.engines import runtimes

# benchmarks/against.py: the other commit's code is measured, by this checkout's script
CODE = Path(os.environ.get("SELFMAKER_BENCH_SERVER_CODE") or Path(__file__).resolve().parents[1])
HEADERS = [  # what boto3 sends with an InvokeEndpoint (open mode reads only the credential's key)
    (b"host", b"127.0.0.1:7600"),
    (b"accept-encoding", b"identity"),
    (b"content-type", b"text/csv"),
    (b"user-agent", b"Boto3/1.44.18 md/Botocore#1.44.18 ua/2.1 os/linux lang/python#3.11.7 Botocore/1.44.18"),
    (b"x-amz-date", b"20261206T170000Z"),
    (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
    (
        b"authorization",
        b"AWS4-HMAC-SHA256 Credential=AKIDBENCHMARK/20261206/us-east-1/sagemaker/aws4_request, "
        b"SignedHeaders=accept;content-type;host;x-amz-date, Signature=" + b"0" * 64,
    ),
    (b"amz-sdk-invocation-id", b"1b0a8a2e-7a7e-4a53-a8c3-9f7e7f1c2d3e"),
    (b"amz-sdk-request", b"attempt=1; max=1"),
    (b"content-length", str(len(CSV_ROW)).encode()),
]


def app_logic(requests: int) -> float:
    """µs of CPU per request in SelfMaker's ASGI app, the model's answer stubbed (best of five runs)."""
    import uvloop

    from selfmaker.config import Settings
    from selfmaker.server.app import SelfMakerApp
    from selfmaker.services.hosting import router, routes
    from selfmaker.services.hosting.connections import Answer

    app = SelfMakerApp(Settings(data_dir=Path(tempfile.mkdtemp(prefix="selfmaker-profile-"))))
    account, region = app.settings.default_account, app.settings.region
    target = routes.Target("AllTraffic", 1.0, ("/stubbed.sock",), "config")
    arn = f"arn:aws:sagemaker:{region}:{account}:endpoint/bench"
    routes.publish(app.backends, routes.Route(account, region, "bench", arn, ((1.0, (target,)),)))

    async def exchange(path, invocation, timeout, max_payload):
        return Answer(200, b"[0]", "application/json", None, 0.0001)

    router.router(app.backends).instances.exchange = exchange  # type: ignore[method-assign]
    body, sent = CSV_ROW.encode(), []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    def scope() -> dict:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/endpoints/bench/invocations",
            "raw_path": b"/endpoints/bench/invocations",
            "query_string": b"",
            "root_path": "",
            "headers": HEADERS,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 7600),
        }

    async def run() -> float:
        best = float("inf")
        for round_index in range(6):  # the first round warms up
            started = time.process_time()
            for _ in range(requests):
                sent.clear()
                await app(scope(), receive, send)
            if sent[0]["status"] != 200:
                raise RuntimeError(f"the app answered {sent}")
            if round_index:
                best = min(best, (time.process_time() - started) / requests * 1e6)
        return best

    try:
        return uvloop.run(run())
    finally:
        app.backends.close()


BARE = textwrap.dedent(
    """
    import sys, uvicorn
    from selfmaker.server.one_write import OneWriteHttpToolsProtocol
    from selfmaker.services.hosting.connections import Instances, Invocation

    instances, socket_path = Instances(), sys.argv[2]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        message = await receive()
        answer = await instances.exchange(socket_path, Invocation(message["body"], "text/csv", None, None, None), 60, 6 << 20)
        headers = [(b"content-type", answer.content_type.encode()), (b"content-length", str(len(answer.body)).encode())]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    config = uvicorn.Config(app, port=int(sys.argv[1]), http=OneWriteHttpToolsProtocol, log_config=None, access_log=False, lifespan="off")
    uvicorn.Server(config).run()
    """
)


def _cpu_seconds(pid: int) -> float:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _model_server_under(pid: int) -> int:
    """The model server process among ``pid``'s descendants (the endpoint's instance: its Python, not the
    sandbox's bwrap, whose command line names it too)."""
    parents, commands = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            commands[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
    for candidate, command in commands.items():
        argv = command.split(b"\0")
        if argv[0].rsplit(b"/", 1)[-1].startswith(b"python") and b"selfmaker.container.inference_server" in argv:
            ancestor = candidate
            while ancestor in parents and ancestor > 1:
                ancestor = parents[ancestor]
                if ancestor == pid:
                    return candidate
    raise RuntimeError("no model server runs under the server")


def on_the_wire(
    port: int, payload: bytes, server_pid: int, model_pid: int, seconds: float
) -> tuple[float, float, float]:
    """(client p50 µs, server CPU µs per request, model server CPU µs per request) at concurrency 1."""
    connection = HttpConnection(port)
    for _ in range(2000):
        status, body = connection.roundtrip(payload)
        if status != 200:
            raise RuntimeError(f"answered {status}: {body[:200]!r}")
    server_before, model_before = _cpu_seconds(server_pid), _cpu_seconds(model_pid)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter_ns()
        connection.roundtrip(payload)
        times.append(time.perf_counter_ns() - started)
    count = len(times)
    times.sort()
    connection.close()
    return (
        times[count // 2] / 1e3,
        (_cpu_seconds(server_pid) - server_before) / count * 1e6,
        (_cpu_seconds(model_pid) - model_before) / count * 1e6,
    )


def bare(python: str, ml_dir: Path, seconds: float) -> tuple[float, float, float]:
    model, socket_path = start_model_server(python, ml_dir)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", BARE, str(port), str(socket_path)],
        cwd=CODE,
        env={**os.environ, "PYTHONPATH": str(CODE)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        request = (
            f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {len(CSV_ROW)}\r\n\r\n{CSV_ROW}"
        ).encode()
        while True:  # uvicorn listening
            try:
                HttpConnection(port).roundtrip(request)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bare server did not start") from None
                time.sleep(0.05)
        return on_the_wire(port, request, server.pid, model.pid, seconds)
    finally:
        for process in (server, model):
            process.terminate()
            process.wait(10)


def full(ml_dir: Path, data_dir: Path, runtimes_dir: Path, seconds: float) -> tuple[float, float, float]:
    server = selfmaker_server(data_dir, data_dir.with_suffix(".log"), "--runtimes-dir", str(runtimes_dir))
    with server:
        endpoint = deploy(server.url, ml_dir / "model")
        params = {"EndpointName": endpoint, "Body": CSV_ROW.encode(), "ContentType": "text/csv"}
        [invoke] = sign_requests(server.url, "sagemaker-runtime", [("InvokeEndpoint", params)])
        return on_the_wire(server.port, invoke.payload, server.proc.pid, _model_server_under(server.proc.pid), seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement on the wire")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the two measurements on the wire")
    parser.add_argument("--requests", type=int, default=20000, help="per in-process run")
    parser.add_argument("--runtimes-dir", type=Path, help="reuse a runtimes directory (default: a fresh one)")
    parser.add_argument("--in-process-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process_only:  # run by the line below, with the measured code first on the path
        print(app_logic(args.requests))
        return 0
    print(f"machine: {machine()}; load average {load_average()}")
    logic = subprocess.run(
        [sys.executable, __file__, "--in-process-only", "--requests", str(args.requests)],
        env={**os.environ, "PYTHONPATH": str(CODE)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    print(f"SelfMaker's own request logic ({CODE}), in process: {float(logic):.1f} µs of CPU per request")
    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-serving-profile-") as name:
        tmp = Path(name)
        log("building the scikit-learn runtime (not timed)...")
        runtimes_dir = args.runtimes_dir or tmp / "runtimes"
        python = str(runtimes.ensure(runtimes.resolve(IMAGE), runtimes_dir, lambda _: None) / "python")
        ml_dir = tmp / "ml"
        subprocess.run([python, "-c", SAVE_JOBLIB, str(ml_dir / "model")], check=True, capture_output=True)
        print("| round | what | client p50 µs | server CPU µs/request | model server CPU µs/request | load |")
        print("|---|---|---:|---:|---:|---|")
        for round_index in range(args.rounds):
            data_dir = tmp / f"data-{round_index}"  # a fresh server each round
            for label in ("uvicorn + the router's client, nothing else", "SelfMaker (InvokeEndpoint, open mode)"):
                if label.startswith("uvicorn"):
                    p50, server_cpu, model_cpu = bare(python, ml_dir, args.seconds)
                else:
                    p50, server_cpu, model_cpu = full(ml_dir, data_dir, runtimes_dir, args.seconds)
                row = f"{p50:.0f} | {server_cpu:.0f} | {model_cpu:.0f} | {load_average()}"
                print(f"| {round_index + 1} | {label} | {row} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
