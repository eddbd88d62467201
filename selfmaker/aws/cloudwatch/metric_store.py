"""CloudWatch metric data: recorded in memory on the request path, flushed to the store every second.

The endpoint router calls :func:`record` once per inference request, so it does no I/O:
it folds the value into a statistic set (sample count, sum, minimum, maximum, and the
distribution of the values that percentiles are read from: :mod:`.distribution`) for its
(metric, unit, second) under a lock. A background worker writes the sets to the store
every second (and on shutdown), so a restart loses at most the last second of them.
Queries read the store and the sets not yet written, so a value is visible at once.

A metric is (account, region, namespace, name, dimensions): its :data:`SeriesKey`.
Everything a CloudWatch API reads is aggregated here (:func:`aggregate`); the all-time
totals per metric and unit feed the Prometheus exposition (:class:`CloudWatchCollector`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import defaultdict

from prometheus_client.core import Metric
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ...backends import background_worker
from ...engines.leases import leases
from ...engines.periodic import Periodic
from ...observability import scrape_collector
from ...store import schema
from . import distribution

log = logging.getLogger("selfmaker.metrics")

MT, DP = schema.cw_metrics, schema.cw_datapoints
FLUSH_SECONDS = 1.0

# (account, region, namespace, metric name, ((dimension name, value), ...) sorted by name)
SeriesKey = tuple[str, str, str, str, tuple[tuple[str, str], ...]]
# [sample count, sum, minimum, maximum, distribution (None: only statistic sets were sent, no percentiles)]
StatSet = list


def one_value(value: float) -> StatSet:
    return [1.0, value, value, value, {distribution.bucket(value): 1.0}]


def series_key(account_id: str, region: str, namespace: str, name: str, dimensions: dict[str, str]) -> SeriesKey:
    return account_id, region, namespace, name, tuple(sorted(dimensions.items()))


def merge(into: StatSet, other: StatSet) -> None:
    """Fold the statistic set ``other`` into ``into``."""
    into[0] += other[0]
    into[1] += other[1]
    into[2] = min(into[2], other[2])
    into[3] = max(into[3], other[3])
    into[4] = None if into[4] is None or other[4] is None else distribution.merge(into[4], other[4])


# -- recording ----------------------------------------------------------------------


class MetricBuffer:
    """Statistic sets per (series, unit, second) not yet in the store.

    ``pending`` takes new values; a flush moves them to ``flushing`` while it writes,
    and queries read both, so no value is invisible between the two.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[SeriesKey, str, int], StatSet] = {}
        self._flushing: dict[tuple[SeriesKey, str, int], StatSet] = {}

    def add(self, series: SeriesKey, unit: str, second: int, stats: StatSet) -> None:
        key = (series, unit, second)
        with self._lock:
            current = self._pending.get(key)
            if current is None:
                self._pending[key] = stats
            else:
                merge(current, stats)

    def add_value(self, series: SeriesKey, unit: str, second: int, value: float) -> None:
        """``add`` for one value, inlined: the router calls it several times per request."""
        key = (series, unit, second)
        bucket = distribution.bucket(value)
        with self._lock:
            current = self._pending.get(key)
            if current is None:
                self._pending[key] = [1.0, value, value, value, {bucket: 1.0}]
                return
            current[0] += 1.0
            current[1] += value
            if value < current[2]:
                current[2] = value
            elif value > current[3]:
                current[3] = value
            if current[4] is not None:
                current[4][bucket] = current[4].get(bucket, 0.0) + 1.0

    def begin_flush(self) -> dict:
        with self._lock:
            self._flushing, self._pending = self._pending, {}
            return self._flushing

    def end_flush(self, written: bool) -> None:
        with self._lock:
            if not written:  # keep them for the next flush
                for key, stats in self._flushing.items():
                    if key in self._pending:
                        merge(self._pending[key], stats)
                    else:
                        self._pending[key] = stats
            self._flushing = {}

    def unflushed(self) -> list[tuple[tuple[SeriesKey, str, int], StatSet]]:
        with self._lock:
            return [(k, copy(v)) for k, v in (*self._flushing.items(), *self._pending.items())]


def copy(stats: StatSet) -> StatSet:
    return [*stats[:4], None if stats[4] is None else dict(stats[4])]


def buffer(backends) -> MetricBuffer:
    return backends.shared("metric_store.buffer", MetricBuffer)


def record(
    backends,
    account_id: str,
    region: str,
    namespace: str,
    metric_name: str,
    dimensions: dict[str, str],
    value: float,
    unit: str,
) -> None:
    """Add one value of a metric at the current second. No I/O: safe on any request path."""
    buffer(backends).add_value(
        (account_id, region, namespace, metric_name, tuple(sorted(dimensions.items()))),
        unit,
        int(time.time()),
        float(value),
    )


# -- writing ------------------------------------------------------------------------


def _dimensions_digest(dimensions: tuple[tuple[str, str], ...]) -> str:
    return hashlib.sha256(json.dumps(dimensions, separators=(",", ":")).encode()).hexdigest()


def _metric_id(conn, series: SeriesKey) -> int:
    """The metric's row id, creating the row if needed (safe against concurrent writers)."""
    account_id, region, namespace, name, dimensions = series
    digest = _dimensions_digest(dimensions)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(MT)
        .values(
            account_id=account_id,
            region=region,
            namespace=namespace,
            name=name,
            dimensions_key=digest,
            dimensions=[list(d) for d in dimensions],
            totals={},
            updated_at=time.time(),
        )
        .on_conflict_do_nothing()
    )
    return conn.execute(
        select(MT.c.id).where(
            MT.c.account_id == account_id,
            MT.c.region == region,
            MT.c.namespace == namespace,
            MT.c.name == name,
            MT.c.dimensions_key == digest,
        )
    ).scalar_one()


def write(conn, points: dict[tuple[SeriesKey, str, int], StatSet]) -> None:
    """Store statistic sets keyed by (series, unit, second), and add them to their metrics' totals."""
    by_series: dict[SeriesKey, list[tuple[str, int, StatSet]]] = defaultdict(list)
    for (series, unit, second), stats in points.items():
        by_series[series].append((unit, second, stats))
    now = time.time()
    for series, items in by_series.items():
        metric_id = _metric_id(conn, series)
        conn.execute(
            DP.insert(),
            [
                {
                    "metric_id": metric_id,
                    "timestamp": second,
                    "unit": unit,
                    "sample_count": s[0],
                    "sum": s[1],
                    "minimum": s[2],
                    "maximum": s[3],
                    "distribution": distribution.to_json(s[4]),
                }
                for unit, second, s in items
            ],
        )
        # Locked: several servers (one PostgreSQL) flush their own buffers into the same totals.
        totals = conn.execute(select(MT.c.totals).where(MT.c.id == metric_id).with_for_update()).scalar_one() or {}
        for unit, _, stats in items:
            count, total = totals.get(unit, [0.0, 0.0])
            totals[unit] = [count + stats[0], total + stats[1]]
        conn.execute(update(MT).where(MT.c.id == metric_id).values(totals=totals, updated_at=now))


def flush(backends) -> None:
    """Write the buffered statistic sets to the store (the background worker calls this every second)."""
    held = buffer(backends)
    points = held.begin_flush()
    if not points:
        held.end_flush(True)
        return
    try:
        with backends.store.write() as conn:
            write(conn, points)
    except Exception:  # the store may be briefly unavailable: keep the data, retry next second
        log.exception("could not write %d metric statistic sets; will retry", len(points))
        held.end_flush(False)
        return
    held.end_flush(True)


# -- retention ----------------------------------------------------------------------

# As CloudWatch keeps data: (age in seconds, resolution it is rolled up to). Data older than
# RETENTION_SECONDS is deleted.
RESOLUTIONS = ((3 * 3600, 60), (15 * 86_400, 300), (63 * 86_400, 3600))
RETENTION_SECONDS = 455 * 86_400
ROLL_UP_SECONDS = 60.0


def roll_up(backends, now: float | None = None, since: dict[int, int] | None = None) -> None:
    """Merge old statistic sets into one per (metric, unit, coarser period), and drop expired ones.

    ``since`` remembers, per resolution, up to where the last call rolled up, so that each
    call reads only the data that has aged since (None: look at everything).
    """
    now = time.time() if now is None else now
    since = {} if since is None else since
    with backends.store.write() as conn:
        conn.execute(DP.delete().where(DP.c.timestamp < int(now - RETENTION_SECONDS)))
        for age, resolution in RESOLUTIONS:
            cutoff = int(now - age) // resolution * resolution
            bucket = DP.c.timestamp - DP.c.timestamp % resolution
            groups = conn.execute(
                select(
                    DP.c.metric_id,
                    DP.c.unit,
                    bucket,
                    func.sum(DP.c.sample_count),
                    func.sum(DP.c.sum),
                    func.min(DP.c.minimum),
                    func.max(DP.c.maximum),
                )
                .where(DP.c.timestamp < cutoff, DP.c.timestamp >= since.get(resolution, 0) - resolution)
                .group_by(DP.c.metric_id, DP.c.unit, bucket)
                .having(func.count() > 1)
            ).all()
            for metric_id, unit, start, count, total, low, high in groups:
                rows = (
                    DP.c.metric_id == metric_id,
                    DP.c.unit == unit,
                    DP.c.timestamp >= start,
                    DP.c.timestamp < start + resolution,
                )
                merged = _merged_distributions(conn.execute(select(DP.c.distribution).where(*rows)).scalars())
                conn.execute(DP.delete().where(*rows))
                conn.execute(
                    DP.insert().values(
                        metric_id=metric_id,
                        unit=unit,
                        timestamp=start,
                        sample_count=count,
                        sum=total,
                        minimum=low,
                        maximum=high,
                        distribution=distribution.to_json(merged),
                    )
                )
            since[resolution] = cutoff


def _merged_distributions(stored) -> distribution.Distribution | None:
    """One distribution of several rows' (None as soon as one row has none: its values are unknown)."""
    merged: distribution.Distribution = {}
    for one in stored:
        if one is None:
            return None
        distribution.merge(merged, distribution.from_json(one) or {})
    return merged


class _Flusher(Periodic):
    """Writes the buffer every FLUSH_SECONDS (and once more at shutdown); rolls up old data every minute."""

    def __init__(self, backends) -> None:
        super().__init__("metric-flush", FLUSH_SECONDS)
        self.backends = backends
        self._rolled: dict[int, int] = {}
        self._next_roll_up = 0.0

    def run(self) -> None:
        flush(self.backends)
        if time.monotonic() >= self._next_roll_up:
            self._next_roll_up = time.monotonic() + ROLL_UP_SECONDS
            # One server rolls up (several at once would each merge the same rows); every server flushes its own.
            leases(self.backends).as_leader("metric-roll-up", lambda: roll_up(self.backends, since=self._rolled))

    def run_final(self) -> None:
        flush(self.backends)


@background_worker
def _start_flusher(backends) -> _Flusher:
    return _Flusher(backends)


# -- reading ------------------------------------------------------------------------


def aggregate(
    backends,
    series: SeriesKey,
    start: int,
    end: int,
    period: int,
    unit: str | None = None,
    distributions: bool = False,
) -> dict[tuple[int, str], StatSet]:
    """Statistic sets of ``series`` per (period start, unit) over [start, end), periods aligned to the epoch.

    Their distributions are read only when asked for (percentiles): the database sums the rest."""
    account_id, region, namespace, name, dimensions = series
    bucket = DP.c.timestamp - DP.c.timestamp % period
    if distributions:  # the rows themselves, merged below: the database cannot add JSON maps
        columns = [bucket, DP.c.unit, DP.c.sample_count, DP.c.sum, DP.c.minimum, DP.c.maximum, DP.c.distribution]
    else:
        columns = [
            bucket,
            DP.c.unit,
            func.sum(DP.c.sample_count),
            func.sum(DP.c.sum),
            func.min(DP.c.minimum),
            func.max(DP.c.maximum),
        ]
    query = (
        select(*columns)
        .join(MT, MT.c.id == DP.c.metric_id)
        .where(
            MT.c.account_id == account_id,
            MT.c.region == region,
            MT.c.namespace == namespace,
            MT.c.name == name,
            MT.c.dimensions_key == _dimensions_digest(dimensions),
            DP.c.timestamp >= start,
            DP.c.timestamp < end,
        )
    )
    if not distributions:
        query = query.group_by(bucket, DP.c.unit)
    if unit is not None:
        query = query.where(DP.c.unit == unit)
    result: dict[tuple[int, str], StatSet] = {}
    with backends.store.read() as conn:
        for b, u, c, s, lo, hi, *stored in conn.execute(query):
            stats = [c, s, lo, hi, distribution.from_json(stored[0]) if stored else None]
            key = (int(b), u)
            if key in result:
                merge(result[key], stats)
            else:
                result[key] = stats
    for (key_series, key_unit, second), stats in buffer(backends).unflushed():
        if key_series == series and start <= second < end and (unit is None or key_unit == unit):
            key = (second - second % period, key_unit)
            if key in result:
                merge(result[key], stats)
            else:
                result[key] = stats
    return result


def list_metrics(
    backends,
    account_id: str,
    region: str,
    namespace: str | None = None,
    name: str | None = None,
    active_since: float | None = None,
    after_id: int = 0,
    limit: int = 500,
) -> list:
    """Metric rows (id, namespace, name, dimensions), oldest first, after row ``after_id``."""
    query = (
        select(MT.c.id, MT.c.namespace, MT.c.name, MT.c.dimensions)
        .where(MT.c.account_id == account_id, MT.c.region == region, MT.c.id > after_id)
        .order_by(MT.c.id)
        .limit(limit)
    )
    if namespace is not None:
        query = query.where(MT.c.namespace == namespace)
    if name is not None:
        query = query.where(MT.c.name == name)
    if active_since is not None:
        query = query.where(MT.c.updated_at >= active_since)
    with backends.store.read() as conn:
        return conn.execute(query).all()


# -- Prometheus exposition ----------------------------------------------------------

_TIME_UNITS = {"Seconds": 1.0, "Milliseconds": 1e-3, "Microseconds": 1e-6}
_BYTE_UNITS = {"Bytes": 1.0, "Kilobytes": 1e3, "Megabytes": 1e6, "Gigabytes": 1e9, "Terabytes": 1e12}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# The router's per-invocation metrics: /metrics has them as histograms observed by each server
# (selfmaker.observability), so their CloudWatch totals, kept under two dimension sets, are left out.
ROUTER_METRICS = frozenset(
    ("AWS/SageMaker", name)
    for name in (
        "Invocations",
        "InvocationsPerInstance",
        "ModelLatency",
        "OverheadLatency",
        "Invocation4XXErrors",
        "Invocation5XXErrors",
        "InvocationModelErrors",
    )
)


def _snake(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "_", _CAMEL.sub("_", text)).strip("_").lower()
    return f"_{name}" if name[:1].isdigit() else name


def _family(namespace: str, name: str, unit: str) -> tuple[str, str, float]:
    """(metric family name, Prometheus type, factor to its base unit) for a CloudWatch metric and unit.

    Every name starts with ``cloudwatch_``: a caller's namespace ("selfmaker", "process") can never
    take the name of one of the server's own metrics."""
    prefix = "_".join(
        re.sub(r"[^a-z0-9]+", "_", part.lower()).strip("_") for part in namespace.split("/") if part.lower() != "aws"
    )
    base = "_".join(part for part in ("cloudwatch", prefix.strip("_"), _snake(name)) if part)
    # SelfMaker's own AWS/ metrics without a unit count things, as CloudWatch reports them; a user's
    # unitless metric may be a gauge, so it stays a summary.
    if unit == "Count" or (unit == "None" and namespace.startswith("AWS/")):
        return base, "counter", 1.0
    if unit in _TIME_UNITS:
        return f"{base}_seconds", "summary", _TIME_UNITS[unit]
    if unit in _BYTE_UNITS:
        return f"{base}_bytes", "summary", _BYTE_UNITS[unit]
    return base, "summary", 1.0


def _totals(backends) -> dict[SeriesKey, dict[str, list[float]]]:
    with backends.store.read() as conn:
        rows = conn.execute(
            select(MT.c.account_id, MT.c.region, MT.c.namespace, MT.c.name, MT.c.dimensions, MT.c.totals).order_by(
                MT.c.id
            )
        ).all()
    totals: dict[SeriesKey, dict[str, list[float]]] = {}
    for account_id, region, namespace, name, dimensions, by_unit in rows:
        series = (account_id, region, namespace, name, tuple(tuple(d) for d in dimensions))
        totals[series] = {unit: list(v) for unit, v in (by_unit or {}).items()}
    for (series, unit, _), stats in buffer(backends).unflushed():
        count, total = totals.setdefault(series, {}).get(unit, [0.0, 0.0])
        totals[series][unit] = [count + stats[0], total + stats[1]]
    return totals


class CloudWatchCollector:
    """Every CloudWatch metric the store holds (but the router's), as all-time totals: counters for Count
    metrics, summaries (``_sum``, ``_count``, in seconds or bytes where the unit says so) for the others.
    Labels: the dimensions (snake_case), ``account`` and ``region``. From the store, so every server
    sharing a database reports the same totals (plus its own values not flushed yet)."""

    def __init__(self, backends):
        self.backends = backends

    def collect(self):
        families: dict[str, Metric] = {}
        for series, by_unit in _totals(self.backends).items():
            account_id, region, namespace, name, dimensions = series
            if (namespace, name) in ROUTER_METRICS:
                continue
            labels = {_snake(k) or "dimension": v for k, v in dimensions}
            labels.setdefault("account", account_id)
            labels.setdefault("region", region)
            for unit, (count, total) in by_unit.items():
                family, kind, factor = _family(namespace, name, unit)
                metric = families.get(family)
                if metric is None:
                    metric = families[family] = Metric(family, f"CloudWatch metric {namespace} {name} ({unit})", kind)
                if kind == "counter":
                    metric.add_sample(f"{family}_total", labels, total)
                else:
                    metric.add_sample(f"{family}_sum", labels, total * factor)
                    metric.add_sample(f"{family}_count", labels, count)
        yield from (families[name] for name in sorted(families))


@scrape_collector
def _cloudwatch_collector(backends) -> CloudWatchCollector:
    return CloudWatchCollector(backends)
