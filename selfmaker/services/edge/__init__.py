"""SageMaker Edge Manager: device fleets, devices, packaging jobs, deployment plans, and the sagemaker-edge
data plane their agents speak (docs/edge.md). The agent itself is :mod:`selfmaker.edge_agent`."""
