"""The service models SelfMaker serves: loaded once, shared by every request.

They are botocore's models of one exact release, vendored into the package
(``service_models/``, written by ``selfmaker models --update``), never the installed
botocore's: the schema, the validation and docs/coverage.md stay the same whatever
SDK version a user installs next to SelfMaker. botocore is only the model *reader*
(``botocore.model.ServiceModel``), which has been stable for years.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

from botocore.model import OperationModel, ServiceModel

# Every service a client may send us, by botocore name.
SERVED_SERVICES = (
    "sagemaker",
    "sagemaker-runtime",
    "sagemaker-featurestore-runtime",
    "sagemaker-edge",
    "sagemaker-metrics",
    "s3",
    "sts",
    "iam",
    "logs",
    "athena",
    "sqs",
    "cloudwatch",
    "events",
    "cloudformation",
    "servicecatalog",
)

# Wire models for a protocol a service's older clients speak whose wire names the served model no longer
# carries, by (service, protocol) -> the botocore release to take it from. SQS's query protocol (botocore up
# to 1.34.8x) names members "Attribute.1.Name" and "AttributeName.1" where the JSON-era model says "Attributes".
# Only names come from these: the served model still decides the operations and validates.
LEGACY_MODELS = {("sqs", "query"): "1.34.80"}

MODELS_DIR = Path(__file__).parent / "service_models"
MANIFEST = "MANIFEST.json"


@cache
def manifest() -> dict:
    return json.loads((MODELS_DIR / MANIFEST).read_text())


def _read(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))


@cache
def service_model(name: str) -> ServiceModel:
    api_version = manifest()["services"].get(name)
    if api_version is None:
        raise ValueError(f"SelfMaker serves no model for {name!r}")
    return ServiceModel(_read(MODELS_DIR / name / api_version / "service-2.json.gz"), service_name=name)


@cache
def legacy_model(name: str, protocol: str) -> ServiceModel | None:
    """The wire model ``protocol``'s clients of ``name`` used, when it names things differently (else None)."""
    if (name, protocol) not in LEGACY_MODELS:
        return None
    path = MODELS_DIR / name / manifest()["services"][name] / f"{protocol}.service-2.json.gz"
    return ServiceModel(_read(path), service_name=name)


@cache
def operation_model(service: str, operation: str) -> OperationModel:
    return service_model(service).operation_model(operation)


def botocore_version() -> str:
    """The botocore release the served models come from (not the installed one)."""
    return manifest()["botocore"]
