"""The offline store writer: journal rows -> Parquet files in SageMaker's S3 layout.

Glue tables (the default) are partitioned by event time into hourly folders::

    <ResolvedOutputS3Uri>/year=YYYY/month=MM/day=DD/hour=HH/<latest event time>_<16 random>.parquet

Iceberg tables by day, under a random prefix as Iceberg's object-storage layout does::

    <ResolvedOutputS3Uri>/<8 random>/<event time feature>_trunc=YYYY-MM-DD/<latest event time>_<16 random>.parquet

Every file has the group's features (typed from their definitions) plus
write_time, api_invocation_time and is_deleted. See journal.py for why a
crash never loses or duplicates a row.

Files are written as the group's account (``AccountObjects``): a bucket that is
gone or now belongs to another account blocks that group's offline store (its
rows stay journaled) and no other group's.
"""

from __future__ import annotations

import io
import logging
import secrets
import string
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

from ...objects.access import AccountObjects
from ...server.errors import AWSError
from .definitions import Group, parse_group_key
from .journal import Batch, Journal, OfflineRow

log = logging.getLogger("selfmaker.featurestore")

ROWS_PER_FLUSH = 50_000
_ALPHANUMERIC = string.ascii_letters + string.digits


def arrow_schema(group: Group):
    import pyarrow as pa

    scalar = {"Integral": pa.int64(), "Fractional": pa.float64(), "String": pa.string()}
    fields = []
    for f in group.features.values():
        kind = scalar[f.type]
        fields.append(pa.field(f.name, pa.list_(kind) if f.collection else kind))
    fields += [
        pa.field("write_time", pa.timestamp("ms")),
        pa.field("api_invocation_time", pa.timestamp("ms")),
        pa.field("is_deleted", pa.bool_()),
    ]
    return pa.schema(fields)


def parquet_bytes(group: Group, rows: list[OfflineRow], write_time_ms: int) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(
        [
            {
                **r.values,
                "write_time": write_time_ms,
                "api_invocation_time": r.api_invocation_ms,
                "is_deleted": r.is_deleted,
            }
            for r in rows
        ],
        schema=arrow_schema(group),
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="snappy")
    return out.getvalue()


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(n))


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.rstrip("/")


def object_key(group: Group, event_time: float, latest_event_time: float) -> tuple[str, str]:
    """(bucket, key) of a new file holding rows of ``event_time``'s partition."""
    bucket, prefix = split_uri(group.offline_uri)
    moment = datetime.fromtimestamp(event_time, tz=UTC)
    name = f"{datetime.fromtimestamp(latest_event_time, tz=UTC):%Y%m%dT%H%M%SZ}_{_random(16)}.parquet"
    if group.table_format == "Iceberg":
        partition = f"{_random(8)}/{group.event_time_name}_trunc={moment:%Y-%m-%d}"
    else:
        partition = f"year={moment:%Y}/month={moment:%m}/day={moment:%d}/hour={moment:%H}"
    return bucket, f"{prefix}/{partition}/{name}"


def _partition(group: Group, event_time: float) -> str:
    moment = datetime.fromtimestamp(event_time, tz=UTC)
    return f"{moment:%Y-%m-%d}" if group.table_format == "Iceberg" else f"{moment:%Y-%m-%dT%H}"


class OfflineWriteFailed(AWSError):
    """Some groups' files could not be written: ``failures`` maps each group key to why.

    Its code and message are the first failure's, as the object store gave them.
    """

    def __init__(self, failures: dict[str, AWSError], buckets: dict[str, str]):
        first = next(iter(failures.values()))
        super().__init__(first.code, first.message, first.status)
        self.failures = {grp: f"Cannot write to s3://{buckets[grp]}: {err.message}" for grp, err in failures.items()}


class OfflineWriter:
    def __init__(self, backends, journal: Journal):
        self.backends = backends
        self.journal = journal
        self._lock = threading.Lock()  # the worker and Athena (reading its own writes) may flush at once

    def group_for(self, grp: str) -> Group | None:
        """The group incarnation a journal key names (deleted groups flush before they go)."""
        account_id, region, name, _created = parse_group_key(grp)
        record = self.backends.resources.get(account_id, region, "FeatureGroup", name=name)
        if record is None:
            return None
        group = Group.from_data(account_id, region, record.data, record.status)
        return group if group.key == grp else None

    def flush(self, grp: str | None = None) -> int:
        """Write every pending row (of one group, or all) to the offline store; how many rows were written.

        Raises OfflineWriteFailed, once every other group is written, if the object store refuses a
        group's file; that group's rows stay journaled and are retried by the next flush.
        """
        written = 0
        failures: dict[str, AWSError] = {}
        buckets: dict[str, str] = {}
        with self._lock:
            while True:
                self._assign(grp)
                batches = [b for b in self.journal.batches(grp) if b.grp not in failures]
                if not batches:
                    break
                for batch in batches:
                    if batch.grp in failures:
                        continue
                    try:
                        written += self._write(batch)
                    except AWSError as err:
                        failures[batch.grp], buckets[batch.grp] = err, batch.bucket
        if failures:
            raise OfflineWriteFailed(failures, buckets)
        return written

    def _assign(self, grp: str | None) -> None:
        pending = self.journal.unassigned(ROWS_PER_FLUSH, grp)
        if not pending:
            return
        by_file: dict[tuple[str, str], list[tuple[int, OfflineRow]]] = defaultdict(list)
        groups: dict[str, Group | None] = {}
        for seq, g, row in pending:
            if g not in groups:
                groups[g] = self.group_for(g)
            group = groups[g]
            if group is None or not group.offline_uri:
                log.error("offline journal row %s belongs to no feature group (%s); it is kept", seq, g)
                continue
            by_file[(g, _partition(group, row.event_time))].append((seq, row))
        write_time_ms = int(time.time() * 1000)
        batches = []
        for (g, _), items in by_file.items():
            rows = [row for _, row in items]
            bucket, key = object_key(groups[g], rows[0].event_time, max(r.event_time for r in rows))
            batches.append(
                Batch(f"{write_time_ms:013d}-{_random(8)}", g, bucket, key, write_time_ms, [seq for seq, _ in items])
            )
        self.journal.assign(batches)

    def _write(self, batch: Batch) -> int:
        group = self.group_for(batch.grp)
        rows = self.journal.batch_rows(batch.batch)
        if group is None:
            raise AWSError("InternalFailure", f"offline batch {batch.batch} belongs to no feature group")
        if self.backends.objects is None:
            raise AWSError("ServiceUnavailable", "no object store is configured for the offline store")
        objects = AccountObjects.of(self.backends, group.account_id)
        objects.put_object(batch.bucket, batch.key, parquet_bytes(group, rows, batch.write_time_ms))
        self.journal.complete(batch.batch)
        return len(rows)
