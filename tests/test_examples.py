"""Every script in examples/ runs, as a user runs it, against a real server, so the examples never rot.

The environment is what the quickstart tells a user to do: `selfmaker env --write-sdk-config` and its
exports, nothing else (no test helper is imported by an example). Each script checks its own result and
exits non-zero when it is wrong; this test also checks the line each prints last. The scripts run in the
suite's SDK v2 and v3 environments, on the session server and the suite's shared job runtimes, and every
answer their processes receive is checked against its botocore output shape (support/sdk_site).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfmaker.models_vendor import BOTOCORE_VERSION
from support.sdk import SDK_SITE

pytestmark = pytest.mark.end_to_end

EXAMPLES = Path(__file__).parents[1] / "examples"

# script -> (SDK, a line its output must contain)
SCRIPTS = {
    "xgboost_train_deploy.py": ("v2", "done: trained, deployed, invoked and deleted xgboost-example-"),
    "xgboost_train_deploy_v3.py": ("v3", "done: trained, deployed, invoked and deleted xgboost-example-v3-"),
    "pipeline_classic.py": ("v2", "registered arn:aws:sagemaker:us-east-1:123456789012:model-package/example-"),
    "pipeline_classic_v3.py": ("v3", "registered arn:aws:sagemaker:us-east-1:123456789012:model-package/example-"),
    "experiment_run.py": ("v2", "  train:loss: 40 values, first "),
    "experiment_run_v3.py": ("v3", "  train:loss: 40 values, first "),
    "feature_store.py": ("v2", "offline, by city:"),
    "feature_store_v3.py": ("v3", "offline, by city:"),
}


def test_every_example_is_run_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(SCRIPTS)


@pytest.fixture(scope="module")
def user_environment(server, tmp_path_factory):
    """The environment `eval "$(selfmaker env --write-sdk-config)"` gives a user's shell."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    config = tmp_path_factory.mktemp("examples-sdk-config") / "sagemaker-config.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "selfmaker.cli", "env", "--write-sdk-config", "--json", "--sdk-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "AWS_ENDPOINT_URL": server.url},
    )
    assert result.returncode == 0, result.stderr
    return {**clean, **json.loads(result.stdout)["environment"]}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example(script, request, user_environment, tmp_path):
    version, expected = SCRIPTS[script]
    sdk = request.getfixturevalue(f"sdk_{version}")
    problems = tmp_path / "conformance.log"
    env = {
        **user_environment,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SDK_SITE), os.environ.get("PYTHONPATH")])),
        "SELFMAKER_CONFORMANCE_LOG": str(problems),
        "SELFMAKER_MODELS_BOTOCORE": BOTOCORE_VERSION,  # an older botocore in the SDK's env lacks newer members
    }
    started = time.monotonic()
    result = subprocess.run(
        [str(sdk.python), str(EXAMPLES / script)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{script} failed after {seconds:.0f} s:\n{output[-6000:]}"
    assert expected in result.stdout, result.stdout[-3000:]
    assert not (problems.exists() and problems.read_text().strip()), problems.read_text()
    print(f"{script}: {seconds:.0f} s")  # -s shows how long each took (under two minutes with warm runtimes)
