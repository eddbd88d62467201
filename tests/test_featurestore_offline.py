"""Feature Store: the offline store (Parquet in SageMaker's layout) and its crash safety."""

from __future__ import annotations

import io
import sqlite3
import threading
import time

import pyarrow.parquet as pq
import pytest

from support.clients import make_client
from support.featurestore import BUCKET, create_group, ensure_bucket, record
from support.waiting import wait_for

FEATURES = {"id": "String", "et": "String", "n": "Integral", "score": "Fractional"}


def offline_files(s3, uri: str) -> dict[str, bytes]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def offline_rows(s3, uri: str, expected: int, timeout: float = 15.0) -> tuple[dict[str, bytes], list[dict]]:
    """The offline store's files and rows, once at least ``expected`` rows have landed."""

    def landed() -> tuple[dict[str, bytes], list[dict]]:
        files = offline_files(s3, uri)
        return files, [r for body in files.values() for r in pq.read_table(io.BytesIO(body)).to_pylist()]

    return wait_for(
        landed, lambda found: len(found[1]) >= expected, timeout=timeout, interval=0.2, what=f"{expected} rows in {uri}"
    )


@pytest.fixture
def s3(client):
    s3 = client("s3")
    ensure_bucket(s3)
    return s3


def test_offline_parquet_layout_columns_and_deletes(sm, client, s3, unique):
    rt = client("sagemaker-featurestore-runtime")
    name = unique("fgoff")
    d = create_group(sm, name, FEATURES, offline=f"s3://{BUCKET}/fs")
    uri = d["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]
    before = time.time()
    rt.put_record(FeatureGroupName=name, Record=record(id="a", et="2024-03-01T10:15:00Z", n=1, score=0.5))
    rt.put_record(FeatureGroupName=name, Record=record(id="a", et="2024-03-01T09:00:00.250Z", n=2))  # historic
    rt.put_record(FeatureGroupName=name, Record=record(id="b", et="2024-03-02T23:59:59Z", n=3))
    rt.put_record(
        FeatureGroupName=name, Record=record(id="c", et="2024-03-02T23:00:00Z", n=4), TargetStores=["OnlineStore"]
    )  # never offline
    rt.put_record(
        FeatureGroupName=name, Record=record(id="o", et="2024-03-02T23:00:00Z", n=5), TargetStores=["OfflineStore"]
    )  # offline only
    rt.delete_record(FeatureGroupName=name, RecordIdentifierValueAsString="a", EventTime="2024-03-01T11:00:00Z")
    rt.delete_record(
        FeatureGroupName=name,
        RecordIdentifierValueAsString="b",
        EventTime="2024-03-03T00:00:00Z",
        DeletionMode="HardDelete",
    )
    files, rows = offline_rows(s3, uri, 6)
    after = time.time()

    assert "Record" not in rt.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="o")
    partitions = sorted({k[len(uri) - len(f"s3://{BUCKET}/") :].rsplit("/", 1)[0] for k in files})
    assert partitions == [
        "/year=2024/month=03/day=01/hour=09",
        "/year=2024/month=03/day=01/hour=10",
        "/year=2024/month=03/day=01/hour=11",
        "/year=2024/month=03/day=02/hour=23",
        "/year=2024/month=03/day=03/hour=00",
    ]
    for key in files:
        assert key.startswith(f"fs/123456789012/sagemaker/us-east-1/offline-store/{name}-")
        stamp, rest = key.rsplit("/", 1)[1].split("_")
        assert len(stamp) == 16 and stamp.endswith("Z") and len(rest) == len("0123456789abcdef.parquet")
    schema = pq.read_table(io.BytesIO(next(iter(files.values())))).schema
    assert [(f.name, str(f.type)) for f in schema] == [
        ("id", "string"),
        ("et", "string"),
        ("n", "int64"),
        ("score", "double"),
        ("write_time", "timestamp[ms]"),
        ("api_invocation_time", "timestamp[ms]"),
        ("is_deleted", "bool"),
    ]

    by = {(r["id"], r["et"]): r for r in rows}
    assert len(rows) == 6 and ("c", "2024-03-02T23:00:00Z") not in by
    assert by[("a", "2024-03-01T10:15:00Z")]["n"] == 1 and by[("a", "2024-03-01T10:15:00Z")]["score"] == 0.5
    assert by[("a", "2024-03-01T09:00:00.250Z")]["score"] is None
    for marker in (by[("a", "2024-03-01T11:00:00Z")], by[("b", "2024-03-03T00:00:00Z")]):
        assert marker["is_deleted"] is True and marker["n"] is None and marker["score"] is None
    assert sum(r["is_deleted"] for r in rows) == 2
    for r in rows:
        api, written = r["api_invocation_time"].timestamp(), r["write_time"].timestamp()
        assert before - 1 < api <= written < after + 1


def test_iceberg_layout(sm, client, s3, unique):
    rt = client("sagemaker-featurestore-runtime")
    name = unique("fgice")
    d = create_group(sm, name, FEATURES, offline=f"s3://{BUCKET}/ice", table_format="Iceberg")
    assert d["OfflineStoreConfig"]["TableFormat"] == "Iceberg"
    uri = d["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]
    rt.put_record(FeatureGroupName=name, Record=record(id="a", et="2024-03-01T10:15:00Z", n=1))
    files, _rows = offline_rows(s3, uri, 1)
    (key,) = files
    random_prefix, partition, _ = key.split("/data/", 1)[1].split("/")
    assert len(random_prefix) == 8 and partition == "et_trunc=2024-03-01"


def test_acknowledged_writes_survive_sigkill(make_server, client, unique):
    """Kill the server during ingest: every acknowledged record is online and, after restart, offline."""
    srv = make_server("fs-crash").start()
    sm, rt, s3 = (client(s, srv) for s in ("sagemaker", "sagemaker-featurestore-runtime", "s3"))
    ensure_bucket(s3)
    name = unique("fgcrash")
    d = create_group(sm, name, {"id": "String", "et": "Fractional", "v": "Integral"}, offline=f"s3://{BUCKET}/crash")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def ingest(worker: int):
        own = make_client("sagemaker-featurestore-runtime", srv.url, connect_timeout=2, read_timeout=5)
        i = 0
        while not stop.is_set():
            rid = f"w{worker}-{i}"
            try:
                own.put_record(FeatureGroupName=name, Record=record(id=rid, et=1000 + i, v=i))
            except Exception:
                return  # the server is gone: this write was never acknowledged
            with lock:
                acked.append(rid)
            i += 1

    threads = [threading.Thread(target=ingest, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 50, "too few writes before the kill to mean anything"

    srv.start()
    for i in range(0, len(acked), 100):
        batch = rt.batch_get_record(
            Identifiers=[{"FeatureGroupName": name, "RecordIdentifiersValueAsString": acked[i : i + 100]}]
        )
        assert {r["RecordIdentifierValueAsString"] for r in batch["Records"]} == set(acked[i : i + 100])
    _, rows = offline_rows(s3, d["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"], len(acked))
    offline_ids = [r["id"] for r in rows]
    assert set(acked) <= set(offline_ids)
    assert len(offline_ids) == len(set(offline_ids)), "a row was written to the offline store twice"
    assert srv.stopped_cleanly()


def test_shutdown_flushes_the_journal(make_server, client, unique):
    srv = make_server("fs-shutdown").start()
    sm, rt, s3 = (client(s, srv) for s in ("sagemaker", "sagemaker-featurestore-runtime", "s3"))
    ensure_bucket(s3)
    name = unique("fgstop")
    create_group(sm, name, {"id": "String", "et": "Fractional"}, offline=f"s3://{BUCKET}/stop")
    for i in range(20):
        rt.put_record(FeatureGroupName=name, Record=record(id=str(i), et=i))
    assert srv.stopped_cleanly()
    with sqlite3.connect(srv.data_dir / "featurestore" / "featurestore.db") as db:
        assert db.execute("SELECT count(*) FROM offline_journal").fetchone()[0] == 0


def test_unfinished_groups_and_queries_resume_at_start(make_server, client, unique):
    """A server stopped between a Create (or Delete, or StartQueryExecution) and the reconciler's step:
    the next start moves each record on, at once."""
    srv = make_server("fs-resume").start()
    sm, s3, athena = (client(s, srv) for s in ("sagemaker", "s3", "athena"))
    ensure_bucket(s3)
    creating, deleting = unique("fgresumec"), unique("fgresumed")
    for name in (creating, deleting):
        create_group(sm, name, {"id": "String", "et": "Fractional"}, offline=f"s3://{BUCKET}/resume")
    output = f"s3://{BUCKET}/resume-results"
    qid = athena.start_query_execution(
        QueryString="SELECT 42 AS answer", ResultConfiguration={"OutputLocation": output}
    )["QueryExecutionId"]
    assert athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"] == "SUCCEEDED"
    assert srv.stopped_cleanly()

    # As if the server had died right after committing each request, before the reconciler's step.
    queued = "00000000-0000-4000-8000-00000000abcd"
    with sqlite3.connect(srv.data_dir / "metadata.db") as db:
        for name, status in ((creating, "Creating"), (deleting, "Deleting")):
            db.execute(
                "UPDATE resources SET status = ?, data = json_set(data, '$.FeatureGroupStatus', ?) "
                "WHERE kind = 'FeatureGroup' AND name = ?",
                (status, status, name),
            )
        db.execute(
            "INSERT INTO athena_queries (id, account_id, region, state, data) "
            "SELECT ?, account_id, region, 'QUEUED', json_set(data, '$.QueryExecutionId', ?, "
            "'$.Status', json_object('State', 'QUEUED', 'SubmissionDateTime', 1.0), "
            "'$.ResultConfiguration.OutputLocation', ?) FROM athena_queries WHERE id = ?",
            (queued, queued, f"{output}/{queued}.csv", qid),
        )
    srv.start()
    started = time.monotonic()

    def states():
        return (
            athena.get_query_execution(QueryExecutionId=queued)["QueryExecution"]["Status"]["State"],
            sm.describe_feature_group(FeatureGroupName=creating)["FeatureGroupStatus"],
            not sm.list_feature_groups(NameContains=deleting)["FeatureGroupSummaries"],
        )

    wait_for(states, lambda seen: seen == ("SUCCEEDED", "Created", True), timeout=5, interval=0.05)
    assert time.monotonic() - started < 2  # moved by the start-up, not by a sweep seconds later
    rows = athena.get_query_results(QueryExecutionId=queued)["ResultSet"]["Rows"]
    assert [[d.get("VarCharValue") for d in r["Data"]] for r in rows] == [["answer"], ["42"]]
    assert srv.stopped_cleanly()
