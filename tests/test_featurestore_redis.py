"""The online-store tests of test_featurestore.py again, on a server whose online store is Redis.

A real redis-server is started for the session on a free port (Debian's
redis-server package; .ci/run installs it). Without it the module is
skipped locally and fails in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from test_featurestore import *  # noqa: F403  (every online-store test, collected again here)
from test_featurestore import FEATURES

from support.featurestore import create_group, record
from support.server import Server, free_port
from support.waiting import wait_for


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run must install it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    import redis

    def answers() -> bool:
        assert proc.poll() is None, "redis-server exited"
        return redis.Redis(port=port).ping()

    try:
        wait_for(answers, timeout=10, interval=0.05, ignore=(redis.ConnectionError,), what="redis-server to answer")
    except AssertionError:
        proc.kill()
        raise
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url):
    """Overrides the session server for this module: the same server, with its online store in Redis."""
    srv = Server(tmp_path_factory.mktemp("redis-server") / "data", extra_args=["--online-store-url", redis_url])
    srv.start()
    yield srv
    srv.stop()


def test_records_live_in_redis_with_their_expiry(sm, client, unique, redis_url):
    import redis

    rt = client("sagemaker-featurestore-runtime")
    name = unique("fgredis")
    create_group(sm, name, FEATURES, online={"TtlDuration": {"Unit": "Hours", "Value": 1}})
    now = time.time()
    rt.put_record(FeatureGroupName=name, Record=record(id="k", et=f"{now:.3f}", n=1))
    r = redis.Redis.from_url(redis_url)
    (key,) = r.keys(f"sm:fs:*{name.lower()}*:r:k")
    assert r.hget(key, "p") is not None
    assert 3590 * 1000 < r.pttl(key) <= 3600 * 1000
    # The group's deletion removes its records from Redis.
    sm.delete_feature_group(FeatureGroupName=name)
    wait_for(lambda: not r.exists(key), timeout=10, interval=0.05, what=f"{key} to leave Redis")


def test_reads_outlive_redis_dropping_connections_and_scripts(sm, client, unique, redis_url):
    """The reads' own connections are made again when Redis drops them (a restart, an idle timeout), and
    BatchGetRecord's script is loaded again when Redis forgot it (a restart, SCRIPT FLUSH)."""
    import redis

    rt = client("sagemaker-featurestore-runtime", retries={"total_max_attempts": 1})  # a 500 is not retried away
    name = unique("fgredisdrop")
    create_group(sm, name, FEATURES)
    now = time.time()
    for rid in ("a", "b"):
        rt.put_record(FeatureGroupName=name, Record=record(id=rid, et=f"{now:.3f}", n=1))

    def read_both() -> None:
        assert rt.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="a")["Record"]
        got = rt.batch_get_record(
            Identifiers=[{"FeatureGroupName": name, "RecordIdentifiersValueAsString": ["a", "b"]}]
        )
        assert sorted(r["RecordIdentifierValueAsString"] for r in got["Records"]) == ["a", "b"]
        assert got["Errors"] == []

    read_both()
    r = redis.Redis.from_url(redis_url)
    r.script_flush()
    assert r.client_kill_filter(_type="normal", skipme=True) >= 1  # the server's connections
    for _ in range(3):  # whichever worker thread (and so connection) serves each read
        read_both()
