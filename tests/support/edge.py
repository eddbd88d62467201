"""Edge Manager tests: a tiny ONNX model to compile, and edge agents in their own processes."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from support.clients import ACCESS_KEY, SECRET_KEY
from support.server import REGION, free_port


def scaling_onnx(scale: float) -> bytes:
    """An ONNX graph answering y = x * scale for rows of two floats."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor("scale", TensorProto.FLOAT, [1], [scale])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@functools.cache
def _server_only_modules() -> tuple[str, ...]:
    """Top-level modules of SelfMaker's own dependencies other than boto3/botocore: what a device does not have."""
    from importlib.metadata import packages_distributions, requires

    wanted = {
        re.split(r"[\s\[<>=;!~]", line, maxsplit=1)[0].lower().replace("_", "-")
        for line in requires("selfmaker") or []
        if "extra ==" not in line
    } - {"boto3", "botocore"}
    return tuple(
        sorted(
            module
            for module, dists in packages_distributions().items()
            if any(d.lower().replace("_", "-") in wanted for d in dists)
        )
    )


# The agent as a device runs it (docs/edge.md: numpy, onnxruntime, boto3 and SelfMaker installed --no-deps):
# importing any of the server's own dependencies fails, so every agent test also proves the lean install works.
DEVICE_LAUNCHER = """
import sys
SERVER_ONLY = set(sys.argv.pop(1).split(","))
class NotOnADevice:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in SERVER_ONLY:
            raise ModuleNotFoundError(f"{name} is not installed on a device")
sys.meta_path.insert(0, NotOnADevice())
from selfmaker.cli import main
sys.exit(main(sys.argv[1:]))
"""


class AgentProcess:
    """``selfmaker edge-agent`` in its own process, with a short poll and heartbeat, unable to import the server's
    dependencies."""

    def __init__(self, server_url: str, fleet: str, device: str, state_dir: Path, key_file: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        state_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable, "-c", DEVICE_LAUNCHER, ",".join(_server_only_modules()), "edge-agent", "--fleet", fleet, "--device", device,
            "--endpoint-url", server_url, "--region", REGION, "--state-dir", str(state_dir),
            "--port", str(self.port), "--poll-interval", "0.3", "--heartbeat-interval", "0.5",
            "--signing-key-file", str(key_file),
        ]  # fmt: skip
        env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "PATH": "/usr/bin:/bin"}
        self.log = open(state_dir / "agent.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def predict(self, handle: str, rows) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.url}/models/{handle}:predict", data=json.dumps({"instances": rows}).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
