"""sagemaker-metrics (BatchPutMetrics, BatchGetMetrics) and the metric series of trial components.

Every point is kept, for BatchGetMetrics. Each series also keeps its running
summary, folded in point by point with Welford's method (count, mean, sum of
squared deviations), so DescribeTrialComponent reads one row per metric however
long the series grows. StdDev is the sample standard deviation, as AWS's own
integration tests of the service assert (``statistics.stdev``,
aws/sagemaker-experiments tests/integ/test_metrics.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..server.operations import Context, operation
from ..store import schema
from ..store.db import Connection
from .kinds import KINDS

SERIES = schema.metric_series
POINTS = schema.metric_points
R = schema.resources

# BatchPutMetrics refuses points outside this window, as the service does (the SDK checks it too:
# sagemaker/experiments/_metrics.py, "between two weeks before and two hours from now").
OLDEST = 14 * 24 * 3600
NEWEST = 2 * 3600

PERIOD_SECONDS = {"OneMinute": 60, "FiveMinute": 300, "OneHour": 3600}
MAX_QUERY_VALUES = 10_000  # per BatchGetMetrics query; more come back Truncated


@dataclass
class Point:
    name: str
    value: float
    timestamp: float  # epoch seconds
    step: int | None = None


@dataclass
class Summary:
    """A series' running statistics, as stored in metric_series."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    last_value: float = 0.0
    last_timestamp: float = -math.inf

    def add(self, value: float, timestamp: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        if timestamp >= self.last_timestamp:  # "Last" is the newest point, not the last to arrive
            self.last_value, self.last_timestamp = value, timestamp

    @property
    def stddev(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def columns(self) -> dict:
        return {
            "n": self.n,
            "mean": self.mean,
            "m2": self.m2,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "last_value": self.last_value,
            "last_timestamp": self.last_timestamp,
        }


# -- the store ---------------------------------------------------------------


def record(conn: Connection, component_arn: str, points: Iterable[Point], source_arn: str | None = None) -> None:
    """Append points to their series and fold them into the summaries, in the caller's write transaction."""
    by_name: dict[str, list[Point]] = {}
    for point in points:
        by_name.setdefault(point.name, []).append(point)
    if not by_name:
        return
    rows = conn.execute(
        select(SERIES)
        .where(SERIES.c.component_arn == component_arn, SERIES.c.metric_name.in_(by_name))
        .with_for_update()
    ).all()
    existing = {row.metric_name: row for row in rows}
    for name, series_points in by_name.items():
        row = existing.get(name)
        summary = Summary(**{k: getattr(row, k) for k in Summary().columns()}) if row else Summary()
        for point in series_points:
            summary.add(point.value, point.timestamp)
        if row:
            series_id = row.id
            conn.execute(update(SERIES).where(SERIES.c.id == series_id).values(**summary.columns()))
        else:
            series_id = conn.execute(
                insert(SERIES).values(
                    component_arn=component_arn, metric_name=name, source_arn=source_arn, **summary.columns()
                )
            ).inserted_primary_key[0]
        conn.execute(
            insert(POINTS),
            [
                {"series_id": series_id, "timestamp": p.timestamp, "step": p.step, "value": p.value}
                for p in series_points
            ],
        )


def summaries(conn: Connection, component_arn: str) -> list[dict]:
    """A trial component's TrialComponentMetricSummary list, in the order its metrics first arrived."""
    rows = conn.execute(select(SERIES).where(SERIES.c.component_arn == component_arn).order_by(SERIES.c.id)).all()
    return [
        {
            "MetricName": row.metric_name,
            "SourceArn": row.source_arn,
            "TimeStamp": row.last_timestamp,
            "Max": row.maximum,
            "Min": row.minimum,
            "Last": row.last_value,
            "Count": row.n,
            "Avg": row.mean,
            "StdDev": Summary(n=row.n, m2=row.m2).stddev,
        }
        for row in rows
    ]


def forget(conn: Connection, component_arn: str) -> None:
    """Drop every series of a trial component (when it is deleted)."""
    ids = select(SERIES.c.id).where(SERIES.c.component_arn == component_arn).scalar_subquery()
    conn.execute(delete(POINTS).where(POINTS.c.series_id.in_(ids)))
    conn.execute(delete(SERIES).where(SERIES.c.component_arn == component_arn))


# -- BatchPutMetrics ---------------------------------------------------------


def _acceptable(datum: dict, now: float) -> bool:
    value, stamp = datum["Value"], datum["Timestamp"]
    return math.isfinite(value) and now - OLDEST <= stamp <= now + NEWEST


@operation("sagemaker-metrics", "BatchPutMetrics")
def batch_put_metrics(ctx: Context, params: dict) -> dict:
    now = time.time()
    errors, points = [], []
    for index, datum in enumerate(params["MetricData"]):
        if _acceptable(datum, now):
            points.append(Point(datum["MetricName"], float(datum["Value"]), datum["Timestamp"], datum.get("Step")))
        else:
            errors.append({"Code": "VALIDATION_ERROR", "MetricIndex": index})
    for attempt in (1, 2):
        try:
            with ctx.store.write() as conn:
                component = KINDS["TrialComponent"].load(ctx, params["TrialComponentName"], conn=conn)
                source_arn = (component.data.get("Source") or {}).get("SourceArn")
                record(conn, component.arn, points, source_arn)
            break
        except IntegrityError:
            # Another request created the same series at the same moment (PostgreSQL): read it and fold again.
            if attempt == 2:
                errors = [{"Code": "CONFLICT_ERROR", "MetricIndex": i} for i in range(len(params["MetricData"]))]
    return {"Errors": errors or None}


# -- BatchGetMetrics ---------------------------------------------------------


def _series_id(ctx: Context, conn: Connection, resource_arn: str, metric_name: str) -> int | None:
    """The series a query names: by trial component ARN, or by the ARN of the job a component records."""
    mine = [R.c.account_id == ctx.account_id, R.c.region == ctx.region, R.c.kind == "TrialComponent"]
    component_arn = conn.execute(select(R.c.arn).where(*mine, R.c.arn == resource_arn)).scalar()
    if component_arn is None:
        component_arn = conn.execute(
            select(R.c.arn).where(*mine, R.c.data["Source"]["SourceArn"].as_string() == resource_arn).limit(1)
        ).scalar()
    if component_arn is None:
        return None
    return conn.execute(
        select(SERIES.c.id).where(SERIES.c.component_arn == component_arn, SERIES.c.metric_name == metric_name)
    ).scalar()


def _statistic(stat: str, values: list[float]) -> float:
    if stat == "Min":
        return min(values)
    if stat == "Max":
        return max(values)
    if stat == "Count":
        return float(len(values))
    if stat == "Last":
        return values[-1]  # the bucket's points are in time order
    summary = Summary()
    for value in values:
        summary.add(value, 0.0)
    return summary.mean if stat == "Avg" else summary.stddev


def _aggregate(rows, query: dict) -> tuple[list[int], list[float]]:
    """Group a series' points (in time order) by Period, one value per group, placed on the XAxisType."""
    period = query["Period"]
    by_step = period == "IterationNumber"
    buckets: dict[int, list] = {}
    for row in rows:
        if by_step:
            if row.step is None:
                continue
            key = row.step
        else:
            key = int(row.timestamp // PERIOD_SECONDS[period] * PERIOD_SECONDS[period])
        buckets.setdefault(key, []).append(row)
    points = []
    for key, members in buckets.items():
        if query["XAxisType"] == "Timestamp":
            x = int(members[0].timestamp) if by_step else key
        else:
            steps = [m.step for m in members if m.step is not None]
            if not steps:
                continue
            x = key if by_step else max(steps)
        points.append((x, _statistic(query["MetricStat"], [m.value for m in members])))
    points.sort(key=lambda p: p[0])
    return [x for x, _ in points], [v for _, v in points]


def _query(ctx: Context, conn: Connection, query: dict) -> dict:
    series_id = _series_id(ctx, conn, query["ResourceArn"], query["MetricName"])
    if series_id is None:
        return {
            "Status": "ValidationError",
            "XAxisValues": [],
            "MetricValues": [],
            "Message": f"No metric {query['MetricName']!r} is recorded for {query['ResourceArn']}.",
        }
    if query.get("Start") is not None and query.get("End") is not None and query["Start"] > query["End"]:
        return {
            "Status": "ValidationError",
            "XAxisValues": [],
            "MetricValues": [],
            "Message": "Start must not be later than End.",
        }
    cond = [POINTS.c.series_id == series_id]
    if query.get("Start") is not None:
        cond.append(POINTS.c.timestamp >= query["Start"])
    if query.get("End") is not None:
        cond.append(POINTS.c.timestamp <= query["End"])
    rows = conn.execute(
        select(POINTS.c.timestamp, POINTS.c.step, POINTS.c.value).where(*cond).order_by(POINTS.c.timestamp, POINTS.c.id)
    ).all()
    xs, values = _aggregate(rows, query)
    result = {"Status": "Complete", "XAxisValues": xs, "MetricValues": values}
    if len(xs) > MAX_QUERY_VALUES:
        result.update(
            Status="Truncated",
            XAxisValues=xs[:MAX_QUERY_VALUES],
            MetricValues=values[:MAX_QUERY_VALUES],
            Message=f"Only the first {MAX_QUERY_VALUES} values are returned; narrow Start and End.",
        )
    return result


@operation("sagemaker-metrics", "BatchGetMetrics")
def batch_get_metrics(ctx: Context, params: dict) -> dict:
    with ctx.store.read() as conn:
        return {"MetricQueryResults": [_query(ctx, conn, q) for q in params["MetricQueries"]]}
