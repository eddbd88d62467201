"""What each step type does: start, follow, stop, and the property document its expressions read.

Steps create their jobs, models and packages through the operation registry
(:func:`selfmaker.server.operations.call`): the same handlers and input
validation as the API, so a step's request is refused exactly as the user's
own request would be. Job steps are followed by
their job's status (the engine is kicked the moment a job ends; a Tuning step's job is a hyperparameter
tuning job, its properties also its best trials); Model,
RegisterModel, Condition and Fail complete as they start; a Callback waits
for SendPipelineExecutionStepSuccess or Failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import string
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update

from ...engines import pipeline_language
from ...server.errors import AWSError
from ...server.operations import Context, call
from ...store import schema

if TYPE_CHECKING:
    from .engine import Pass

C = schema.pipeline_callbacks


class StepFailed(Exception):
    """The step cannot succeed; ``error_type`` is what RetryPolicies match (None: never retried)."""

    def __init__(self, message: str, error_type: str | None = None):
        super().__init__(message)
        self.error_type = error_type


def error_type(err: AWSError) -> str | None:
    """The RetryPolicies exception type of an error from a step's service call."""
    if err.code in ("ThrottlingException", "Throttling"):
        return "Step.THROTTLING"
    if err.code == "ResourceLimitExceeded":
        return "SageMaker.RESOURCE_LIMIT"
    if err.status >= 500:
        return "Step.SERVICE_FAULT"
    return None


def job_error_type(reason: str) -> str | None:
    """The RetryPolicies exception type of a failed job, from its FailureReason."""
    if reason.startswith("InternalServerError"):
        return "SageMaker.JOB_INTERNAL_ERROR"
    if reason.startswith("CapacityError"):
        return "SageMaker.CAPACITY_ERROR"
    return None


def resource_name(execution_id: str, step: str, attempt: int) -> str:
    """A job or model name like SageMaker's: pipelines-<execution id>-<step>-<suffix>, at most 63 characters."""
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", step).strip("-")[:29].strip("-") or "step"
    suffix = hashlib.sha256(f"{execution_id}/{step}/{attempt}".encode()).hexdigest()[:10]
    return f"pipelines-{execution_id}-{cleaned}-{suffix}"


def execution_of(resource_name_: str) -> str | None:
    """The execution id in a name made by :func:`resource_name`."""
    match = re.match(r"pipelines-([a-z0-9]{12})-", resource_name_)
    return match.group(1) if match else None


class Runner:
    """A step type. ``start`` fills ``state``: Status Succeeded/Failed when done at once, else Executing."""

    def assign(self, p: Pass, step, state: dict) -> None:
        """Name what the step will create before creating it, so a restart finds it again."""

    def start(self, p: Pass, step, arguments: dict, state: dict) -> None:
        raise NotImplementedError

    def follow(self, p: Pass, step, state: dict) -> None:
        """Look at a running step; set Status when it has ended."""

    def stop(self, p: Pass, step, state: dict) -> None:
        state["Status"] = "Stopped"

    def properties(self, p: Pass, step, state: dict) -> dict:
        return {}


def create_once(ctx: Context, operation: str, params: dict) -> None:
    """Call a Create operation; one that already exists (made before a restart) counts as made."""
    try:
        call(ctx, operation, params)
    except AWSError as err:
        if not err.exists:
            raise


def _created(p: Pass, operation: str, params: dict) -> None:
    try:
        create_once(p.ctx, operation, params)
    except AWSError as err:
        raise StepFailed(f"{err.code}: {err.message}", error_type(err)) from None


@dataclass(frozen=True)
class JobRunner(Runner):
    kind: str  # TrainingJob, ProcessingJob, TransformJob

    @property
    def name_member(self) -> str:
        return f"{self.kind}Name"

    def assign(self, p, step, state):
        name = resource_name(p.execution_id, step.name, state["AttemptCount"])
        state["Resource"] = {
            "Kind": self.kind,
            "Name": name,
            "Arn": p.ctx.arn("sagemaker", f"{self.kind.replace('Job', '-job').lower()}/{name.lower()}"),
        }

    def start(self, p, step, arguments, state):
        params = {**arguments, self.name_member: state["Resource"]["Name"]}
        experiment = p.experiment_config()
        if experiment:  # the job's trial component joins the execution's trial
            params["ExperimentConfig"] = {**(arguments.get("ExperimentConfig") or {}), **experiment}
        _created(p, f"Create{self.kind}", params)
        state["Metadata"] = {self.kind: {"Arn": state["Resource"]["Arn"]}}
        state["Status"] = "Executing"

    def follow(self, p, step, state):
        record = p.backends.resources.get_by_arn(state["Resource"]["Arn"])
        if record is None:
            state.update(Status="Failed", FailureReason=f"The {self.kind} {state['Resource']['Name']} was deleted.")
            return
        status = record.data[f"{self.kind}Status"]
        if status == "Completed":
            state["Status"] = "Succeeded"
        elif status == "Failed":
            reason = record.data.get("FailureReason") or "The job failed."
            state.update(Status="Failed", FailureReason=reason, ErrorType=job_error_type(reason))
        elif status == "Stopped":
            state["Status"] = "Stopped"

    def stop(self, p, step, state):
        try:
            call(p.ctx, f"Stop{self.kind}", {self.name_member: state["Resource"]["Name"]})
        except AWSError:
            pass  # it ended meanwhile: follow() records how
        state["Status"] = "Stopping"

    def properties(self, p, step, state):
        return call(p.ctx, f"Describe{self.kind}", {self.name_member: state["Resource"]["Name"]})


TOP_TRAINING_JOBS = 50  # a Tuning step's TrainingJobSummaries: its best trials, best first (as AWS keeps them)


class TuningRunner(Runner):
    """A Tuning step: a hyperparameter tuning job made from the step's Arguments, followed to its end. Its
    properties are DescribeHyperParameterTuningJob's output and ``TrainingJobSummaries``: the 50 best trials,
    best first, so ``TrainingJobSummaries[0]`` is the best (the SDK's ``get_top_model_s3_uri(top_k)``)."""

    def assign(self, p, step, state):
        # A tuning job's name is at most 32 characters (its trials add 13): pipelines-<execution>-<9 hex>.
        suffix = hashlib.sha256(f"{p.execution_id}/{step.name}/{state['AttemptCount']}".encode()).hexdigest()[:9]
        name = f"pipelines-{p.execution_id}-{suffix}"
        arn = p.ctx.arn("sagemaker", f"hyper-parameter-tuning-job/{name.lower()}")
        state["Resource"] = {"Kind": "HyperParameterTuningJob", "Name": name, "Arn": arn}

    def start(self, p, step, arguments, state):
        _created(
            p, "CreateHyperParameterTuningJob", {**arguments, "HyperParameterTuningJobName": state["Resource"]["Name"]}
        )
        state["Metadata"] = {"TuningJob": {"Arn": state["Resource"]["Arn"]}}
        state["Status"] = "Executing"

    def follow(self, p, step, state):
        record = p.backends.resources.get_by_arn(state["Resource"]["Arn"])
        if record is None:
            state.update(Status="Failed", FailureReason=f"The tuning job {state['Resource']['Name']} was deleted.")
            return
        status = record.data["HyperParameterTuningJobStatus"]
        if status == "Completed":
            state["Status"] = "Succeeded"
        elif status == "Failed":
            state.update(Status="Failed", FailureReason=record.data.get("FailureReason") or "The tuning job failed.")
        elif status == "Stopped":
            state["Status"] = "Stopped"

    def stop(self, p, step, state):
        try:
            call(p.ctx, "StopHyperParameterTuningJob", {"HyperParameterTuningJobName": state["Resource"]["Name"]})
        except AWSError:
            pass  # it ended meanwhile: follow() records how
        state["Status"] = "Stopping"

    def properties(self, p, step, state):
        name = state["Resource"]["Name"]
        described = call(p.ctx, "DescribeHyperParameterTuningJob", {"HyperParameterTuningJobName": name})
        goal = (described.get("BestTrainingJob") or {}).get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        order = "Ascending" if goal.get("Type") == "Minimize" else "Descending"
        listed = call(
            p.ctx,
            "ListTrainingJobsForHyperParameterTuningJob",
            {
                "HyperParameterTuningJobName": name,
                "SortBy": "FinalObjectiveMetricValue",
                "SortOrder": order,
                "MaxResults": TOP_TRAINING_JOBS,
            },
        )
        return {**described, "TrainingJobSummaries": listed["TrainingJobSummaries"]}


class ModelRunner(Runner):
    def assign(self, p, step, state):
        name = resource_name(p.execution_id, step.name, state["AttemptCount"])
        arn = p.ctx.arn("sagemaker", f"model/{name.lower()}")
        state["Resource"] = {"Kind": "Model", "Name": name, "Arn": arn}

    def start(self, p, step, arguments, state):
        _created(p, "CreateModel", {**arguments, "ModelName": state["Resource"]["Name"]})
        state.update(Status="Succeeded", Metadata={"Model": {"Arn": state["Resource"]["Arn"]}})

    def properties(self, p, step, state):
        return call(p.ctx, "DescribeModel", {"ModelName": state["Resource"]["Name"]})


class RegisterModelRunner(Runner):
    def assign(self, p, step, state):
        # The package's ARN is known only once made; the token makes a repeat after a restart the same request.
        token = hashlib.sha256(f"{p.record.arn}/{step.name}/{state['AttemptCount']}".encode()).hexdigest()[:32]
        state["Resource"] = {"Kind": "ModelPackage", "Token": token}

    def start(self, p, step, arguments, state):
        params = {k: v for k, v in arguments.items() if k != "CertifyForMarketplace"}
        params["ClientToken"] = state["Resource"]["Token"]
        group = params.get("ModelPackageGroupName")
        if group and not group.startswith("arn:"):  # as in SageMaker, the step makes its group when missing
            _created(p, "CreateModelPackageGroup", {"ModelPackageGroupName": group})
        try:
            arn = call(p.ctx, "CreateModelPackage", params)["ModelPackageArn"]
        except AWSError as err:
            raise StepFailed(f"{err.code}: {err.message}", error_type(err)) from None
        state["Resource"]["Arn"] = arn
        state["Metadata"] = {"RegisterModel": {"Arn": arn}}
        state["Status"] = "Succeeded"

    def properties(self, p, step, state):
        return call(p.ctx, "DescribeModelPackage", {"ModelPackageName": state["Resource"]["Arn"]})


class ConditionRunner(Runner):
    def start(self, p, step, arguments, state):
        outcome = (
            "True" if pipeline_language.condition_holds(step.arguments.get("Conditions") or [], p.scope) else "False"
        )
        state.update(Status="Succeeded", Outcome=outcome, Metadata={"Condition": {"Outcome": outcome}})

    def properties(self, p, step, state):
        return {"Outcome": state["Outcome"]}


class FailRunner(Runner):
    def start(self, p, step, arguments, state):
        message = pipeline_language.evaluate(step.arguments.get("ErrorMessage", ""), p.scope)
        message = message if isinstance(message, str) else json.dumps(message)
        state.update(Status="Failed", FailureReason=message, Metadata={"Fail": {"ErrorMessage": message}})


_TOKEN_ALPHABET = string.ascii_letters + string.digits
TIMED_OUT = "TimedOut"  # a callback token's outcome when its step timed out waiting


class CallbackRunner(Runner):
    """Sends {"token", "pipelineExecutionArn", "arguments", "status"} to the step's SQS queue, then waits."""

    def assign(self, p, step, state):
        # Unguessable (keyed by a server secret), yet the same for a pass run again after a crash.
        key = p.backends.store.secret("pipeline-callback-tokens")
        digest = int.from_bytes(
            hmac.digest(key, f"{p.record.arn}/{step.name}/{state['AttemptCount']}".encode(), "sha256"), "big"
        )
        state["Token"] = "".join(_TOKEN_ALPHABET[(digest >> (6 * i)) % 62] for i in range(10))
        state["Metadata"] = {"Callback": {"CallbackToken": state["Token"], "SqsQueueUrl": step.raw["SqsQueueUrl"]}}

    def start(self, p, step, arguments, state):
        try:
            from ...aws.sqs.messages import send_message
        except ImportError:
            raise StepFailed("Callback steps need SelfMaker's SQS service, which this server lacks.") from None
        with p.backends.store.write() as conn:
            if conn.execute(select(C.c.token).where(C.c.token == state["Token"])).first() is None:
                conn.execute(
                    insert(C).values(
                        token=state["Token"],
                        account_id=p.record.account_id,
                        region=p.record.region,
                        execution_arn=p.record.arn,
                        step_name=step.name,
                        attempt=state["AttemptCount"],
                    )
                )
        body = json.dumps(
            {
                "token": state["Token"],
                "pipelineExecutionArn": p.record.arn,
                "arguments": arguments,
                "status": "Executing",
            }
        )
        try:
            send_message(p.backends, p.record.account_id, p.record.region, step.raw["SqsQueueUrl"], body)
        except AWSError as err:  # an unknown queue: the step fails, saying which
            raise StepFailed(
                f"Could not send the callback message to {step.raw['SqsQueueUrl']}: {err.code}: {err.message}"
            ) from None
        state["Status"] = "Executing"
        state.setdefault("TimeoutAt", time.time() + p.backends.settings.callback_timeout_seconds)

    def follow(self, p, step, state):
        with p.backends.store.read() as conn:
            row = conn.execute(select(C).where(C.c.token == state["Token"])).first()
        if row is None:
            return
        if row.outcome is None:
            if time.time() >= state.get("TimeoutAt", float("inf")):
                self._time_out(p, state)
            return
        if row.outcome == "Succeeded":
            outputs = row.output.get("OutputParameters") or []
            state.update(Status="Succeeded", Output=outputs)
            state["Metadata"]["Callback"]["OutputParameters"] = outputs
        else:
            state.update(Status="Failed", FailureReason=row.output.get("FailureReason"))

    @staticmethod
    def _time_out(p, state) -> None:
        """No answer in time: the token is spent (a late answer is refused) and the step fails."""
        with p.backends.store.write() as conn:
            spent = conn.execute(
                update(C).where(C.c.token == state["Token"], C.c.outcome.is_(None)).values(outcome=TIMED_OUT, output={})
            ).rowcount
        if spent:  # else an answer landed first: it kicked the execution, whose next pass reads it
            waited = p.backends.settings.callback_timeout_seconds
            state.update(
                Status="Failed",
                FailureReason=f"The callback step timed out: no SendPipelineExecutionStepSuccess or "
                f"SendPipelineExecutionStepFailure arrived within {waited:g} seconds.",
            )

    def properties(self, p, step, state):
        # Steps.<Callback>.OutputParameters['<name>'] reads the value itself.
        return {"OutputParameters": {o["Name"]: o["Value"] for o in state.get("Output") or []}}


RUNNERS: dict[str, Runner] = {
    "Training": JobRunner("TrainingJob"),
    "Processing": JobRunner("ProcessingJob"),
    "Transform": JobRunner("TransformJob"),
    "Tuning": TuningRunner(),
    "Model": ModelRunner(),
    "RegisterModel": RegisterModelRunner(),
    "Condition": ConditionRunner(),
    "Fail": FailRunner(),
    "Callback": CallbackRunner(),
}
