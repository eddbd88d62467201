"""Notebook instance lifecycle configurations: OnCreate / OnStart shell scripts, base64-encoded as on AWS."""

from __future__ import annotations

import base64
import binascii

from ...server.errors import validation
from ..kinds import Kind

HOOKS = ("OnCreate", "OnStart")


def _check_scripts(params: dict) -> None:
    for hook in HOOKS:
        for i, entry in enumerate(params.get(hook) or []):
            try:
                base64.b64decode(entry.get("Content", ""), validate=True)
            except (binascii.Error, ValueError):
                raise validation(f"{hook}[{i}].Content must be a base64-encoded shell script.") from None
        if len(params.get(hook) or []) > 1:
            raise validation(f"{hook} takes at most one script.")


def _on_create(ctx, params: dict, data: dict) -> None:
    _check_scripts(params)


def _on_update(ctx, params: dict, record) -> None:
    _check_scripts(params)
    for hook in HOOKS:
        if hook in params:
            record.data[hook] = params[hook]


def script(data: dict, hook: str) -> str | None:
    """The decoded script of ``hook`` in a lifecycle configuration's data, or None."""
    entries = data.get(hook) or []
    return base64.b64decode(entries[0]["Content"]).decode("utf-8", "replace") if entries else None


LIFECYCLE_CONFIG = Kind(
    "NotebookInstanceLifecycleConfig",
    "notebook-instance-lifecycle-config",
    label="notebook instance lifecycle configuration",
    not_found="Unable to describe Notebook Instance Lifecycle Config '{name}'. (Details: Notebook Instance Lifecycle "
    "Config '{arn}' does not exist.)",
    exists="Unable to create Notebook Instance Lifecycle Config '{arn}'. (Details: Notebook Instance Lifecycle Config "
    "already exists.)",
    on_create=_on_create,
    on_update=_on_update,
    summarize=lambda r: {
        k: r.data[k]
        for k in (
            "NotebookInstanceLifecycleConfigName",
            "NotebookInstanceLifecycleConfigArn",
            "CreationTime",
            "LastModifiedTime",
        )
    },
).register()
