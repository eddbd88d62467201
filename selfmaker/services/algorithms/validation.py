"""The validation of an algorithm: its ValidationProfiles run for real, driven by the reconciler.

For each profile, in order: a training job (by the algorithm's name, as CreateTrainingJob with
AlgorithmName would run it), then when the profile has a TransformJobDefinition a Model (the
algorithm's inference container over the training job's model artifacts) and a batch transform job.
All three are named ``resource.validation_job_name`` and stay in the account, like any job, so
their logs and outputs can be read. A profile's ValidationStatus goes NotStarted → InProgress →
Completed, or Failed with the FailureReason of the job that failed; the algorithm is Completed when
every profile is, Failed at the first that fails.

Everything a step needs is in the store: the jobs are found by their names, so a server restarted at
any point picks up where it was, and a job created just before a crash is found rather than made twice.
"""

from __future__ import annotations

from ...backends import Backends
from ...engines.reconciler import Controller, kick, on_done, register
from ...server.errors import AWSError
from ...server.models import operation_model
from ...server.operations import Context, call
from ...server.validate import validate
from ...store.resources import Record
from ..jobs.training import TRAINING_JOB
from ..jobs.transform import TRANSFORM_JOB
from .resource import ALGORITHM, VALIDATING, validation_job_name

FALLBACK = 30.0  # seconds; a validation job's end kicks its algorithm at once
RUNNING = frozenset({"InProgress", "Stopping"})


def _ctx(backends: Backends, record: Record) -> Context:
    return Context(backends=backends, account_id=record.account_id, region=record.region, service="sagemaker")


def _job(ctx: Context, kind: str, name: str) -> Record | None:
    return ctx.backends.resources.get(ctx.account_id, ctx.region, kind, name=name)


def _create(ctx: Context, kind, operation: str, request: dict, algorithm_arn: str) -> str | None:
    """Create a validation job as the operation would (its input checked by the model); why not, or None."""
    try:
        params = validate(request, operation_model("sagemaker", operation).input_shape)
        params[VALIDATING] = algorithm_arn
        kind.create(ctx, params)
    except AWSError as err:
        if not err.exists:  # made by an earlier step that did not live to record it: carry on
            return f"{operation} failed: {err.code}: {err.message}"
    return None


def _ended(what: str, name: str, job: dict, status_member: str) -> str:
    reason = job.get("FailureReason") or "no reason given"
    return f"The {what} {name} ended {job[status_member]}: {reason}"


def _advance(ctx: Context, data: dict, profile: dict) -> tuple[str, str | None]:
    """One step of a profile: (its ValidationStatus, its FailureReason)."""
    name = validation_job_name(data, profile["ProfileName"])
    role = data["ValidationSpecification"]["ValidationRole"]
    training = profile["TrainingJobDefinition"]
    job = _job(ctx, "TrainingJob", name)
    if job is None:
        request = {
            "TrainingJobName": name,
            "RoleArn": role,
            "AlgorithmSpecification": {
                "AlgorithmName": data["AlgorithmArn"],
                "TrainingInputMode": training["TrainingInputMode"],
            },
            **{k: training[k] for k in ("HyperParameters", "InputDataConfig", "OutputDataConfig") if k in training},
            "ResourceConfig": training["ResourceConfig"],
            "StoppingCondition": training["StoppingCondition"],
        }
        failed = _create(ctx, TRAINING_JOB, "CreateTrainingJob", request, data["AlgorithmArn"])
        return ("Failed", failed) if failed else ("InProgress", None)
    status = job.data["TrainingJobStatus"]
    if status in RUNNING:
        return "InProgress", None
    if status != "Completed":
        return "Failed", _ended("training job", name, job.data, "TrainingJobStatus")
    transform = profile.get("TransformJobDefinition")
    if transform is None:
        return "Completed", None
    if _job(ctx, "Model", name) is None:
        container = data["InferenceSpecification"]["Containers"][0]
        model = {
            "ModelName": name,
            "ExecutionRoleArn": role,
            "PrimaryContainer": {
                "Image": container["Image"],
                "ModelDataUrl": job.data["ModelArtifacts"]["S3ModelArtifacts"],
                **({"Environment": container["Environment"]} if container.get("Environment") else {}),
            },
        }
        try:
            call(ctx, "CreateModel", model)
        except AWSError as err:
            if not err.exists:
                return "Failed", f"CreateModel failed: {err.code}: {err.message}"
    found = _job(ctx, "TransformJob", name)
    if found is None:
        request = {"TransformJobName": name, "ModelName": name, **transform}
        failed = _create(ctx, TRANSFORM_JOB, "CreateTransformJob", request, data["AlgorithmArn"])
        return ("Failed", failed) if failed else ("InProgress", None)
    status = found.data["TransformJobStatus"]
    if status in RUNNING:
        return "InProgress", None
    if status != "Completed":
        return "Failed", _ended("transform job", name, found.data, "TransformJobStatus")
    return "Completed", None


def reconcile(backends: Backends, record: Record) -> float | None:
    ctx = _ctx(backends, record)
    results: dict[str, tuple[str, str | None]] = {}
    outcome = "Completed"
    for profile in record.data["ValidationSpecification"]["ValidationProfiles"]:
        status, reason = _advance(ctx, record.data, profile)
        results[profile["ProfileName"]] = (status, reason)
        if status != "Completed":
            outcome = "Failed" if status == "Failed" else "InProgress"
            break

    def change(fresh: Record, _conn) -> bool:
        if fresh.status != "InProgress":
            return False
        for item in fresh.data["AlgorithmStatusDetails"]["ValidationStatuses"]:
            if item["Name"] in results:
                item["Status"], reason = results[item["Name"]]
                if reason:
                    item["FailureReason"] = reason[:1024]
        fresh.data["AlgorithmStatus"] = fresh.status = outcome
        return True

    backends.resources.mutate(change, arn=record.arn)
    return FALLBACK if outcome == "InProgress" else None


register(Controller(ALGORITHM.name, frozenset({"InProgress"}), reconcile))


@on_done
def _validation_job_done(backends: Backends, record: Record) -> None:
    """A validation job ended: its algorithm takes its next step now."""
    if record.kind in ("TrainingJob", "TransformJob") and record.data.get(VALIDATING):
        kick(backends, record.data[VALIDATING])
