"""The events SageMaker sends to EventBridge, with AWS's ``detail-type`` and detail shape.

They are emitted where every resource change is stored: an observer of the store
(``ResourceStore.observe``) sees each create and save of the kinds below, in the change's own
transaction, and puts the event in the account's default-bus outbox (aws/events/outbox.py) when
the status it reports moved. So an event exists exactly when its change was committed, and a
restart loses neither.

| detail-type | when | detail |
|---|---|---|
| SageMaker Training Job State Change | TrainingJobStatus or SecondaryStatus moved | DescribeTrainingJob, times in epoch ms, Tags |
| SageMaker Processing Job State Change | ProcessingJobStatus moved | DescribeProcessingJob, same |
| SageMaker Transform Job State Change | TransformJobStatus moved | DescribeTransformJob, same |
| SageMaker Endpoint State Change | EndpointStatus moved | DescribeEndpoint, status as IN_SERVICE etc. |
| SageMaker Model Package State Change | created; ModelApprovalStatus or ModelPackageStatus moved | DescribeModelPackage, ISO times |
| SageMaker Model Building Pipeline Execution Status Change | PipelineExecutionStatus moved | lowerCamel, as AWS |
| SageMaker Model Building Pipeline Execution Step Status Change | a step's status moved | lowerCamel, as AWS |
"""

from __future__ import annotations

import re

from ..aws.events.outbox import emit, iso_time, new_event
from ..server.models import service_model
from ..server.serialize import to_json_value
from ..store import tag_store
from ..store.resources import Record, observe
from .hosting import endpoints
from .pipelines.state import STEPS

SOURCE = "aws.sagemaker"
JOBS = {
    "TrainingJob": ("SageMaker Training Job State Change", ("TrainingJobStatus", "SecondaryStatus")),
    "ProcessingJob": ("SageMaker Processing Job State Change", ("ProcessingJobStatus",)),
    "TransformJob": ("SageMaker Transform Job State Change", ("TransformJobStatus",)),
}
PIPELINE_EXECUTION = "SageMaker Model Building Pipeline Execution Status Change"
PIPELINE_STEP = "SageMaker Model Building Pipeline Execution Step Status Change"


def _public(data: dict) -> dict:
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _detail(kind: str, data: dict, time_format) -> dict:
    """``data`` as Describe<kind> answers it (modeled members only), its top-level times in ``time_format``."""
    shape = service_model("sagemaker").operation_model(f"Describe{kind}").output_shape
    detail = to_json_value(data, shape) or {}
    for name, member in shape.members.items():
        if member.type_name == "timestamp" and name in detail:
            detail[name] = time_format(data[name])
    return detail


def _epoch_ms(value: float) -> int:
    return round(value * 1000)


def _send(conn, record: Record, detail_type: str, detail: dict, resources: list[str]) -> None:
    event = new_event(record.account_id, record.region, SOURCE, detail_type, detail, resources)
    emit(conn, event)


# -- jobs, endpoints, model packages ------------------------------------------------------------


def _job_observer(kind: str):
    detail_type, watched = JOBS[kind]

    def observe_job(conn, before: Record | None, after: Record) -> None:
        if before is not None and all(before.data.get(m) == after.data.get(m) for m in watched):
            return
        detail = _detail(kind, _public(after.data), _epoch_ms)
        detail["Tags"] = tag_store.read_map(conn, after.arn)
        _send(conn, after, detail_type, detail, [after.arn])

    return observe_job


_CAMEL_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def _endpoint_status(status: str) -> str:
    """AWS's events spell endpoint statuses in capitals: InService is IN_SERVICE."""
    return _CAMEL_WORD.sub("_", status).upper()


def _observe_endpoint(conn, before: Record | None, after: Record) -> None:
    if before is not None and before.status == after.status:
        return
    detail = _detail("Endpoint", endpoints.present(None, after), _epoch_ms)
    detail["EndpointStatus"] = _endpoint_status(after.data["EndpointStatus"])
    detail["Tags"] = tag_store.read_map(conn, after.arn)
    _send(conn, after, "SageMaker Endpoint State Change", detail, [after.arn])


def _observe_model_package(conn, before: Record | None, after: Record) -> None:
    watched = ("ModelApprovalStatus", "ModelPackageStatus")
    if before is not None and all(before.data.get(m) == after.data.get(m) for m in watched):
        return
    detail = _detail("ModelPackage", _public(after.data), iso_time)
    _send(conn, after, "SageMaker Model Package State Change", detail, [after.arn])


# -- pipeline executions and their steps --------------------------------------------------------


def _lower_camel(value):
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_camel(v) for v in value]
    return value


def _observe_execution(conn, before: Record | None, after: Record) -> None:
    data = after.data
    resources = [data["PipelineArn"], after.arn]
    previous = before.data.get("PipelineExecutionStatus") if before is not None else None
    if previous != data["PipelineExecutionStatus"]:
        detail = {
            "pipelineExecutionDisplayName": data.get("PipelineExecutionDisplayName"),
            "currentPipelineExecutionStatus": data["PipelineExecutionStatus"],
            "previousPipelineExecutionStatus": previous,
            "executionStartTime": iso_time(data["CreationTime"]),
            "executionEndTime": (
                iso_time(data["LastModifiedTime"])
                if data["PipelineExecutionStatus"] in ("Succeeded", "Failed", "Stopped")
                else None
            ),
            "pipelineExecutionDescription": data.get("PipelineExecutionDescription"),
            "pipelineArn": data["PipelineArn"],
            "pipelineExecutionArn": after.arn,
        }
        _send(conn, after, PIPELINE_EXECUTION, {k: v for k, v in detail.items() if v is not None}, resources)
    earlier = before.data.get(STEPS, {}) if before is not None else {}
    steps = sorted(data.get(STEPS, {}).items(), key=lambda item: item[1].get("Order", 0))
    for name, state in steps:
        was = (earlier.get(name) or {}).get("Status")
        if was == state["Status"]:
            continue
        detail = {
            "metadata": _lower_camel(state.get("Metadata") or {}),
            "stepStartTime": iso_time(state["StartTime"]) if state.get("StartTime") else None,
            "stepEndTime": iso_time(state["EndTime"]) if state.get("EndTime") else None,
            "stepName": name,
            "stepType": state.get("Type"),
            "previousStepStatus": was,
            "currentStepStatus": state["Status"],
            "failureReason": state.get("FailureReason") if state["Status"] == "Failed" else None,
            "cacheHitResult": (
                {"sourcePipelineExecutionArn": state["CacheSource"]} if state.get("CacheSource") else None
            ),
            "pipelineArn": data["PipelineArn"],
            "pipelineExecutionArn": after.arn,
        }
        _send(conn, after, PIPELINE_STEP, {k: v for k, v in detail.items() if v is not None}, resources)


for _kind in JOBS:
    observe(_kind, _job_observer(_kind))
observe("Endpoint", _observe_endpoint)
observe("ModelPackage", _observe_model_package)
observe("PipelineExecution", _observe_execution)
