"""The SelfMaker edge agent: ``selfmaker edge-agent`` / ``python -m selfmaker.edge_agent`` (docs/edge.md).

Imports only the standard library, boto3/botocore, numpy and ONNX Runtime, never the
server: it runs on the device. Models load through selfmaker/container/compiled_model.py,
the loader endpoints use too (it imports nothing more).
"""
