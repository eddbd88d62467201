"""The Algorithm kind: CreateAlgorithm, DescribeAlgorithm, ListAlgorithms, DeleteAlgorithm; and its use by name.

An algorithm without a ValidationSpecification is Completed once stored (nothing runs for it). One
with a ValidationSpecification is InProgress while its profile runs for real (validation.py): a
training job, then, when the profile has a TransformJobDefinition, a Model from the algorithm's
InferenceSpecification and a batch transform job; it becomes Completed when they succeed, Failed
(with the profile's FailureReason) otherwise. Only a Completed algorithm trains other jobs.
"""

from __future__ import annotations

import hashlib

from ...engines.reconciler import kick
from ...server.errors import AWSError, validation
from ...server.operations import Context
from ...store.resources import Record
from ..jobs import channels
from ..kinds import Kind
from . import specification

# The member a validation job's request carries (never returned: not in the model): the algorithm it validates,
# which may then be used while it is still InProgress.
VALIDATING = "_ValidatingAlgorithm"
NAME_PREFIX = 40  # characters of the algorithm's name in its validation jobs' names


def validation_job_name(data: dict, profile: str) -> str:
    """The name of a profile's training job, model and transform job: ``<name[:40]>-validation-<8 hex>``,
    the hex a digest of the algorithm's ARN, creation time and profile (a recreated algorithm gets new jobs)."""
    digest = hashlib.sha256(f"{data['AlgorithmArn']}|{data['CreationTime']}|{profile}".encode()).hexdigest()[:8]
    return f"{data['AlgorithmName'][:NAME_PREFIX].rstrip('-')}-validation-{digest}"


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    spec = params["TrainingSpecification"]
    specification.check(ctx, spec)
    inference = params.get("InferenceSpecification")
    for i, container in enumerate((inference or {}).get("Containers") or []):
        specification.check_image(ctx, container.get("Image"), f"InferenceSpecification.Containers[{i}].Image")
    profiles = (params.get("ValidationSpecification") or {}).get("ValidationProfiles") or []
    for profile in profiles:
        _check_profile(ctx, spec, inference, profile)
    if params.get("CertifyForMarketplace") and not profiles:
        raise validation("CertifyForMarketplace needs a ValidationSpecification.")
    data.update(
        AlgorithmStatus="InProgress" if profiles else "Completed",
        AlgorithmStatusDetails={
            "ValidationStatuses": [{"Name": p["ProfileName"], "Status": "NotStarted"} for p in profiles]
        },
        CertifyForMarketplace=bool(params.get("CertifyForMarketplace")),
    )


def _check_profile(ctx: Context, spec: dict, inference: dict | None, profile: dict) -> None:
    where = f"ValidationProfile {profile['ProfileName']}"
    training = profile["TrainingJobDefinition"]
    try:
        specification.training_request(spec, training)
        for channel in training["InputDataConfig"]:
            channels.check_input_mode(channel.get("InputMode") or training["TrainingInputMode"], "TrainingInputMode")
            channels.check_compression(channel.get("CompressionType"), f"Channel {channel['ChannelName']}")
            source = channel["DataSource"].get("S3DataSource")
            if source is None:
                raise validation(f"Channel {channel['ChannelName']}: only S3DataSource channels are supported.")
            channels.check_s3_source(ctx, source, f"Channel {channel['ChannelName']}")
        channels.check_uri(ctx, training["OutputDataConfig"]["S3OutputPath"], "OutputDataConfig.S3OutputPath")
    except AWSError as err:
        raise validation(f"{where}: TrainingJobDefinition: {err.message}") from None
    transform = profile.get("TransformJobDefinition")
    if transform is None:
        return
    if not inference:
        raise validation(f"{where}: a TransformJobDefinition needs the algorithm's InferenceSpecification.")
    if len(inference["Containers"]) != 1:
        raise validation(f"{where}: SelfMaker validates algorithms whose InferenceSpecification has one container.")
    itype = transform["TransformResources"]["InstanceType"]
    supported = inference.get("SupportedTransformInstanceTypes")
    if supported and itype not in supported:
        raise validation(f"{where}: TransformResources.InstanceType {itype} is not in SupportedTransformInstanceTypes.")
    content = transform["TransformInput"].get("ContentType")
    if content and inference.get("SupportedContentTypes") and content not in inference["SupportedContentTypes"]:
        raise validation(f"{where}: TransformInput.ContentType {content} is not in SupportedContentTypes.")
    source = transform["TransformInput"]["DataSource"]["S3DataSource"]
    channels.check_uri(ctx, source["S3Uri"], f"{where}: TransformInput S3Uri")
    channels.check_uri(ctx, transform["TransformOutput"]["S3OutputPath"], f"{where}: TransformOutput.S3OutputPath")


def _on_delete(ctx: Context, record: Record, conn) -> None:
    if record.status == "InProgress":
        raise validation(
            f"The algorithm {record.name} is being validated: wait for its validation to end before deleting it."
        )


def _summary(record: Record) -> dict:
    keys = ("AlgorithmName", "AlgorithmArn", "AlgorithmDescription", "CreationTime", "AlgorithmStatus")
    return {k: record.data[k] for k in keys if k in record.data}


def _list_params(params: dict) -> dict:
    return {"SortOrder": "Ascending", **params}  # ListAlgorithms sorts ascending unless told (AWS's default)


def _after_create(ctx: Context, arn: str) -> None:
    kick(ctx.backends, arn)


ALGORITHM = Kind(
    "Algorithm",
    "algorithm",
    operations=("Create", "Describe", "List", "Delete"),
    status_member="AlgorithmStatus",
    on_create=_on_create,
    on_delete=_on_delete,
    after_create=_after_create,
    summarize=_summary,
    list_params=_list_params,
    exists="Algorithm {arn} already exists.",
    not_found="Algorithm {arn} does not exist.",
).register()


def for_training(ctx: Context, params: dict, data: dict) -> None:
    """CreateTrainingJob with AlgorithmSpecification.AlgorithmName: the algorithm (a Completed one of the caller's,
    by name or ARN) checks the request, and its image, metrics and hyperparameter defaults go into the job."""
    spec = params["AlgorithmSpecification"]
    if spec.get("TrainingImage"):
        raise validation("AlgorithmSpecification: give AlgorithmName or TrainingImage, not both.")
    algorithm = ALGORITHM.load(ctx, spec["AlgorithmName"])
    if algorithm.status != "Completed" and params.get(VALIDATING) != algorithm.arn:
        raise validation(
            f"The algorithm {algorithm.name} is {algorithm.status}: only a Completed algorithm can be used for training."
        )
    training = algorithm.data["TrainingSpecification"]
    data["HyperParameters"] = specification.training_request(training, params)
    data["_TrainingImage"] = training["TrainingImage"]
    data["_AlgorithmMetricDefinitions"] = training.get("MetricDefinitions") or []


def for_tuning(ctx: Context, definition: dict, ranges: dict, objective: dict | None) -> None:
    """A tuning job's training job definition naming an algorithm: the ranges must be of tunable hyperparameters
    inside the algorithm's ranges, and the objective one of its SupportedTuningJobObjectiveMetrics."""
    algorithm = ALGORITHM.load(ctx, definition["AlgorithmSpecification"]["AlgorithmName"])
    if algorithm.status != "Completed":
        raise validation(
            f"The algorithm {algorithm.name} is {algorithm.status}: only a Completed algorithm can be tuned."
        )
    spec = algorithm.data["TrainingSpecification"]
    supported = {hp["Name"]: hp for hp in spec.get("SupportedHyperParameters") or []}
    for member, bounds in (
        ("IntegerParameterRanges", ("MinValue", "MaxValue")),
        ("ContinuousParameterRanges", ("MinValue", "MaxValue")),
        ("CategoricalParameterRanges", ()),
    ):
        for r in ranges.get(member) or []:
            hp = supported.get(r["Name"])
            if hp is None or not hp.get("IsTunable"):
                raise validation(f"{member}: the algorithm has no tunable hyperparameter {r['Name']}.")
            for value in [r[b] for b in bounds] or r["Values"]:
                specification.check_value(hp, value, f"{member} {r['Name']}")
    goals = spec.get("SupportedTuningJobObjectiveMetrics") or []
    if objective and goals and not any(g["MetricName"] == objective.get("MetricName") for g in goals):
        raise validation(
            f"The objective metric {objective.get('MetricName')} is not among the algorithm's "
            f"SupportedTuningJobObjectiveMetrics ({', '.join(g['MetricName'] for g in goals)})."
        )


def algorithm_metric_definitions(ctx: Context, name_or_arn: str) -> list[dict]:
    """The metric definitions a training job of the named algorithm reports (a tuning job's objective, pruning)."""
    spec = ALGORITHM.load(ctx, name_or_arn).data["TrainingSpecification"]
    return specification.algorithm_metrics(ctx, spec)
