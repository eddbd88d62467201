"""Endpoints: variants and their weights and instances, deployments in progress, data capture, and the
invocation metrics of each variant as charts that update live.

Everything comes from the API: DescribeEndpoint (current and desired weights and instance counts, each
variant's status, a blue/green deployment's stage as its PendingDeploymentSummary), DescribeEndpointConfig
(each variant's model and instance type), the endpoint's CloudWatch Logs streams (one per instance,
``VARIANT/INSTANCE-ID``) and CloudWatch GetMetricData over ``AWS/SageMaker`` (Invocations, ModelLatency,
Invocation4XXErrors and 5XX per variant), as a dashboard made with boto3 would read them.
"""

from __future__ import annotations

import time
from typing import Any

from ...server.errors import AWSError, validation
from ..listing import Listing
from ..live import event_stream
from ..web import Route, View

ENDPOINTS = Listing("ListEndpoints", "Endpoints")
NAMESPACE = "AWS/SageMaker"
# The chart windows offered: (seconds shown, CloudWatch period), so each chart has at most a few hundred points.
WINDOWS = {"15m": (900, 10), "1h": (3600, 60), "6h": (6 * 3600, 300), "1d": (86400, 300)}
DEFAULT_WINDOW = "15m"
METRICS_INTERVAL = 5.0
# (chart, metric, statistic, line label, scale): latencies are recorded in microseconds, shown in ms, as
# the percentiles CloudWatch answers from each period's distribution of values.
SERIES = (
    ("Invocations", "Invocations", "Sum", "{variant}", 1.0),
    *(
        (f"{title} (ms)", metric, stat, f"{{variant}} {stat}", 1e-3)
        for title, metric in (("Model latency", "ModelLatency"), ("Overhead latency", "OverheadLatency"))
        for stat in ("p50", "p90", "p99")
    ),
    ("Errors", "Invocation4XXErrors", "Sum", "{variant} 4XX", 1.0),
    ("Errors", "Invocation5XXErrors", "Sum", "{variant} 5XX", 1.0),
)
CHARTS = tuple(dict.fromkeys(chart for chart, *_ in SERIES))


async def list_endpoints(view: View):
    listing = await ENDPOINTS.fetch(view)
    return view.render("endpoints/list.html", title="Endpoints", listing=listing)


def _window(view: View) -> str:
    window = view.query("window", DEFAULT_WINDOW)
    if window not in WINDOWS:
        raise validation(f"The window is one of {', '.join(WINDOWS)}.")
    return window


async def _config(view: View, name: str | None) -> dict:
    """The endpoint configuration's variants by name (empty when it was deleted since: the endpoint runs on)."""
    if not name:
        return {}
    try:
        config = await view.call("DescribeEndpointConfig", {"EndpointConfigName": name})
    except AWSError as err:
        if err.code != "ValidationException":
            raise
        return {}
    variants = [*config.get("ProductionVariants", []), *config.get("ShadowProductionVariants", [])]
    return {"variants": {v["VariantName"]: v for v in variants}, "config": config}


async def _instances(view: View, name: str) -> list[dict]:
    """The endpoint's instances as its log streams show them: one stream per instance that ever ran."""
    try:
        streams = await view.pages(
            "DescribeLogStreams",
            {"logGroupName": f"/aws/sagemaker/Endpoints/{name}", "orderBy": "LastEventTime", "descending": True},
            "logStreams",
            100,
            service="logs",
            token="nextToken",
        )
    except AWSError as err:
        if err.code != "ResourceNotFoundException":
            raise
        return []
    return [
        {
            "variant": s["logStreamName"].split("/", 1)[0],
            "instance": s["logStreamName"].split("/", 1)[-1],
            "first": (s.get("firstEventTimestamp") or s.get("creationTime") or 0) / 1000,
            "last": (s.get("lastEventTimestamp") or 0) / 1000 or None,
        }
        for s in streams
    ]


def _variant_names(described: dict) -> list[str]:
    names = [
        v["VariantName"]
        for member in ("ProductionVariants", "ShadowProductionVariants")
        for v in described.get(member, [])
    ]
    pending = described.get("PendingDeploymentSummary") or {}
    names += [
        v["VariantName"]
        for member in ("ProductionVariants", "ShadowProductionVariants")
        for v in pending.get(member, [])
    ]
    return list(dict.fromkeys(names))


async def metric_charts(view: View, name: str, variants: list[str], window: str) -> dict:
    """The charts of ``variants``' invocation metrics over ``window`` (and the window's ends, the charts'
    x range): one GetMetricData of every series."""
    seconds, period = WINDOWS[window]
    end = time.time()
    start = end - seconds
    return {"start": start, "end": end, "charts": await _charts(view, name, variants, start, end, period)}


async def _charts(view: View, name: str, variants: list[str], start: float, end: float, period: int) -> list:
    lines = [
        (chart, label.format(variant=variant), metric, stat, scale, variant)
        for variant in variants
        for chart, metric, stat, label, scale in SERIES
    ]
    charts: dict[str, dict[str, Any]] = {chart: {"title": chart, "lines": []} for chart in CHARTS}
    if not lines:
        return list(charts.values())
    queries = [
        {
            "Id": f"q{index}",
            "ReturnData": True,
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": metric,
                    "Dimensions": [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": variant}],
                },
                "Period": period,
                "Stat": stat,
            },
        }
        for index, (_, _, metric, stat, _, variant) in enumerate(lines)
    ]
    results: dict[str, dict] = {}
    params = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end, "ScanBy": "TimestampAscending"}
    while True:
        answer = await view.call("GetMetricData", params, service="cloudwatch")
        for result in answer.get("MetricDataResults", []):
            into = results.setdefault(result["Id"], {"Timestamps": [], "Values": []})
            into["Timestamps"] += result.get("Timestamps", [])
            into["Values"] += result.get("Values", [])
        if not answer.get("NextToken"):
            break
        params = {**params, "NextToken": answer["NextToken"]}
    for index, (chart, label, _, _, scale, _) in enumerate(lines):
        result = results.get(f"q{index}", {"Timestamps": [], "Values": []})
        charts[chart]["lines"].append(
            {"label": label, "x": result["Timestamps"], "y": [value * scale for value in result["Values"]]}
        )
    return list(charts.values())


async def endpoint(view: View):
    name = view.labels["name"]
    window = _window(view)
    described = await view.call("DescribeEndpoint", {"EndpointName": name})
    config = await _config(view, described.get("EndpointConfigName"))
    pending = described.get("PendingDeploymentSummary")
    pending_config = await _config(view, pending.get("EndpointConfigName")) if pending else {}
    charts = await metric_charts(view, name, _variant_names(described), window)
    return view.render(
        "endpoints/detail.html",
        title=f"Endpoint {name}",
        endpoint=described,
        name=name,
        config=config.get("config") or {},
        config_variants=config.get("variants") or {},
        pending_variants=pending_config.get("variants") or {},
        instances=await _instances(view, name),
        charts={"window": window, "period": WINDOWS[window][1], **charts},
        window=window,
        windows=WINDOWS,
    )


async def metric_events(view: View):
    """The endpoint's charts and status every few seconds: ``metrics`` and ``status`` events. An endpoint
    never ends by itself, so the stream lives its lifetime and the browser reconnects."""
    name = view.labels["name"]
    window = _window(view)
    await view.call("DescribeEndpoint", {"EndpointName": name})  # the caller's, before anything is read

    async def poll():
        described = await view.call("DescribeEndpoint", {"EndpointName": name})
        charts = await metric_charts(view, name, _variant_names(described), window)
        variants = {
            v["VariantName"]: {
                "current": v.get("CurrentInstanceCount"),
                "desired": v.get("DesiredInstanceCount"),
                "weight": v.get("CurrentWeight"),
            }
            for member in ("ProductionVariants", "ShadowProductionVariants")
            for v in described.get(member, [])
        }
        status = {"status": described["EndpointStatus"], "variants": variants}
        return [("status", status), ("metrics", charts)], False

    return event_stream(view.request, poll, interval=METRICS_INTERVAL)


ROUTES = [
    Route("GET", "/endpoints", list_endpoints),
    Route("GET", "/endpoints/{name}", endpoint),
    Route("GET", "/endpoints/{name}/metrics", metric_events),
]
