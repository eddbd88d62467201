"""The router's transport to a model server: Unix socket (an instance on this machine) vs TCP (on a Ray node).

Everything above the transport (routing, metrics, the API layer) is the same code whichever way an instance
is reached, so the difference between the two is the router's added cost of reaching an instance over TCP.
Two copies of SelfMaker's model server (selfmaker.container.inference_server) serve the same echo model, one
on a Unix socket, one on TCP on 127.0.0.1 (as a Ray node's instance listens, port 0, reported in its port
file); the router's own client (services/hosting/connections.py, keep-alive pooled) sends small CSV
invocations to them in alternating batches, so a busy moment of the machine hits both alike.
Goal: TCP p50 within 0.5 ms of the Unix socket's.

    python benchmarks/serving_transport.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout's selfmaker, not an installed one
from _common import load_average  # noqa: E402

from selfmaker.services.hosting.connections import Instances, Invocation  # noqa: E402

MODEL = """
def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return body

def predict_fn(data, model):
    return data

def output_fn(prediction, accept):
    return prediction, "text/csv"
"""


def start(base: Path, env: dict[str, str]) -> subprocess.Popen:
    (base / "model" / "code").mkdir(parents=True)
    (base / "model" / "code" / "inference.py").write_text(MODEL)
    return subprocess.Popen(
        [sys.executable, "-m", "selfmaker.container.inference_server"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "SAGEMAKER_BASE_DIR": str(base), **env},
        stdout=subprocess.DEVNULL,
    )


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the model server did not start ({path} missing)")
        time.sleep(0.05)


async def batch(instances: Instances, address: str, count: int) -> list[float]:
    invocation = Invocation(b"1.0,2.0,3.0,4.0", "text/csv", "text/csv", None, None)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = await instances.exchange(address, invocation, 60.0, 6 << 20)
        times.append(time.perf_counter() - started)
        assert answer.status == 200, answer
    return times


async def measure(addresses: dict[str, str], requests: int, rounds: int) -> dict[str, list[float]]:
    instances = Instances()
    for address in addresses.values():
        await batch(instances, address, 200)  # warm: connections pooled, code paths hot
    results: dict[str, list[float]] = {name: [] for name in addresses}
    for round_ in range(rounds):
        order = list(addresses) if round_ % 2 == 0 else list(reversed(addresses))
        for name in order:
            results[name] += await batch(instances, addresses[name], requests // rounds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        socket = root / "server.sock"
        port_file = root / "port"
        servers = [
            start(root / "unix", {"SELFMAKER_BIND_TO_SOCKET": str(socket)}),
            start(
                root / "tcp",
                {
                    "SELFMAKER_BIND_TO_HOST": "127.0.0.1",
                    "SAGEMAKER_BIND_TO_PORT": "0",
                    "SELFMAKER_PORT_FILE": str(port_file),
                },
            ),
        ]
        try:
            wait_for(socket)
            wait_for(port_file)
            addresses = {"unix socket": str(socket), "tcp": f"127.0.0.1:{port_file.read_text()}"}
            load = load_average()
            results = asyncio.run(measure(addresses, args.requests, args.rounds))
        finally:
            for server in servers:
                server.terminate()
                server.wait(30)
    print(f"{args.requests} requests each, {args.rounds} alternating rounds, load average {load}")
    p50 = {}
    for name, times in results.items():
        ordered = sorted(times)
        p50[name] = statistics.median(ordered) * 1000
        p99 = ordered[int(len(ordered) * 0.99)] * 1000
        print(f"{name:12} p50 {p50[name]:.3f} ms   p99 {p99:.3f} ms   {len(times) / sum(times):.0f} req/s")
    print(f"tcp - unix socket p50: {p50['tcp'] - p50['unix socket']:+.3f} ms (goal: at most +0.5 ms)")


if __name__ == "__main__":
    main()
