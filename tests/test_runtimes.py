"""Runtime builds (docs/runtimes.md): uv from a local wheelhouse with no network, two jobs waiting for one build
with a SecondaryStatus that says so, the pip fallback, and `selfmaker runtimes list|build|prune`.

The wheelhouse is made once for the module (pip download of boto3, which every runtime has, six and idna); every
build here then runs with the proxies pointing at a closed port, so only the wheelhouse can serve it.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest

from selfmaker.engines import runtime_builds
from support.clients import make_client
from support.jobs import log_lines, processing_request, training_request, wait
from support.pipelines import entrypoint
from support.waiting import wait_for

IMAGE = "selfmaker.test/offline:1"
MISSING_IMAGE = "selfmaker.test/missing:1"
GROUP = "/aws/sagemaker/TrainingJobs"
# Every network request of a build fails at once: the proxies are a closed port, the index a closed port.
NO_NETWORK = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "UV_INDEX_URL": "http://127.0.0.1:9/simple",
}


# The job's own pip install (as of a requirements.txt) takes idna from the wheelhouse too.
JOB = """
import subprocess, sys
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "idna"], check=True)
import idna, six
print("six", six.__version__, "idna", idna.__version__)
"""


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """(wheelhouse, runtimes config file): a wheelhouse of boto3, six and idna, and images mapped to runtimes
    of six (in the wheelhouse) and of a package that is not in it."""
    tmp = tmp_path_factory.mktemp("offline")
    wheelhouse = tmp / "wheelhouse"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "-d",
            str(wheelhouse),
            "boto3",
            "six",
            "idna",
        ],
        check=True,
        timeout=300,
    )
    config = tmp / "runtimes.json"
    config.write_text(
        json.dumps({"images": {IMAGE: {"packages": ["six"]}, MISSING_IMAGE: {"packages": ["no-such-package-here"]}}})
    )
    return wheelhouse, config


# A build backend that builds its wheel only once a gate file exists (a build as slow as the test wants),
# writing its pid first so the test can see the build's processes end.
GATED_BACKEND = """
import base64, hashlib, os, time, zipfile
GATE, PIDS = {gate!r}, {pids!r}
FILES = {{
    "slowpkg/__init__.py": b"VERSION = '1.0'\\n",
    "slowpkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: slowpkg\\nVersion: 1.0\\n",
    "slowpkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: gate\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}}
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(PIDS, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    deadline = time.time() + 600
    while not os.path.exists(GATE) and time.time() < deadline:
        time.sleep(0.05)
    name = "slowpkg-1.0-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, body in FILES.items():
            wheel.writestr(path, body)
            digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
            record.append(f"{{path}},sha256={{digest}},{{len(body)}}")
        record.append("slowpkg-1.0.dist-info/RECORD,,")
        wheel.writestr("slowpkg-1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
"""


def _gated_sdist(wheelhouse, gate, pids) -> None:
    """slowpkg-1.0.tar.gz in the wheelhouse: an sdist whose in-tree backend waits for ``gate``."""
    files = {
        "pyproject.toml": textwrap.dedent(
            """
            [build-system]
            requires = []
            build-backend = "gated_backend"
            backend-path = ["."]

            [project]
            name = "slowpkg"
            version = "1.0"
            """
        ),
        "PKG-INFO": "Metadata-Version: 2.1\nName: slowpkg\nVersion: 1.0\n",
        "gated_backend.py": GATED_BACKEND.format(gate=str(gate), pids=str(pids)),
    }
    with tarfile.open(wheelhouse / "slowpkg-1.0.tar.gz", "w:gz") as archive:
        for name, text in files.items():
            path = wheelhouse.parent / "slowpkg-src" / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            archive.add(path, arcname=f"slowpkg-1.0/{name}")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfmaker.cli", "runtimes", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **NO_NETWORK, **(env or {})},
    )


def test_two_jobs_wait_for_one_offline_build_and_say_so(make_server, offline, tmp_path):
    wheelhouse, config = offline
    runtimes_dir = tmp_path / "runtimes"
    server = make_server(
        "offline",
        ["--package-index", str(wheelhouse), "--runtimes-config", str(config), "--runtimes-dir", str(runtimes_dir)],
        env=NO_NETWORK,
    ).start()
    sm, logs = make_client("sagemaker", server.url), make_client("logs", server.url)
    make_client("s3", server.url).create_bucket(Bucket="offline")
    names = [f"offline-{i}-{int(time.time())}" for i in range(2)]
    for name in names:
        request = training_request(name, "offline", "unused")
        request["HyperParameters"] = {}
        request["AlgorithmSpecification"] = {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": entrypoint(JOB),
        }
        sm.create_training_job(**request)
    # While the runtime builds: the status says so, and the build's progress is in the job's log already.
    during = wait_for(
        lambda: [sm.describe_training_job(TrainingJobName=name) for name in names],
        lambda jobs: all(job["SecondaryStatus"] == "DownloadingTrainingImage" for job in jobs),
        timeout=120,
        what="both jobs to wait for their runtime",
    )
    assert {job["SecondaryStatusTransitions"][-1]["StatusMessage"].split(" (")[0] for job in during} == {
        f"Building runtime {IMAGE}",
        f"Waiting for runtime {IMAGE}",
    }
    wait_for(
        lambda: "\n".join(line for name in names for line in log_lines(logs, GROUP, name)),
        lambda text: "building the runtime" in text and "waiting for the runtime" in text,
        timeout=120,
        what="the build's first lines in the jobs' logs",
    )
    jobs = [wait(sm, "training", name) for name in names]
    assert [job["TrainingJobStatus"] for job in jobs] == ["Completed", "Completed"], [
        j.get("FailureReason") for j in jobs
    ]

    texts = ["\n".join(log_lines(logs, GROUP, name)) for name in names]
    builders = [text for text in texts if "building the runtime" in text]
    assert len(builders) == 1, texts  # one build; the other job waited for it
    assert f"with uv from {wheelhouse}" in builders[0]
    assert "+ six==" in builders[0]  # uv's progress, in the job's log as it happens
    waiter = texts[1 - texts.index(builders[0])]
    assert "waiting for the runtime" in waiter
    assert all("six 1." in text and "idna " in text for text in texts)  # both ran, pip offline too

    messages = [
        {t["StatusMessage"] for t in job["SecondaryStatusTransitions"] if t["Status"] == "DownloadingTrainingImage"}
        for job in jobs
    ]
    assert f"Building runtime {IMAGE}" in messages[texts.index(builders[0])]
    assert any(m.startswith(f"Waiting for runtime {IMAGE}") for m in messages[1 - texts.index(builders[0])])
    statuses = [t["Status"] for t in jobs[0]["SecondaryStatusTransitions"]]
    assert statuses.index("DownloadingTrainingImage") < statuses.index("Training") < statuses.index("Completed")

    listed = json.loads(_cli("list", "--json", "--runtimes-dir", str(runtimes_dir)).stdout)["Runtimes"]
    assert [(r["Runtime"], r["Status"], r["Installer"]) for r in listed] == [(IMAGE, "ready", "uv")]
    assert listed[0]["SizeBytes"] > 1_000_000 and time.time() - listed[0]["LastUsed"] < 600

    # A package the wheelhouse does not have: the build fails at once with the installer's words, asking nobody.
    failed = _cli(
        "build", MISSING_IMAGE, "--runtimes-dir", str(runtimes_dir), "--runtimes-config", str(config),
        "--package-index", str(wheelhouse),
    )  # fmt: skip
    assert failed.returncode == 1
    assert "selfmaker runtimes build:" in failed.stderr and "no-such-package-here" in failed.stderr

    # A job whose runtime cannot be built fails with the installer's words (its build ran off the job's step).
    broken = f"offline-broken-{int(time.time())}"
    request = training_request(broken, "offline", "unused")
    request["HyperParameters"] = {}
    request["AlgorithmSpecification"] = {
        "TrainingImage": MISSING_IMAGE,
        "TrainingInputMode": "File",
        "ContainerEntrypoint": entrypoint(JOB),
    }
    sm.create_training_job(**request)
    broken_job = wait(sm, "training", broken)
    assert broken_job["TrainingJobStatus"] == "Failed" and "no-such-package-here" in broken_job["FailureReason"]


def test_pip_builds_offline_when_asked_and_prune_removes_what_is_unused(offline, tmp_path):
    wheelhouse, config = offline
    runtimes_dir = tmp_path / "runtimes"
    where = ["--runtimes-dir", str(runtimes_dir)]
    built = _cli("build", IMAGE, *where, "--runtimes-config", str(config), "--runtime-installer", "pip",
                 env={"SELFMAKER_PACKAGE_INDEX": str(wheelhouse)})  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert f"with pip from {wheelhouse}" in built.stdout and "Successfully installed" in built.stdout
    (runtime,) = runtime_builds.on_disk(runtimes_dir)
    assert (runtime.installer, runtime.ready, runtime.name) == ("pip", True, IMAGE)
    python = runtime.path / "bin" / "python"
    assert subprocess.run([python, "-c", "import six, boto3"], timeout=60).returncode == 0
    again = _cli("build", IMAGE, *where, "--runtimes-config", str(config), env={"SELFMAKER_PACKAGE_INDEX": "/nowhere"})
    assert again.returncode == 2 and "/nowhere" in again.stderr  # a wheelhouse that does not exist is refused

    table = _cli("list", *where).stdout
    assert IMAGE in table and "ready" in table and "MiB" in table
    unfinished = runtimes_dir / "interrupted-build"  # a build killed half-way: no ready marker
    unfinished.mkdir()
    (unfinished / "pyvenv.cfg").write_text("home = /usr/bin\n")

    dry = _cli("prune", *where, "--dry-run")
    assert "would remove interrupted-build" in dry.stdout and IMAGE not in dry.stdout
    assert unfinished.exists()
    assert "removed interrupted-build" in _cli("prune", *where).stdout  # the recent runtime stays
    assert runtime.path.exists() and not unfinished.exists()

    month_ago = time.time() - 40 * 86400
    os.utime(runtime.path / runtime_builds.USED, (month_ago, month_ago))
    with open(runtimes_dir / f".{runtime.key}.lock", "w") as lock:  # as a server building it holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert "building" in _cli("list", *where).stdout
        _cli("prune", *where, "--all")
        assert runtime.path.exists()  # never removed under a build
    pruned = _cli("prune", *where)
    assert f"removed {IMAGE}" in pruned.stdout and not runtime.path.exists()
    assert "no runtimes" in _cli("list", *where).stdout


def test_uv_gets_pip_configuration_or_the_package_index_alone(monkeypatch, tmp_path):
    for name in runtime_builds.UV_INDEX_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    options = runtime_builds._source_options(None, "uv")
    assert "--extra-index-url https://mirror.example/simple" in " ".join(options)
    assert f"--find-links {tmp_path}" in " ".join(options)
    assert options[-2:] == ["--index-strategy", "unsafe-best-match"]  # pip's choice over several indexes
    assert runtime_builds._source_options(None, "pip") == []  # pip reads its own configuration
    assert runtime_builds._source_options("https://index.example/simple", "uv") == [
        "--index-url",
        "https://index.example/simple",
    ]
    assert runtime_builds._source_options(str(tmp_path), "pip") == ["--no-index", "--find-links", str(tmp_path)]
    env = runtime_builds._environment(str(tmp_path), tmp_path)
    assert not any(k.startswith("PIP_") and k != "PIP_CONFIG_FILE" for k in env) and env["UV_NO_CONFIG"] == "1"
    monkeypatch.setenv("UV_INDEX_URL", "https://uv.example/simple")  # uv configured on its own: left alone
    assert runtime_builds._source_options(None, "uv") == []


def test_a_job_waiting_for_its_runtime_build_stops_at_once(make_server, offline, tmp_path, request):
    """StopProcessingJob / StopTrainingJob while the runtime builds: Stopped at once, while the build is still
    held at its gate. A build nobody else waits for is cancelled (its processes end, nothing half-built stays);
    one another job waits for goes on, and that job completes."""
    wheelhouse, _ = offline
    own_wheelhouse = tmp_path / "wheelhouse"
    subprocess.run(["cp", "-r", str(wheelhouse), str(own_wheelhouse)], check=True)
    gate, pids = tmp_path / "gate", tmp_path / "build-pids"
    request.addfinalizer(gate.touch)  # whatever happens, no build backend waits on after the test
    _gated_sdist(own_wheelhouse, gate, pids)
    config = tmp_path / "runtimes.json"
    config.write_text(json.dumps({"images": {IMAGE: {"packages": ["slowpkg"]}}}))
    runtimes_dir = tmp_path / "runtimes"
    server = make_server(
        "gated",
        ["--package-index", str(own_wheelhouse), "--runtimes-config", str(config), "--runtimes-dir", str(runtimes_dir)],
        env=NO_NETWORK,
    ).start()
    sm = make_client("sagemaker", server.url)
    make_client("s3", server.url).create_bucket(Bucket="gated")
    stamp = int(time.time())

    # Alone: the build is cancelled with the job.
    alone = f"gated-alone-{stamp}"
    request = processing_request(alone, entrypoint("import slowpkg"))
    request["AppSpecification"]["ImageUri"] = IMAGE
    sm.create_processing_job(**request)
    wait_for(lambda: pids.exists() and pids.read_text().strip(), timeout=300, what="the build to reach the gate")
    sm.stop_processing_job(ProcessingJobName=alone)
    assert wait(sm, "processing", alone, timeout=60)["ProcessingJobStatus"] == "Stopped"
    assert not gate.exists()  # so the build had not ended
    builder = int(pids.read_text().split()[0])

    def build_ended() -> bool:
        try:
            os.kill(builder, 0)
        except ProcessLookupError:
            return not [r for r in runtime_builds.on_disk(runtimes_dir) if r.building or r.ready]
        return False

    wait_for(build_ended, timeout=60, what="the cancelled build's processes and files to go")

    # Two jobs wait for one build: the one stopped is Stopped at once, the build goes on for the other.
    names = [f"gated-{i}-{stamp}" for i in range(2)]
    for name in names:
        request = training_request(name, "gated", "unused")
        request["HyperParameters"] = {}
        request["AlgorithmSpecification"] = {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": entrypoint("import slowpkg; print('slowpkg', slowpkg.VERSION)"),
        }
        sm.create_training_job(**request)
        wait_for(
            lambda name=name: sm.describe_training_job(TrainingJobName=name)["SecondaryStatus"],
            lambda status: status == "DownloadingTrainingImage",
            timeout=120,
            what=f"{name} to wait for its runtime",
        )
    sm.stop_training_job(TrainingJobName=names[0])
    stopped = wait(sm, "training", names[0], timeout=60)
    assert stopped["TrainingJobStatus"] == "Stopped" and not gate.exists()
    waiting = sm.describe_training_job(TrainingJobName=names[1])
    assert (waiting["TrainingJobStatus"], waiting["SecondaryStatus"]) == ("InProgress", "DownloadingTrainingImage")
    gate.touch()
    done = wait(sm, "training", names[1])
    assert done["TrainingJobStatus"] == "Completed", done.get("FailureReason")
    logs = "\n".join(log_lines(make_client("logs", server.url), GROUP, names[1]))
    assert "slowpkg 1.0" in logs
