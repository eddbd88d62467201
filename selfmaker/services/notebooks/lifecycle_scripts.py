"""Lifecycle configuration scripts: OnCreate once at an instance's creation, OnStart at every start.

Each runs in the instance's own sandbox (its type's caps, its volume, its network setting) before JupyterLab
starts, with AWS's five-minute limit, as the notebook user (the sandbox never has root: docs/notebooks.md).
Its output goes to CloudWatch Logs, group /aws/sagemaker/NotebookInstances, stream <name>/LifecycleConfig<Hook>;
a script that fails or overruns puts the instance in Failed with the reason.
"""

from __future__ import annotations

import shutil
import time

from ...aws.logs.log_store import append_events
from ...backends import Backends
from ...store.resources import Record
from ..jobs.lifecycle import executor
from . import jupyter
from .lifecycle_configs import LIFECYCLE_CONFIG, script

LOG_GROUP = "/aws/sagemaker/NotebookInstances"
LIMIT_SECONDS = 300.0
POLL = 0.1


def run(backends: Backends, files: jupyter.Files, record: Record, runtime, hook: str) -> str | None:
    """Run ``hook`` of the instance's lifecycle configuration; the FailureReason if it fails, else None."""
    name = record.data.get("NotebookInstanceLifecycleConfigName")
    if not name:
        return None
    config = backends.resources.get(record.account_id, record.region, LIFECYCLE_CONFIG.name, name=name)
    if config is None:
        return f"The lifecycle configuration {name} of Notebook Instance {record.arn} no longer exists."
    text = script(config.data, hook)
    if not text:
        return None
    state, log = files.root / f"{hook}-state", files.root / f"{hook}.log"
    shutil.rmtree(state, ignore_errors=True)
    log.unlink(missing_ok=True)
    spec = jupyter.instance_spec(backends, files, record.data, runtime, state=state, log=log)
    spec.command = ["/bin/bash", "-c", text]
    files.say(f"running the lifecycle configuration {name}'s {hook} script")
    ex = executor(backends)
    ex.start(spec)
    started = time.monotonic()
    while (status := ex.poll(state)) is None and time.monotonic() - started < LIMIT_SECONDS:
        time.sleep(POLL)
    if status is None:
        ex.stop(state)
        ex.stop(state, 0)
    _ship(backends, record, hook, log)
    shutil.rmtree(state, ignore_errors=True)
    what = f"Notebook Instance Lifecycle Config '{config.arn}' for Notebook Instance '{record.arn}'"
    where = f"See CloudWatch Logs {LOG_GROUP}, stream {record.name}/LifecycleConfig{hook}."
    if status is None:
        return f"{what} took longer than 5 minutes. {where}"
    if not status.succeeded:
        how = f"exit code {status.code}" if status.code is not None else status.reason
        return f"{what} failed ({hook}, {how}). {where}"
    return None


def _ship(backends: Backends, record: Record, hook: str, log) -> None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return
    stamp = int(time.time() * 1000)
    events = [(stamp, line) for line in lines]
    stream = f"{record.name}/LifecycleConfig{hook}"
    append_events(backends.store, record.account_id, record.region, LOG_GROUP, stream, events or [(stamp, "")])
