"""The small subsets of other AWS services that SageMaker users and SelfMaker itself need: STS, IAM, CloudWatch Logs, CloudWatch metrics and alarms, SQS, and Athena over the feature store.

The internal logs API for jobs and endpoints is :mod:`selfmaker.aws.logs.log_store`. Importing this
package registers nothing: selfmaker/server/operations.py's ``SERVICE_MODULES`` names each module to load.
"""
