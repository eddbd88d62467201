"""The router's client (services/hosting/connections.py) and the fleet's health check (model_server.ping) reach
a model server over a Unix socket or over TCP (host:port, as an instance on a Ray node listens), keep-alive
pooled either way; an instance that goes away is InstanceGone (the router then retries on another)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfmaker.engines import model_server
from selfmaker.services.hosting.connections import InstanceGone, Instances, Invocation
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
ECHO = """
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    return "echo:" + data, "text/csv"
"""


def serve(base: Path, env: dict[str, str]) -> subprocess.Popen:
    (base / "model" / "code").mkdir(parents=True)
    (base / "model" / "code" / "inference.py").write_text(ECHO)
    return subprocess.Popen(
        [sys.executable, "-m", "selfmaker.container.inference_server"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "SAGEMAKER_BASE_DIR": str(base), **env},
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture
def servers(tmp_path):
    socket, port_file = tmp_path / "server.sock", tmp_path / "run" / "port"
    port_file.parent.mkdir()
    procs = {
        "unix": serve(tmp_path / "unix", {"SELFMAKER_BIND_TO_SOCKET": str(socket)}),
        "tcp": serve(
            tmp_path / "tcp",
            {
                "SELFMAKER_BIND_TO_HOST": "127.0.0.1",
                "SAGEMAKER_BIND_TO_PORT": "0",
                "SELFMAKER_PORT_FILE": str(port_file),
            },
        ),
    }
    wait_for(lambda: socket.exists() and port_file.exists(), timeout=120, what="both model servers to listen")
    addresses = {"unix": str(socket), "tcp": f"127.0.0.1:{port_file.read_text()}"}
    yield addresses, procs
    for proc in procs.values():
        proc.kill()
        proc.wait(30)


def invoke(instances: Instances, address: str, body: bytes):
    invocation = Invocation(body, "text/csv", "text/csv", None, None)
    return asyncio.get_event_loop().run_until_complete(instances.exchange(address, invocation, 30.0, 1 << 20))


def test_both_transports_answer_pooled_and_pass_the_health_check(servers):
    addresses, _ = servers
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        instances = Instances()
        for name, address in addresses.items():
            assert model_server.ping(address, timeout=10), name
            for i in range(5):
                answer = invoke(instances, address, f"{name}{i}".encode())
                assert (answer.status, answer.body) == (200, f"echo:{name}{i}".encode())
            assert len(instances._idle[address]) == 1, "sequential requests reuse one keep-alive connection"
    finally:
        loop.close()


def test_an_instance_that_went_away_is_gone_and_fails_its_health_check(servers):
    addresses, procs = servers
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        instances = Instances()
        assert invoke(instances, addresses["tcp"], b"x").status == 200
        procs["tcp"].kill()
        procs["tcp"].wait(30)
        with pytest.raises(InstanceGone):  # the pooled connection is closed, and nothing listens any more
            invoke(instances, addresses["tcp"], b"x")
        assert not model_server.ping(addresses["tcp"], timeout=5)
        assert not model_server.ping(None)
        with pytest.raises(InstanceGone):
            invoke(instances, "127.0.0.1:notaport", b"x")
        assert invoke(instances, addresses["unix"], b"y").body == b"echo:y"  # the other one is untouched
    finally:
        loop.close()
