"""CloudWatch metric alarms: PutMetricAlarm, DescribeAlarms(ForMetric), SetAlarmState, DeleteAlarms,
Enable/DisableAlarmActions, and their tags.

A background worker evaluates each alarm when one of its periods ends (and as soon as it is
created or changed), over its last EvaluationPeriods periods, with CloudWatch's rules for
Statistic or ExtendedStatistic (a percentile), ComparisonOperator, DatapointsToAlarm,
TreatMissingData and EvaluateLowSampleCountPercentile. A state set with
SetAlarmState holds until that next evaluation. The deployment engine reads states with
:func:`alarm_state`. Alarm actions (SNS, Auto Scaling) are not run, so they are refused.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import operator
import time

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ...backends import background_worker
from ...engines.leases import leases
from ...engines.periodic import Periodic
from ...server.errors import AWSError
from ...server.operations import Context, operation
from ...store import schema, tag_store
from . import metric_store
from .metrics import (
    STATISTICS,
    dimension_list,
    dimensions_of,
    finite,
    invalid_combination,
    invalid_value,
    merged_units,
    missing,
    not_supported,
    percentile_of,
    redeem_token,
    statistic,
)

A = schema.cw_alarms
log = logging.getLogger("selfmaker.cloudwatch")

STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
COMPARISONS = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
TREAT_MISSING = ("breaching", "notBreaching", "ignore", "missing")
LOW_SAMPLE_CHOICES = ("evaluate", "ignore")
# In an alarm's data (never serialized: not a MetricAlarm member): the end of the last period whose
# evaluation a SetAlarmState replaced. Kept in the store, so a state set by hand holds across a restart.
HELD_THROUGH = "_HeldThrough"


def alarm_arn(account_id: str, region: str, name: str) -> str:
    return f"arn:aws:cloudwatch:{region}:{account_id}:alarm:{name}"


def _not_found(name: str) -> AWSError:
    return AWSError("ResourceNotFound", f"Alarm {name} does not exist.")


def _find_alarm(conn, account_id: str, region: str, name: str):
    return conn.execute(select(A).where(A.c.account_id == account_id, A.c.region == region, A.c.name == name)).first()


_UNSUPPORTED_ALARM_MEMBERS = {
    "Metrics": "Metric math and multi-metric alarms (Metrics)",
    "ThresholdMetricId": "Anomaly detection alarms (ThresholdMetricId)",
    "EvaluationWindow": "EvaluationWindow",
    "WarmUpConfiguration": "WarmUpConfiguration",
    "EvaluationCriteria": "EvaluationCriteria",
    "EvaluationInterval": "EvaluationInterval",
    "ActionConfiguration": "ActionConfiguration",
}


def _check_statistic(params: dict) -> None:
    """Exactly one of Statistic and ExtendedStatistic; an extended one must be a percentile, the only
    extended statistic the metric store can answer (its distributions hold no values to trim)."""
    simple, extended = params.get("Statistic"), params.get("ExtendedStatistic")
    if (simple is None) == (extended is None):
        raise invalid_combination("Exactly one of the parameters Statistic and ExtendedStatistic must be specified.")
    if simple is not None and simple not in STATISTICS:
        raise invalid_value(
            f"The value {simple} for parameter Statistic is invalid: use one of {', '.join(STATISTICS)}."
        )
    if extended is not None and percentile_of(extended, "ExtendedStatistic") is None:
        raise invalid_value(
            f"The value {extended} for parameter ExtendedStatistic is invalid: SelfMaker supports the "
            "percentiles p0.0 to p100 (p50, p99.9...); trimmed means and other extended statistics "
            "(tm99, wm99, tc99, ts99, PR, IQM) are not supported yet."
        )
    low_samples = params.get("EvaluateLowSampleCountPercentile")
    if low_samples is not None and low_samples not in LOW_SAMPLE_CHOICES:
        raise invalid_value(
            f"The value {low_samples} for parameter EvaluateLowSampleCountPercentile is invalid: "
            f"use one of {', '.join(LOW_SAMPLE_CHOICES)}."
        )


def _alarm_config(params: dict) -> dict:
    """PutMetricAlarm's input, checked, as the MetricAlarm members it sets."""
    for member, what in _UNSUPPORTED_ALARM_MEMBERS.items():
        if params.get(member):
            raise not_supported(what)
    for member in ("OKActions", "AlarmActions", "InsufficientDataActions"):
        if params.get(member):
            raise not_supported(f"Alarm actions ({member}: SNS, Auto Scaling, EC2 and Systems Manager actions)")
    for member in (
        "MetricName",
        "Namespace",
        "Period",
        "EvaluationPeriods",
        "ComparisonOperator",
        "Threshold",
    ):
        if params.get(member) is None:
            raise missing(member)
    _check_statistic(params)
    if params["ComparisonOperator"] not in COMPARISONS:
        raise not_supported(f"The comparison operator {params['ComparisonOperator']} (anomaly detection bands)")
    period = params["Period"]
    if period not in (10, 30) and period % 60:
        raise invalid_value("The parameter Period must be 10, 30 or a multiple of 60.")
    evaluation_periods = params["EvaluationPeriods"]
    to_alarm = params.get("DatapointsToAlarm") or evaluation_periods
    if to_alarm > evaluation_periods:
        raise invalid_value("DatapointsToAlarm must be less than or equal to EvaluationPeriods.")
    if period * evaluation_periods > (7 if period >= 3600 else 1) * 86_400:
        raise invalid_value(
            "The evaluation range (Period * EvaluationPeriods) must not exceed one day "
            "(seven days for periods of an hour or more)."
        )
    treat = params.get("TreatMissingData") or "missing"
    if treat not in TREAT_MISSING:
        raise invalid_value(
            f"The value {treat} for parameter TreatMissingData is invalid: use one of {', '.join(TREAT_MISSING)}."
        )
    finite(params["Threshold"], "Threshold")
    config = {
        k: params.get(k)
        for k in (
            "AlarmDescription",
            "MetricName",
            "Namespace",
            "Statistic",
            "ExtendedStatistic",
            "Period",
            "Unit",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "Threshold",
            "ComparisonOperator",
            "EvaluateLowSampleCountPercentile",
        )
    }
    config.update(
        Dimensions=dimension_list(dimensions_of(params.get("Dimensions")).items()),
        ActionsEnabled=params.get("ActionsEnabled", True),
        OKActions=[],
        AlarmActions=[],
        InsufficientDataActions=[],
        TreatMissingData=treat,
    )
    return {k: v for k, v in config.items() if v is not None}


@operation("cloudwatch", "PutMetricAlarm")
def put_metric_alarm(ctx: Context, params: dict) -> dict:
    name = params["AlarmName"]
    config = _alarm_config(params)
    now = time.time()
    arn = alarm_arn(ctx.account_id, ctx.region, name)
    with ctx.store.write() as conn:
        row = _find_alarm(conn, ctx.account_id, ctx.region, name)
        if row is None:
            alarm = {
                "AlarmName": name,
                "AlarmArn": arn,
                **config,
                "AlarmConfigurationUpdatedTimestamp": now,
                "StateValue": "INSUFFICIENT_DATA",
                "StateReason": "Unchecked: Initial alarm creation",
                "StateUpdatedTimestamp": now,
                "StateTransitionedTimestamp": now,
            }
            try:
                conn.execute(
                    A.insert().values(
                        account_id=ctx.account_id, region=ctx.region, name=name, state=alarm["StateValue"], data=alarm
                    )
                )
            except IntegrityError:
                raise AWSError(
                    "ConcurrentModificationException", f"Alarm {name} was created concurrently; retry.", 429
                ) from None
        else:  # an update replaces the configuration and keeps the state
            state = {k: v for k, v in row.data.items() if k.startswith("State") or k in ("AlarmName", "AlarmArn")}
            alarm = {**state, **config, "AlarmConfigurationUpdatedTimestamp": now}
            conn.execute(update(A).where(A.c.id == row.id).values(data=alarm))
        if params.get("Tags"):
            tag_store.add(conn, arn, params["Tags"])
    _evaluator(ctx.backends).wake()
    return {}


@operation("cloudwatch", "DescribeAlarms")
def describe_alarms(ctx: Context, params: dict) -> dict:
    names, prefix = params.get("AlarmNames"), params.get("AlarmNamePrefix")
    if names and prefix:
        raise invalid_combination("AlarmNames and AlarmNamePrefix are mutually exclusive.")
    types = params.get("AlarmTypes") or ["MetricAlarm"]
    limit = params.get("MaxRecords") or 50
    query = (
        select(A.c.name, A.c.data)
        .where(A.c.account_id == ctx.account_id, A.c.region == ctx.region)
        .order_by(A.c.name)
        .limit(limit + 1)
    )
    if names:
        query = query.where(A.c.name.in_(names))
    if prefix:
        query = query.where(func.substr(A.c.name, 1, len(prefix)) == prefix)
    if params.get("StateValue"):
        query = query.where(A.c.state == params["StateValue"])
    scope = ["DescribeAlarms", names, prefix, params.get("StateValue"), types]
    if params.get("NextToken"):
        query = query.where(A.c.name > redeem_token(ctx, params["NextToken"], scope)["after"])
    # Composite alarms are not served, and no alarm has actions, children or parents.
    if (
        "MetricAlarm" not in types
        or params.get("ActionPrefix")
        or params.get("ChildrenOfAlarmName")
        or params.get("ParentsOfAlarmName")
    ):
        return {"MetricAlarms": [], "CompositeAlarms": []}
    with ctx.store.read() as conn:
        rows = conn.execute(query).all()
    answer: dict = {"MetricAlarms": [row.data for row in rows[:limit]], "CompositeAlarms": []}
    if len(rows) > limit:
        answer["NextToken"] = ctx.backends.resources.page_token(scope, after=rows[limit - 1].name)
    return answer


@operation("cloudwatch", "DescribeAlarmsForMetric")
def describe_alarms_for_metric(ctx: Context, params: dict) -> dict:
    """The alarms on exactly this metric (and dimensions); Statistic, Period and Unit narrow them if given."""
    dimensions = dimension_list(dimensions_of(params.get("Dimensions")).items())
    wanted = sorted((d["Name"], d["Value"]) for d in dimensions)
    with ctx.store.read() as conn:
        rows = (
            conn.execute(
                select(A.c.data).where(A.c.account_id == ctx.account_id, A.c.region == ctx.region).order_by(A.c.name)
            )
            .scalars()
            .all()
        )
    alarms = [
        alarm
        for alarm in rows
        if alarm["Namespace"] == params["Namespace"]
        and alarm["MetricName"] == params["MetricName"]
        and sorted((d["Name"], d["Value"]) for d in alarm.get("Dimensions", [])) == wanted
        and all(
            params.get(k) is None or alarm.get(k) == params[k]
            for k in ("Statistic", "Period", "Unit", "ExtendedStatistic")
        )
    ]
    return {"MetricAlarms": alarms}


def _set_actions_enabled(ctx: Context, names: list[str], enabled: bool) -> None:
    with ctx.store.write() as conn:
        for row in conn.execute(
            select(A.c.id, A.c.data).where(
                A.c.account_id == ctx.account_id, A.c.region == ctx.region, A.c.name.in_(names)
            )
        ).all():
            conn.execute(update(A).where(A.c.id == row.id).values(data={**row.data, "ActionsEnabled": enabled}))


@operation("cloudwatch", "EnableAlarmActions")
def enable_alarm_actions(ctx: Context, params: dict) -> dict:
    _set_actions_enabled(ctx, params["AlarmNames"], True)
    return {}


@operation("cloudwatch", "DisableAlarmActions")
def disable_alarm_actions(ctx: Context, params: dict) -> dict:
    _set_actions_enabled(ctx, params["AlarmNames"], False)
    return {}


def _set_state(
    conn,
    row,
    state: str,
    reason: str,
    reason_data: str | None,
    *,
    config_stamp: float | None = None,
    held_through: int | None = None,
) -> bool:
    """Move an alarm to ``state``; False if its configuration changed meanwhile (``config_stamp``)."""
    now = time.time()
    data = dict(row.data)
    if held_through is not None:
        data[HELD_THROUGH] = held_through
    if config_stamp is not None and data.get("AlarmConfigurationUpdatedTimestamp") != config_stamp:
        return False
    if data["StateValue"] != state:
        data["StateTransitionedTimestamp"] = now
    data.update(StateValue=state, StateReason=reason, StateUpdatedTimestamp=now)
    data.pop("StateReasonData", None)
    if reason_data is not None:
        data["StateReasonData"] = reason_data
    conn.execute(update(A).where(A.c.id == row.id).values(state=state, data=data))
    return True


@operation("cloudwatch", "SetAlarmState")
def set_alarm_state(ctx: Context, params: dict) -> dict:
    state = params["StateValue"]
    if state not in STATES:
        raise invalid_value(f"The value {state} for parameter StateValue is invalid.")
    reason_data = params.get("StateReasonData")
    if reason_data is not None:
        try:
            json.loads(reason_data)
        except ValueError:
            raise AWSError("InvalidFormatFault", "The parameter StateReasonData must be valid JSON.") from None
    with ctx.store.write() as conn:
        row = _find_alarm(conn, ctx.account_id, ctx.region, params["AlarmName"])
        if row is None:
            raise _not_found(params["AlarmName"])
        # The state holds until the next evaluation, when the current period ends.
        period = row.data["Period"]
        _set_state(
            conn, row, state, params["StateReason"], reason_data, held_through=int(time.time()) // period * period
        )
    return {}


@operation("cloudwatch", "DeleteAlarms")
def delete_alarms(ctx: Context, params: dict) -> dict:
    names = params["AlarmNames"]
    with ctx.store.write() as conn:
        rows = conn.execute(
            select(A.c.id, A.c.name).where(
                A.c.account_id == ctx.account_id, A.c.region == ctx.region, A.c.name.in_(names)
            )
        ).all()
        absent = sorted(set(names) - {row.name for row in rows})
        if absent:  # like CloudWatch: one wrong name and nothing is deleted
            raise _not_found(absent[0])
        conn.execute(delete(A).where(A.c.id.in_([row.id for row in rows])))
        tag_store.forget(conn, *[alarm_arn(ctx.account_id, ctx.region, row.name) for row in rows])
    return {}


def _owned_alarm(conn, ctx: Context, arn: str):
    prefix = f"arn:aws:cloudwatch:{ctx.region}:{ctx.account_id}:alarm:"
    row = _find_alarm(conn, ctx.account_id, ctx.region, arn[len(prefix) :]) if arn.startswith(prefix) else None
    if row is None:
        raise AWSError("ResourceNotFoundException", f"The resource {arn} does not exist.")
    return row


@operation("cloudwatch", "TagResource")
def tag_resource(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        _owned_alarm(conn, ctx, params["ResourceARN"])
        tag_store.add(conn, params["ResourceARN"], params["Tags"])
    return {}


@operation("cloudwatch", "UntagResource")
def untag_resource(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        _owned_alarm(conn, ctx, params["ResourceARN"])
        tag_store.remove(conn, params["ResourceARN"], params["TagKeys"])
    return {}


@operation("cloudwatch", "ListTagsForResource")
def list_tags_for_resource(ctx: Context, params: dict) -> dict:
    with ctx.store.read() as conn:
        _owned_alarm(conn, ctx, params["ResourceARN"])
        return {"Tags": tag_store.read(conn, params["ResourceARN"])}


def alarm_state(backends, account_id: str, region: str, alarm_name: str) -> str | None:
    """The alarm's StateValue ("OK", "ALARM" or "INSUFFICIENT_DATA"), or None if there is no such alarm."""
    with backends.store.read() as conn:
        return conn.execute(
            select(A.c.state).where(A.c.account_id == account_id, A.c.region == region, A.c.name == alarm_name)
        ).scalar()


# -- evaluation ----------------------------------------------------------------------


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _shown(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%d/%m/%y %H:%M:%S")


def _significant_samples(percentile: float) -> float:
    """How many samples a period needs for its percentile (0 to 100) to count, as CloudWatch documents:
    10/(1-p) from p0.5 up, 10/p below (p as a fraction); p0 and p100 are the exact minimum and maximum."""
    fraction = percentile / 100
    if fraction <= 0 or fraction >= 1:
        return 0.0
    return 10 / (1 - fraction) if fraction >= 0.5 else 10 / fraction


def evaluate(backends, account_id: str, region: str, alarm: dict, end: int) -> tuple[str, str, str] | None:
    """(state, reason, reason data) of a metric alarm over the periods that ended by ``end``; None keeps
    the current state (TreatMissingData ignore, with no data)."""
    period, count = alarm["Period"], alarm["EvaluationPeriods"]
    to_alarm = alarm.get("DatapointsToAlarm") or count
    start = end - count * period
    series = metric_store.series_key(
        account_id,
        region,
        alarm["Namespace"],
        alarm["MetricName"],
        {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
    )
    name = alarm.get("Statistic") or alarm["ExtendedStatistic"]
    percentile = None if "Statistic" in alarm else float(name[1:])
    sets = metric_store.aggregate(
        backends, series, start, end, period, alarm.get("Unit"), distributions=percentile is not None
    )
    merged = merged_units(sets)
    present = [
        (bucket, value)
        for bucket in range(start, end, period)
        if bucket in merged and (value := statistic(merged[bucket][0], name)) is not None
    ]
    if (
        percentile is not None
        and alarm.get("EvaluateLowSampleCountPercentile") == "ignore"
        and any(merged[bucket][0][0] < _significant_samples(percentile) for bucket, _ in present)
    ):
        return None  # too few samples in a period for the percentile to mean much: the state holds
    compare, words = COMPARISONS[alarm["ComparisonOperator"]]
    threshold = alarm["Threshold"]
    treat = alarm.get("TreatMissingData", "missing")
    absent = count - len(present)
    breaching = sum(1 for _, value in present if compare(value, threshold))
    if treat == "breaching":
        breaching += absent
    data = {
        "version": "1.0",
        "queryDate": _iso(time.time()),
        "startDate": _iso(start),
        "statistic": name,
        "period": period,
        "threshold": threshold,
        "recentDatapoints": [value for _, value in present],
        "evaluatedDatapoints": [{"timestamp": _iso(b), "value": v} for b, v in reversed(present)],
    }
    if not present and treat in ("missing", "ignore"):
        if treat == "ignore":
            return None
        reason = f"Insufficient Data: {count} datapoint{'s were' if count > 1 else ' was'} unknown."
        return "INSUFFICIENT_DATA", reason, json.dumps(data)
    shown = ", ".join(f"{value} ({_shown(bucket)})" for bucket, value in reversed(present))
    state = "ALARM" if breaching >= to_alarm else "OK"
    reason = (
        f"Threshold Crossed: {breaching} out of the last {count} datapoints [{shown}] "
        f"{'was' if breaching == 1 else 'were'} {words} the threshold ({threshold}) "
        f"(minimum {to_alarm} datapoint{'s' if to_alarm > 1 else ''} for ALARM)."
    )
    if absent and treat in ("breaching", "notBreaching"):
        reason += (
            f" {absent} missing datapoint{'s were' if absent > 1 else ' was'} treated as "
            f"[{'Breaching' if treat == 'breaching' else 'NonBreaching'}]."
        )
    return state, reason, json.dumps(data)


class AlarmEvaluator(Periodic):
    """Evaluates every alarm once per period, when a period ends, and at once when it is created or changed.

    ``evaluated`` remembers, per alarm and configuration, the end of the last period it
    evaluated (after a restart every alarm is evaluated again at once); an alarm whose state
    was set by hand for that period (HELD_THROUGH) is left alone until the next one ends.
    It looks every TICK_SECONDS (the shortest Period is 10 s) and when PutMetricAlarm wakes it;
    nothing is evaluated at shutdown.
    """

    TICK_SECONDS = 1.0

    def __init__(self, backends) -> None:
        super().__init__("alarm-evaluator", self.TICK_SECONDS, run_at_start=True, final_run=False)
        self.backends = backends
        self._evaluated: dict[tuple[int, float], int] = {}  # only the evaluator's thread uses it

    def run(self) -> None:
        # One server evaluates (several would each change states and act on them); the others stand by.
        leases(self.backends).as_leader("alarm-evaluator", self.evaluate_due)

    def evaluate_due(self) -> None:
        now = int(time.time())
        with self.backends.store.read() as conn:
            rows = conn.execute(select(A.c.id, A.c.account_id, A.c.region, A.c.data)).all()
        live = set()
        for row in rows:
            alarm = row.data
            key = (row.id, alarm["AlarmConfigurationUpdatedTimestamp"])
            live.add(key)
            boundary = now // alarm["Period"] * alarm["Period"]
            if self._evaluated.get(key, -1) >= boundary or alarm.get(HELD_THROUGH, -1) >= boundary:
                continue
            outcome = evaluate(self.backends, row.account_id, row.region, alarm, boundary)
            self._evaluated[key] = boundary
            if outcome is None or outcome[0] == alarm["StateValue"]:
                continue  # the state, and so its reason, changes only on a transition
            with self.backends.store.write() as conn:
                current = conn.execute(select(A).where(A.c.id == row.id)).first()
                if (
                    current is not None
                    and current.data["StateValue"] != outcome[0]
                    and current.data.get(HELD_THROUGH, -1) < boundary
                ):  # no SetAlarmState meanwhile
                    _set_state(conn, current, *outcome, config_stamp=key[1])
        self._evaluated = {k: v for k, v in self._evaluated.items() if k in live}


def _evaluator(backends) -> AlarmEvaluator:
    return backends.shared("cloudwatch.alarms", lambda: AlarmEvaluator(backends))


@background_worker
def _start_evaluator(backends) -> AlarmEvaluator:
    return _evaluator(backends)
