"""The small subsets of other AWS services that SageMaker users and SelfMaker itself need: STS, IAM, CloudWatch Logs, CloudWatch metrics and alarms, SQS, and Athena over the feature store.

The internal logs API for jobs, endpoints and the CLI is :mod:`selfmaker.aws.logs`.
"""

from . import athena, cloudwatch, iam, logs_api, metric_store, sqs, sts  # noqa: F401  (importing registers their operations)
