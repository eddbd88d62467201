"""Notebook instances: a JupyterLab per instance in the sandbox, reached through the server's proxy (docs/notebooks.md)."""
