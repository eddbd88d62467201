"""Hosting: endpoint configurations, endpoints and their deployments, the model-server fleet, InvokeEndpoint."""
