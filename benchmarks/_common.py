"""Shared machinery for the benchmarks: servers under test, signed requests, a replaying load generator.

The load generator must never be what is measured. So requests are built and
SigV4-signed once, by botocore itself (the exact bytes a boto3 client would
send), and then replayed as raw HTTP/1.1 over keep-alive sockets from worker
processes: a replayed request costs the client a ``sendall`` and a ``recv``,
not a botocore round of serialization, signing and parsing. Each result
reports the CPU the client and the server used, so a reader can check that
the client was not the bottleneck.

Everything is bounded: servers must become healthy within a timeout, every
socket operation has a timeout, and every run stops after a duration or a
request count.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from botocore import xform_name
from botocore.awsrequest import AWSResponse
from botocore.config import Config

HOST = "127.0.0.1"
SOCKET_TIMEOUT = 30.0  # seconds a single request may take before the run fails
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# Servers under test


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server in a subprocess on a free loopback port, stopped when the benchmark ends."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        health_path: str,
        log_path: Path,
        env: dict | None = None,
        selfmaker: bool = False,
    ):
        self.name, self.argv, self.port, self.health_path = name, list(argv), port, health_path
        self.log_path, self.env, self.selfmaker = log_path, env, selfmaker
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        log = open(self.log_path, "ab")
        env = {**os.environ, **(self.env or {})}
        # benchmarks/against.py runs a benchmark against another commit's server: that checkout comes
        # first on the server's path, while the benchmark itself (clients, checks) stays this one.
        other_code = os.environ.get("SELFMAKER_BENCH_SERVER_CODE")
        cwd = None
        if self.selfmaker and other_code:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [other_code, env.get("PYTHONPATH")]))
            # `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH: started from
            # this checkout, the server would import this checkout's code, not the other commit's.
            cwd = other_code
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not healthy within {timeout:.0f} s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes have used so far (Linux /proc): the process and
        every live descendant (workers, model servers, a peer's helper processes); a difference of two
        readings is what they used in between as long as none of them ended meanwhile."""
        if self.proc is None:
            return float("nan")
        stats = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended while we looked
            stats[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime+stime
        if self.proc.pid not in stats:
            return float("nan")
        tree, changed = {self.proc.pid}, True
        while changed:
            changed = False
            for pid, (ppid, _) in stats.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        total = sum(stats[pid][1] for pid in tree)
        return total / _CLK_TCK

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def selfmaker_server(data_dir: Path, log_path: Path, *flags: str, name: str = "selfmaker") -> ServerProcess:
    """`selfmaker serve` on a free port with its data in ``data_dir`` and more serve ``flags`` (not started)."""
    port = free_port()
    argv = [sys.executable, "-m", "selfmaker.cli", "serve", "--port", str(port), "--data-dir", str(data_dir), *flags]
    return ServerProcess(name, argv, port, "/_selfmaker/health", log_path, selfmaker=True)


def peer_venv(name: str, packages: Sequence[str], venvs_dir: Path) -> Path:
    """The ``bin`` directory of a virtual environment with a peer's pinned ``packages`` in ``venvs_dir/name``.

    Peers are never SelfMaker's dependencies: each lives in a throwaway environment
    the benchmark builds (not timed), or reuses when ``venvs_dir`` is kept between runs
    and a marker file says it holds exactly these packages.
    """
    venv = venvs_dir / name
    marker = venv / "selfmaker-bench-packages.txt"
    wanted = "\n".join(packages)
    if marker.exists() and marker.read_text() == wanted:
        return venv / "bin"
    log(f"installing {' '.join(packages)} in {venv} (not timed)...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
    marker.write_text(wanted)
    return venv / "bin"


def installed_version(bin_dir: Path, distribution: str) -> str:
    """The version of ``distribution`` in the environment of ``bin_dir`` (to print next to its figures)."""
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    return subprocess.run(
        [str(bin_dir / "python"), "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


# ---------------------------------------------------------------------------
# Signed requests, prepared once


@dataclass(frozen=True)
class PreparedRequest:
    """One signed HTTP request, as raw bytes ready to replay."""

    operation: str
    payload: bytes


class _CannedBody:
    def stream(self):
        yield b"{}"


def sign_requests(
    endpoint_url: str,
    service: str,
    calls: Iterable[tuple[str, dict]],
    *,
    region: str = "us-east-1",
    access_key: str = "AKIDBENCHMARK",
    secret_key: str = "benchmark-secret",
) -> list[PreparedRequest]:
    """Build each (operation, params) call with a real boto3 client and capture it instead of sending it.

    A ``before-send`` handler that returns a response makes botocore skip the
    network, so the captured request is exactly what boto3 would have sent:
    serialized, validated and SigV4-signed.
    """
    client = boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"total_max_attempts": 1}),
    )
    host = urlsplit(endpoint_url).netloc
    captured: list = []

    def capture(request, **_):
        captured.append(request)
        return AWSResponse(request.url, 200, {}, _CannedBody())

    client.meta.events.register("before-send", capture)
    prepared = []
    for operation, params in calls:
        getattr(client, xform_name(operation))(**params)
        request = captured.pop()
        prepared.append(PreparedRequest(operation, _raw_http(request, host)))
    return prepared


def _raw_http(request, host: str) -> bytes:
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = body.read()
    parts = urlsplit(request.url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    headers = {"Host": host}
    for name, value in request.headers.items():
        headers[name] = value.decode() if isinstance(value, bytes) else str(value)
    headers["Content-Length"] = str(len(body))
    head = f"{request.method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


# ---------------------------------------------------------------------------
# A minimal keep-alive HTTP/1.1 client


class ConnectionClosed(Exception):
    pass


class HttpConnection:
    """Sends prepared bytes and reads one response; reconnects when the server closes (e.g. werkzeug)."""

    def __init__(self, port: int, host: str = HOST):
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=SOCKET_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer.clear()
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionClosed
        self.buffer += chunk

    def roundtrip(self, payload: bytes) -> tuple[int, bytes]:
        fresh = self.sock is None
        if fresh:
            self.sock = self._connect()
        try:
            self.sock.sendall(payload)
            end = self.buffer.find(b"\r\n\r\n")
            while end < 0:
                self._fill()
                end = self.buffer.find(b"\r\n\r\n")
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            # An idle keep-alive connection the server dropped: retry once on a new one.
            self.close()
            if fresh:
                raise
            return self.roundtrip(payload)
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buffer) < length:
                self._fill()
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:  # the body runs to the end of the connection
            try:
                while True:
                    self._fill()
            except ConnectionClosed:
                pass
            body = bytes(self.buffer)
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            while (end := self.buffer.find(b"\r\n")) < 0:
                self._fill()
            size = int(bytes(self.buffer[:end]).split(b";", 1)[0], 16)
            del self.buffer[: end + 2]
            while len(self.buffer) < size + 2:
                self._fill()
            body += self.buffer[:size]
            del self.buffer[: size + 2]
            if size == 0:
                return bytes(body)


# ---------------------------------------------------------------------------
# Replaying load


@dataclass
class RunResult:
    label: str
    concurrency: int
    latencies_ns: array  # sorted
    wall_seconds: float
    client_cpu_seconds: float
    server_cpu_seconds: float
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # a sample of non-200 answers

    @property
    def count(self) -> int:
        return len(self.latencies_ns)

    @property
    def throughput(self) -> float:
        return self.count / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return percentile(self.latencies_ns, q) / 1e6

    @property
    def ok(self) -> bool:
        return not self.errors and set(self.statuses) <= {200}

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "concurrency": self.concurrency,
            "requests": self.count,
            "req_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile_ms(50), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "wall_s": round(self.wall_seconds, 3),
            "client_cpu_s": round(self.client_cpu_seconds, 3),
            "server_cpu_s": round(self.server_cpu_seconds, 3),
            "statuses": dict(self.statuses),
            "errors": self.errors,
        }


def merge(results: Sequence[RunResult]) -> RunResult:
    """One result from several runs of the same measurement (e.g. interleaved rounds)."""
    first = results[0]
    latencies = array("q", sorted(v for r in results for v in r.latencies_ns))
    statuses: Counter = Counter()
    for r in results:
        statuses.update(r.statuses)
    return RunResult(
        label=first.label,
        concurrency=first.concurrency,
        latencies_ns=latencies,
        wall_seconds=sum(r.wall_seconds for r in results),
        client_cpu_seconds=sum(r.client_cpu_seconds for r in results),
        server_cpu_seconds=sum(r.server_cpu_seconds for r in results),
        statuses=statuses,
        errors=[e for r in results for e in r.errors][:3],
    )


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100), at least 1
    return float(sorted_values[int(rank) - 1])


def _worker(
    port: int, requests: list[bytes], start_index: int, cycle: bool, duration: float, warmup: int, barrier, results
) -> None:
    """One client: replay ``requests`` (cycling for ``duration`` seconds, or each once), timing every answer."""
    conn = HttpConnection(port)
    latencies = array("q")
    statuses: Counter = Counter()
    errors: list[str] = []
    clock = time.perf_counter_ns
    try:
        for i in range(warmup):
            conn.roundtrip(requests[(start_index + i) % len(requests)])
        barrier.wait(timeout=60)  # every worker is connected and warm, and the parent reads the server's CPU
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = clock()
        deadline = started + int(duration * 1e9) if cycle else None
        n, index = len(requests), start_index
        total = None if cycle else n
        done = 0
        while True:
            t0 = clock()
            if deadline is not None and t0 >= deadline:
                break
            if total is not None and done >= total:
                break
            status, body = conn.roundtrip(requests[index])
            latencies.append(clock() - t0)
            statuses[status] += 1
            if status != 200 and len(errors) < 3:
                errors.append(f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}")
            index = index + 1 if index + 1 < n else 0
            done += 1
        finished = clock()
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        results.put((started, finished, latencies.tobytes(), dict(statuses), errors, cpu))
    except Exception as exc:
        barrier.abort()
        results.put(exc.__class__.__name__ + ": " + str(exc))
    finally:
        conn.close()


def replay(
    server: ServerProcess,
    requests: Sequence[PreparedRequest],
    *,
    label: str,
    concurrency: int,
    duration: float | None = None,
    warmup: int = 20,
    timeout: float = 600.0,
) -> RunResult:
    """Replay ``requests`` against ``server`` from ``concurrency`` processes, one keep-alive connection each.

    With ``duration``, each worker cycles through the requests until the time is up
    (for idempotent reads). Without it, the requests are split between the
    workers and each is sent exactly once (for creates); there is no warm-up then.
    """
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(concurrency + 1)
    results = context.Queue()
    payloads = [r.payload for r in requests]
    cycle = duration is not None
    workers = []
    for i in range(concurrency):
        if cycle:
            share, start, warm = payloads, (i * len(payloads)) // concurrency, warmup
        else:
            share, start, warm = payloads[i::concurrency], 0, 0
        workers.append(
            context.Process(
                target=_worker,
                daemon=True,
                args=(server.port, share, start, cycle, duration or 0.0, warm, barrier, results),
            )
        )
    for worker in workers:
        worker.start()
    outcomes = []
    try:
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            pass  # a worker failed before the start: its error is in the queue
        server_cpu_before = server.cpu_seconds()
        for _ in workers:
            outcomes.append(results.get(timeout=timeout))
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
    server_cpu = server.cpu_seconds() - server_cpu_before
    failures = [o for o in outcomes if isinstance(o, str)]
    if failures:
        raise RuntimeError(f"{label} against {server.name}: a load worker failed: {failures[0]}")
    latencies = array("q")
    statuses: Counter = Counter()
    errors: list[str] = []
    for _, _, raw, worker_statuses, worker_errors, _ in outcomes:
        latencies.frombytes(raw)
        statuses.update(worker_statuses)
        errors.extend(worker_errors)
    wall = (max(o[1] for o in outcomes) - min(o[0] for o in outcomes)) / 1e9
    return RunResult(
        label=label,
        concurrency=concurrency,
        latencies_ns=array("q", sorted(latencies)),
        wall_seconds=wall,
        client_cpu_seconds=sum(o[5] for o in outcomes),
        server_cpu_seconds=server_cpu,
        statuses=statuses,
        errors=errors[:3],
    )


def fetch(server: ServerProcess, request: PreparedRequest) -> tuple[int, dict]:
    """Send one prepared request and decode its JSON answer (for checking what a benchmark measures)."""
    conn = HttpConnection(server.port)
    try:
        status, body = conn.roundtrip(request.payload)
    finally:
        conn.close()
    return status, (json.loads(body) if body.strip() else {})


# ---------------------------------------------------------------------------
# Reporting


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def table(headers: Sequence[str], rows: Iterable[Sequence], title: str | None = None) -> str:
    """A Markdown table, right-aligned numbers, readable both in a terminal and in docs/."""
    rows = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    lines = []
    if title:
        lines += [title, ""]
    lines.append("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths)) + "|")
    for row in rows:
        lines.append(
            "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |"
        )
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
