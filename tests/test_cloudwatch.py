"""CloudWatch metrics through boto3 (JSON 1.0 and Smithy RPC v2 CBOR) and the aws CLI; bad requests, the internal
recording API, restarts, roll-up and the Prometheus exposition. Alarms: tests/test_cloudwatch_alarms.py."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import botocore.parsers
import botocore.serialize
import pytest
from botocore.exceptions import ClientError

from support.cloudwatch import error, minute_ago, timestamp, wait_for_state

ACCOUNT = "123456789012"
pytestmark = pytest.mark.both_databases
REGION = "us-east-1"


@pytest.fixture
def cw(client):
    return client("cloudwatch")


@pytest.fixture
def cw_cbor(client):
    """A client speaking Smithy RPC v2 CBOR, as botocore does when a service offers no JSON protocol."""
    made = client("cloudwatch")
    made._serializer = botocore.serialize.create_serializer("smithy-rpc-v2-cbor", True)

    class Parsers:
        @staticmethod
        def create_parser(_protocol):
            return botocore.parsers.create_parser("smithy-rpc-v2-cbor")

    made._endpoint._response_parser_factory = Parsers()
    sent = []
    made.meta.events.register("before-send", lambda request, **_: sent.append(request.headers.get("smithy-protocol")))
    made.sent_protocols = sent
    return made


@pytest.mark.parametrize("protocol", ["json", "cbor"])
def test_put_and_get_metric_statistics(cw, cw_cbor, protocol, unique):
    cw = cw if protocol == "json" else cw_cbor
    namespace, start = unique("App"), minute_ago() - 60
    host_a = [{"Name": "Host", "Value": "a"}]
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": "Latency",
                "Dimensions": host_a,
                "Value": 10.0,
                "Unit": "Milliseconds",
                "Timestamp": timestamp(start),
            },
            {
                "MetricName": "Latency",
                "Dimensions": host_a,
                "Value": 30.0,
                "Unit": "Milliseconds",
                "Timestamp": timestamp(start + 20),
            },
            {
                "MetricName": "Latency",
                "Dimensions": host_a,
                "Unit": "Milliseconds",
                "Timestamp": timestamp(start + 60),
                "StatisticValues": {"SampleCount": 4, "Sum": 20.0, "Minimum": 2.0, "Maximum": 8.0},
            },
            {
                "MetricName": "Latency",
                "Dimensions": host_a,
                "Unit": "Milliseconds",
                "Timestamp": timestamp(start + 70),
                "Values": [1.0, 100.0],
                "Counts": [3, 1],
            },
            {
                "MetricName": "Latency",
                "Dimensions": [{"Name": "Host", "Value": "b"}],
                "Value": 999.0,
                "Timestamp": timestamp(start),
            },
        ],
    )
    got = cw.get_metric_statistics(
        Namespace=namespace,
        MetricName="Latency",
        Dimensions=host_a,
        StartTime=timestamp(start - 60),
        EndTime=timestamp(start + 120),
        Period=60,
        Statistics=["SampleCount", "Sum", "Average", "Minimum", "Maximum"],
    )
    assert got["Label"] == "Latency"
    points = sorted(got["Datapoints"], key=lambda p: p["Timestamp"])
    assert [p["Timestamp"] for p in points] == [timestamp(start), timestamp(start + 60)]
    assert {k: points[0][k] for k in ("SampleCount", "Sum", "Average", "Minimum", "Maximum", "Unit")} == {
        "SampleCount": 2.0,
        "Sum": 40.0,
        "Average": 20.0,
        "Minimum": 10.0,
        "Maximum": 30.0,
        "Unit": "Milliseconds",
    }
    assert {k: points[1][k] for k in ("SampleCount", "Sum", "Minimum", "Maximum")} == {
        "SampleCount": 8.0,
        "Sum": 123.0,
        "Minimum": 1.0,
        "Maximum": 100.0,
    }
    # One-second periods see each datum; another unit or dimension set sees none of host a's.
    fine = cw.get_metric_statistics(
        Namespace=namespace,
        MetricName="Latency",
        Dimensions=host_a,
        StartTime=timestamp(start),
        EndTime=timestamp(start + 60),
        Period=1,
        Statistics=["Sum"],
    )
    assert sorted(p["Sum"] for p in fine["Datapoints"]) == [10.0, 30.0]
    assert (
        cw.get_metric_statistics(
            Namespace=namespace,
            MetricName="Latency",
            Dimensions=host_a,
            Unit="Seconds",
            StartTime=timestamp(start),
            EndTime=timestamp(start + 120),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        == []
    )
    assert [
        p["Sum"]
        for p in cw.get_metric_statistics(
            Namespace=namespace,
            MetricName="Latency",
            Dimensions=[{"Name": "Host", "Value": "b"}],
            StartTime=timestamp(start),
            EndTime=timestamp(start + 120),
            Period=120,
            Statistics=["Sum"],
        )["Datapoints"]
    ] == [999.0]
    if protocol == "cbor":
        assert set(cw.sent_protocols) == {b"rpc-v2-cbor"}


def test_get_metric_data_and_pages(cw, unique):
    namespace, start = unique("App"), minute_ago() - 120
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Requests", "Value": float(i + 1), "Unit": "Count", "Timestamp": timestamp(start + 60 * i)}
            for i in range(3)
        ],
    )
    metric = {"Namespace": namespace, "MetricName": "Requests"}
    queries = [
        {"Id": "sum", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}, "Label": "total"},
        {"Id": "hidden", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Maximum"}, "ReturnData": False},
    ]
    got = cw.get_metric_data(
        MetricDataQueries=queries,
        StartTime=timestamp(start),
        EndTime=timestamp(start + 180),
        ScanBy="TimestampAscending",
    )
    assert [(r["Id"], r["Label"], r["Values"], r["StatusCode"]) for r in got["MetricDataResults"]] == [
        ("sum", "total", [1.0, 2.0, 3.0], "Complete")
    ]
    assert got["MetricDataResults"][0]["Timestamps"] == [timestamp(start + 60 * i) for i in range(3)]

    values, token = [], None
    for _ in range(5):
        page = cw.get_metric_data(
            MetricDataQueries=queries[:1],
            StartTime=timestamp(start),
            EndTime=timestamp(start + 180),
            MaxDatapoints=2,
            **({"NextToken": token} if token else {}),
        )
        values += page["MetricDataResults"][0]["Values"]
        token = page.get("NextToken")
        if not token:
            break
    assert values == [3.0, 2.0, 1.0]  # newest first by default
    assert error(
        cw.get_metric_data,
        MetricDataQueries=[{"Id": "e", "Expression": "SUM(METRICS())"}],
        StartTime=timestamp(start),
        EndTime=timestamp(start + 180),
    ) == ("InvalidParameterValue", 400)


@pytest.mark.parametrize("protocol", ["json", "cbor"])
def test_percentiles(cw, cw_cbor, protocol, unique):
    """ExtendedStatistics and a percentile Stat answer from the values sent (within CloudWatch's own
    approximation): Values with Counts, single Values, a statistic set of one value; a statistic set of several
    values has no percentiles, so its period answers none."""
    client = cw if protocol == "json" else cw_cbor
    namespace, start = unique("Latency"), minute_ago() - 120

    def datum(at: int, **values) -> dict:
        return {"MetricName": "Time", "Timestamp": timestamp(at), **values}

    def statistic_set(count: int, total: float, low: float, high: float) -> dict:
        return {"SampleCount": count, "Sum": total, "Minimum": low, "Maximum": high}

    data = [
        # First minute: 1..100, half of them as Values with Counts, the rest one by one.
        datum(start, Values=[float(v) for v in range(1, 51)], Counts=[1.0] * 50),
        *(datum(start + 1, Value=float(v)) for v in range(51, 101)),
        # Second minute: a statistic set of one value, and one of nine equal values: both known.
        datum(start + 60, StatisticValues=statistic_set(1, 4, 4, 4)),
        datum(start + 61, StatisticValues=statistic_set(9, 18, 2, 2)),
        # Third minute: a statistic set of several different values: no percentiles.
        datum(start + 120, StatisticValues=statistic_set(5, 25, 1, 9)),
    ]
    client.put_metric_data(Namespace=namespace, MetricData=data)
    window = {
        "Namespace": namespace,
        "MetricName": "Time",
        "StartTime": timestamp(start),
        "EndTime": timestamp(start + 180),
    }

    stats = client.get_metric_statistics(**window, Period=60, ExtendedStatistics=["p50", "p99.9", "p0", "p100"])
    points = {p["Timestamp"]: p["ExtendedStatistics"] for p in stats["Datapoints"]}
    assert set(points) == {timestamp(start), timestamp(start + 60)}  # the third minute: a statistic set, no percentiles
    first = points[timestamp(start)]
    assert first["p50"] == pytest.approx(50.0, rel=0.01)
    assert first["p99.9"] == pytest.approx(100.0, rel=0.01) and first["p99.9"] <= 100.0
    assert (first["p0"], first["p100"]) == (1.0, 100.0)
    assert points[timestamp(start + 60)]["p50"] == pytest.approx(2.0, rel=0.01)  # nine 2s and one 4
    assert points[timestamp(start + 60)]["p100"] == 4.0

    metric = {"Namespace": namespace, "MetricName": "Time"}
    queries = [
        {"Id": f"q{i}", "MetricStat": {"Metric": metric, "Period": 60, "Stat": stat}}
        for i, stat in enumerate(("p90", "Average", "p10"))
    ]
    got = client.get_metric_data(
        MetricDataQueries=queries,
        StartTime=timestamp(start),
        EndTime=timestamp(start + 180),
        ScanBy="TimestampAscending",
    )
    results = {r["Id"]: r for r in got["MetricDataResults"]}
    assert results["q0"]["Timestamps"] == [timestamp(start), timestamp(start + 60)]
    assert results["q0"]["Values"][0] == pytest.approx(90.0, rel=0.01)
    assert results["q2"]["Values"][0] == pytest.approx(10.0, rel=0.01)
    assert len(results["q1"]["Values"]) == 3  # Average: every minute, the statistic set's too
    assert error(
        client.get_metric_data,
        MetricDataQueries=[{"Id": "t", "MetricStat": {**queries[0]["MetricStat"], "Stat": "tm99"}}],
        StartTime=timestamp(start),
        EndTime=timestamp(start + 180),
    ) == ("InvalidParameterValue", 400)


def test_list_metrics(cw, unique):
    namespace = unique("App")
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Hits", "Dimensions": [{"Name": "Page", "Value": "home"}], "Value": 1.0},
            {"MetricName": "Hits", "Dimensions": [{"Name": "Page", "Value": "about"}], "Value": 1.0},
            {"MetricName": "Errors", "Value": 1.0},
        ],
    )

    def listed(**kwargs):
        return sorted(
            (m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"]))
            for m in cw.list_metrics(Namespace=namespace, **kwargs)["Metrics"]
        )

    assert listed() == [("Errors", ()), ("Hits", (("Page", "about"),)), ("Hits", (("Page", "home"),))]
    assert listed(MetricName="Hits", Dimensions=[{"Name": "Page", "Value": "home"}]) == [("Hits", (("Page", "home"),))]
    assert listed(Dimensions=[{"Name": "Page"}], RecentlyActive="PT3H") == [
        ("Hits", (("Page", "about"),)),
        ("Hits", (("Page", "home"),)),
    ]

    # Pages of 500, also when a dimension filter skips most of what the store holds.
    many = unique("Many")
    for chunk in range(2):
        cw.put_metric_data(
            Namespace=many,
            MetricData=[
                {
                    "MetricName": "Work",
                    "Value": 1.0,
                    "Dimensions": [
                        {"Name": "Shard", "Value": str(i)},
                        {"Name": "Parity", "Value": "odd" if i % 2 else "even"},
                    ],
                }
                for i in range(chunk * 1000, chunk * 1000 + 1000)
            ],
        )
    shards, token, pages = [], None, 0
    while True:
        page = cw.list_metrics(
            Namespace=many, Dimensions=[{"Name": "Parity", "Value": "even"}], **({"NextToken": token} if token else {})
        )
        pages += 1
        assert len(page["Metrics"]) <= 500
        shards += [d["Value"] for m in page["Metrics"] for d in m["Dimensions"] if d["Name"] == "Shard"]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(shards, key=int) == [str(i) for i in range(0, 2000, 2)] and pages >= 2
    assert error(cw.list_metrics, Namespace=namespace, NextToken=token or "forged") == ("InvalidNextToken", 400)


def test_bad_requests(cw, unique):
    namespace, now = unique("App"), time.time()
    metric = {"Namespace": namespace, "MetricName": "M", "StartTime": timestamp(now - 600), "EndTime": timestamp(now)}
    alarm = {
        "AlarmName": unique("bad"),
        "Namespace": namespace,
        "MetricName": "M",
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    without_statistic = {k: v for k, v in alarm.items() if k != "Statistic"}
    cases = [
        (
            cw.put_metric_data,
            {"Namespace": "AWS/SageMaker", "MetricData": [{"MetricName": "M", "Value": 1.0}]},
            "InvalidParameterValue",
        ),
        (
            cw.put_metric_data,
            {"Namespace": namespace, "MetricData": [{"MetricName": "M", "Value": 1.0, "Values": [1.0]}]},
            "InvalidParameterCombination",
        ),
        (
            cw.put_metric_data,
            {
                "Namespace": namespace,
                "MetricData": [{"MetricName": "M", "Value": 1.0, "Timestamp": timestamp(now - 30 * 86400)}],
            },
            "InvalidParameterValue",
        ),
        (
            cw.put_metric_data,
            {"Namespace": namespace, "MetricData": [{"MetricName": "M", "Values": [1.0, 2.0], "Counts": [1.0]}]},
            "InvalidParameterValue",
        ),
        (cw.get_metric_statistics, {**metric, "Period": 60}, "InvalidParameterCombination"),
        (cw.get_metric_statistics, {**metric, "Period": 7, "Statistics": ["Sum"]}, "InvalidParameterValue"),
        (cw.get_metric_statistics, {**metric, "Period": 60, "ExtendedStatistics": ["p101"]}, "InvalidParameterValue"),
        (cw.get_metric_statistics, {**metric, "Period": 60, "ExtendedStatistics": ["median"]}, "InvalidParameterValue"),
        (
            cw.get_metric_statistics,
            {**metric, "Period": 60, "Statistics": ["Sum"], "ExtendedStatistics": ["p99"]},
            "InvalidParameterCombination",
        ),
        (cw.get_metric_statistics, {**metric, "Period": 60, "Statistics": ["Median"]}, "ValidationError"),
        (
            cw.get_metric_statistics,
            {**metric, "StartTime": timestamp(now - 86400), "Period": 1, "Statistics": ["Sum"]},
            "InvalidParameterCombination",
        ),
        (
            cw.put_metric_alarm,
            {**alarm, "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:t"]},
            "InvalidParameterValue",
        ),
        (cw.put_metric_alarm, {**alarm, "TreatMissingData": "sometimes"}, "InvalidParameterValue"),
        (cw.put_metric_alarm, {**alarm, "ExtendedStatistic": "p99"}, "InvalidParameterCombination"),
        (
            cw.put_metric_alarm,
            without_statistic,
            "InvalidParameterCombination",
        ),
        (cw.put_metric_alarm, {**without_statistic, "ExtendedStatistic": "p101"}, "InvalidParameterValue"),
        (cw.put_metric_alarm, {**without_statistic, "ExtendedStatistic": "tm99"}, "InvalidParameterValue"),
        (
            cw.put_metric_alarm,
            {**without_statistic, "ExtendedStatistic": "p99", "EvaluateLowSampleCountPercentile": "sometimes"},
            "InvalidParameterValue",
        ),
        (cw.put_metric_alarm, {**alarm, "DatapointsToAlarm": 2}, "InvalidParameterValue"),
        (cw.put_metric_alarm, {**alarm, "Period": 45}, "InvalidParameterValue"),
        (cw.put_metric_alarm, {k: v for k, v in alarm.items() if k != "Threshold"}, "MissingParameter"),
        (
            cw.put_metric_alarm,
            {**alarm, "ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"},
            "InvalidParameterValue",
        ),
        (
            cw.set_alarm_state,
            {"AlarmName": unique("none"), "StateValue": "ALARM", "StateReason": "x"},
            "ResourceNotFound",
        ),
    ]
    for call, kwargs, code in cases:
        assert error(call, **kwargs)[0] == code, kwargs
    with pytest.raises(ClientError) as trimmed:
        cw.put_metric_alarm(**without_statistic, ExtendedStatistic="tm99")
    assert "supports the percentiles p0.0 to p100" in trimmed.value.response["Error"]["Message"]
    assert cw.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"] == []
    assert cw.list_metrics(Namespace=namespace)["Metrics"] == []


def test_aws_cli(server, cw, unique):
    namespace = unique("Cli")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": REGION}
    aws = ["aws", "--endpoint-url", server.url, "--output", "json", "cloudwatch"]
    start = minute_ago()
    put = subprocess.run(
        aws
        + [
            "put-metric-data",
            "--namespace",
            namespace,
            "--metric-name",
            "Jobs",
            "--value",
            "4",
            "--unit",
            "Count",
            "--timestamp",
            str(start + 5),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert put.returncode == 0, put.stderr
    got = subprocess.run(
        aws
        + [
            "get-metric-statistics",
            "--namespace",
            namespace,
            "--metric-name",
            "Jobs",
            "--start-time",
            str(start),
            "--end-time",
            str(start + 60),
            "--period",
            "60",
            "--statistics",
            "Sum",
            "SampleCount",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    points = json.loads(got.stdout)["Datapoints"]
    assert [(p["Sum"], p["SampleCount"], p["Unit"]) for p in points] == [(4.0, 1.0, "Count")]
    bad = subprocess.run(
        aws
        + [
            "get-metric-statistics",
            "--namespace",
            namespace,
            "--metric-name",
            "Jobs",
            "--start-time",
            str(start + 60),
            "--end-time",
            str(start),
            "--period",
            "60",
            "--statistics",
            "Sum",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode != 0 and "InvalidParameterValue" in bad.stderr


def _prometheus(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode()


def test_internal_api_restart_and_prometheus(make_server, client, tmp_path):
    """What the endpoint router and deployment engine use: record() with no I/O, flushed to the store;
    the alarm evaluator sees unflushed values; data survives a restart; GET /metrics exposes every metric."""
    from selfmaker.aws.cloudwatch import alarms, metric_store
    from selfmaker.backends import Backends
    from selfmaker.config import Settings

    srv = make_server("cloudwatch-restart")
    backends = Backends.build(Settings(data_dir=srv.data_dir, database_url=srv.database_url))
    try:
        variant = {"EndpointName": "ep", "VariantName": "AllTraffic"}
        for latency in (1500.0, 2500.0):
            metric_store.record(backends, ACCOUNT, REGION, "AWS/SageMaker", "Invocations", variant, 1, "None")
            metric_store.record(
                backends, ACCOUNT, REGION, "AWS/SageMaker", "ModelLatency", variant, latency, "Microseconds"
            )
        now = int(time.time())
        series = metric_store.series_key(ACCOUNT, REGION, "AWS/SageMaker", "ModelLatency", variant)
        unflushed = list(metric_store.aggregate(backends, series, now - 5, now + 5, 10).values())
        assert [stats[:4] for stats in unflushed] == [[2.0, 4000.0, 1500.0, 2500.0]]  # visible before any flush
        assert sum(unflushed[0][4].values()) == 2.0  # with the values' distribution, for percentiles
        alarm = {
            "Namespace": "AWS/SageMaker",
            "MetricName": "ModelLatency",
            "Dimensions": [{"Name": k, "Value": v} for k, v in variant.items()],
            "Statistic": "Average",
            "Period": 10,
            "EvaluationPeriods": 1,
            "Threshold": 1000.0,
            "ComparisonOperator": "GreaterThanThreshold",
        }
        state, reason, _ = alarms.evaluate(backends, ACCOUNT, REGION, alarm, now // 10 * 10 + 10)
        assert state == "ALARM" and "[2000.0 (" in reason
        assert alarms.alarm_state(backends, ACCOUNT, REGION, "no-such-alarm") is None
        metric_store.flush(backends)
    finally:
        backends.close()

    srv.start()
    cw = client("cloudwatch", srv=srv)
    got = cw.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=[{"Name": k, "Value": v} for k, v in variant.items()],
        StartTime=timestamp(now - 60),
        EndTime=timestamp(now + 60),
        Period=120,
        Statistics=["Sum"],
    )
    assert [p["Sum"] for p in got["Datapoints"]] == [2.0]
    cw.put_metric_data(
        Namespace="My/App",
        MetricData=[{"MetricName": "QueueDepth", "Value": 3.0, "Dimensions": [{"Name": "Queue", "Value": 'a"b'}]}],
    )
    cw.put_metric_alarm(
        AlarmName="slow",
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=alarm["Dimensions"],
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="breaching",
    )
    wait_for_state(cw, "slow", "ALARM")
    srv.stop()

    backends = Backends.build(Settings(data_dir=srv.data_dir, database_url=srv.database_url))
    try:
        assert alarms.alarm_state(backends, ACCOUNT, REGION, "slow") == "ALARM"
    finally:
        backends.close()

    srv.start()
    text = _prometheus(f"{srv.url}/metrics")
    # The router's invocation metrics are /metrics' own histograms (tests/test_metrics.py): their CloudWatch
    # totals, kept under two dimension sets, are not bridged (sum() over both counted each request twice).
    assert "cloudwatch_sagemaker_invocations" not in text and "cloudwatch_sagemaker_model_latency" not in text
    assert "# TYPE cloudwatch_my_app_queue_depth summary" in text
    assert f'cloudwatch_my_app_queue_depth_sum{{account="{ACCOUNT}",queue="a\\"b",region="{REGION}"}} 3.0' in text
    assert f'cloudwatch_my_app_queue_depth_count{{account="{ACCOUNT}",queue="a\\"b",region="{REGION}"}} 1.0' in text
    assert "cloudwatch_my_app_queue_depth_sum" in _prometheus(f"{srv.url}/_selfmaker/metrics")


def test_old_data_is_rolled_up_and_expired(tmp_path):
    """One-second statistic sets older than three hours become one per minute (and so on), as CloudWatch
    keeps them; the statistics over them do not change."""
    from sqlalchemy import select

    from selfmaker.aws.cloudwatch import distribution, metric_store
    from selfmaker.backends import Backends
    from selfmaker.config import Settings
    from selfmaker.store import schema

    backends = Backends.build(Settings(data_dir=tmp_path / "data"))
    try:
        series = metric_store.series_key(ACCOUNT, REGION, "App", "Load", {})
        now = time.time()
        minute = int(now - 4 * 3600) // 120 * 120  # a minute that starts a two-minute period
        points = {(series, "Count", minute + s): metric_store.one_value(float(s)) for s in (0, 1, 59)}
        points[(series, "Count", minute + 60)] = [2.0, 5.0, 2.0, 3.0, None]  # a statistic set: values unknown
        points[(series, "Count", int(now) - 10)] = metric_store.one_value(7.0)  # recent: stays at one second
        points[(series, "Count", int(now - 500 * 86_400))] = metric_store.one_value(1.0)  # expired
        with backends.store.write() as conn:
            metric_store.write(conn, points)
        before = metric_store.aggregate(backends, series, minute, minute + 120, 120)

        rolled: dict[int, int] = {}
        metric_store.roll_up(backends, now, since=rolled)
        metric_store.roll_up(backends, now, since=rolled)  # again: nothing left to merge
        with backends.store.read() as conn:
            stamps = sorted(conn.execute(select(schema.cw_datapoints.c.timestamp)).scalars())
        assert stamps == [minute, minute + 60, int(now) - 10]
        assert (
            metric_store.aggregate(backends, series, minute, minute + 120, 120)
            == before
            == {(minute, "Count"): [5.0, 65.0, 0.0, 59.0, None]}
        )
        assert metric_store.aggregate(backends, series, minute, minute + 60, 60)[(minute, "Count")][:4] == [
            3.0,
            60.0,
            0.0,
            59.0,
        ]
        # The rolled-up minute keeps its values' distribution (its percentiles); the minute merged with a
        # statistic set of two values has none, as CloudWatch answers no percentiles of those.
        by_minute = metric_store.aggregate(backends, series, minute, minute + 120, 60, distributions=True)
        low, high, found = by_minute[(minute, "Count")][2:]
        assert found is not None and sum(found.values()) == 3.0
        assert distribution.percentile(found, 50, low, high) == pytest.approx(1.0, rel=0.01)
        assert by_minute[(minute + 60, "Count")][4] is None
    finally:
        backends.close()
