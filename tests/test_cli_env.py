"""`selfmaker env`: the exports a shell evaluates, --json for scripts, the SageMaker SDK config it writes."""

import json
import os
import subprocess
import sys

import yaml

from support.accounts import A, credentials_file
from support.server import free_port

# A clean slate: what the command prints must not echo the test process's own AWS settings.
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}


def env(*args, extra=None):
    return subprocess.run(
        [sys.executable, "-m", "selfmaker.cli", "env", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**CLEAN, **(extra or {})},
    )


def test_exports_evaluate_in_a_shell_and_reach_the_server(server, tmp_path):
    config = tmp_path / "sdk.yaml"
    printed = env("--endpoint-url", server.url, "--sdk-config", str(config))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines()[0].startswith(f"# SelfMaker 0.1.0 at {server.url} (auth open, account ")
    assert "not written yet: run `selfmaker env --write-sdk-config`" in printed.stdout
    assert "SAGEMAKER_USER_CONFIG_OVERRIDE" not in printed.stdout  # the SDK refuses a path to a missing file
    # What `eval "$(selfmaker env)"` sets is enough for the AWS CLI to reach the server.
    script = f'eval "$({sys.executable} -m selfmaker.cli env --endpoint-url {server.url})" && env'
    shell = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, env=CLEAN)
    exported = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
    assert exported["AWS_ENDPOINT_URL"] == server.url
    assert exported["AWS_DEFAULT_REGION"] == exported["AWS_REGION"] == "us-east-1"
    caller = subprocess.run(
        [sys.executable, "-m", "awscli", "sts", "get-caller-identity", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**CLEAN, **{k: v for k, v in exported.items() if k.startswith("AWS_")}},
    )
    assert json.loads(caller.stdout)["Account"] == "123456789012", caller.stderr


def test_write_sdk_config_makes_the_file_and_its_bucket(server, tmp_path, client):
    config = tmp_path / "nested" / "sdk.yaml"
    result = env("--endpoint-url", server.url, "--sdk-config", str(config), "--write-sdk-config", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert "secret_key" not in found  # the secret is in `environment` only, where a script needs it
    assert found["account"] == "123456789012" and found["auth"] == "open"
    assert found["environment"] == {
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "selfmaker",
        "AWS_SECRET_ACCESS_KEY": "selfmaker",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
    }
    role, bucket = "arn:aws:iam::123456789012:role/SageMakerRole", "sagemaker-us-east-1-123456789012"
    assert found["sdk_config"] == {"path": str(config), "exists": True, "written": True, "role": role, "bucket": bucket}
    written = yaml.safe_load(config.read_text())["SageMaker"]
    assert written["PythonSDK"]["Modules"] == {"TelemetryOptOut": True, "Session": {"DefaultS3Bucket": bucket}}
    assert written["TrainingJob"] == {"RoleArn": role} and written["Model"] == {"ExecutionRoleArn": role}
    client("s3").head_bucket(Bucket=bucket)  # made, so the SDK's first upload has somewhere to go
    # Written again (a second run), it is replaced; a file selfmaker did not write is left alone.
    again = env("--endpoint-url", server.url, "--sdk-config", str(config), "--write-sdk-config", "--bucket", "mine")
    assert again.returncode == 0 and "bucket mine" in again.stdout
    assert (
        yaml.safe_load(config.read_text())["SageMaker"]["PythonSDK"]["Modules"]["Session"]["DefaultS3Bucket"] == "mine"
    )
    theirs = tmp_path / "theirs.yaml"
    theirs.write_text("SchemaVersion: '1.0'\n")
    refused = env("--endpoint-url", server.url, "--sdk-config", str(theirs), "--write-sdk-config")
    assert refused.returncode == 1 and refused.stdout == ""
    assert (
        refused.stderr
        == f"selfmaker env: {theirs} exists and was not written by selfmaker: pass --force to replace it\n"
    )
    assert theirs.read_text() == "SchemaVersion: '1.0'\n"


def test_an_unreachable_server_is_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = env("--json", extra={"AWS_ENDPOINT_URL": url})
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"selfmaker env: no SelfMaker server answers at {url} (")
    assert line.endswith("start one with `selfmaker serve`, or name it with --endpoint-url or AWS_ENDPOINT_URL")
    no_scheme = env("--endpoint-url", "localhost:7600")
    assert no_scheme.returncode == 1
    assert no_scheme.stderr == "selfmaker env: 'localhost:7600' is not a server URL: expected http://host:port\n"


def test_strict_mode_names_the_callers_account_and_refuses_an_unknown_key(make_server, tmp_path):
    srv = make_server("env-strict", ["--auth", "strict", "--credentials-file", str(credentials_file(tmp_path, A))])
    srv.start()
    keys = {"AWS_ACCESS_KEY_ID": A.key, "AWS_SECRET_ACCESS_KEY": "secret"}
    result = env("--endpoint-url", srv.url, "--sdk-config", str(tmp_path / "a.yaml"), "--write-sdk-config", extra=keys)
    assert result.returncode == 0, result.stderr
    assert f"export AWS_ACCESS_KEY_ID={A.key}" in result.stdout
    assert yaml.safe_load((tmp_path / "a.yaml").read_text())["SageMaker"]["Pipeline"] == {
        "RoleArn": f"arn:aws:iam::{A.account}:role/SageMakerRole"
    }
    refused = env("--endpoint-url", srv.url, extra={"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN", "AWS_SECRET_ACCESS_KEY": "x"})
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith("selfmaker env: the server refused access key AKIAUNKNOWN: ")


def test_serve_banner_names_the_command_for_its_own_port(server):
    command = f'eval "$(selfmaker env --endpoint-url http://localhost:{server.port} --write-sdk-config)"'
    assert command in server.log_text
