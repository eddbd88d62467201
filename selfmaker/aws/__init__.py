"""The small subsets of other AWS services that SageMaker users and SelfMaker itself need: STS, IAM, CloudWatch Logs, SQS, and Athena over the feature store.

The internal logs API for jobs, endpoints and the CLI is :mod:`selfmaker.aws.logs`.
"""

from . import athena, iam, logs_api, sqs, sts  # noqa: F401  (importing registers their operations)
