"""Shared fixtures: a real SelfMaker server in a subprocess, and real boto3 clients pointed at it.

Every client made through the ``client`` fixture checks each response against
its botocore output shape (tests/conformance.py); a test fails if any did not
conform. Modules marked ``both_databases`` run twice: on the embedded SQLite
and on a throwaway PostgreSQL cluster the session starts (or the server at
SELFMAKER_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import pytest
import urllib.request
from botocore.config import Config

from conformance import ConformanceRecorder


ACCOUNT = "123456789012"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `selfmaker serve` process; start, kill and restart it on the same data."""

    def __init__(self, data_dir: Path, database_url: str | None = None, extra_args: list[str] | None = None,
                 env: dict | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.database_url = database_url
        self.extra_args = extra_args or []
        self.env = env or {}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        args = [sys.executable, "-m", "selfmaker.cli", "serve", "--port", str(self.port),
                "--data-dir", str(self.data_dir), *self.extra_args]
        if self.database_url:
            args += ["--database-url", self.database_url]
        log = open(self.data_dir.parent / f"{self.data_dir.name}-server.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env})
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"selfmaker exited with {self.proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/_selfmaker/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("selfmaker did not become healthy in 30 s")

    def stop(self, sig=signal.SIGTERM) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    @property
    def log_text(self) -> str:
        return (self.data_dir.parent / f"{self.data_dir.name}-server.log").read_text()

    def stopped_cleanly(self) -> bool:
        """SIGTERM ends with a graceful shutdown (uvicorn then re-raises the signal, as servers do)."""
        return self.stop() in (0, -signal.SIGTERM) and self.log_text.rstrip().endswith("SelfMaker stopped cleanly.")

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


# ---------------------------------------------------------------------------
# Databases: SQLite always; PostgreSQL for modules marked `both_databases`.


def pytest_configure(config):
    config.addinivalue_line("markers", "both_databases: run this module's tests on SQLite and on PostgreSQL")
    # Every server of this run shares one job runtimes directory (each image's Python environment is built
    # once per run, never reused across runs).
    if "SELFMAKER_RUNTIMES_DIR" not in os.environ:
        os.environ["SELFMAKER_RUNTIMES_DIR"] = config._selfmaker_runtimes = tempfile.mkdtemp(prefix="selfmaker-rt-")


def pytest_unconfigure(config):
    if getattr(config, "_selfmaker_runtimes", None):
        shutil.rmtree(config._selfmaker_runtimes, ignore_errors=True)


def pytest_generate_tests(metafunc):
    if "database" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_databases") is not None
        metafunc.parametrize("database", ["sqlite", "postgresql"] if both else ["sqlite"], indirect=True,
                             scope="session")


def _find_pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for this test run; its base URL."""
    if url := os.environ.get("SELFMAKER_TEST_POSTGRES_URL"):
        yield url
        return
    bin_dir = _find_pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run must install it")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # Not under pytest's tmp dir: that is private to root, and the server runs as user postgres.
    root = Path(tempfile.mkdtemp(prefix="selfmaker-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    port = free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        root.chmod(0o755)
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(run_as + [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(run_as + [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                             f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(run_as + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def database(request):
    """new_url(name) -> a fresh database URL for a server (None: the server's own SQLite)."""
    if request.param == "sqlite":
        return lambda name: None
    base = request.getfixturevalue("postgres")

    def new_url(name: str) -> str:
        import psycopg

        dbname = f"selfmaker_{name}".lower()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
            conn.execute(f'CREATE DATABASE "{dbname}"')
        return base.rsplit("/", 1)[0] + f"/{dbname}"

    return new_url


@pytest.fixture(scope="session")
def server(tmp_path_factory, database):
    tmp = tmp_path_factory.mktemp("server")
    srv = Server(tmp / "data", database("main")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def make_server(tmp_path_factory, database):
    """Start extra servers (strict auth, restarts). They are stopped at the end of the session."""
    started: list[Server] = []

    def make(name: str, extra_args: list[str] | None = None, env: dict | None = None) -> Server:
        tmp = tmp_path_factory.mktemp(name)
        srv = Server(tmp / "data", database(name), extra_args, env)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def sdk_v2(tmp_path_factory):
    """The SageMaker Python SDK v2 in its own virtual environment (see tests/sdk.py)."""
    from sdk import SDK

    return SDK(tmp_path_factory.mktemp("sdk-v2"), "v2").build()


@pytest.fixture(scope="session")
def sdk_v3(tmp_path_factory):
    """The SageMaker Python SDK v3 in its own virtual environment (see tests/sdk.py)."""
    from sdk import SDK

    return SDK(tmp_path_factory.mktemp("sdk-v3"), "v3").build()


@pytest.fixture
def conformance():
    recorder = ConformanceRecorder()
    yield recorder
    assert not recorder.problems, "responses that do not match their botocore output shape:\n" + "\n".join(
        recorder.problems)


@pytest.fixture
def client(server, conformance):
    """client("sagemaker") -> a boto3 client on the session server, checked for conformance."""

    def make(service: str, srv: Server | None = None, access_key: str = "AKIDEXAMPLE",
             secret_key: str = "secret", region: str = REGION, **config):
        c = boto3.client(
            service, endpoint_url=(srv or server).url, region_name=region,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
        )
        conformance.attach(c)
        return c

    return make


@pytest.fixture
def sm(client):
    return client("sagemaker")


@pytest.fixture
def unique():
    """unique("model") -> a name no other test uses."""
    counter = iter(range(1_000_000))
    stamp = f"{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"

    def make(prefix: str) -> str:
        return f"{prefix}-{stamp}-{next(counter)}"

    return make
