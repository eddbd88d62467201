"""The SelfMaker edge agent: ``selfmaker edge-agent`` / ``python -m selfmaker.edge_agent`` (docs/edge.md).

Imports only the standard library, boto3/botocore, numpy and ONNX Runtime (tl2cgen
for a compiled tree library), never the server: it runs on the device.
"""
