"""The small subsets of other AWS services that SageMaker users and SelfMaker itself need: STS, IAM, CloudWatch Logs, CloudWatch metrics and alarms, SQS, and Athena over the feature store.

The internal logs API for jobs, endpoints and the CLI is :mod:`selfmaker.aws.logs`. Importing this
package registers nothing: selfmaker/server/operations.py's ``SERVICE_MODULES`` names each module to load.
"""
