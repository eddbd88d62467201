"""CloudWatch alarms through boto3: their lifecycle, percentile alarms, missing data and the evaluator."""

from __future__ import annotations

import json

import pytest

from support.cloudwatch import error, minute_ago, timestamp, wait_for_state

ACCOUNT = "123456789012"
pytestmark = pytest.mark.both_databases
REGION = "us-east-1"


@pytest.fixture
def cw(client):
    return client("cloudwatch")


def test_alarm_lifecycle(cw, unique):
    namespace, name = unique("App"), unique("alarm")
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[{"MetricName": "Errors", "Value": 5.0, "Unit": "Count", "Timestamp": timestamp(minute_ago() + 1)}],
    )
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace=namespace,
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=3,
        DatapointsToAlarm=1,
        Threshold=3.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmDescription="too many errors",
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    alarm = wait_for_state(cw, name, "ALARM")
    assert alarm["AlarmArn"] == f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"
    assert alarm["StateReason"].startswith("Threshold Crossed: 1 out of the last 3 datapoints [5.0 (")
    assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [5.0]
    assert alarm["AlarmDescription"] == "too many errors" and alarm["TreatMissingData"] == "missing"
    assert cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"] == [{"Key": "team", "Value": "ml"}]

    # SetAlarmState holds until the alarm's next evaluation (at the end of the current minute).
    cw.set_alarm_state(
        AlarmName=name, StateValue="OK", StateReason="silenced by hand", StateReasonData='{"by": "test"}'
    )
    held = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert (held["StateValue"], held["StateReason"], held["StateReasonData"]) == (
        "OK",
        "silenced by hand",
        '{"by": "test"}',
    )
    assert held["StateUpdatedTimestamp"] > alarm["StateUpdatedTimestamp"]
    assert [a["AlarmName"] for a in cw.describe_alarms(AlarmNamePrefix=name, StateValue="OK")["MetricAlarms"]] == [name]

    for_metric = cw.describe_alarms_for_metric(Namespace=namespace, MetricName="Errors", Statistic="Sum")
    assert [a["AlarmName"] for a in for_metric["MetricAlarms"]] == [name]
    assert (
        cw.describe_alarms_for_metric(
            Namespace=namespace, MetricName="Errors", Dimensions=[{"Name": "Host", "Value": "a"}]
        )["MetricAlarms"]
        == []
    )  # another dimension set is another metric
    cw.disable_alarm_actions(AlarmNames=[name])
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["ActionsEnabled"] is False
    cw.enable_alarm_actions(AlarmNames=[name])
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["ActionsEnabled"] is True

    # An update replaces the configuration, keeps the state, and is evaluated at once.
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace=namespace,
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=3,
        Threshold=100.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["Threshold"] == 100.0
    wait_for_state(cw, name, "OK")

    assert error(cw.delete_alarms, AlarmNames=[name, unique("absent")]) == ("ResourceNotFound", 404)
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"]  # nothing was deleted
    cw.delete_alarms(AlarmNames=[name])
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"] == []
    assert error(cw.set_alarm_state, AlarmName=name, StateValue="OK", StateReason="x") == ("ResourceNotFound", 404)


def test_percentile_alarms(cw, unique):
    """An alarm on ExtendedStatistic evaluates that percentile of the values sent; with
    EvaluateLowSampleCountPercentile=ignore, a period of too few samples (p99 needs 1,000) keeps the state."""
    namespace = unique("App")
    stamp = timestamp(minute_ago() + 1)
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[{"MetricName": "Latency", "Values": [float(v) for v in range(1, 101)], "Timestamp": stamp}],
    )
    alarm = {
        "Namespace": namespace,
        "MetricName": "Latency",
        "Period": 60,
        "EvaluationPeriods": 2,
        "DatapointsToAlarm": 1,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    ignoring = unique("p99-ignore")
    cw.put_metric_alarm(
        AlarmName=ignoring, ExtendedStatistic="p99", Threshold=90.0, EvaluateLowSampleCountPercentile="ignore", **alarm
    )
    high, median = unique("p99"), unique("p50")
    cw.put_metric_alarm(AlarmName=high, ExtendedStatistic="p99", Threshold=90.0, **alarm)
    cw.put_metric_alarm(
        AlarmName=median, ExtendedStatistic="p50", Threshold=90.0, EvaluateLowSampleCountPercentile="evaluate", **alarm
    )
    fired = wait_for_state(cw, high, "ALARM")
    assert "Statistic" not in fired and fired["ExtendedStatistic"] == "p99"
    (value,) = json.loads(fired["StateReasonData"])["recentDatapoints"]
    assert 98 <= value <= 100  # within the store's 1 %
    assert json.loads(fired["StateReasonData"])["statistic"] == "p99"
    calm = wait_for_state(cw, median, "OK")
    assert 49 <= json.loads(calm["StateReasonData"])["recentDatapoints"][0] <= 51
    held = cw.describe_alarms(AlarmNames=[ignoring])["MetricAlarms"][0]
    assert (held["StateValue"], held["EvaluateLowSampleCountPercentile"]) == ("INSUFFICIENT_DATA", "ignore")
    found = cw.describe_alarms_for_metric(Namespace=namespace, MetricName="Latency", ExtendedStatistic="p99")
    assert sorted(a["AlarmName"] for a in found["MetricAlarms"]) == sorted([high, ignoring])
    cw.delete_alarms(AlarmNames=[ignoring, high, median])


@pytest.mark.parametrize(
    "treat,state",
    [("breaching", "ALARM"), ("notBreaching", "OK"), ("missing", "INSUFFICIENT_DATA"), ("ignore", "INSUFFICIENT_DATA")],
)
def test_treat_missing_data(cw, unique, treat, state):
    name = unique(f"missing-{treat}")
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace=unique("Empty"),
        MetricName="Nothing",
        Statistic="Average",
        Period=10,
        EvaluationPeriods=2,
        Threshold=1.0,
        ComparisonOperator="LessThanThreshold",
        TreatMissingData=treat,
    )
    alarm = wait_for_state(cw, name, state)
    if treat in ("breaching", "notBreaching"):
        assert "2 missing datapoints were treated as" in alarm["StateReason"]
    cw.delete_alarms(AlarmNames=[name])


def test_a_state_set_by_hand_lasts_until_the_next_evaluation(cw, unique):
    name = unique("held")
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace=unique("Empty"),
        MetricName="Nothing",
        Statistic="Sum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="breaching",
    )
    wait_for_state(cw, name, "ALARM")
    cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="testing the pager")
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == "OK"
    back = wait_for_state(cw, name, "ALARM", timeout=25)  # when the current 10 s period ends
    assert back["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints []")
    cw.delete_alarms(AlarmNames=[name])
