"""Helpers for the tuning tests: an image that runs a tiny trial on the host's Python, whose objective is a
known function of its hyperparameters (printed, for MetricDefinitions)."""

from __future__ import annotations

import json
import sys

IMAGE = "selfmaker.test/tuning:1"
TRAIN = """
import json, time
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
x, y = float(hp.get("x", 0)), float(hp.get("y", 0))
bonus = {"a": 0.0, "b": 1.0, "c": 0.5}.get(hp.get("kind", "a"), 0.0)
time.sleep(float(hp.get("sleep", 0)))
print(f"objective={10 - (x - 3) ** 2 - (y - 1) ** 2 + bonus:.6f}")
open("/opt/ml/model/model.txt", "w").write("ok")
"""
METRICS = [{"Name": "objective", "Regex": r"objective=([-0-9.e]+)"}]


def objective(x: float, y: float = 0, kind: str = "a") -> float:
    return 10 - (x - 3) ** 2 - (y - 1) ** 2 + {"a": 0.0, "b": 1.0, "c": 0.5}[kind]


def runtimes_config(directory) -> str:
    """A runtimes config mapping IMAGE to the host's Python running TRAIN."""
    path = directory / "runtimes.json"
    path.write_text(json.dumps({"images": {IMAGE: {"python": sys.executable, "command": ["python3", "-c", TRAIN]}}}))
    return str(path)
