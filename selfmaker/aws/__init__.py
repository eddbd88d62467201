"""The small subsets of other AWS services that the SDK and SageMaker jobs need: STS, IAM, CloudWatch Logs, and Athena over the feature store.

The internal logs API for jobs, endpoints and the CLI is :mod:`selfmaker.aws.logs`.
"""

from . import athena, iam, logs_api, sts  # noqa: F401  (importing registers their operations)
