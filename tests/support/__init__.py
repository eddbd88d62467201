"""What the tests share: the server they start, checked boto3 clients, one way to wait, and per-area helpers.

server        a `selfmaker serve` subprocess (Server, free_port, ACCOUNT, REGION)
clients       make_client: a boto3 client on a server, every answer checked against its output shape
conformance   that check (botocore output shapes, looked at on the wire)
waiting       wait_for: the one polling loop
jobs, pipelines, pipeline_definitions, featurestore, xgboost_runtime, sdk: helpers for one area each
"""
