"""Helpers for the endpoint tests: tiny models in the server's S3 and SageMaker, deploying, waiting, invoking."""

from __future__ import annotations

import subprocess
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from support import xgboost_runtime
from support.clients import make_client
from support.jobs import tar_gz
from support.server import ACCOUNT
from support.waiting import status_in, wait_for

IMAGE = xgboost_runtime.XGBOOST_IMAGE
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
BUCKET = "selfmaker-endpoint-tests"
# The first endpoint of a run may build the XGBoost runtime: allow for it.
FIRST_ENDPOINT_SECONDS = 600

VERSIONED_MODEL = """
    import time
    def model_fn(model_dir):
        return open(model_dir + "/version").read()
    def transform_fn(version, data, content_type, accept):
        time.sleep({delay})
        text = data if isinstance(data, str) else data.decode()
        return f"{{version}}:{{text}}", "text/plain"
"""


def xgboost_model_archive(tmp: Path) -> bytes:
    subprocess.run([xgboost_runtime.python(), "-c", xgboost_runtime.MAKE_XGBOOST_MODEL, str(tmp)], check=True)
    return tar_gz({"xgboost-model": (tmp / "xgboost-model").read_bytes()})


def versioned_archive(version: str, delay: float = 0.0) -> bytes:
    """A model that answers "<version>:<request body>" (after ``delay`` seconds)."""
    code = textwrap.dedent(VERSIONED_MODEL.format(delay=delay)).encode()
    return tar_gz({"version": version.encode(), "code/inference.py": code})


class Models:
    """Models in the server's S3 and SageMaker, made once per server."""

    def __init__(self, server, tmp: Path):
        self.server = server
        self.s3, self.sm = make_client("s3", server.url), make_client("sagemaker", server.url)
        self.tmp = tmp
        try:
            self.s3.create_bucket(Bucket=BUCKET)
        except ClientError as err:
            if err.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise

    def create(self, name: str, archive: bytes, **container) -> str:
        key = f"models/{name}/model.tar.gz"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=archive)
        self.sm.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/{key}", **container},
        )
        return name

    def versioned(self, name: str, delay: float = 0.0) -> str:
        return self.create(name, versioned_archive(name, delay))


def variant(model: str, name: str = "AllTraffic", count: int = 1, weight: float = 1.0, **extra) -> dict:
    return {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": count,
        "InitialVariantWeight": weight,
        **extra,
    }


def wait_status(sm, name: str, until=("InService", "Failed"), timeout: float = FIRST_ENDPOINT_SECONDS) -> dict:
    return wait_for(
        lambda: sm.describe_endpoint(EndpointName=name),
        status_in("EndpointStatus", until),
        timeout=timeout,
        what=f"endpoint {name} to be {'/'.join(until)}",
    )


def wait_gone(sm, name: str, timeout: float = 60) -> None:
    def gone() -> bool:
        try:
            sm.describe_endpoint(EndpointName=name)
        except ClientError as err:
            assert err.response["Error"]["Code"] == "ValidationException"
            return True
        return False

    wait_for(gone, timeout=timeout, what=f"endpoint {name} to be deleted")


def deploy(sm, name: str, variants: list[dict], **config) -> dict:
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants, **config)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return wait_status(sm, name)


def canary(wait: int, alarm: str) -> dict:
    """A blue/green canary of half the capacity, baking ``wait`` seconds, rolled back by ``alarm``."""
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": wait,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            }
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }


def errors_alarm(cloudwatch, alarm: str, endpoint: str) -> None:
    """An alarm on the endpoint's 5XX errors, over a day-long period: the state SetAlarmState gives it holds."""
    cloudwatch.put_metric_alarm(
        AlarmName=alarm,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Statistic="Sum",
        Period=86400,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}],
        TreatMissingData="notBreaching",
    )


def invoke(runtime, name: str, body: str = "x", **extra) -> tuple[str, str]:
    """(answer, invoked variant)."""
    answer = runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/plain", **extra)
    return answer["Body"].read().decode(), answer["InvokedProductionVariant"]


def error_of(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


class Load:
    """A client thread invoking an endpoint back to back until stopped: every answer's model, the variant
    that answered, and every error."""

    def __init__(self, url: str, name: str):
        self.runtime = make_client("sagemaker-runtime", url)
        self.name = name
        self.answers: Counter[str] = Counter()
        self.variants: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.runtime.invoke_endpoint(EndpointName=self.name, Body="x", ContentType="text/plain")
                self.answers[answer["Body"].read().decode().split(":")[0]] += 1
                self.variants[answer["InvokedProductionVariant"]] += 1
            except ClientError as err:
                self.errors.append(f"{err.response['Error']['Code']}: {err.response['Error']['Message']}")

    def wait_for(self, version: str, timeout: float = 60, after: int = 0) -> None:
        """Until ``version`` has answered more than ``after`` requests."""
        wait_for(
            lambda: Counter(self.answers),
            lambda answers: answers[version] > after,
            timeout=timeout,
            interval=0.05,
            what=f"an answer from {version}",
        )
