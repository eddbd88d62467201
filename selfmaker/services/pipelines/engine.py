"""The execution state machine: each reconcile pass follows the running steps, starts every step
whose dependencies are done, and ends the execution when nothing more can run.

A pass reads the execution's record, works on a copy of its step states and
writes them back once. Nothing is written before a step's job, model or
package is created: their names (and a package's ClientToken, a callback's
token) derive from the execution, the step and the attempt, so a pass cut
short by a crash is simply run again after the restart, and what it had
created is found instead of made twice. Jobs kick the execution the moment
they end (:func:`_job_done`), so a dependant starts within milliseconds.
"""

from __future__ import annotations

import copy
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import insert, select

from ...backends import Backends
from ...engines import pipeline_language
from ...engines.reconciler import Controller, kick, on_done, register
from ...server.errors import AWSError
from ...server.operations import Context
from ...store import schema
from ...store.resources import Record, now
from . import pipeline_resource, tracking
from .executions import ACTIVE, KIND
from .scope import ExecutionScope
from .state import PARAMETERS, PAST_ATTEMPTS, PREPARED, RUNNING, STEPS
from .steps import RUNNERS, StepFailed, execution_of

log = logging.getLogger("selfmaker.pipelines")

CACHE = schema.pipeline_step_cache
FALLBACK_SECONDS = 30.0  # a safety net only: jobs and callbacks kick the execution when they end
GENERIC_FAILURE = "Step failure: One or multiple steps failed."
CACHEABLE = frozenset({"Training", "Processing", "Transform", "Model", "RegisterModel"})
# Creates the jobs of a fan-out side by side: their handlers wait on the store and the file system.
_LAUNCHER = ThreadPoolExecutor(8, thread_name_prefix="pipeline-launch")


class Pass:
    """One reconcile pass over an execution."""

    def __init__(self, backends: Backends, record: Record):
        self.backends, self.record = backends, record
        self.ctx = Context(backends=backends, account_id=record.account_id, region=record.region, service="sagemaker")
        self.execution_id = record.name
        pipeline = backends.resources.get_by_arn(record.parent)  # kept while an execution runs (DeletePipeline)
        self.pipeline_name = pipeline.name
        self.definition = pipeline_resource.parsed(
            pipeline_resource.version(self.ctx, pipeline, record.data["PipelineVersionId"])["definition"]
        )
        self.parameters = record.data[PARAMETERS]
        self.steps: dict[str, dict] = copy.deepcopy(record.data[STEPS])
        self.cached: list[dict] = []  # cache rows to add with this pass's write
        self.updates: dict = {}  # execution members to set with this pass's write
        self.scope = ExecutionScope(self)
        self.stopping = record.status == "Stopping"

    def runner(self, step: str):
        return RUNNERS[self.definition.steps[step].type]

    def experiment_config(self) -> dict | None:
        config = self.record.data.get("PipelineExperimentConfig")
        return dict(config) if config else None

    # -- the pass ----------------------------------------------------------------------------------

    def run(self) -> float | None:
        if not self.record.data.get(PREPARED):
            self._prepare()
        for name, state in self.steps.items():
            if state["Status"] in RUNNING and not state.get("RetryAt"):
                self._follow(name, state)
        if self.stopping:
            for name, state in self.steps.items():
                if state["Status"] in ("Starting", "Executing"):
                    self._stop(name, state)
        else:
            self._start_ready()
        return self._conclude()

    def _prepare(self) -> None:
        """First pass: the experiment and trial the jobs join; the steps reused by a selective execution."""
        updates: dict = {PREPARED: True}
        config = None
        if self.definition.experiment_config:
            try:
                config = {
                    k: str(pipeline_language.evaluate(v, self.scope))
                    for k, v in self.definition.experiment_config.items()
                    if v is not None
                }
                updates["PipelineExperimentConfig"] = config
            except pipeline_language.EvaluationError as err:
                log.warning("execution %s: no experiment tracking: %s", self.record.arn, err)
        try:
            tracking.start(self.ctx, self.record.arn, self.execution_id, self.pipeline_name, config)
        except AWSError as err:
            log.warning("execution %s: no experiment or lineage tracking: %s", self.record.arn, err.message)
            updates.pop("PipelineExperimentConfig", None)
        selective = self.record.data.get("SelectiveExecutionConfig")
        if selective:
            self._reuse_unselected(selective)
        self.record.data.update(updates)
        self.updates.update(updates)

    def _reuse_unselected(self, selective: dict) -> None:
        selected = {s["StepName"] for s in selective["SelectedSteps"]}
        source_arn = selective["SourcePipelineExecutionArn"]
        source = self.backends.resources.get_by_arn(source_arn)
        for name, state in (source.data[STEPS] if source else {}).items():
            if name not in selected and state["Status"] == "Succeeded" and name in self.definition.steps:
                self.steps[name] = {**copy.deepcopy(state), "SelectiveSource": source_arn, "Order": len(self.steps)}

    def _follow(self, name: str, state: dict) -> None:
        runner = self.runner(name)
        was = state["Status"]
        runner.follow(self, self.definition.steps[name], state)
        if state["Status"] == was:
            return
        state["EndTime"] = now()
        tracking.step_ended(self.ctx, self.execution_id, state.get("Resource"))
        if state["Status"] == "Failed":
            self._maybe_retry(name, state)
        elif state["Status"] == "Succeeded":
            self._remember(name, state)

    def _stop(self, name: str, state: dict) -> None:
        if state.get("RetryAt"):  # waiting between attempts: nothing runs
            state.pop("RetryAt")
            state.update(Status="Stopped", EndTime=now())
            return
        self.runner(name).stop(self, self.definition.steps[name], state)
        if state["Status"] == "Stopped":
            state["EndTime"] = now()

    def _maybe_retry(self, name: str, state: dict) -> None:
        """A failed attempt of a step whose RetryPolicies cover the error waits and runs again."""
        step = self.definition.steps[name]
        kind = state.pop("ErrorType", None)
        if not kind or not step.retry_policies or self.stopping:
            return
        first = state.setdefault("FirstFailure", state["EndTime"])
        delay = pipeline_language.retry_delay(step.retry_policies, kind, state["AttemptCount"], first, time.time())
        if delay is not None:
            state.update(Status="Executing", RetryAt=time.time() + delay)
            state.pop("EndTime", None)

    # -- starting steps ------------------------------------------------------------------------------

    @property
    def limit(self) -> int | None:
        return (self.record.data.get("ParallelismConfiguration") or {}).get("MaxParallelExecutionSteps")

    def _start_ready(self) -> None:
        """Start every step that can start; loop while steps that end as they start unblock others."""
        limit = self.limit
        progress = True
        while progress:
            running = sum(1 for s in self.steps.values() if s["Status"] in RUNNING)
            begun, launches = [], []
            for name, step in self.definition.steps.items():
                state = self.steps.get(name)
                retry_due = state is not None and state.get("RetryAt") and state["RetryAt"] <= time.time()
                if state is not None and not retry_due:
                    continue
                if state is None and self._readiness(name) is not True:
                    continue
                if limit and running >= limit:
                    break
                running += 1
                begun.append(name)
                if (launch := self._begin(name, step, state)) is not None:
                    launches.append(launch)
            self._launch(launches)
            for name in begun:
                self._settle(name, self.steps[name])
            progress = any(self.steps[name]["Status"] not in RUNNING for name in begun)

    def _readiness(self, name: str, seen: frozenset = frozenset()) -> bool | None:
        """True: can start now; False: waits on a step still to finish; None: never runs in this execution."""
        step = self.definition.steps[name]
        selective = self.record.data.get("SelectiveExecutionConfig")
        if selective and name not in {s["StepName"] for s in selective["SelectedSteps"]}:
            return None  # not selected, and not reused from the source execution
        waiting = False
        needed = list(step.depends_on)
        if step.branch:
            needed.append(step.branch[0])
        for dependency in needed:
            state = self.steps.get(dependency)
            if state is None:
                if dependency in seen or self._readiness(dependency, seen | {name}) is None:
                    return None
                waiting = True
            elif state["Status"] in ("Failed", "Stopped"):
                return None
            elif state["Status"] != "Succeeded":
                waiting = True
        if step.branch and not waiting:
            wanted = "True" if step.branch[1] else "False"
            if self.steps[step.branch[0]].get("Outcome") != wanted:
                return None
        return not waiting

    def _begin(self, name: str, step, previous: dict | None):
        """A step's new attempt: its state and resolved arguments, ready to launch (None: already settled)."""
        past = self.record.data.get(PAST_ATTEMPTS, {}).get(name, 0)
        attempt = ((previous or {}).get("AttemptCount") or past) + 1
        state = {
            "Status": "Starting",
            "Type": step.type,
            "Order": (previous or {}).get("Order", len(self.steps)),
            "StartTime": (previous or {}).get("StartTime", now()),
            "AttemptCount": attempt,
            "DisplayName": step.display_name,
            "Description": step.description,
        }
        if previous and previous.get("FirstFailure"):
            state["FirstFailure"] = previous["FirstFailure"]
        self.steps[name] = state
        runner = RUNNERS[step.type]
        try:
            runner.assign(self, step, state)
            if step.type in ("Condition", "Fail"):  # they read the scope themselves, at once
                runner.start(self, step, {}, state)
                return None
            self.scope.current_resource = (state.get("Resource") or {}).get("Name")
            arguments = pipeline_language.evaluate(step.arguments, self.scope)
            if self._reuse_cached(name, step, arguments, state):
                return None
            return runner, step, arguments, state
        except StepFailed as failure:
            state.update(Status="Failed", FailureReason=str(failure), ErrorType=failure.error_type)
        except pipeline_language.EvaluationError as err:
            state.update(Status="Failed", FailureReason=f"Could not evaluate the step's arguments: {err}")
        finally:
            self.scope.current_resource = None
        return None

    def _launch(self, launches: list) -> None:
        """Create the steps' jobs, models and packages; side by side when there are several (a fan-out)."""
        if len(launches) == 1:
            self._run_start(launches[0])
        elif launches:
            list(_LAUNCHER.map(self._run_start, launches))

    def _run_start(self, launch) -> None:
        runner, step, arguments, state = launch
        try:
            runner.start(self, step, arguments, state)
        except StepFailed as failure:
            state.update(Status="Failed", FailureReason=str(failure), ErrorType=failure.error_type)

    def _settle(self, name: str, state: dict) -> None:
        """A step that ended as it started: its end time, then a retry or its place in the cache."""
        if state["Status"] not in ("Succeeded", "Failed") or state.get("EndTime"):
            return
        state["EndTime"] = now()
        if state["Status"] == "Failed":
            self._maybe_retry(name, state)
            return
        self._remember(name, state)
        resource = state.get("Resource") or {}
        if resource.get("Kind") in ("Model", "ModelPackage") and not state.get("CacheSource"):
            step = self.definition.steps[name]
            tracking.step_ended(self.ctx, self.execution_id, resource, self.runner(name).properties(self, step, state))

    # -- the cache -----------------------------------------------------------------------------------

    def _reuse_cached(self, name: str, step, arguments: dict, state: dict) -> bool:
        if step.type not in CACHEABLE or not pipeline_language.caching(step.cache):
            return False
        state["CacheKey"] = pipeline_language.cache_key(step, arguments)
        expiry = pipeline_language.cache_expiry(step.cache)
        oldest = time.time() - expiry if expiry is not None else 0.0
        with self.backends.store.read() as conn:
            row = conn.execute(
                select(CACHE)
                .where(
                    CACHE.c.pipeline_arn == self.record.parent,
                    CACHE.c.step_name == name,
                    CACHE.c.cache_key == state["CacheKey"],
                    CACHE.c.finished_at >= oldest,
                    CACHE.c.execution_arn != self.record.arn,
                )
                .order_by(CACHE.c.finished_at.desc())
                .limit(1)
            ).first()
        if row is None:
            return False
        state.update(row.result)
        state.update(Status="Succeeded", CacheSource=row.execution_arn)
        return True

    def _remember(self, name: str, state: dict) -> None:
        if state.get("CacheKey") and not state.get("CacheSource"):
            self.cached.append(
                {
                    "pipeline_arn": self.record.parent,
                    "step_name": name,
                    "cache_key": state["CacheKey"],
                    "execution_arn": self.record.arn,
                    "finished_at": time.time(),
                    "result": {k: state[k] for k in ("Resource", "Metadata", "Outcome") if k in state},
                }
            )

    # -- the end ---------------------------------------------------------------------------------------

    def _conclude(self) -> float | None:
        running = [s for s in self.steps.values() if s["Status"] in RUNNING]
        room = not self.limit or len(running) < self.limit
        startable = (
            not self.stopping
            and room
            and any(name not in self.steps and self._readiness(name) is True for name in self.definition.steps)
        )
        outcome = reason = None
        if not running and not startable:
            failed = [s for s in self.steps.values() if s["Status"] == "Failed"]
            if self.stopping:
                outcome = "Stopped"
            elif failed:
                outcome = "Failed"
                fail_steps = [
                    s
                    for n, s in self.steps.items()
                    if self.definition.steps[n].type == "Fail" and s["Status"] == "Failed"
                ]
                reason = fail_steps[0]["FailureReason"] if fail_steps else GENERIC_FAILURE
            else:
                outcome = "Succeeded"
        if not self._save(outcome, reason):
            return 0.0  # the execution changed meanwhile (Stop): look again
        if outcome is not None:
            return None
        retry_at = [s["RetryAt"] for s in running if s.get("RetryAt")]
        if retry_at:
            return max(0.0, min(retry_at) - time.time())
        if startable:
            return 0.0
        deadlines = [s["TimeoutAt"] - time.time() for s in running if s.get("TimeoutAt")]  # Callback steps
        return max(0.0, min([FALLBACK_SECONDS, *deadlines]))

    def _save(self, outcome: str | None, reason: str | None) -> bool:
        """Write the pass's steps; False when a Stop arrived during the pass (its outcome then waits)."""

        def change(fresh: Record, conn) -> None:
            nonlocal outcome
            if fresh.status != self.record.status:
                outcome = None  # a Stop arrived during the pass: keep the steps, decide next pass
            fresh.data[STEPS] = self.steps
            fresh.data.update(self.updates)
            if outcome is not None:
                fresh.data["PipelineExecutionStatus"] = fresh.status = outcome
                if reason:
                    fresh.data["FailureReason"] = reason[:3072]
            if self.cached:
                conn.execute(insert(CACHE), self.cached)

        fresh = self.backends.resources.mutate(change, arn=self.record.arn)
        return fresh is None or fresh.status == self.record.status or outcome is not None


def reconcile(backends: Backends, record: Record) -> float | None:
    try:
        return Pass(backends, record).run()
    except Exception as err:  # a bug must not leave the execution Executing forever
        log.exception("pipeline execution %s failed in SelfMaker", record.arn)
        reason = f"InternalServerError: SelfMaker could not run the execution: {err}"

        def failed(fresh: Record, _conn) -> None:
            fresh.data["PipelineExecutionStatus"] = fresh.status = "Failed"
            fresh.data["FailureReason"] = reason

        backends.resources.mutate(failed, arn=record.arn)
        return None


register(Controller(KIND, ACTIVE, reconcile))

JOB_KINDS = frozenset({"TrainingJob", "ProcessingJob", "TransformJob", "HyperParameterTuningJob"})


@on_done
def _job_done(backends: Backends, record: Record) -> None:
    """A job a step started has ended: its execution takes its next step now."""
    if record.kind not in JOB_KINDS:
        return
    execution_id = execution_of(record.name)
    if execution_id is None:
        return
    execution = backends.resources.get(record.account_id, record.region, KIND, name=execution_id)
    if execution is not None and execution.status in ACTIVE:
        kick(backends, execution.arn)
