"""The notebook-instance controller: drives each instance's status, persisted, so it resumes after a restart.

Pending: build the notebook runtime (once per runtimes directory), mint the instance's access key, clone
the repositories not cloned yet, run the lifecycle scripts, start JupyterLab in the sandbox, and wait for it
to answer on its socket -> InService (or Failed with the reason). InService: follow the process
(a restarted server re-attaches to it; one a clean server stop ended is started again). Stopping: end it ->
Stopped. Updating -> Stopped. Deleting: end it, remove its volume and files, then the record.

The key (minted like a job's, :mod:`..jobs.credentials`) signs as the owning account; it is revoked when the
instance stops, fails or is deleted, and a new one is minted at every start.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import select

from ...backends import Backends, background_worker
from ...engines import runtimes
from ...engines.executor import ExecutorUnavailable
from ...engines.reconciler import Controller, kick, register
from ...store import schema
from ...store.resources import Record, now
from ..jobs import credentials
from ..jobs.lifecycle import executor
from . import jupyter, lifecycle_scripts, repositories
from .instances import NOTEBOOK_INSTANCE

log = logging.getLogger("selfmaker.notebooks")

STARTUP_SECONDS = 120.0  # JupyterLab must answer within this of its start
POLL_STARTING = 0.25
POLL_RUNNING = 30.0  # a fallback: the executor's watch kicks the record the moment Jupyter exits
STOP_GRACE = 5.0


def _files(backends: Backends, record: Record) -> jupyter.Files:
    return jupyter.Files(backends, record.account_id, record.region, record.name)


def _set(backends: Backends, record: Record, expect: str, status: str, **members) -> bool:
    """Move the record from ``expect`` to ``status`` unless a request moved it meanwhile (then: False)."""

    def change(current: Record, conn) -> bool:
        if current.status != expect:
            return False
        current.data["NotebookInstanceStatus"] = current.status = status
        if status in ("Stopped", "Failed"):
            credentials.revoke(backends, current.data)  # the kernel's key dies with JupyterLab
        for key, value in members.items():
            if value is None:
                current.data.pop(key, None)
            else:
                current.data[key] = value
        return True

    stored = backends.resources.mutate(change, arn=record.arn)
    return stored is not None and stored.status == status


_WATCHED: dict[int, set[str]] = {}
_WATCH_LOCK = threading.Lock()


def _watch(backends: Backends, files: jupyter.Files, arn: str) -> None:
    """Kick the record when Jupyter exits (once per process and server)."""
    key = f"{arn}:{(files.state / 'pid').read_text().strip() if (files.state / 'pid').exists() else ''}"
    with _WATCH_LOCK:
        seen = _WATCHED.setdefault(id(backends), set())
        if key in seen:
            return
        seen.add(key)
    executor(backends).watch(files.state, lambda: kick(backends, arn))


def reconcile(backends: Backends, record: Record) -> float | None:
    files = _files(backends, record)
    status = record.status
    if status == "Pending":
        return _pending(backends, record, files)
    if status == "InService":
        if jupyter.running(backends, files):
            _watch(backends, files, record.arn)
            return POLL_RUNNING
        if files.shut_down.exists():  # a clean server stop ended it: start it again
            _set(backends, record, "InService", "Pending", _StartedAt=None)
            return 0.0
        _set(backends, record, "InService", "Failed", FailureReason=_failure(backends, files, "stopped"))
        return None
    if status in ("Stopping", "Deleting"):
        jupyter.stop(backends, files, STOP_GRACE)
        if jupyter.running(backends, files):
            return POLL_STARTING * 2
        if status == "Stopping":
            _set(backends, record, "Stopping", "Stopped", Url=None)
            return None
        credentials.revoke(backends, record.data)
        files.remove()
        backends.resources.delete(record.arn)
        return None
    if status == "Updating":
        _set(backends, record, "Updating", "Stopped", FailureReason=None)
        return None
    return None


def _pending(backends: Backends, record: Record, files: jupyter.Files) -> float | None:
    started = record.data.get("_StartedAt")
    if started is None or files.shut_down.exists() or not (files.state / "pid").exists():
        if not _mint(backends, record):
            return 0.0  # stopped or deleted meanwhile: the next step cleans up
        try:
            runtime = jupyter.prepare(backends, files)
            reason = _clone(backends, files, record, runtime) or _lifecycle(backends, files, record, runtime)
            if reason is None:
                jupyter.launch(backends, files, record.data, runtime)
        except (runtimes.RuntimeBuildError, ExecutorUnavailable, OSError) as err:
            reason = f"Unable to start JupyterLab: {err}"
        if reason is not None:
            files.say(f"cannot start JupyterLab: {reason}")
            _set(backends, record, "Pending", "Failed", FailureReason=reason[:1024])
            return None
        if not _set(backends, record, "Pending", "Pending", _StartedAt=time.time()):
            jupyter.stop(backends, files)  # stopped or deleted meanwhile: the next step cleans up
            return 0.0
        _watch(backends, files, record.arn)
        return POLL_STARTING
    if not jupyter.running(backends, files):
        _set(backends, record, "Pending", "Failed", FailureReason=_failure(backends, files, "starting"))
        return None
    if jupyter.answers(files):
        files.say(f"JupyterLab answers, {time.time() - started:.2f} s after its start")
        _set(backends, record, "Pending", "InService", _OnCreateDone=True, LastModifiedTime=now())
        return POLL_RUNNING
    if time.time() - started > STARTUP_SECONDS:
        jupyter.stop(backends, files)
        _set(
            backends,
            record,
            "Pending",
            "Failed",
            FailureReason=f"JupyterLab did not answer within {STARTUP_SECONDS:.0f} s of its start: "
            f"{files.last_output()}"[:1024],
        )
        return None
    return POLL_STARTING


def _mint(backends: Backends, record: Record) -> bool:
    """A new access key for this start (the previous one, if any, is revoked): the kernel's credentials."""
    issued = credentials.mint()
    previous = record.data.get("_credentials")
    if not _set(backends, record, "Pending", "Pending", _credentials=issued):
        return False
    if previous:
        credentials.revoke(backends, {"_credentials": previous})
    record.data["_credentials"] = issued
    credentials.grant(backends, record)
    return True


def _clone(backends: Backends, files: jupyter.Files, record: Record, runtime) -> str | None:
    """Clone the repositories not cloned yet, each remembered in the record once it is (then: None)."""
    for repository in repositories.pending(record.data):
        reason = repositories.clone(backends, files, record, runtime, repository)
        if reason is not None:
            return reason
        cloned = [*(record.data.get("_Cloned") or []), repositories.key(repository)]
        _set(backends, record, "Pending", "Pending", _Cloned=cloned)
        record.data["_Cloned"] = cloned
    return None


def _lifecycle(backends: Backends, files: jupyter.Files, record: Record, runtime) -> str | None:
    """OnCreate the first time (remembered in the record once it succeeded), then OnStart."""
    if not record.data.get("_OnCreateDone"):
        reason = lifecycle_scripts.run(backends, files, record, runtime, "OnCreate")
        if reason is not None:
            return reason
        _set(backends, record, "Pending", "Pending", _OnCreateDone=True)
        record.data["_OnCreateDone"] = True
    return lifecycle_scripts.run(backends, files, record, runtime, "OnStart")


def _failure(backends: Backends, files: jupyter.Files, when: str) -> str:
    return f"JupyterLab {jupyter.exit_reason(backends, files)} while {when}."[:1024]


register(
    Controller(
        NOTEBOOK_INSTANCE.name,
        frozenset({"Pending", "InService", "Stopping", "Updating", "Deleting"}),
        reconcile,
    )
)


class Shutdown:
    """At start-up, the access keys of the instances still running are valid again (before the reconciler
    resumes them and requests arrive). At a clean server stop, end every JupyterLab this server runs and mark
    it, so the next server starts it again (a crashed server leaves them running, and the next one
    re-attaches)."""

    def __init__(self, backends: Backends):
        self.backends = backends

    def start(self) -> None:
        for record in self._records(("Pending", "InService", "Stopping")):
            credentials.grant(self.backends, record)

    def stop(self) -> None:
        root = self.backends.settings.data_dir / "notebooks"
        for state in root.glob("*/*/*/state"):
            files_root = state.parent
            if (state / "pid").exists() and executor(self.backends).poll(state) is None:
                (files_root / "shut-down").touch()
                executor(self.backends).stop(state, STOP_GRACE)
                log.info("notebooks: stopped %s for the server's shutdown", files_root.name)
        # Their records say so at once: an instance whose JupyterLab ended is Pending until the next server starts
        # it again, so a client of that server never reads InService from before the stop (the marker above
        # covers a database that could not be written now).
        for record in self._records(("InService",)):
            if _files(self.backends, record).shut_down.exists():
                _set(self.backends, record, "InService", "Pending", _StartedAt=None)

    def _records(self, statuses: tuple[str, ...]) -> list[Record]:
        resources = schema.resources
        with self.backends.store.read() as conn:
            rows = conn.execute(
                select(resources.c.arn).where(
                    resources.c.kind == NOTEBOOK_INSTANCE.name, resources.c.status.in_(statuses)
                )
            ).fetchall()
            found = [self.backends.resources.get_by_arn(row.arn, conn=conn) for row in rows]
        return [record for record in found if record is not None]


@background_worker
def _shutdown(backends: Backends) -> Shutdown:
    return Shutdown(backends)
