"""The load generator: simulated users invoking an endpoint, run as its own process.

``python -m selfmaker.services.recommender.loadgen`` reads a JSON spec on stdin and
writes one JSON line per measurement window on stdout. It runs outside the server
so its CPU is never the server's, and it is cheap per request: each payload is
SigV4-signed once (again every minute, well inside the 15-minute clock-skew window)
and replayed as raw HTTP/1.1 over one keep-alive connection per user, the idea of
benchmarks/_common.py's replayer. A user is what AWS calls one: an actor that
invokes the endpoint in a loop, with no think time.

Latency is measured around each request with the monotonic ``perf_counter_ns``. Each
window line carries the process's own CPU time, so the caller can state the
generator's overhead per request.

Spec: {host, port, region, access_key, secret_key, endpoint, payloads: [[base64 body,
content type], ...], schedule: [[seconds from start, users], ...], duration, window}.
Line: {window, start, end (seconds from start), users, ok, errors, latencies_us
(every request that ended in the window), cpu_seconds (cumulative), error (a sample)}.
The generator stops at ``duration`` or when its stdin closes or it is sent SIGTERM.
"""

from __future__ import annotations

import base64
import json
import resource
import signal
import socket
import sys
import threading
import time
from collections import deque
from urllib.parse import quote

SOCKET_TIMEOUT = 60.0  # a request the container takes longer than this to answer counts as an error
RESIGN_SECONDS = 60.0


def sign(spec: dict, body: bytes, content_type: str) -> bytes:
    """One InvokeEndpoint request, SigV4-signed as boto3 would sign it, as raw bytes."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = f"{spec['host']}:{spec['port']}"
    path = f"/endpoints/{quote(spec['endpoint'], safe='')}/invocations"
    request = AWSRequest(
        method="POST",
        url=f"http://{host}{path}",
        data=body,
        headers={"Content-Type": content_type, "Accept": "*/*", "Host": host},
    )
    SigV4Auth(Credentials(spec["access_key"], spec["secret_key"]), "sagemaker", spec["region"]).add_auth(request)
    headers = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    head = f"POST {path} HTTP/1.1\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


class Connection:
    """One keep-alive HTTP/1.1 connection: send prepared bytes, read one response (Content-Length bodies)."""

    def __init__(self, host: str, port: int):
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def roundtrip(self, payload: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=SOCKET_TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer.clear()
        self.sock.sendall(payload)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(self.buffer[:end]).lower()  # only two facts are needed: no dictionary of headers
        del self.buffer[: end + 4]
        status = int(head[9:12])
        at = head.find(b"\r\ncontent-length:")
        length = 0
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop > 0 else len(head)])
        while len(self.buffer) < length:
            self._fill()
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        if b"\r\nconnection: close" in head:
            self.close()
        return status, body

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk


class Users:
    """The simulated users; each appends (end time ns, latency ns, status) to the shared results."""

    def __init__(self, spec: dict, stop: threading.Event):
        self.spec, self.stop = spec, stop
        self.payloads = [(base64.b64decode(b), ct) for b, ct in spec["payloads"]]
        self.prepared = [sign(spec, body, ct) for body, ct in self.payloads]
        self.signed_at = time.monotonic()
        self.results: deque[tuple[int, int, int]] = deque()  # appends and pops are atomic: no lock
        self.error: str | None = None
        self.running: list[threading.Event] = []  # one "retire" flag per live user

    def resign_if_due(self) -> None:
        if time.monotonic() - self.signed_at >= RESIGN_SECONDS:
            self.prepared = [sign(self.spec, body, ct) for body, ct in self.payloads]
            self.signed_at = time.monotonic()

    def set_count(self, users: int) -> None:
        while len(self.running) < users:
            retire = threading.Event()
            self.running.append(retire)
            threading.Thread(target=self._user, args=(len(self.running) - 1, retire), daemon=True).start()
        while len(self.running) > users:
            self.running.pop().set()

    def _user(self, index: int, retire: threading.Event) -> None:
        conn = Connection(self.spec["host"], self.spec["port"])
        clock = time.perf_counter_ns
        i = index
        while not (retire.is_set() or self.stop.is_set()):
            prepared = self.prepared
            t0 = clock()
            try:
                status, body = conn.roundtrip(prepared[i % len(prepared)])
            except OSError as err:  # a refused or reset connection: an error, then a new connection
                conn.close()
                status, body = 599, str(err).encode()
            t1 = clock()
            self.results.append((t1, t1 - t0, status))
            if status != 200 and self.error is None:
                self.error = f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
            i += 1
        conn.close()

    def take(self) -> tuple[list[tuple[int, int, int]], str | None]:
        results, pending = [], self.results
        while pending:
            results.append(pending.popleft())
        error, self.error = self.error, None
        return results, error


def run(spec: dict, out) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    users = Users(spec, stop)
    schedule = sorted((float(t), int(n)) for t, n in spec["schedule"])
    window, duration = float(spec["window"]), float(spec["duration"])
    start_ns = time.perf_counter_ns()
    clock = lambda: (time.perf_counter_ns() - start_ns) / 1e9  # noqa: E731
    index, next_change, count = 0, 0, 0
    while not stop.is_set():
        window_start = clock()
        if window_start >= duration:
            break
        window_end = min(window_start + window, duration)
        while next_change < len(schedule) and schedule[next_change][0] <= window_start + 1e-3:
            count = schedule[next_change][1]
            next_change += 1
        users.set_count(count)
        # A window never spans a change of users: it ends at the next change if that comes first.
        if next_change < len(schedule):
            window_end = min(window_end, schedule[next_change][0])
        users.resign_if_due()
        stop.wait(max(0.0, window_end - clock()))
        results, error = users.take()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        line = {
            "window": index,
            "start": round(window_start, 4),
            "end": round(clock(), 4),
            "users": count,
            "ok": sum(1 for _, _, s in results if s == 200),
            "errors": sum(1 for _, _, s in results if s != 200),
            "latencies_us": [lat // 1000 for _, lat, s in results if s == 200],
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 4),
            "error": error,
        }
        out.write(json.dumps(line) + "\n")
        out.flush()
        index += 1
    stop.set()


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    run(spec, sys.stdout)


if __name__ == "__main__":
    main()
