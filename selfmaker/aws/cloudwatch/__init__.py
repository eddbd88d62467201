"""Amazon CloudWatch: metrics (:mod:`.metrics`) and metric alarms (:mod:`.alarms`; the deployment
engine reads their states with :func:`.alarms.alarm_state`).

boto3 1.44 and the AWS CLI speak JSON 1.0 to it (``GraniteServiceVersion20100801.*``);
Smithy RPC v2 CBOR clients are served too (selfmaker/server/cbor_protocol.py), and older
boto3 speaks the query protocol (docs/protocols.md). The data
lives in :mod:`.metric_store`.
"""
