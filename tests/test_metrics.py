"""GET /metrics through real clients: boto3 calls and invocations, then a scrape parsed by prometheus_client.

Two SelfMaker servers run in this process (as several servers in one test process do), so each test
also shows that a server's registry holds only what that server observed.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from selfmaker.services.hosting.routes import publish, withdraw
from support import endpoints
from support.clients import make_client
from support.hosting import Container, InProcessServer, echo, route, target
from support.server import ACCOUNT, REGION
from support.waiting import wait_for

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "selfmaker.json"
ENDPOINT_LABELS = {"account", "region", "endpoint_name", "variant_name"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    first = InProcessServer(tmp_path_factory.mktemp("metrics-a") / "data").start()
    second = InProcessServer(tmp_path_factory.mktemp("metrics-b") / "data").start()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
def endpoint(servers, unique):
    """endpoint(traffic) publishes a Route on the first server for a fresh endpoint name."""
    names = []

    def make(traffic) -> str:
        name = unique("metrics-ep")
        names.append(name)
        publish(servers[0].backends, route(name, traffic))
        return name

    yield make
    for name in names:
        withdraw(servers[0].backends, ACCOUNT, REGION, name)


@pytest.fixture
def containers(tmp_path):
    started: list[Container] = []

    def start(answer) -> Container:
        started.append(Container(tmp_path / f"c{len(started)}.sock", answer))
        return started[-1]

    yield start
    for container in started:
        container.stop()


def slow(seconds: float):
    answer = echo()

    def later(body, headers):
        time.sleep(seconds)
        return answer(body, headers)

    return later


def scrape(url: str) -> list:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return list(text_string_to_metric_families(response.read().decode()))


def samples(families, name: str, **labels) -> list:
    return [
        s
        for family in families
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(families, name: str, **labels) -> float:
    found = samples(families, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0].value


def test_invocations_are_histograms_per_endpoint_and_variant(servers, endpoint, containers):
    first, second = servers
    fast, delayed, failing = containers(echo()), containers(slow(0.05)), containers(echo(status=500))
    name = endpoint(
        [
            (
                1.0,
                (
                    target("Fast", [fast.path], weight=1.0),
                    target("Slow", [delayed.path], weight=0.0),
                    target("Failing", [failing.path], weight=0.0),
                ),
            )
        ]
    )
    runtime = make_client("sagemaker-runtime", first.url)
    for _ in range(3):
        runtime.invoke_endpoint(EndpointName=name, Body=b"1,2", ContentType="text/csv", TargetVariant="Fast")
    for _ in range(2):
        runtime.invoke_endpoint(EndpointName=name, Body=b"1,2", ContentType="text/csv", TargetVariant="Slow")
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=name, Body=b"1,2", ContentType="text/csv", TargetVariant="Failing")
    assert err.value.response["Error"]["Code"] == "ModelError"

    families = scrape(first.url)  # a scrape folds the requests already answered: no wait
    mine = {"endpoint_name": name}
    model = "selfmaker_endpoint_model_latency_seconds"
    for variant, count in (("Fast", 3), ("Slow", 2), ("Failing", 1)):
        assert value(families, f"{model}_count", variant_name=variant, **mine) == count
        assert value(families, f"{model}_bucket", variant_name=variant, le="+Inf", **mine) == count
        assert value(families, "selfmaker_endpoint_overhead_latency_seconds_count", variant_name=variant, **mine) == (
            count
        )
        buckets = samples(families, f"{model}_bucket", variant_name=variant, **mine)
        cumulative = [s.value for s in sorted(buckets, key=lambda s: float(s.labels["le"]))]
        assert cumulative == sorted(cumulative) and len(cumulative) == 19
        for sample in buckets:
            assert set(sample.labels) == ENDPOINT_LABELS | {"le"}
            assert (sample.labels["account"], sample.labels["region"]) == (ACCOUNT, REGION)
    # The slow model's 50 ms are in its buckets: none at or under 10 ms, both by 60 s.
    assert value(families, f"{model}_bucket", variant_name="Slow", le="0.01", **mine) == 0
    assert value(families, f"{model}_sum", variant_name="Slow", **mine) >= 0.1
    invocations = "selfmaker_endpoint_invocations_total"
    assert value(families, invocations, variant_name="Fast", status_class="2xx", **mine) == 3
    assert value(families, invocations, variant_name="Failing", status_class="5xx", **mine) == 1
    assert value(families, "selfmaker_api_errors_total", service="sagemaker-runtime", code="ModelError") >= 1

    # One series per metric and label set: nothing twice, no endpoint config label beside the variant's.
    keys = Counter((s.name, tuple(sorted(s.labels.items()))) for family in families for s in family.samples)
    assert [key for key, count in keys.items() if count > 1] == []
    assert not any("endpoint_config_name" in s.labels for family in families for s in family.samples)
    assert not [f.name for f in families if f.name.startswith("cloudwatch_sagemaker_invocation")]

    # The other server in this process has a registry of its own: it saw none of it.
    assert samples(scrape(second.url), f"{model}_count", **mine) == []


def test_api_operations_resources_and_the_process(servers, unique):
    first, second = servers
    sm = make_client("sagemaker", first.url)
    group = unique("metrics-group")
    sm.create_model_package_group(ModelPackageGroupName=group)
    for _ in range(2):
        sm.list_models()
    with pytest.raises(ClientError) as err:
        sm.describe_model(ModelName=unique("missing"))
    assert err.value.response["Error"]["Code"] == "ValidationException"
    make_client("s3", first.url).list_buckets()
    # A made-up operation is counted, under "unknown": a client cannot grow the registry by naming things.
    made_up = urllib.request.Request(
        f"{first.url}/",
        data=b"{}",
        headers={
            "X-Amz-Target": f"SageMaker.{unique('NoSuchOperation')}",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(made_up, timeout=30)

    families = scrape(first.url)
    histogram = "selfmaker_api_request_duration_seconds"
    assert value(families, f"{histogram}_count", service="sagemaker", operation="ListModels") == 2
    assert value(families, f"{histogram}_bucket", service="sagemaker", operation="ListModels", le="+Inf") == 2
    assert value(families, f"{histogram}_count", service="sagemaker", operation="DescribeModel") == 1
    assert value(families, f"{histogram}_count", service="s3", operation="ListBuckets") == 1
    errors = "selfmaker_api_errors_total"
    assert value(families, errors, service="sagemaker", operation="DescribeModel", code="ValidationException") == 1
    assert value(families, errors, service="sagemaker", operation="unknown", code="UnknownOperationException") >= 1
    assert samples(families, errors, operation="ListModels") == []
    assert not [s for f in families for s in f.samples if "NoSuchOperation" in str(s.labels)]

    resources = "selfmaker_resources"
    assert value(families, resources, account=ACCOUNT, region=REGION, kind="ModelPackageGroup", status="Completed") >= 1
    assert value(families, "process_resident_memory_bytes") > 0
    assert value(families, "process_cpu_seconds_total") > 0
    assert samples(families, "python_info")
    assert value(families, "selfmaker_info", database="sqlite") == 1
    # The second server counted its own calls only (none of these).
    assert samples(scrape(second.url), f"{histogram}_count", operation="ListModels") == []


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    queries += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return queries


def test_every_metric_the_dashboard_queries_is_in_a_real_scrape(servers, endpoint, containers, unique):
    """docs/grafana/selfmaker.json never rots: each metric name in its queries has samples in a scrape."""
    first, _ = servers
    name = endpoint([(1.0, (target("AllTraffic", [containers(echo()).path]),))])
    make_client("sagemaker-runtime", first.url).invoke_endpoint(EndpointName=name, Body=b"1", ContentType="text/csv")
    sm = make_client("sagemaker", first.url)
    sm.create_model_package_group(ModelPackageGroupName=unique("dash-group"))
    with pytest.raises(ClientError):
        sm.describe_model(ModelName=unique("missing"))
    scraped = {s.name for family in scrape(first.url) for s in family.samples}

    queries = _dashboard_queries()
    referenced = {
        metric
        for query in queries
        for metric in re.findall(r"\b(?:selfmaker|process|python|cloudwatch)_[a-z0-9_]+\b", query)
    }
    assert len(queries) >= 12 and len(referenced) >= 8, (queries, referenced)
    assert sorted(referenced - scraped) == []
    # Quantiles come from the histograms' buckets, per endpoint and variant.
    assert any("histogram_quantile(0.99" in q and "model_latency_seconds_bucket" in q for q in queries)
    assert any("histogram_quantile(0.5" in q and "variant_name" in q for q in queries)


def test_a_removed_variant_and_a_deleted_endpoint_leave_metrics(server, sm, client, tmp_path, unique):
    """Real endpoint: UpdateEndpoint to a configuration without variant B drops B's series (A's stay);
    DeleteEndpoint drops the endpoint's."""
    models = endpoints.Models(server, tmp_path)
    name = unique("metrics-gone")
    model = models.versioned(f"{name}-m")
    endpoints.deploy(sm, name, [endpoints.variant(model, "A"), endpoints.variant(model, "B")])
    runtime = client("sagemaker-runtime")
    for target_variant in ("A", "B"):
        endpoints.invoke(runtime, name, TargetVariant=target_variant)
    count = "selfmaker_endpoint_model_latency_seconds_count"

    def variants_in_scrape() -> set[str]:
        return {s.labels["variant_name"] for s in samples(scrape(server.url), count, endpoint_name=name)}

    assert variants_in_scrape() == {"A", "B"}
    sm.create_endpoint_config(EndpointConfigName=f"{name}-a", ProductionVariants=[endpoints.variant(model, "A")])
    sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-a")
    wait_for(lambda: sm.describe_endpoint(EndpointName=name)["EndpointConfigName"] == f"{name}-a", timeout=300)
    wait_for(lambda: variants_in_scrape() == {"A"}, timeout=30, what="variant B's series to go")
    families = scrape(server.url)
    assert value(families, "selfmaker_endpoint_invocations_total", endpoint_name=name, variant_name="A") == 1
    assert samples(families, "selfmaker_endpoint_invocations_total", endpoint_name=name, variant_name="B") == []

    sm.delete_endpoint(EndpointName=name)
    endpoints.wait_gone(sm, name)
    wait_for(lambda: variants_in_scrape() == set(), timeout=30, what="the endpoint's series to go")
    assert not [
        s
        for family in scrape(server.url)
        for s in family.samples
        if s.name.startswith("selfmaker_endpoint_") and s.labels.get("endpoint_name") == name
    ]
