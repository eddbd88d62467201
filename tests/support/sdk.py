"""Run code with the real SageMaker Python SDK (v2 or v3) against a SelfMaker server.

v2 and v3 are both the `sagemaker` distribution, so each lives in its own
virtual environment, built once per test run (under pytest's temporary
directory, never reused across runs) on top of this interpreter's packages.
A test passes a script; it runs in a subprocess with AWS_ENDPOINT_URL, dummy
credentials and an SDK config (telemetry off, default bucket, role) pointing
at the server, and its last stdout line (JSON) is returned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from selfmaker.models_vendor import BOTOCORE_VERSION

SDK_VERSIONS = {"v2": "sagemaker==2.257.7", "v3": "sagemaker==3.27.0"}
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "selfmaker-sdk-tests"
SDK_SITE = Path(__file__).parent / "sdk_site"

SDK_CONFIG = f"""\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
      Session:
        DefaultS3Bucket: {BUCKET}
  TrainingJob: {{RoleArn: '{ROLE}'}}
  ProcessingJob: {{RoleArn: '{ROLE}'}}
  Model: {{ExecutionRoleArn: '{ROLE}'}}
  Pipeline: {{RoleArn: '{ROLE}'}}
  FeatureGroup: {{RoleArn: '{ROLE}'}}
"""


class SDK:
    def __init__(self, root: Path, version: str):
        self.root = root
        self.version = version
        self.python = root / "venv" / "bin" / "python"

    def build(self) -> SDK:
        if not self.python.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", "--system-site-packages", str(self.root / "venv")], check=True
            )
            subprocess.run(
                [
                    str(self.python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    SDK_VERSIONS[self.version],
                ],
                check=True,
            )
        (self.root / "config.yaml").write_text(SDK_CONFIG)
        return self

    def run(self, server, script: str, timeout: int = 300, env: dict | None = None):
        """Run ``script`` (dedented) against ``server``; return its last stdout line parsed as JSON."""
        path = self.root / "script.py"
        path.write_text(textwrap.dedent(script))
        problems = self.root / "conformance.log"
        problems.unlink(missing_ok=True)
        full_env = {
            **os.environ,
            # Every answer the SDK's processes receive is checked against its output shape (sdk_site).
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SDK_SITE), os.environ.get("PYTHONPATH")])),
            "SELFMAKER_CONFORMANCE_LOG": str(problems),
            "SELFMAKER_MODELS_BOTOCORE": BOTOCORE_VERSION,
            "AWS_ENDPOINT_URL": server.url,
            "AWS_ACCESS_KEY_ID": "AKIDSDK",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(self.root / "config.yaml"),
            "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
            "PYTHONWARNINGS": "ignore",
            **(env or {}),
        }
        result = subprocess.run(
            [str(self.python), str(path)], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=self.root
        )
        if result.returncode != 0:
            raise AssertionError(f"SDK {self.version} script failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
        if problems.exists() and problems.read_text().strip():
            raise AssertionError(
                "responses that do not match their botocore output shape (in the SDK's process):\n"
                + problems.read_text()
            )
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None


# Runs the SDK code as a child process and reports its exit code and everything it printed, so a test can
# check the job's log lines the SDK streamed to the terminal.
CAPTURE = """
import json, subprocess, sys, textwrap
import boto3
try:
    boto3.client("s3").create_bucket(Bucket="selfmaker-sdk-tests")
except boto3.client("s3").exceptions.BucketAlreadyOwnedByYou:
    pass
inner = textwrap.dedent({inner!r})
proc = subprocess.run([sys.executable, "-c", inner], capture_output=True, text=True, timeout=900)
print(json.dumps({{"rc": proc.returncode, "output": proc.stdout + proc.stderr}}))
"""


def run_captured(sdk, server, inner: str, env: dict | None = None) -> tuple[dict, str]:
    result = sdk.run(server, CAPTURE.format(inner=inner), timeout=1000, env=env)
    output = result["output"]
    assert result["rc"] == 0, output[-6000:]
    last = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert last, output[-6000:]
    return json.loads(last[-1][len("RESULT ") :]), output
