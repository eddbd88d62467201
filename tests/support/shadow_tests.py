"""Helpers for the inference-experiment (shadow test) tests: requests, waits and captured records."""

from __future__ import annotations

import json

from support.endpoints import ROLE
from support.waiting import status_in, wait_for


def model_variant(model: str, name: str, count: int = 1, instance_type: str = "ml.m5.large") -> dict:
    return {
        "ModelName": model,
        "VariantName": name,
        "InfrastructureConfig": {
            "InfrastructureType": "RealTimeInference",
            "RealTimeInferenceConfig": {"InstanceType": instance_type, "InstanceCount": count},
        },
    }


def experiment(name: str, endpoint: str, production: str, candidate: str, sampling: int = 100, **extra) -> dict:
    """CreateInferenceExperiment's parameters: production variant "Prod" serving ``production``, shadow
    variant "Shadow" serving ``candidate``."""
    return {
        "Name": name,
        "Type": "ShadowMode",
        "RoleArn": ROLE,
        "EndpointName": endpoint,
        "ModelVariants": [model_variant(production, "Prod"), model_variant(candidate, "Shadow")],
        "ShadowModeConfig": {
            "SourceModelVariantName": "Prod",
            "ShadowModelVariants": [{"ShadowModelVariantName": "Shadow", "SamplingPercentage": sampling}],
        },
        **extra,
    }


def wait_experiment(sm, name: str, until: tuple[str, ...], timeout: float = 120) -> dict:
    return wait_for(
        lambda: sm.describe_inference_experiment(Name=name),
        status_in("Status", until),
        timeout=timeout,
        interval=0.1,
        what=f"inference experiment {name} to be {'/'.join(until)}",
    )


def capture_records(s3, bucket: str, prefix: str) -> dict[str, list[dict]]:
    """Captured records under s3://bucket/prefix/, by variant (the path's second-to-last directory level)."""
    records: dict[str, list[dict]] = {}
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    for item in listed:
        variant = item["Key"][len(prefix) + 1 :].split("/")[1]  # <endpoint>/<variant>/yyyy/mm/dd/hh/<file>
        text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        records.setdefault(variant, []).extend(json.loads(line) for line in text.splitlines())
    return records
