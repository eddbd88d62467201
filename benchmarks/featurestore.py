"""Feature store: SelfMaker's online store against Feast's feature server, side by side in one run.

    python benchmarks/featurestore.py --feast-python /path/to/venv-with-feast/bin/python

Both serve the same 50 features (1 entity key + 50 Fractional/Integral values)
for the same entities over HTTP on loopback, one server process each:
SelfMaker with its embedded online store (GetRecord / PutRecord, signed by
botocore exactly as boto3 sends them), Feast's Python feature server with its
SQLite online store (POST /get-online-features, POST /write-to-online-store).
Requests are built once and replayed (benchmarks/_common.py), so the client
is not what is measured. Reported: GetRecord p50/p99 from one sequential
connection, read and write throughput from several connections.

``--storage`` adds the in-process measurement that chose the embedded online
store (docs/featurestore.md): one record of 50 features read from the
feature store's own SQLite file, from the metadata database through
SQLAlchemy, and from a Python dict.

Feast is installed in its own virtual environment (pip install feast); it is
not a dependency of SelfMaker and the test suite never needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from _common import (
    PreparedRequest,
    ServerProcess,
    fetch,
    free_port,
    log,
    machine,
    replay,
    selfmaker_server,
    sign_requests,
    table,
)

FEATURES = 50
GROUP = "bench-fg"


def feature_names() -> list[str]:
    return [f"f{i:02d}" for i in range(FEATURES)]


def values(entity: int) -> dict[str, float | int]:
    rng = random.Random(entity)
    return {
        name: (rng.randint(0, 10**6) if i % 2 else round(rng.random() * 1000, 6))
        for i, name in enumerate(feature_names())
    }


# ---------------------------------------------------------------------------
# SelfMaker


def start_selfmaker(workdir: Path) -> ServerProcess:
    return selfmaker_server(workdir / "sm", workdir / "selfmaker.log").start()


def selfmaker_setup(server: ServerProcess) -> None:
    sm = boto3.client(
        "sagemaker", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    definitions = [
        {"FeatureName": "customer_id", "FeatureType": "String"},
        {"FeatureName": "event_time", "FeatureType": "Fractional"},
    ]
    definitions += [
        {"FeatureName": n, "FeatureType": "Integral" if i % 2 else "Fractional"} for i, n in enumerate(feature_names())
    ]
    sm.create_feature_group(
        FeatureGroupName=GROUP,
        RecordIdentifierFeatureName="customer_id",
        EventTimeFeatureName="event_time",
        FeatureDefinitions=definitions,
        OnlineStoreConfig={"EnableOnlineStore": True},
    )
    while sm.describe_feature_group(FeatureGroupName=GROUP)["FeatureGroupStatus"] == "Creating":
        time.sleep(0.05)


def selfmaker_puts(server: ServerProcess, entities: range) -> list[PreparedRequest]:
    now = time.time()
    calls = []
    for e in entities:
        record = [
            {"FeatureName": "customer_id", "ValueAsString": f"c{e}"},
            {"FeatureName": "event_time", "ValueAsString": f"{now:.3f}"},
        ]
        record += [{"FeatureName": k, "ValueAsString": str(v)} for k, v in values(e).items()]
        calls.append(("PutRecord", {"FeatureGroupName": GROUP, "Record": record}))
    return sign_requests(server.url, "sagemaker-featurestore-runtime", calls)


def selfmaker_gets(server: ServerProcess, entities: list[int]) -> list[PreparedRequest]:
    return sign_requests(
        server.url,
        "sagemaker-featurestore-runtime",
        [("GetRecord", {"FeatureGroupName": GROUP, "RecordIdentifierValueAsString": f"c{e}"}) for e in entities],
    )


# ---------------------------------------------------------------------------
# Feast

FEAST_REPO = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64, Int64

customer = Entity(name="customer_id", join_keys=["customer_id"])
source = FileSource(path="{path}", timestamp_field="event_timestamp")
FEATURES = {names!r}
bench = FeatureView(
    name="bench", entities=[customer], ttl=timedelta(0), online=True, source=source,
    schema=[Field(name=n, dtype=Int64 if i % 2 else Float64) for i, n in enumerate(FEATURES)],
)
"""

FEAST_SETUP = """
import json, sys
import pandas as pd
from feast import FeatureStore

store = FeatureStore(repo_path=sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
store.apply([obj for obj in __import__("definitions").__dict__.values()
             if type(obj).__name__ in ("Entity", "FeatureView")])
store.write_to_online_store("bench", frame)
print(json.dumps({"rows": len(frame)}))
"""


def feast_repo(workdir: Path, feast_python: str, entities: range) -> Path:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = workdir / "feast_repo"
    repo.mkdir()
    now = dt.datetime.now(dt.UTC)
    rows = [{"customer_id": f"c{e}", "event_timestamp": now, **values(e)} for e in entities]
    pq.write_table(pa.Table.from_pylist(rows), repo / "data.parquet")
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(f"""\
        project: bench
        registry: {repo / "registry.db"}
        provider: local
        online_store:
          type: sqlite
          path: {repo / "online.db"}
        offline_store:
          type: file
        entity_key_serialization_version: 3
        """)
    )
    (repo / "definitions.py").write_text(FEAST_REPO.format(path=repo / "data.parquet", names=feature_names()))
    (repo / "setup_store.py").write_text(FEAST_SETUP)
    subprocess.run(
        [feast_python, str(repo / "setup_store.py"), str(repo), str(repo / "data.parquet")],
        cwd=repo,
        check=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
        timeout=600,
    )
    return repo


def start_feast(workdir: Path, feast_python: str, repo: Path) -> ServerProcess:
    port = free_port()
    feast = str(Path(feast_python).with_name("feast"))
    argv = [feast, "-c", str(repo), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    return ServerProcess("feast", argv, port, "/health", workdir / "feast.log").start(timeout=120)


def _http(port: int, path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def feast_gets(server: ServerProcess, entities: list[int]) -> list[PreparedRequest]:
    features = [f"bench:{n}" for n in feature_names()]
    return [
        PreparedRequest(
            "get-online-features",
            _http(server.port, "/get-online-features", {"features": features, "entities": {"customer_id": [f"c{e}"]}}),
        )
        for e in entities
    ]


def feast_puts(server: ServerProcess, entities: range) -> list[PreparedRequest]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    requests = []
    for e in entities:
        row = {"customer_id": [f"c{e}"], "event_timestamp": [now], **{k: [v] for k, v in values(e).items()}}
        requests.append(
            PreparedRequest(
                "write-to-online-store",
                _http(server.port, "/write-to-online-store", {"feature_view_name": "bench", "df": row}),
            )
        )
    return requests


# ---------------------------------------------------------------------------
# The embedded store's candidates, in process


def storage_candidates(records: int = 10_000, reads: int = 20_000) -> list[list]:
    """Read latency of one 50-feature record from each place the embedded online store could live."""
    from sqlalchemy import Column, LargeBinary, MetaData, String, Table, select

    from selfmaker.services.featurestore.localdb import LocalDB
    from selfmaker.services.featurestore.online.base import Change
    from selfmaker.services.featurestore.online.embedded import EmbeddedOnlineStore
    from selfmaker.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="fs-storage-"))
    payloads = {
        f"c{e}": json.dumps([{"FeatureName": k, "ValueAsString": str(v)} for k, v in values(e).items()]).encode()
        for e in range(records)
    }
    keys = list(payloads)
    order = [random.choice(keys) for _ in range(reads)]

    def timed(get) -> tuple[float, float]:
        samples = []
        for key in order:
            start = time.perf_counter_ns()
            json.loads(get(key))
            samples.append(time.perf_counter_ns() - start)
        samples.sort()
        return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000

    rows = []
    db = LocalDB(tmp / "featurestore.db")
    own = EmbeddedOnlineStore(db)
    for key, payload in payloads.items():
        own.write("g", Change("put", key, 1.0, payload), [], time.time())
    rows.append(["own SQLite WAL file (chosen)", *timed(lambda k: own.get("g", k, time.time()).payload)])

    store = Store(f"sqlite:///{tmp / 'metadata.db'}")
    table_ = Table("online_bench", MetaData(), Column("rid", String, primary_key=True), Column("payload", LargeBinary))
    table_.create(store.engine)
    with store.write() as conn:
        conn.execute(table_.insert(), [{"rid": k, "payload": p} for k, p in payloads.items()])

    def via_sqlalchemy(key):
        with store.read() as conn:
            return conn.execute(select(table_.c.payload).where(table_.c.rid == key)).scalar_one()

    rows.append(["metadata DB via SQLAlchemy", *timed(via_sqlalchemy)])
    memory = dict(payloads)
    rows.append(["in-memory dict (+ a log to be durable)", *timed(memory.__getitem__)])
    return rows


# ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feast-python", help="python of a virtual environment with feast installed")
    parser.add_argument("--entities", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per read measurement")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--storage", action="store_true", help="also measure the embedded store's candidates")
    args = parser.parse_args()
    print(f"machine: {json.dumps(machine())}\n")
    if args.storage:
        print(
            table(
                ["where the record lives", "p50 µs", "p99 µs"],
                storage_candidates(),
                title="GetRecord storage read, 1 entity x 50 features, in process (json decode included)",
            )
        )
        print()

    entities = range(args.entities)
    sample = [random.randrange(args.entities) for _ in range(2000)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
        workdir = Path(tmp)
        servers = []
        selfmaker = start_selfmaker(workdir)
        servers.append(selfmaker)
        try:
            selfmaker_setup(selfmaker)
            puts = selfmaker_puts(selfmaker, entities)
            write = replay(selfmaker, puts, label="PutRecord", concurrency=args.concurrency)
            gets = selfmaker_gets(selfmaker, sample)
            status, body = fetch(selfmaker, gets[0])
            assert status == 200 and len(body["Record"]) == FEATURES + 2, (status, body)
            seq = replay(selfmaker, gets, label="GetRecord", concurrency=1, duration=args.duration)
            par = replay(selfmaker, gets, label="GetRecord", concurrency=args.concurrency, duration=args.duration)
            rows.append(
                [
                    "SelfMaker (embedded)",
                    seq.percentile_ms(50),
                    seq.percentile_ms(99),
                    seq.throughput,
                    par.throughput,
                    write.throughput,
                ]
            )
            log(f"selfmaker: {rows[-1]}")
        finally:
            selfmaker.stop()
        if args.feast_python:
            repo = feast_repo(workdir, args.feast_python, entities)
            feast = start_feast(workdir, args.feast_python, repo)
            try:
                gets = feast_gets(feast, sample)
                status, body = fetch(feast, gets[0])
                assert status == 200 and len(body["metadata"]["feature_names"]) == FEATURES + 1, (status, body)
                seq = replay(feast, gets, label="get-online-features", concurrency=1, duration=args.duration)
                par = replay(
                    feast, gets, label="get-online-features", concurrency=args.concurrency, duration=args.duration
                )
                write = replay(
                    feast, feast_puts(feast, entities), label="write-to-online-store", concurrency=args.concurrency
                )
                rows.append(
                    [
                        "Feast (SQLite online store)",
                        seq.percentile_ms(50),
                        seq.percentile_ms(99),
                        seq.throughput,
                        par.throughput,
                        write.throughput,
                    ]
                )
                log(f"feast: {rows[-1]}")
            finally:
                feast.stop()
    print(
        table(
            [
                "server",
                "get p50 ms",
                "get p99 ms",
                "get req/s (1 conn)",
                f"get req/s ({args.concurrency} conns)",
                f"put req/s ({args.concurrency} conns)",
            ],
            rows,
            title=f"Online store over HTTP: 1 entity x {FEATURES} features, {args.entities} entities",
        )
    )
    if len(rows) == 2:
        ours, theirs = rows
        print(
            f"\nratios (SelfMaker / Feast): get p99 {ours[2] / theirs[2]:.2f}x, get throughput "
            f"{ours[4] / theirs[4]:.2f}x, put throughput {ours[5] / theirs[5]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
