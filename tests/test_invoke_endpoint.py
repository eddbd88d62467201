"""sagemaker-runtime InvokeEndpoint through boto3: routing, errors, shadows and data capture.

The router is tested on a SelfMaker server running in this process, so tests
can publish Routes (what the endpoint controller does once instances are
ready) to real model servers (selfmaker.container.inference_server with a
scikit-learn model, in the runtime jobs use) and to small in-test containers
that misbehave on purpose (slow, dying, oversized, custom headers).
"""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import time
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from selfmaker.engines import model_server
from selfmaker.services.hosting import capture as capture_module
from selfmaker.services.hosting import router as router_module
from selfmaker.services.hosting.routes import publish, withdraw
from support import xgboost_runtime
from support.hosting import Container, InProcessServer, echo, route, target
from support.jobs import tar_gz
from support.server import ACCOUNT, REGION
from support.waiting import status_in, wait_for

MAKE_SKLEARN_MODEL = """
import joblib, sys
from sklearn.linear_model import LinearRegression
joblib.dump(LinearRegression().fit([[0, 0], [1, 0], [0, 1], [2, 1]], [0, 2, 1, 5]), sys.argv[1] + "/model.joblib")
"""


@pytest.fixture(scope="module")
def hosting(tmp_path_factory):
    srv = InProcessServer(tmp_path_factory.mktemp("invoke") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def model_servers(tmp_path_factory):
    """Two real model server processes serving one scikit-learn model (y = 2*x0 + x1), on Unix sockets."""
    root = tmp_path_factory.mktemp("models")
    (root / "model").mkdir()
    subprocess.run([xgboost_runtime.python(), "-c", MAKE_SKLEARN_MODEL, str(root / "model")], check=True)
    sockets, processes = [], []
    for index in range(2):
        path = model_server.socket_path(root / f"instance-{index}")
        path.parent.mkdir(parents=True, exist_ok=True)
        processes.append(
            xgboost_runtime.popen_module(
                "selfmaker.container.inference_server", root, {"SELFMAKER_BIND_TO_SOCKET": str(path)}
            )
        )
        sockets.append(str(path))

    def pinged() -> bool:
        assert all(p.poll() is None for p in processes), "a model server exited"
        return all(model_server.ping(path) for path in sockets)

    wait_for(pinged, timeout=60, interval=0.05, what="the model servers to answer /ping")
    yield sockets
    for process in processes:
        process.terminate()
        process.wait(10)


@pytest.fixture
def containers(tmp_path):
    started: list[Container] = []

    def start(answer, name: str | None = None) -> Container:
        container = Container(tmp_path / (name or f"c{len(started)}.sock"), answer)
        started.append(container)
        return container

    yield start
    for container in started:
        container.stop()


@pytest.fixture
def runtime(hosting, client):
    return client("sagemaker-runtime", hosting)


@pytest.fixture
def endpoint(hosting, unique):
    """endpoint(traffic, shadows=(), capture=None) publishes a Route for a fresh endpoint name; returns the name."""
    names = []

    def make(traffic, shadows=(), capture=None, name=None) -> str:
        name = name or unique("ep")
        names.append(name)
        publish(hosting.backends, route(name, traffic, shadows, capture))
        return name

    yield make
    for name in names:
        withdraw(hosting.backends, ACCOUNT, REGION, name)


def model_error(err: ClientError) -> dict:
    assert err.response["Error"]["Code"] == "ModelError", err.response
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    return err.response


# ---------------------------------------------------------------------------


def test_unknown_endpoint_and_unsupported_members(runtime, endpoint, containers):
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"1,2", ContentType="text/csv")
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err.value.response["Error"]["Message"] == f"Endpoint no-such-endpoint of account {ACCOUNT} not found."

    name = endpoint([(1.0, (target("AllTraffic", [containers(echo()).path]),))])
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=name, Body=b"{}", TargetModel="model-2.tar.gz")
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert "multi-model" in err.value.response["Error"]["Message"]


def test_real_model_weighted_split_and_target_variant(runtime, endpoint, model_servers):
    blue, green = model_servers
    name = endpoint([(1.0, (target("Blue", [blue], 3.0), target("Green", [green], 1.0)))])
    answer = runtime.invoke_endpoint(EndpointName=name, Body=b"1,2", ContentType="text/csv", Accept="text/csv")
    assert float(answer["Body"].read().decode()) == pytest.approx(4.0)
    assert answer["ContentType"] == "text/csv"

    count = 400
    seen = Counter(
        runtime.invoke_endpoint(EndpointName=name, Body=b"[[2, 1]]", ContentType="application/json")[
            "InvokedProductionVariant"
        ]
        for _ in range(count)
    )
    assert set(seen) == {"Blue", "Green"}
    # Binomial(400, 3/4): mean 300, sigma 8.66; 4 sigma either side.
    assert abs(seen["Blue"] - 300) <= 4 * math.sqrt(count * 0.75 * 0.25), seen

    for _ in range(5):
        pinned = runtime.invoke_endpoint(
            EndpointName=name, Body=b"[[0, 1]]", ContentType="application/json", TargetVariant="Green"
        )
        assert pinned["InvokedProductionVariant"] == "Green"
        assert json.loads(pinned["Body"].read()) == pytest.approx([1.0])
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(
            EndpointName=name, Body=b"[[0, 1]]", ContentType="application/json", TargetVariant="Purple"
        )
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert "Purple" in err.value.response["Error"]["Message"]


def test_traffic_entries_during_a_deployment(runtime, endpoint, containers):
    """While a deployment shifts traffic, the Route has one entry per fleet; each takes its share, and a
    TargetVariant that both fleets have follows the shares too."""
    blue, green = containers(echo(content_type="text/blue")), containers(echo(content_type="text/green"))
    name = endpoint([(0.8, (target("V", [blue.path]),)), (0.2, (target("V", [green.path]),))])
    count = 200
    for pinned in (None, "V"):
        extra = {"TargetVariant": pinned} if pinned else {}
        fleets = Counter(
            runtime.invoke_endpoint(EndpointName=name, Body=b"{}", **extra)["ContentType"] for _ in range(count)
        )
        assert abs(fleets["text/green"] - 40) <= 4 * math.sqrt(count * 0.2 * 0.8), (pinned, fleets)


def test_model_error_from_a_failing_model(runtime, endpoint, model_servers):
    name = endpoint([(1.0, (target("AllTraffic", model_servers),))])
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=name, Body=b"not,numbers", ContentType="text/csv")
    response = model_error(err.value)
    assert response["OriginalStatusCode"] >= 400
    assert response["Error"]["Message"].startswith(
        f"Received {'client' if response['OriginalStatusCode'] < 500 else 'server'} error "
        f'({response["OriginalStatusCode"]}) from primary with message "'
    )
    assert "could not convert" in response["OriginalMessage"] or "Traceback" in response["OriginalMessage"]
    assert response["LogStreamArn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{name}"


def test_headers_pass_through(runtime, endpoint, containers):
    def answer(body, received):
        seen = {k: received.get(k) for k in ("content-type", "accept", "x-amzn-sagemaker-custom-attributes")}
        return (
            200,
            {"Content-Type": "application/x-seen", "X-Amzn-SageMaker-Custom-Attributes": "model=v2"},
            json.dumps(seen).encode(),
        )

    name = endpoint([(1.0, (target("AllTraffic", [containers(answer).path]),))])
    result = runtime.invoke_endpoint(
        EndpointName=name,
        Body=b"\x00\x01",
        ContentType="application/x-image",
        Accept="application/x-seen",
        CustomAttributes="trace=abc,tenant=1",
    )
    assert json.loads(result["Body"].read()) == {
        "content-type": "application/x-image",
        "accept": "application/x-seen",
        "x-amzn-sagemaker-custom-attributes": "trace=abc,tenant=1",
    }
    assert result["ContentType"] == "application/x-seen"
    assert result["CustomAttributes"] == "model=v2"
    assert result["InvokedProductionVariant"] == "AllTraffic"
    assert result["ResponseMetadata"]["HTTPHeaders"]["x-amzn-invoked-production-variant"] == "AllTraffic"

    plain = endpoint([(1.0, (target("AllTraffic", [containers(echo()).path]),))])
    assert "CustomAttributes" not in runtime.invoke_endpoint(EndpointName=plain, Body=b"{}", CustomAttributes="ignored")


def test_container_errors_timeouts_and_payload_limits(runtime, endpoint, containers, monkeypatch):
    client_error = endpoint([(1.0, (target("V", [containers(echo(status=400, content_type="text/plain")).path]),))])
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=client_error, Body=b"bad input")
    response = model_error(err.value)
    assert response["OriginalStatusCode"] == 400 and response["OriginalMessage"] == "bad input"
    assert response["Error"]["Message"].startswith('Received client error (400) from primary with message "bad input".')

    server_error = endpoint([(1.0, (target("V", [containers(echo(status=503)).path]),))])
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=server_error, Body=b"busy")
    assert model_error(err.value)["Error"]["Message"].startswith("Received server error (503) from primary")

    monkeypatch.setattr(router_module, "MODEL_TIMEOUT", 0.3)
    slow = endpoint([(1.0, (target("V", [containers(lambda b, h: (time.sleep(1.5), echo()(b, h))[1]).path]),))])
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=slow, Body=b"{}")
    assert "timed out while waiting for a response from container primary" in model_error(err.value)["Error"]["Message"]
    monkeypatch.undo()

    limit = router_module.MAX_PAYLOAD
    huge = endpoint([(1.0, (target("V", [containers(lambda b, h: (200, {}, b"x" * (limit + 1))).path]),))])
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=huge, Body=b"{}")
    assert "exceeds the maximum payload size" in model_error(err.value)["OriginalMessage"]

    fits = endpoint([(1.0, (target("V", [containers(echo()).path]),))])
    assert len(runtime.invoke_endpoint(EndpointName=fits, Body=b"y" * limit)["Body"].read()) == limit
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=fits, Body=b"y" * (limit + 1))
    assert err.value.response["Error"]["Code"] == "ValidationError"


def test_round_robin_reconnect_and_retry_on_another_instance(hosting, runtime, endpoint, containers, tmp_path):
    first, second = containers(echo(), "a.sock"), containers(echo(), "b.sock")
    name = endpoint([(1.0, (target("V", [first.path, second.path]),))])
    for _ in range(10):
        runtime.invoke_endpoint(EndpointName=name, Body=b"{}")
    assert (len(first.requests), len(second.requests)) == (5, 5)

    # The instance behind a pooled keep-alive connection is replaced in place: the router reconnects.
    first.stop()
    replacement = containers(echo(), "a.sock")
    for _ in range(4):
        runtime.invoke_endpoint(EndpointName=name, Body=b"{}")
    assert len(replacement.requests) == 2

    # An instance dies while answering: the request is sent once more, to another instance.
    dying = containers(lambda b, h: (None, {}, b""), "dying.sock")
    healthy = containers(echo(), "healthy.sock")
    flaky = endpoint([(1.0, (target("V", [dying.path, healthy.path]),))])
    for _ in range(6):
        assert runtime.invoke_endpoint(EndpointName=flaky, Body=b"ok")["Body"].read() == b"ok"
    assert len(dying.requests) == 3 and len(healthy.requests) == 6

    # A deployment publishes the next Route while a request is on an instance of the old one, which then
    # goes away: the request is answered by the new Route.
    new_instance = containers(echo(content_type="text/new"), "new.sock")
    swapped_name = f"{name}-swap"

    def swap_then_die(body, headers):
        publish(hosting.backends, route(swapped_name, [(1.0, (target("V2", [new_instance.path]),))]))
        return None, {}, b""

    old_instance = containers(swap_then_die, "old.sock")
    endpoint([(1.0, (target("V1", [old_instance.path]),))], name=swapped_name)
    answer = runtime.invoke_endpoint(EndpointName=swapped_name, Body=b"in flight")
    assert (answer["InvokedProductionVariant"], answer["ContentType"]) == ("V2", "text/new")
    assert answer["Body"].read() == b"in flight"


def test_shadow_gets_its_sampling_share_and_never_fails_the_caller(runtime, endpoint, containers):
    production = containers(echo())
    shadow = containers(echo(status=500))  # a failing shadow is the caller's business not at all
    name = endpoint([(1.0, (target("Prod", [production.path]),))], shadows=[target("Shadow", [shadow.path], 0.25)])
    count = 400
    for _ in range(count):
        result = runtime.invoke_endpoint(EndpointName=name, Body=b"[1]", ContentType="application/json")
        assert result["InvokedProductionVariant"] == "Prod"

    def settled() -> bool:  # the shadow copies run in the background: until they stop arriving
        before = len(shadow.requests)
        time.sleep(0.2)
        return len(shadow.requests) == before

    wait_for(settled, timeout=10, interval=0, what="the shadow copies to stop arriving")
    assert len(production.requests) == count
    assert abs(len(shadow.requests) - 100) <= 4 * math.sqrt(count * 0.25 * 0.75), len(shadow.requests)
    assert all(body == b"[1]" for body, _ in shadow.requests)


CAPTURE_KEY = re.compile(
    r"^capture/(?P<endpoint>[^/]+)/(?P<variant>[^/]+)/\d{4}/\d{2}/\d{2}/\d{2}/"
    r"\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$"
)


def capture_records(s3, bucket: str, endpoint_name: str) -> dict[str, list[dict]]:
    """Capture records under s3://bucket/capture/<endpoint>/ by variant, as they are now."""
    records: dict[str, list[dict]] = {}
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=f"capture/{endpoint_name}/").get("Contents", []):
        match = CAPTURE_KEY.match(item["Key"])
        assert match, item["Key"]
        text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        records.setdefault(match["variant"], []).extend(json.loads(line) for line in text.splitlines())
    return records


def captured(s3, bucket: str, endpoint_name: str, expected: int, timeout: float = 15) -> dict[str, list[dict]]:
    """capture_records once ``expected`` of them arrived."""
    return wait_for(
        lambda: capture_records(s3, bucket, endpoint_name),
        lambda records: sum(map(len, records.values())) >= expected,
        timeout=timeout,
        interval=0.2,
        what=f"{expected} capture records of {endpoint_name}",
    )


def test_data_capture(hosting, client, runtime, endpoint, containers, unique):
    s3 = client("s3", hosting)
    bucket = unique("capture")
    s3.create_bucket(Bucket=bucket)
    config = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{bucket}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
    }
    production = containers(echo(content_type="application/json"))
    shadow = containers(echo(content_type="application/octet-stream"))
    name = endpoint(
        [(1.0, (target("Prod", [production.path]),))], shadows=[target("Shadow", [shadow.path], 1.0)], capture=config
    )
    runtime.invoke_endpoint(EndpointName=name, Body=b"1,2,3\n", ContentType="text/csv", InferenceId="request-1")
    runtime.invoke_endpoint(EndpointName=name, Body=b'{"x": [1]}', ContentType="application/json")
    runtime.invoke_endpoint(EndpointName=name, Body=b"\xff\x00", ContentType="application/x-image")

    records = captured(s3, bucket, name, expected=6)
    assert sorted(records) == ["Prod", "Shadow"]
    prod = sorted(records["Prod"], key=lambda r: r["captureData"]["endpointInput"]["observedContentType"])
    assert [r["captureData"]["endpointInput"]["encoding"] for r in prod] == ["JSON", "BASE64", "CSV"]
    by_type = {r["captureData"]["endpointInput"]["observedContentType"]: r for r in prod}
    csv = by_type["text/csv"]
    assert csv["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "1,2,3\n",
        "encoding": "CSV",
    }
    # The echo answers with the request's bytes under the container's own content type.
    assert csv["captureData"]["endpointOutput"] == {
        "observedContentType": "application/json",
        "mode": "OUTPUT",
        "data": "1,2,3\n",
        "encoding": "JSON",
    }
    assert csv["eventMetadata"]["inferenceId"] == "request-1" and csv["eventVersion"] == "0"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", csv["eventMetadata"]["inferenceTime"])
    image = by_type["application/x-image"]["captureData"]["endpointInput"]
    assert base64.b64decode(image["data"]) == b"\xff\x00"
    assert "inferenceId" not in by_type["application/json"]["eventMetadata"]
    shadow_output = records["Shadow"][0]["captureData"]["endpointOutput"]
    assert shadow_output["encoding"] == "BASE64" and shadow_output["observedContentType"] == "application/octet-stream"

    # Input only, nothing sampled at 0 %.
    only_input = endpoint(
        [(1.0, (target("Prod", [production.path]),))], capture={**config, "CaptureOptions": [{"CaptureMode": "Input"}]}
    )
    unsampled = endpoint(
        [(1.0, (target("Prod", [production.path]),))], capture={**config, "InitialSamplingPercentage": 0}
    )
    runtime.invoke_endpoint(EndpointName=unsampled, Body=b"1", ContentType="text/csv")
    runtime.invoke_endpoint(EndpointName=only_input, Body=b"1", ContentType="text/csv")
    [record] = captured(s3, bucket, only_input, expected=1)["Prod"]
    assert list(record["captureData"]) == ["endpointInput"]
    time.sleep(2)  # two flushes: had anything been sampled, it would be there
    assert capture_records(s3, bucket, unsampled) == {}


def test_metrics_per_variant(hosting, client, runtime, endpoint, containers):
    ok, failing = containers(echo()), containers(echo(status=500))
    name = endpoint([(1.0, (target("Good", [ok.path]), target("Bad", [failing.path], 0.0)))])
    for _ in range(3):
        runtime.invoke_endpoint(EndpointName=name, Body=b"{}")
    with pytest.raises(ClientError):
        runtime.invoke_endpoint(EndpointName=name, Body=b"{}", TargetVariant="Bad")

    cloudwatch = client("cloudwatch", hosting)
    end = time.time() + 60

    def total(metric: str, variant: str, statistic: str = "Sum", config: bool = False) -> float | None:
        dimensions = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": variant}]
        if config:
            dimensions.append({"Name": "EndpointConfigName", "Value": "config-1"})
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName=metric,
            Dimensions=dimensions,
            StartTime=end - 600,
            EndTime=end,
            Period=60,
            Statistics=[statistic],
        )["Datapoints"]
        return sum(p[statistic] for p in points) if points else None

    # the metric store flushes every second
    wait_for(lambda: total("Invocations", "Bad") is not None, timeout=10, interval=0.2, what="the first metrics")
    assert total("Invocations", "Good") == 3 and total("Invocations", "Good", config=True) == 3
    assert total("InvocationsPerInstance", "Good") == 3
    assert total("InvocationModelErrors", "Good") == 0 and total("InvocationModelErrors", "Bad") == 1
    assert total("Invocation5XXErrors", "Bad") == 1 and total("Invocation4XXErrors", "Bad") == 0
    assert total("ModelLatency", "Good", "Minimum") > 0
    assert total("OverheadLatency", "Good", "Minimum") > 0
    # Latency percentiles, from the distribution of the requests' values (as CloudWatch answers them).
    latency = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=[{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "Good"}],
        StartTime=end - 600,
        EndTime=end,
        Period=60,
        ExtendedStatistics=["p50", "p99"],
    )["Datapoints"]
    assert latency and all(0 < p["ExtendedStatistics"]["p50"] <= p["ExtendedStatistics"]["p99"] for p in latency)


def test_capture_is_flushed_at_shutdown(tmp_path, client, containers, monkeypatch):
    monkeypatch.setattr(capture_module, "FLUSH_SECONDS", 3600)  # only the shutdown can write it
    srv = InProcessServer(tmp_path / "data").start()
    try:
        srv.backends.objects.create_bucket("late")
        config = {"EnableCapture": True, "InitialSamplingPercentage": 100, "DestinationS3Uri": "s3://late/c"}
        publish(srv.backends, route("ep", [(1.0, (target("V", [containers(echo()).path]),))], capture=config))
        client("sagemaker-runtime", srv).invoke_endpoint(EndpointName="ep", Body=b"last words")
        assert list(srv.backends.objects.iter_objects("late", "")) == []
    finally:
        srv.stop()
    [stored] = list(srv.backends.objects.iter_objects("late", "c/ep/V/"))
    [line] = srv.backends.objects.get_object("late", stored.key).decode().splitlines()
    assert base64.b64decode(json.loads(line)["captureData"]["endpointInput"]["data"]) == b"last words"


# ---------------------------------------------------------------------------
# End to end: CreateModel / CreateEndpointConfig / CreateEndpoint on the session server, then boto3.

MODEL_CODE = """
def model_fn(model_dir):
    return open(model_dir + "/version").read()

def transform_fn(version, data, content_type, accept, context):
    text = data if isinstance(data, str) else data.decode()
    if text == "fail":
        raise ValueError("the model refuses to answer 'fail'")
    attributes = context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")
    if attributes:
        context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", f"seen={attributes}")
    return f"{version}:{text}", "text/plain"
"""
E2E_BUCKET = "selfmaker-invoke-tests"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"


def model_archive(version: str) -> bytes:
    return tar_gz({"version": version.encode(), "code/inference.py": MODEL_CODE.encode()})


@pytest.fixture(scope="module")
def deployed(module_client):
    """deploy(name, production, shadows=(), capture=None): an InService endpoint whose variants' models answer
    "<variant>:<body>"; variants are (name, weight) pairs. The endpoints are deleted at the end."""
    s3, sm = module_client("s3"), module_client("sagemaker")
    s3.create_bucket(Bucket=E2E_BUCKET)
    names = []

    def variants(endpoint: str, pairs) -> list[dict]:
        found = []
        for variant, weight in pairs:
            model = f"{endpoint}-{variant}".lower()
            s3.put_object(Bucket=E2E_BUCKET, Key=f"{model}.tar.gz", Body=model_archive(variant))
            sm.create_model(
                ModelName=model,
                ExecutionRoleArn=ROLE,
                PrimaryContainer={
                    "Image": xgboost_runtime.XGBOOST_IMAGE,
                    "ModelDataUrl": f"s3://{E2E_BUCKET}/{model}.tar.gz",
                },
            )
            found.append(
                {
                    "VariantName": variant,
                    "ModelName": model,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": weight,
                }
            )
        return found

    def deploy(name: str, production, shadows=(), capture=None) -> str:
        config = {"ProductionVariants": variants(name, production)}
        if shadows:
            config["ShadowProductionVariants"] = variants(name, shadows)
        if capture:
            config["DataCaptureConfig"] = capture
        sm.create_endpoint_config(EndpointConfigName=name, **config)
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        names.append(name)
        # the first endpoint of a run may build the XGBoost runtime
        found = wait_for(
            lambda: sm.describe_endpoint(EndpointName=name),
            status_in("EndpointStatus", ("InService", "Failed")),
            timeout=600,
            what=f"endpoint {name} to be in service",
        )
        assert found["EndpointStatus"] == "InService", found.get("FailureReason")
        return name

    yield deploy
    for name in names:
        sm.delete_endpoint(EndpointName=name)


def capture_config(prefix: str) -> dict:
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{E2E_BUCKET}/{prefix}",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv", "text/plain"]},
    }


def records_by_variant(s3, prefix: str, endpoint: str) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=E2E_BUCKET, Prefix=f"{prefix}/{endpoint}/")
    for item in (i for page in pages for i in page.get("Contents", [])):
        variant = item["Key"].split("/")[2]
        text = s3.get_object(Bucket=E2E_BUCKET, Key=item["Key"])["Body"].read().decode()
        records.setdefault(variant, []).extend(json.loads(line) for line in text.splitlines())
    return records


def settled_records(s3, prefix: str, endpoint: str, at_least: int, of: str | None = None) -> dict[str, list[dict]]:
    """The captured records once at least ``at_least`` arrived (of variant ``of``, else of all) and two looks a
    flush apart agree."""
    looks: list[dict[str, int]] = []

    def look() -> dict[str, list[dict]]:
        records = records_by_variant(s3, prefix, endpoint)
        looks.append({variant: len(found) for variant, found in records.items()})
        return records

    def settled(records) -> bool:
        arrived = looks[-1].get(of, 0) if of else sum(looks[-1].values())
        return arrived >= at_least and len(looks) > 1 and looks[-1] == looks[-2]

    return wait_for(look, settled, timeout=20, interval=1.2, what=f"at least {at_least} records, settled")


def test_endpoint_variants_split_target_and_capture(deployed, client, unique):
    runtime, s3 = client("sagemaker-runtime"), client("s3")
    name = deployed(unique("split"), [("Blue", 3.0), ("Green", 1.0)], capture=capture_config("split-capture"))

    count = 400
    seen = Counter()
    for index in range(count):
        answer = runtime.invoke_endpoint(EndpointName=name, Body=f"{index}", ContentType="text/csv")
        variant = answer["InvokedProductionVariant"]
        assert answer["Body"].read().decode() == f"{variant}:{index}"
        seen[variant] += 1
    assert abs(seen["Blue"] - 300) <= 4 * math.sqrt(count * 0.75 * 0.25), seen

    pinned = runtime.invoke_endpoint(EndpointName=name, Body="pinned", ContentType="text/csv", TargetVariant="Green")
    assert (pinned["InvokedProductionVariant"], pinned["Body"].read()) == ("Green", b"Green:pinned")
    assert pinned["ContentType"] == "text/plain"
    seen["Green"] += 1
    attributed = runtime.invoke_endpoint(EndpointName=name, Body="a", ContentType="text/csv", CustomAttributes="k=1")
    assert attributed["CustomAttributes"] == "seen=k=1"
    seen[attributed["InvokedProductionVariant"]] += 1

    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=name, Body="fail", ContentType="text/csv")
    response = model_error(err.value)
    assert response["OriginalStatusCode"] == 500
    assert "the model refuses to answer 'fail'" in response["OriginalMessage"]
    assert response["Error"]["Message"].startswith('Received server error (500) from primary with message "')
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=f"{name}-missing", Body="1", ContentType="text/csv")
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert err.value.response["Error"]["Message"] == f"Endpoint {name}-missing of account {ACCOUNT} not found."

    records = settled_records(s3, "split-capture", name, at_least=count + 2)
    assert {variant: len(found) for variant, found in records.items()} == dict(seen)  # not the failed request
    pinned_record = next(r for r in records["Green"] if r["captureData"]["endpointInput"]["data"] == "pinned")
    assert pinned_record["captureData"] == {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "pinned", "encoding": "CSV"},
        "endpointOutput": {
            "observedContentType": "text/plain",
            "mode": "OUTPUT",
            "data": "Green:pinned",
            "encoding": "CSV",
        },
    }


def test_endpoint_shadow_gets_its_share(deployed, client, unique):
    runtime, s3 = client("sagemaker-runtime"), client("s3")
    # The shadow's sampling fraction is its weight over the production variants' total: 0.25.
    name = deployed(
        unique("shadowed"), [("Prod", 1.0)], shadows=[("Shadow", 0.25)], capture=capture_config("shadow-capture")
    )
    count = 400
    for index in range(count):
        answer = runtime.invoke_endpoint(EndpointName=name, Body=f"{index}", ContentType="text/csv")
        assert (answer["InvokedProductionVariant"], answer["Body"].read()) == ("Prod", f"Prod:{index}".encode())
    # Prod's own count: the shadow's records could make up the total before Prod's last flush landed.
    records = settled_records(s3, "shadow-capture", name, at_least=count, of="Prod")
    assert len(records["Prod"]) == count
    shadowed = records.get("Shadow", [])
    assert abs(len(shadowed) - 100) <= 4 * math.sqrt(count * 0.25 * 0.75), len(shadowed)
    # The shadow saw the production requests and answered them its own way; the caller never saw it.
    for record in shadowed:
        sent = record["captureData"]["endpointInput"]["data"]
        assert record["captureData"]["endpointOutput"]["data"] == f"Shadow:{sent}"
