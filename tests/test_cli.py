"""The `selfmaker` command as a user meets it, and the AWS CLI against the server."""

import json
import os
import subprocess
import sys
import urllib.request

from selfmaker import __version__


def run(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "selfmaker.cli", *args], capture_output=True, text=True, timeout=60, **kwargs
    )


def test_version_and_help():
    assert run("--version").stdout.strip() == f"selfmaker {__version__}"
    help_text = run("serve", "--help").stdout
    for flag in ("--host", "--port", "--data-dir", "--database-url", "--object-store-url", "--auth"):
        assert flag in help_text


def test_serve_prints_what_to_export_and_answers_health(make_server):
    srv = make_server("cli").start()
    with urllib.request.urlopen(f"{srv.url}/_selfmaker/health") as resp:
        health = json.loads(resp.read())
    assert health["status"] == "ok" and health["version"] == __version__
    assert srv.stopped_cleanly()
    log = srv.log_text
    assert f"export AWS_ENDPOINT_URL=http://localhost:{srv.port}" in log
    assert "AWS_ACCESS_KEY_ID" in log and "AWS_DEFAULT_REGION=us-east-1" in log
    assert "job sandbox: " in log and " bwrap at /" in log  # which bubblewrap jobs will run in, said up front
    assert (srv.data_dir / "metadata.db").exists()  # state lives under the data directory
    # Quiet by default: SelfMaker's own INFO lines, no library's (Alembic ran the migrations).
    assert f"INFO selfmaker: SelfMaker {__version__} listening on 127.0.0.1:{srv.port}" in log
    assert "alembic" not in log.lower()


def test_serve_logs_json_lines_when_asked(make_server):
    srv = make_server("cli-json", ["--log-format", "json"]).start()
    assert srv.stopped_cleanly()
    records = [json.loads(line) for line in srv.log_text.splitlines() if line.startswith("{")]
    started = next(r for r in records if "listening" in r["message"])
    assert started["level"] == "INFO" and started["logger"] == "selfmaker" and started["time"].endswith("+00:00")
    assert not [r for r in records if r["logger"].startswith("alembic")]


def test_a_busy_port_is_one_clear_line(server, tmp_path):
    """The port is bound before anything else: no export lines, no traceback, one line and exit status 1."""
    result = run("serve", "--port", str(server.port), "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"selfmaker serve: cannot listen on 127.0.0.1:{server.port}: the port is already in use "
        "(is another SelfMaker running? choose another with --port)"
    ]
    assert "export" not in result.stdout and not (tmp_path / "metadata.db").exists()


def test_bad_settings_fail_clearly(tmp_path):
    result = run("serve", "--data-dir", str(tmp_path), "--auth", "strict")
    assert result.returncode == 2
    assert "credentials file" in result.stderr


def test_aws_cli_smoke(server):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}
    aws = ["aws", "--endpoint-url", server.url, "--output", "json"]
    created = subprocess.run(
        aws + ["sagemaker", "create-experiment", "--experiment-name", "cli-exp"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    listed = subprocess.run(
        aws + ["sagemaker", "list-experiments"], capture_output=True, text=True, env=env, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert "cli-exp" in [e["ExperimentName"] for e in json.loads(listed.stdout)["ExperimentSummaries"]]
    missing = subprocess.run(
        aws + ["sagemaker", "describe-model", "--model-name", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert missing.returncode != 0 and "Could not find model" in missing.stderr


def test_coverage_doc_is_current():
    result = run("coverage", "--check", "--output", "docs/coverage.md", cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr


def test_coverage_outside_a_checkout_says_what_it_needs(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo}  # this checkout's code, run from elsewhere
    for args in (["coverage"], ["coverage", "--check"]):
        result = run(*args, cwd=tmp_path, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "run it at the root of one, or pass --output FILE" in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written
    bad = run("coverage", "--output", str(tmp_path / "no" / "such" / "coverage.md"), cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "is not a directory" in bad.stderr
    written = run("coverage", "--output", "coverage.md", cwd=tmp_path, env=env)
    assert written.returncode == 0, written.stderr
    assert "| " in (tmp_path / "coverage.md").read_text()
