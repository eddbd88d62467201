"""Feature store: SelfMaker's online store against Feast's feature server, side by side in one run.

    python benchmarks/featurestore.py [--venvs DIR | --feast-python PY] [--stores embedded redis] [--storage]

Both serve the same 50 features (1 entity key + 50 Fractional/Integral values)
for the same entities over HTTP on loopback, one server process each, on two
kinds of online store:

* ``embedded``: SelfMaker with its embedded online store, Feast with its SQLite
  online store;
* ``redis``: both on one local ``redis-server`` (Feast's recommended production
  online store): SelfMaker started with ``--online-store-url redis://...``,
  Feast with ``online_store: {type: redis}``.

SelfMaker gets GetRecord / BatchGetRecord / PutRecord, signed by botocore
exactly as boto3 sends them; Feast's Python feature server (``feast serve``,
its default of one worker) gets POST /get-online-features (one entity, or 100
in one request) and POST /write-to-online-store. Requests are built once and
replayed (benchmarks/_common.py), so the client is not what is measured; each
kind of measurement runs on every server in turn, so a busy moment of the
machine hits them alike. Reported: one-entity p50/p99 from one sequential
connection, read throughput from one and several connections, the batch of
100 entities' p50/p99 from one connection, write throughput, and the CPU the
server's processes spent per read (on a machine whose other work queues the
server for the CPU, latency is mostly that queue; the CPU per request is not).

``--storage`` adds the in-process measurement that chose the embedded online
store (docs/featurestore.md): one record of 50 features read from the
feature store's own SQLite file, from the metadata database through
SQLAlchemy, and from a Python dict.

Feast is installed in its own throwaway virtual environment (FEAST_PACKAGES);
it is not a dependency of SelfMaker and the test suite never needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from _common import (
    HOST,
    PreparedRequest,
    ServerProcess,
    fetch,
    free_port,
    installed_version,
    load_average,
    log,
    machine,
    peer_venv,
    replay,
    selfmaker_server,
    sign_requests,
    table,
)

FEATURES = 50
GROUP = "bench-fg"
BATCH = 100  # entities per batch read (BatchGetRecord's most)
FEAST_PACKAGES = ["feast[redis]==0.67.0"]


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


def start_selfmaker(workdir: Path, redis_url: str | None) -> ServerProcess:
    flags = ["--online-store-url", redis_url] if redis_url else []
    name = "sm-redis" if redis_url else "sm"
    return selfmaker_server(workdir / name, workdir / f"{name}.log", *flags).start()


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


def selfmaker_batches(server: ServerProcess, batches: list[list[int]]) -> list[PreparedRequest]:
    calls = [
        (
            "BatchGetRecord",
            {"Identifiers": [{"FeatureGroupName": GROUP, "RecordIdentifiersValueAsString": [f"c{e}" for e in b]}]},
        )
        for b in batches
    ]
    return sign_requests(server.url, "sagemaker-featurestore-runtime", calls)


# ---------------------------------------------------------------------------
# Redis


def start_redis(workdir: Path) -> tuple[subprocess.Popen, int]:
    """A private redis-server on a free port, persistence off (both stores serve from memory alike)."""
    port = free_port()
    argv = ["redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("redis-server did not answer PING within 30 s")


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


def feast_repo(workdir: Path, feast_python: str, entities: range, redis_port: int | None) -> Path:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = workdir / ("feast_redis" if redis_port else "feast_repo")
    repo.mkdir()
    now = dt.datetime.now(dt.UTC)
    rows = [{"customer_id": f"c{e}", "event_timestamp": now, **values(e)} for e in entities]
    pq.write_table(pa.Table.from_pylist(rows), repo / "data.parquet")
    online = (
        f"type: redis\n          connection_string: {HOST}:{redis_port}"
        if redis_port
        else f"type: sqlite\n          path: {repo / 'online.db'}"
    )
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(f"""\
        project: bench
        registry: {repo / "registry.db"}
        provider: local
        online_store:
          {online}
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
    return ServerProcess("feast", argv, port, "/health", workdir / f"{repo.name}.log").start(timeout=240)


def feast_batches(server: ServerProcess, batches: list[list[int]]) -> list[PreparedRequest]:
    features = [f"bench:{n}" for n in feature_names()]
    return [
        PreparedRequest(
            "get-online-features",
            _http(
                server.port,
                "/get-online-features",
                {"features": features, "entities": {"customer_id": [f"c{e}" for e in b]}},
            ),
        )
        for b in batches
    ]


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


@dataclass
class Contender:
    label: str
    server: ServerProcess
    gets: list[PreparedRequest]
    batches: list[PreparedRequest]
    puts: list[PreparedRequest]
    row: dict = field(default_factory=dict)


def start_contenders(
    args, feast_python: str, workdir: Path, entities: range, sample: list[int], batches: list[list[int]]
):
    """Every process the chosen ``--stores`` need, as started, then the Contenders (SelfMaker's, then Feast's)."""
    redis_port = None
    for store in args.stores:
        if store == "redis":
            redis, redis_port = start_redis(workdir)
            yield redis
        url = f"redis://{HOST}:{redis_port}/0" if store == "redis" else None
        selfmaker = start_selfmaker(workdir, url)
        yield selfmaker
        selfmaker_setup(selfmaker)
        # Every entity is written once (measured), and so is in the store before anything reads it.
        ours = Contender(
            f"SelfMaker ({'Redis' if url else 'embedded'})",
            selfmaker,
            selfmaker_gets(selfmaker, sample),
            selfmaker_batches(selfmaker, batches),
            selfmaker_puts(selfmaker, entities),
        )
        repo = feast_repo(workdir, feast_python, entities, redis_port if url else None)
        feast = start_feast(workdir, feast_python, repo)
        yield feast
        theirs = Contender(
            f"Feast ({'Redis' if url else 'SQLite'})",
            feast,
            feast_gets(feast, sample),
            feast_batches(feast, batches),
            feast_puts(feast, entities),
        )
        yield ours
        yield theirs


def check(contender: Contender) -> None:
    """One answer of each read carries every feature: a server that answered less would be measured doing less."""
    status, body = fetch(contender.server, contender.gets[0])
    one = len(body.get("Record") or body.get("metadata", {}).get("feature_names", []))
    status_b, batch = fetch(contender.server, contender.batches[0])
    if "Records" in batch:
        many = len(batch["Records"])
    else:  # Feast: one column per feature, one value per entity
        many = len(batch["results"][1]["values"]) if batch.get("results") else 0
    if status != 200 or one != FEATURES + 1 + ("Record" in body) or status_b != 200 or many != BATCH:
        raise RuntimeError(f"{contender.label}: {status} {str(body)[:200]} / {status_b} {str(batch)[:200]}")


def cpu_per_request_ms(result) -> float:
    """The server processes' CPU per request (not Redis's); unknown (NaN) when a process of theirs ended
    during the run (gunicorn recycles Feast's workers), which makes the difference meaningless."""
    cpu = result.server_cpu_seconds
    return cpu / result.count * 1000 if cpu >= 0 and result.count else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feast-python", help="python of a virtual environment with feast[redis] installed")
    parser.add_argument("--venvs", type=Path, help="keep Feast's virtual environment here (default: a fresh one)")
    parser.add_argument("--stores", nargs="+", choices=["embedded", "redis"], default=["redis", "embedded"])
    parser.add_argument("--entities", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per read measurement")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--storage", action="store_true", help="also measure the embedded store's candidates")
    args = parser.parse_args()
    load_before = load_average()
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
    batches = [random.sample(entities, BATCH) for _ in range(50)]
    with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
        workdir = Path(tmp)
        processes: list = []
        contenders: list[Contender] = []
        try:
            feast_python = args.feast_python or str(
                peer_venv("feast", FEAST_PACKAGES, args.venvs or workdir / "venvs") / "python"
            )
            feast_version = installed_version(Path(feast_python).parent, "feast")
            for started in start_contenders(args, feast_python, workdir, entities, sample, batches):
                (contenders if isinstance(started, Contender) else processes).append(started)
            conc = args.concurrency
            for c in contenders:  # writes first: they are what fills SelfMaker's store
                c.row["put"] = replay(c.server, c.puts, label="put", concurrency=conc).throughput
                check(c)
            for c in contenders:
                seq = replay(c.server, c.gets, label="get", concurrency=1, duration=args.duration)
                c.row.update(p50=seq.percentile_ms(50), p99=seq.percentile_ms(99), seq=seq.throughput)
                c.row["cpu"] = cpu_per_request_ms(seq)
            for c in contenders:
                c.row["par"] = replay(
                    c.server, c.gets, label="get", concurrency=conc, duration=args.duration
                ).throughput
            for c in contenders:
                batch = replay(c.server, c.batches, label="batch", concurrency=1, duration=args.duration)
                c.row.update(bp50=batch.percentile_ms(50), bp99=batch.percentile_ms(99))
                c.row["bcpu"] = cpu_per_request_ms(batch)
                log(f"{c.label}: {c.row} (load average {load_average()})")
        finally:
            for process in reversed(processes):
                if isinstance(process, ServerProcess):
                    process.stop()
                else:
                    process.terminate()
                    process.wait(10)
    print(f"load average (1, 5, 15 min): {load_before} before, {load_average()} after; Feast {feast_version}")
    print(
        table(
            [
                "server",
                "get p50 ms",
                "get p99 ms",
                "get server CPU ms",
                "get req/s (1 conn)",
                f"get req/s ({conc} conns)",
                f"batch of {BATCH} p50 ms",
                "p99 ms",
                "server CPU ms",
                f"put req/s ({conc} conns)",
            ],
            [
                [
                    c.label,
                    c.row["p50"],
                    c.row["p99"],
                    c.row["cpu"],
                    c.row["seq"],
                    c.row["par"],
                    c.row["bp50"],
                    c.row["bp99"],
                    c.row["bcpu"],
                    c.row["put"],
                ]
                for c in contenders
            ],
            title=f"Online store over HTTP: 1 entity x {FEATURES} features, {args.entities} entities",
        )
    )
    for ours, theirs in zip(contenders[::2], contenders[1::2]):
        print(
            f"{ours.label} / {theirs.label}: get req/s {ours.row['seq'] / theirs.row['seq']:.2f}x (1 conn), "
            f"{ours.row['par'] / theirs.row['par']:.2f}x ({conc} conns); batch p50 "
            f"{ours.row['bp50'] / theirs.row['bp50']:.2f}x; put {ours.row['put'] / theirs.row['put']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
