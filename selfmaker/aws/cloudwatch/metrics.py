"""CloudWatch metrics: PutMetricData, GetMetricStatistics, GetMetricData (MetricStat queries), ListMetrics.

They read and write the data in :mod:`.metric_store`, where SelfMaker's own
components record too (``AWS/SageMaker`` invocations and latencies). The error helpers and
statistics here serve the alarms as well.
"""

from __future__ import annotations

import math
import re
import time

from ...server.errors import AWSError
from ...server.operations import Context, operation
from . import distribution, metric_store

STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
PERCENTILE = re.compile(r"p(\d{1,3}(?:\.\d{1,10})?)")  # p0.0 to p100, as CloudWatch spells them
MAX_EXTENDED_STATISTICS = 10
MAX_DATAPOINTS = 1440  # GetMetricStatistics
LIST_METRICS_PAGE = 500
PAST_LIMIT = 14 * 24 * 3600  # PutMetricData accepts timestamps up to two weeks old...
FUTURE_LIMIT = 2 * 3600  # ...and two hours ahead


# -- errors, as CloudWatch words them -------------------------------------------------


def invalid_value(message: str) -> AWSError:
    return AWSError("InvalidParameterValueException", message)


def invalid_combination(message: str) -> AWSError:
    return AWSError("InvalidParameterCombinationException", message)


def missing(name: str) -> AWSError:
    return AWSError("MissingRequiredParameterException", f"The parameter {name} is required.")


def not_supported(what: str) -> AWSError:
    return invalid_value(f"{what} {'are' if what.endswith('s') else 'is'} not supported by SelfMaker yet.")


def redeem_token(ctx: Context, token: str, scope) -> dict:
    """The position in a NextToken this server issued for the same request (``scope``), or InvalidNextToken."""
    return ctx.backends.resources.read_page_token(
        token, scope, AWSError("InvalidNextToken", "The NextToken is not valid for this request.")
    )


# -- metrics -------------------------------------------------------------------------


def dimensions_of(items: list[dict] | None, where: str = "Dimensions") -> dict[str, str]:
    dimensions: dict[str, str] = {}
    for item in items or []:
        if item["Name"] in dimensions:
            raise invalid_value(f"The dimension name {item['Name']} appears more than once in {where}.")
        dimensions[item["Name"]] = item["Value"]
    return dimensions


def dimension_list(pairs) -> list[dict]:
    return [{"Name": name, "Value": value} for name, value in pairs]


def check_period(period: int, where: str = "Period") -> None:
    if period not in (1, 5, 10, 30) and period % 60:
        raise invalid_value(f"The parameter {where} must be 1, 5, 10, 30 or a multiple of 60.")


# CloudWatch takes values in [-2^360, 2^360] only; the bound also keeps sums, and the percentile buckets'
# logarithms, finite.
LARGEST = 2.0**360


def finite(value: float, where: str) -> float:
    if not math.isfinite(value) or abs(value) > LARGEST:
        raise invalid_value(
            f"The value {value} for parameter {where} is invalid: it must be a finite number between -2^360 and 2^360."
        )
    return float(value)


def _statistic_set(datum: dict, index: int) -> list:
    """The datum's values as one statistic set [count, sum, min, max, distribution]."""
    where = f"MetricData.member.{index}"
    given = [k for k in ("Value", "StatisticValues", "Values") if datum.get(k) is not None]
    if len(given) != 1:
        raise invalid_combination(
            f"The parameters {where}.Value, {where}.StatisticValues and {where}.Values are "
            "mutually exclusive and one of them must be specified."
        )
    if "Value" in given:
        return metric_store.one_value(finite(datum["Value"], f"{where}.Value"))
    if "StatisticValues" in given:
        stats = datum["StatisticValues"]
        count, total = finite(stats["SampleCount"], where), finite(stats["Sum"], where)
        low, high = finite(stats["Minimum"], where), finite(stats["Maximum"], where)
        if count <= 0 or low > high:
            raise invalid_value(
                f"The parameter {where}.StatisticValues is invalid: SampleCount must be positive "
                "and Minimum must not exceed Maximum."
            )
        # CloudWatch answers percentiles of a statistic set only when its values are known: one value, or all equal.
        known = distribution.of_values([low], [count]) if count == 1 or low == high else None
        return [count, total, low, high, known]
    values = [finite(v, f"{where}.Values") for v in datum["Values"]]
    counts = [finite(c, f"{where}.Counts") for c in datum.get("Counts") or [1.0] * len(values)]
    if len(counts) != len(values) or not values:
        raise invalid_value(
            f"The parameters {where}.Values and {where}.Counts must be non-empty lists of the same length."
        )
    if any(c <= 0 for c in counts):
        raise invalid_value(f"The parameter {where}.Counts must hold positive numbers.")
    return [
        float(sum(counts)),
        sum(v * c for v, c in zip(values, counts)),
        min(values),
        max(values),
        distribution.of_values(values, counts),
    ]


@operation("cloudwatch", "PutMetricData")
def put_metric_data(ctx: Context, params: dict) -> dict:
    namespace = params["Namespace"]
    if namespace.startswith("AWS/"):
        raise invalid_value(
            f"The value {namespace} for parameter Namespace is invalid: the AWS/ namespaces are "
            "reserved for AWS services."
        )
    if params.get("EntityMetricData"):
        raise not_supported("EntityMetricData")
    data = params.get("MetricData") or []
    if not data:
        raise missing("MetricData")
    if len(data) > 1000:
        raise invalid_value("The collection MetricData must not have a size greater than 1000.")
    now = time.time()
    points: dict = {}
    for index, datum in enumerate(data, 1):
        stats = _statistic_set(datum, index)
        stamp = datum.get("Timestamp", now)
        if not now - PAST_LIMIT <= stamp <= now + FUTURE_LIMIT:
            raise invalid_value(
                f"The parameter MetricData.member.{index}.Timestamp must specify a time no more "
                "than two weeks in the past and no more than two hours in the future."
            )
        series = metric_store.series_key(
            ctx.account_id,
            ctx.region,
            namespace,
            datum["MetricName"],
            dimensions_of(datum.get("Dimensions"), f"MetricData.member.{index}"),
        )
        key = (series, datum.get("Unit") or "None", int(stamp))
        if key in points:
            metric_store.merge(points[key], stats)
        else:
            points[key] = stats
    with ctx.store.write() as conn:  # written through: an acknowledged datum is durable
        metric_store.write(conn, points)
    return {}


def _check_range(start: float, end: float) -> tuple[int, int]:
    if start >= end:
        raise invalid_value("The parameter StartTime must be less than the parameter EndTime.")
    return int(start), math.ceil(end)


def merged_units(sets: dict[tuple[int, str], list[float]]) -> dict[int, tuple[list[float], str]]:
    """Per period: the statistic set over all units, and the unit (``None`` if they differ)."""
    merged: dict[int, tuple[list[float], str]] = {}
    for (bucket, unit), stats in sets.items():
        if bucket in merged:
            current, current_unit = merged[bucket]
            metric_store.merge(current, stats)
            merged[bucket] = (current, current_unit if current_unit == unit else "None")
        else:
            merged[bucket] = (metric_store.copy(stats), unit)
    return merged


def percentile_of(name: str, where: str) -> float | None:
    """The percentile a statistic name such as p99.9 asks for; None for a name that is no percentile."""
    found = PERCENTILE.fullmatch(name)
    if not found:
        return None
    value = float(found.group(1))
    if value > 100:
        raise invalid_value(f"The value {name} for parameter {where} is invalid: percentiles go from p0.0 to p100.")
    return value


def statistic(stats: list, name: str) -> float | None:
    """A statistic of a set; a percentile (p50...) is None where the set's values are unknown."""
    count, total, low, high, found = stats
    if name[:1] == "p":
        if found is None:
            return None
        return distribution.percentile(found, float(name[1:]), low, high)
    return {
        "SampleCount": count,
        "Sum": total,
        "Minimum": low,
        "Maximum": high,
        "Average": total / count if count else 0.0,
    }[name]


@operation("cloudwatch", "GetMetricStatistics")
def get_metric_statistics(ctx: Context, params: dict) -> dict:
    statistics, extended = params.get("Statistics") or [], params.get("ExtendedStatistics") or []
    if bool(statistics) == bool(extended):
        raise invalid_combination("Must specify either Statistics or ExtendedStatistics, but not both.")
    if len(extended) > MAX_EXTENDED_STATISTICS:
        raise invalid_value(
            f"The collection ExtendedStatistics must not have a size greater than {MAX_EXTENDED_STATISTICS}."
        )
    for name in extended:
        if percentile_of(name, "ExtendedStatistics") is None:
            raise invalid_value(
                f"The value {name} for parameter ExtendedStatistics is invalid: use percentiles from p0.0 to p100."
            )
    for name in statistics:
        if name not in STATISTICS:
            raise invalid_value(
                f"The value {name} for parameter Statistics is invalid: use one of {', '.join(STATISTICS)}."
            )
    period = params["Period"]
    check_period(period)
    start, end = _check_range(params["StartTime"], params["EndTime"])
    requested = math.ceil((end - (start - start % period)) / period)
    if requested > MAX_DATAPOINTS:
        raise invalid_combination(
            f"You have requested up to {requested} datapoints, which exceeds the limit of "
            f"{MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, "
            "or decreasing the time range."
        )
    series = metric_store.series_key(
        ctx.account_id, ctx.region, params["Namespace"], params["MetricName"], dimensions_of(params.get("Dimensions"))
    )
    sets = metric_store.aggregate(
        ctx.backends, series, start, end, period, params.get("Unit"), distributions=bool(extended)
    )
    datapoints = []
    for (bucket, unit), stats in sorted(sets.items()):
        point: dict = {"Timestamp": float(bucket), "Unit": unit}
        point.update({name: statistic(stats, name) for name in statistics})
        if extended:
            percentiles = {name: statistic(stats, name) for name in extended}
            point["ExtendedStatistics"] = {k: v for k, v in percentiles.items() if v is not None}
            if not point["ExtendedStatistics"]:
                continue  # only statistic sets of several values: no percentile to answer
        datapoints.append(point)
    return {"Label": params["MetricName"], "Datapoints": datapoints}


def _request_scope(params: dict) -> dict:
    """What a GetMetricData NextToken is bound to: the request, but for its page."""
    return {k: v for k, v in params.items() if k not in ("NextToken", "MaxDatapoints")}


def _query_series(ctx: Context, query: dict) -> tuple[str, int, metric_store.SeriesKey]:
    """(statistic, period, metric) of a MetricStat query."""
    stat = query["MetricStat"]
    metric = stat["Metric"]
    if not metric.get("Namespace") or not metric.get("MetricName"):
        raise missing(f"MetricDataQueries.{query['Id']}.MetricStat.Metric.Namespace and MetricName")
    where = f"MetricDataQueries.{query['Id']}.MetricStat.Stat"
    if stat["Stat"] not in STATISTICS and percentile_of(stat["Stat"], where) is None:
        raise not_supported(f"The statistic {stat['Stat']!r} (trimmed means, ranks and other extended statistics)")
    check_period(stat["Period"], f"MetricDataQueries.{query['Id']}.MetricStat.Period")
    return (
        stat["Stat"],
        stat["Period"],
        metric_store.series_key(
            ctx.account_id,
            ctx.region,
            metric["Namespace"],
            metric["MetricName"],
            dimensions_of(metric.get("Dimensions")),
        ),
    )


@operation("cloudwatch", "GetMetricData")
def get_metric_data(ctx: Context, params: dict) -> dict:
    queries = params["MetricDataQueries"]
    if not 1 <= len(queries) <= 500:
        raise invalid_value("The collection MetricDataQueries must have between 1 and 500 members.")
    ids = [q["Id"] for q in queries]
    if len(set(ids)) != len(ids):
        raise invalid_value("The values of MetricDataQueries.Id must be unique.")
    for query in queries:
        if query.get("Expression") is not None:
            raise not_supported("Metric math expressions (MetricDataQueries.Expression)")
        if query.get("MetricStat") is None:
            raise invalid_combination(f"Query {query['Id']} must have exactly one of MetricStat or Expression.")
        if query.get("AccountId") not in (None, ctx.account_id):
            raise not_supported("Cross-account queries (MetricDataQueries.AccountId)")
    start, end = _check_range(params["StartTime"], params["EndTime"])
    descending = (params.get("ScanBy") or "TimestampDescending") == "TimestampDescending"
    limit = params.get("MaxDatapoints") or 100_800
    scope = _request_scope(params)
    offset = 0
    if params.get("NextToken"):
        offset = redeem_token(ctx, params["NextToken"], scope)["offset"]

    results, position = [], 0  # position: where each query's points start in the concatenation of all
    for query in queries:
        stat, period, series = _query_series(ctx, query)
        unit = query["MetricStat"].get("Unit")
        sets = metric_store.aggregate(ctx.backends, series, start, end, period, unit, distributions=stat[:1] == "p")
        values = {bucket: statistic(stats, stat) for bucket, (stats, _) in merged_units(sets).items()}
        points = sorted(((b, v) for b, v in values.items() if v is not None), reverse=descending)
        if query.get("ReturnData", True) is False:
            continue
        page = points[max(offset - position, 0) : max(offset + limit - position, 0)]
        position += len(points)
        results.append(
            {
                "Id": query["Id"],
                "Label": query.get("Label") or series[3],
                "Timestamps": [float(bucket) for bucket, _ in page],
                "Values": [value for _, value in page],
                "StatusCode": "Complete" if offset + limit >= position else "PartialData",
            }
        )
    answer: dict = {"MetricDataResults": results, "Messages": []}
    if offset + limit < position:
        answer["NextToken"] = ctx.backends.resources.page_token(scope, offset=offset + limit)
    return answer


@operation("cloudwatch", "ListMetrics")
def list_metrics(ctx: Context, params: dict) -> dict:
    if params.get("IncludeLinkedAccounts") or params.get("OwningAccount"):
        raise not_supported("Cross-account observability (IncludeLinkedAccounts, OwningAccount)")
    recent = params.get("RecentlyActive")
    if recent not in (None, "PT3H"):
        raise invalid_value("The parameter RecentlyActive must be PT3H.")
    filters = [(f["Name"], f.get("Value")) for f in params.get("Dimensions") or []]
    query = {
        "namespace": params.get("Namespace"),
        "name": params.get("MetricName"),
        "active_since": time.time() - 3 * 3600 if recent else None,
    }
    scope = ["ListMetrics", query["namespace"], query["name"], recent, filters]
    after = 0
    if params.get("NextToken"):
        after = redeem_token(ctx, params["NextToken"], scope)["after"]
    # Dimension filters apply to the database's pages, so a page of answers may take several.
    metrics: list[dict] = []
    cursor, more = after, True
    while more and len(metrics) < LIST_METRICS_PAGE:
        rows = metric_store.list_metrics(
            ctx.backends, ctx.account_id, ctx.region, after_id=cursor, limit=LIST_METRICS_PAGE, **query
        )
        more = len(rows) == LIST_METRICS_PAGE
        for row in rows:
            if len(metrics) == LIST_METRICS_PAGE:
                more = True
                break
            cursor = row.id
            present = dict(map(tuple, row.dimensions))
            if all(n in present and (v is None or present[n] == v) for n, v in filters):
                metrics.append(
                    {"Namespace": row.namespace, "MetricName": row.name, "Dimensions": dimension_list(row.dimensions)}
                )
    answer: dict = {"Metrics": metrics}
    if more:
        answer["NextToken"] = ctx.backends.resources.page_token(scope, after=cursor)
    return answer
