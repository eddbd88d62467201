"""A job's instances that another server can take over (a Ray cluster's: docs/scale-out.md, "Several servers"):
following them from the record of a server that stopped, the lease checked before acting on them, and how much of each instance's log is shipped, noted in the job's
record so the server taking the job over resumes its log stream there."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...backends import Backends
from ...engines.leases import leases
from ...store.fencing import Fence, LeaseLost, fenced
from ...store.resources import Record

if TYPE_CHECKING:
    from .lifecycle import Instance, JobKind, Run


def adopt(executor, run: Run, node: str) -> bool:
    """Follow from here the instances a stopped server (on ``node``) started, through what the job's record
    says of them (their identity, how much of each log was shipped): they run out of its machine (a Ray
    cluster's nodes; docs/scale-out.md). False when the record does not say where every instance is."""
    found = run.state.get("instances") or {}
    if not all(i.host in found for i in run.instances):
        return False
    shipped = run.state.get("shipped") or {}
    mine = leases(run.backends).node
    for instance in run.instances:
        instance.root.mkdir(parents=True, exist_ok=True)
        instance.say(
            f"SelfMaker: the server on {node.split(':', 1)[0]} driving {instance.host} stopped; "
            f"the server on {mine.split(':', 1)[0]} follows it now"
        )
        executor.adopt(
            instance.state, {**found[instance.host], "offset": shipped.get(instance.host, 0)}, instance.log_path
        )

    def follows(d: dict) -> None:
        d["_run"] = {**d.get("_run", {}), "node": mine}

    run.update(follows)
    return True


def confirm_lease(run: Run, executor) -> None:
    """Before acting on instances another server may drive (a Ray node's: collecting, releasing, stopping them),
    the step's lease is checked in the database as its writes are (store/fencing.py): a server paused past its
    lease raises LeaseLost here instead of ending the instances the server that took them over follows."""
    if executor.adoptable and not leases(run.backends).local:
        with run.backends.store.write():
            pass


_noted: dict[Path, int] = {}  # log -> the offset of its instance's own log last written to its record


def note_shipped(job: JobKind, backends: Backends, arn: str, instance: Instance, local_offset: int) -> None:
    """Once lines of an instance another server could follow (a Ray node's) are shipped, write in the job's record
    how much of the instance's own log they cover: a server taking the job over resumes the log there, so the
    stream neither repeats nor misses lines (a crash between the two writes repeats that one batch)."""
    shipped = job.executor(backends).shipped(instance.state, local_offset)
    owner = leases(backends)
    if shipped is None or _noted.get(instance.log_path) == shipped or not (owner.holds(arn) and owner.valid()):
        return
    fence = owner.claim(arn)
    if not isinstance(fence, Fence):
        return

    def note(fresh: Record, _conn) -> None:
        state = fresh.data.get("_run", {})
        if state.get("phase") == "Running" and state.get("node") == owner.node:
            state.setdefault("shipped", {})[instance.host] = shipped

    try:
        with fenced(fence):
            backends.resources.mutate(note, arn=arn, touch=False)
        _noted[instance.log_path] = shipped
    except LeaseLost:
        pass


def forget(log_path: Path) -> None:
    """The instance's log is finished: nothing more of it is noted."""
    _noted.pop(log_path, None)
