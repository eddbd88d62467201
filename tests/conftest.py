"""Shared fixtures: a real SelfMaker server in a subprocess, and real boto3 clients pointed at it.

Every botocore client this test process makes is checked: each JSON answer against its botocore output shape
(support/conformance.py), and a test fails if any answer it (or its fixtures) received did not conform.
``client`` / ``sm`` make clients for one test, ``module_client`` for module-scoped fixtures; other clients come
from support.clients.make_client. Helpers live in tests/support/ (``from support.jobs import wait``).
Modules marked ``both_databases`` run twice: on the embedded SQLite and on a throwaway PostgreSQL cluster
the session starts (or the server at SELFMAKER_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from support.clients import make_client
from support.conformance import RECORDER, check_every_client
from support.server import ACCOUNT, REGION, Server, free_port  # noqa: F401  (tests used to import them from here)

# ---------------------------------------------------------------------------
# Databases: SQLite always; PostgreSQL for modules marked `both_databases`.


def pytest_configure(config):
    check_every_client(RECORDER)
    config.addinivalue_line("markers", "both_databases: run this module's tests on SQLite and on PostgreSQL")
    config.addinivalue_line(
        "markers", "ray: starts a Ray cluster on this machine (tests/test_ray.py); skipped without Ray, run in CI"
    )
    config.addinivalue_line(
        "markers", "browser: drives headless Chromium (support/browser.py); skipped without it, failed in CI"
    )
    config.addinivalue_line(
        "markers", "end_to_end: runs user-facing scripts whole (tests/test_examples.py; minutes, not seconds)"
    )
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
        metafunc.parametrize(
            "database", ["sqlite", "postgresql"] if both else ["sqlite"], indirect=True, scope="session"
        )


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
    subprocess.run(
        run_as + [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        run_as
        + [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
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
    from support.sdk import SDK

    return SDK(tmp_path_factory.mktemp("sdk-v2"), "v2").build()


@pytest.fixture(scope="session")
def sdk_v3(tmp_path_factory):
    """The SageMaker Python SDK v3 in its own virtual environment (see tests/sdk.py)."""
    from support.sdk import SDK

    return SDK(tmp_path_factory.mktemp("sdk-v3"), "v3").build()


@pytest.fixture(autouse=True)
def conformance():
    """After every test: no answer it or its fixtures received broke its botocore output shape."""
    yield RECORDER
    problems = RECORDER.drain()
    assert not problems, "responses that do not match their botocore output shape:\n" + "\n".join(problems)


@pytest.fixture(scope="session", autouse=True)
def _conformance_of_teardowns():
    """Answers received after the last test (module and session fixture teardowns) are checked too."""
    yield
    problems = RECORDER.drain()
    assert not problems, "responses that do not match their botocore output shape:\n" + "\n".join(problems)


def _client_factory(server: Server):
    def make(
        service: str,
        srv: Server | None = None,
        access_key: str = "AKIDEXAMPLE",
        secret_key: str = "secret",
        region: str = REGION,
        **config,
    ):
        return make_client(
            service, (srv or server).url, access_key=access_key, secret_key=secret_key, region=region, **config
        )

    return make


@pytest.fixture
def client(server):
    """client("sagemaker"[, srv, access_key=, secret_key=, region=, **Config options]) -> a checked boto3 client
    on the session server (or ``srv``)."""
    return _client_factory(server)


@pytest.fixture(scope="module")
def module_client(server):
    """``client`` for module-scoped fixtures."""
    return _client_factory(server)


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
