"""The sagemaker-xgboost 1.7-1 runtime for tests that run in-sandbox code directly.

It is the environment the server's jobs use for that image, built in the run's
shared runtimes directory (tests/conftest.py), so a run builds it once.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from selfmaker.engines import runtimes

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
REPO = Path(__file__).resolve().parents[2]


@functools.cache
def python() -> str:
    """The runtime's interpreter (built on first use)."""
    runtime = runtimes.resolve(XGBOOST_IMAGE)
    bin_dir = runtimes.ensure(runtime, Path(os.environ["SELFMAKER_RUNTIMES_DIR"]), lambda line: None)
    return str(bin_dir / "python")


def run_module(module: str, base: Path, *args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``python -m module`` in the runtime with the container contract rooted at ``base``."""
    return subprocess.run(
        [python(), "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "SAGEMAKER_BASE_DIR": str(base), **(env or {})},
        **kwargs,
    )


def popen_module(module: str, base: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [python(), "-m", module],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "SAGEMAKER_BASE_DIR": str(base), **(env or {})},
    )


# Scripts for python() that save a tiny trained model in the directory argv[1] (model servers' tests).
MAKE_XGBOOST_MODEL = """
import numpy as np, xgboost as xgb, sys
x = np.array([[a, b] for a in range(7) for b in range(3)], dtype="float32")
booster = xgb.train({"max_depth": 3, "eta": 0.5}, xgb.DMatrix(x, label=2 * x[:, 0] + x[:, 1]), num_boost_round=20)
booster.save_model(sys.argv[1] + "/xgboost-model")
"""

MAKE_SKLEARN_MODEL = """
import joblib, sys
from sklearn.linear_model import LinearRegression
joblib.dump(LinearRegression().fit([[0, 0], [1, 0], [0, 1], [2, 1]], [0, 2, 1, 5]), sys.argv[1] + "/model.joblib")
"""
