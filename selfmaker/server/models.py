"""The botocore service models SelfMaker serves: loaded once, shared by every request."""

from __future__ import annotations

from functools import lru_cache

import botocore.session
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
)


@lru_cache(maxsize=None)
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@lru_cache(maxsize=None)
def service_model(name: str) -> ServiceModel:
    return _session().get_service_model(name)


@lru_cache(maxsize=None)
def operation_model(service: str, operation: str) -> OperationModel:
    return service_model(service).operation_model(operation)


def botocore_version() -> str:
    import botocore

    return botocore.__version__
