"""Hosting: endpoint configurations, endpoints and their deployments, the model-server fleet, InvokeEndpoint."""

from . import deployments, endpoint_configs, endpoints, router  # noqa: F401
