"""The online-store tests of test_featurestore.py again, on a server whose online store is Redis.

A real redis-server is started for the session on a free port (Debian's
redis-server package; .ci/run installs it). Without it the module is
skipped locally and fails in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest
from botocore.exceptions import ClientError
from test_featurestore import *  # noqa: F403  (every online-store test, collected again here)
from test_featurestore import FEATURES

from support.featurestore import create_group, error_of, record
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
    for _ in range(3):  # whichever connection serves each read
        read_both()


# GetRecord and BatchGetRecord run on the event loop, past the worker threads the other operations run on.
# These tests go through a strict server (SigV4, accounts) on Redis, to check that path checks what they do.
A_KEY, A_SECRET, A_ACCOUNT = "AKIAFSACCOUNTA000001", "secret-of-a", "111111111111"
B_KEY, B_SECRET = "AKIAFSACCOUNTB000001", "secret-of-b"
READ_TIMEOUT = 3  # the URL's socket_timeout: how long the loop's reads wait for Redis


@pytest.fixture(scope="module")
def strict_redis(make_server, redis_url, tmp_path_factory):
    credentials = tmp_path_factory.mktemp("fs-auth") / "credentials.ini"
    credentials.write_text(
        f"[{A_KEY}]\nsecret_access_key = {A_SECRET}\naccount_id = {A_ACCOUNT}\n\n"
        f"[{B_KEY}]\nsecret_access_key = {B_SECRET}\naccount_id = 222222222222\n"
    )
    args = ["--auth", "strict", "--credentials-file", str(credentials)]
    return make_server(
        "strict-redis", [*args, "--online-store-url", f"{redis_url}?socket_timeout={READ_TIMEOUT}"]
    ).start()


def test_reads_on_the_event_loop_check_signatures_accounts_and_names(client, strict_redis, unique):
    def as_a(service, **config):
        return client(service, srv=strict_redis, access_key=A_KEY, secret_key=A_SECRET, **config)

    rt_a, rt_b = (
        as_a("sagemaker-featurestore-runtime"),
        client("sagemaker-featurestore-runtime", srv=strict_redis, access_key=B_KEY, secret_key=B_SECRET),
    )
    name = unique("fgloop")
    arn = create_group(as_a("sagemaker"), name, FEATURES, online={"TtlDuration": {"Unit": "Hours", "Value": 1}})[
        "FeatureGroupArn"
    ]
    rt_a.put_record(FeatureGroupName=name, Record=record(id="k", et=f"{time.time():.3f}", n=7, label="x"))

    got = rt_a.get_record(FeatureGroupName=arn, RecordIdentifierValueAsString="k", ExpirationTimeResponse="Enabled")
    assert {f["FeatureName"] for f in got["Record"]} == {"id", "et", "n", "label"} and "ExpiresAt" in got
    only_n = rt_a.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="k", FeatureNames=["n"])
    assert only_n["Record"] == [{"FeatureName": "n", "ValueAsString": "7"}] and "ExpiresAt" not in only_n
    assert "Record" not in rt_a.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="absent")
    assert error_of(
        rt_a.get_record, FeatureGroupName=name, RecordIdentifierValueAsString="k", FeatureNames=["nope"]
    ) == ("ValidationError", 400)
    assert error_of(rt_a.get_record, FeatureGroupName=name + "-none", RecordIdentifierValueAsString="k") == (
        "ResourceNotFound",
        404,
    )
    forged = client("sagemaker-featurestore-runtime", srv=strict_redis, access_key=A_KEY, secret_key="not-a-secret")
    assert error_of(forged.get_record, FeatureGroupName=name, RecordIdentifierValueAsString="k")[1] == 403
    assert (
        error_of(
            forged.batch_get_record, Identifiers=[{"FeatureGroupName": name, "RecordIdentifiersValueAsString": ["k"]}]
        )[1]
        == 403
    )

    # Another account reaches neither the group by its name nor by its ARN, one read or in a batch.
    for group in (name, arn):
        assert error_of(rt_b.get_record, FeatureGroupName=group, RecordIdentifierValueAsString="k") == (
            "ResourceNotFound",
            404,
        )
    batch = rt_b.batch_get_record(Identifiers=[{"FeatureGroupName": name, "RecordIdentifiersValueAsString": ["k"]}])
    assert batch["Records"] == [] and [e["ErrorCode"] for e in batch["Errors"]] == ["ResourceNotFound"]
    batch = rt_a.batch_get_record(
        Identifiers=[
            {"FeatureGroupName": name, "RecordIdentifiersValueAsString": ["k", "absent"], "FeatureNames": ["label"]},
            {"FeatureGroupName": name + "-none", "RecordIdentifiersValueAsString": ["k"]},
        ]
    )
    assert batch["Records"] == [
        {
            "FeatureGroupName": name,
            "RecordIdentifierValueAsString": "k",
            "Record": [{"FeatureName": "label", "ValueAsString": "x"}],
        }
    ]
    assert [(e["FeatureGroupName"], e["ErrorCode"]) for e in batch["Errors"]] == [(name + "-none", "ResourceNotFound")]


def test_a_stalled_redis_holds_only_the_reads_waiting_for_it(client, strict_redis, unique, redis_url):
    """Redis stops answering (CLIENT PAUSE): a GetRecord waits for it at most the read timeout and fails as a
    dropped connection does, while the server answers its other requests; then reads work again."""
    import redis

    def as_a(service):
        return client(
            service, srv=strict_redis, access_key=A_KEY, secret_key=A_SECRET, retries={"total_max_attempts": 1}
        )

    sm, rt = as_a("sagemaker"), as_a("sagemaker-featurestore-runtime")
    name = unique("fgstall")
    create_group(sm, name, FEATURES)
    rt.put_record(FeatureGroupName=name, Record=record(id="k", et=f"{time.time():.3f}", n=1))
    assert rt.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="k")["Record"]

    outcome: list = []
    stalled = threading.Thread(
        target=lambda: outcome.append(error_of(rt.get_record, FeatureGroupName=name, RecordIdentifierValueAsString="k"))
    )
    r = redis.Redis.from_url(redis_url)
    r.client_pause(2 * READ_TIMEOUT * 1000, all=True)  # ends by itself (Redis 7.0 pauses CLIENT UNPAUSE too)
    stalled.start()
    time.sleep(0.5)  # the read is waiting for Redis
    assert sm.describe_feature_group(FeatureGroupName=name)["FeatureGroupStatus"] == "Created"
    assert stalled.is_alive()  # answered while the read still waited
    stalled.join(60)
    assert outcome == [("InternalFailure", 500)]  # as when Redis is unreachable
    wait_for(
        lambda: rt.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="k").get("Record"),
        timeout=60,
        ignore=(ClientError,),
        what="reads to work again once Redis answers",
    )
