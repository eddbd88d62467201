"""Pipeline executions: Start, Describe, List, Stop, Retry and UpdatePipelineExecution,
ListPipelineExecutionSteps, DescribePipelineDefinitionForExecution, ListPipelineParametersForExecution,
SendPipelineExecutionStepSuccess and SendPipelineExecutionStepFailure.

An execution is a named resource (kind ``PipelineExecution``, named by its id,
parented by its pipeline's ARN) whose status the engine (:mod:`.engine`) moves
forward. Its id is a digest of the pipeline and the ClientRequestToken, so the
same StartPipelineExecution sent twice names the same execution.
"""

from __future__ import annotations

import base64
import hashlib

from sqlalchemy import select, update

from ...engines import pipeline_language
from ...engines.reconciler import kick
from ...server.errors import AWSError, validation
from ...server.operations import Context, operation
from ...store import schema
from ...store.resources import AlreadyExists, Record, now
from ..kinds import Kind, list_query
from . import pipeline_resource
from .state import PARAMETERS, PAST_ATTEMPTS, STEPS, TOKENS
from .steps import TIMED_OUT

R = schema.resources
C = schema.pipeline_callbacks

KIND = "PipelineExecution"
ACTIVE = frozenset({"Executing", "Stopping"})


def execution_id(pipeline_arn: str, token: str) -> str:
    """12 characters of [a-z0-9], like SageMaker's, derived from the request so a retry names the same one."""
    digest = hashlib.sha256(f"{pipeline_arn}\n{token}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:12]


def load(ctx: Context, arn: str, conn=None, lock: bool = False) -> Record:
    record = ctx.backends.resources.get(ctx.account_id, ctx.region, KIND, arn=arn, conn=conn, lock=lock)
    if record is None:  # the store looks in the caller's account and region only
        raise AWSError("ResourceNotFound", f"Pipeline execution '{arn}' does not exist.")
    return record


# -- Start -----------------------------------------------------------------------------------------


@operation("sagemaker", "StartPipelineExecution")
def start_pipeline_execution(ctx: Context, params: dict) -> dict:
    pipeline_resource._refuse_aliases(params)
    if params.get("MlflowExperimentName"):
        raise validation("MlflowExperimentName is not supported by SelfMaker yet.")
    pipeline = pipeline_resource.load(ctx, params["PipelineName"])
    version = pipeline_resource.version(ctx, pipeline, params.get("PipelineVersionId"))
    definition = pipeline_resource.parsed(version["definition"])
    try:
        values = pipeline_language.cast_parameters(definition, params.get("PipelineParameters") or [])
    except ValueError as err:
        raise validation(str(err)) from None
    selective = params.get("SelectiveExecutionConfig")
    if selective:
        _check_selective(ctx, pipeline, definition, selective)
    exec_id = execution_id(pipeline.arn, params["ClientRequestToken"])
    arn = f"{pipeline.arn}/execution/{exec_id}"
    created = now()
    data = {
        "PipelineArn": pipeline.arn,
        "PipelineExecutionArn": arn,
        "PipelineExecutionDisplayName": params.get("PipelineExecutionDisplayName")
        or f"execution-{int(created * 1000)}",
        "PipelineExecutionStatus": "Executing",
        "PipelineExecutionDescription": params.get("PipelineExecutionDescription"),
        "CreationTime": created,
        "LastModifiedTime": created,
        "ParallelismConfiguration": params.get("ParallelismConfiguration")
        or pipeline.data.get("ParallelismConfiguration"),
        "SelectiveExecutionConfig": selective,
        "PipelineVersionId": version["version_id"],
        "RoleArn": params.get("RoleArn") or pipeline.data.get("RoleArn"),
        PARAMETERS: values,
        STEPS: {},
        TOKENS: [],
    }
    try:
        with ctx.store.write() as conn:
            ctx.backends.resources.create(
                account_id=ctx.account_id,
                region=ctx.region,
                kind=KIND,
                name=exec_id,
                arn=arn,
                data=data,
                status="Executing",
                parent=pipeline.arn,
                created=created,
                conn=conn,
            )
            fresh = pipeline_resource.load(ctx, pipeline.arn, conn=conn, lock=True)
            fresh.data["LastRunTime"] = created
            ctx.backends.resources.save(fresh, conn=conn, touch=False)
            pipeline_resource.note_execution(conn, pipeline.arn, version["version_id"], arn)
    except AlreadyExists:
        return {"PipelineExecutionArn": arn}  # the same request again
    kick(ctx.backends, arn)
    return {"PipelineExecutionArn": arn}


def _check_selective(ctx: Context, pipeline: Record, definition, selective: dict) -> None:
    for item in selective["SelectedSteps"]:
        if item["StepName"] not in definition.steps:
            raise validation(f"SelectiveExecutionConfig: step '{item['StepName']}' is not in the pipeline.")
    source_arn = selective.get("SourcePipelineExecutionArn")
    if source_arn is None:
        raise validation(
            "SelectiveExecutionConfig needs SourcePipelineExecutionArn: the execution whose "
            "results the steps that are not selected reuse."
        )
    source = load(ctx, source_arn)
    if source.parent != pipeline.arn:
        raise validation(f"SourcePipelineExecutionArn '{source_arn}' is not an execution of '{pipeline.arn}'.")
    if source.status in ACTIVE:
        raise validation(f"SourcePipelineExecutionArn '{source_arn}' is still {source.status}.")


# -- Describe, List, Update --------------------------------------------------------------------------


def _public(data: dict) -> dict:
    return {k: v for k, v in data.items() if not k.startswith("_")}


@operation("sagemaker", "DescribePipelineExecution", store_read=True)
def describe_pipeline_execution(ctx: Context, params: dict) -> dict:
    return _public(load(ctx, params["PipelineExecutionArn"]).data)


# Executions have their own operations (below); the kind makes them searchable (Search, PipelineExecution).
EXECUTION = Kind(
    KIND,
    "pipeline-execution",
    operations=(),
    search_type="PipelineExecution",
    present=lambda ctx, record: _public(record.data),
).register()


def _summary(record: Record) -> dict:
    d = record.data
    return {
        "PipelineExecutionArn": record.arn,
        "StartTime": d["CreationTime"],
        "PipelineExecutionStatus": d["PipelineExecutionStatus"],
        "PipelineExecutionDescription": d.get("PipelineExecutionDescription"),
        "PipelineExecutionDisplayName": d.get("PipelineExecutionDisplayName"),
        "PipelineExecutionFailureReason": d.get("FailureReason"),
    }


@operation("sagemaker", "ListPipelineExecutions", store_read=True)
def list_pipeline_executions(ctx: Context, params: dict) -> dict:
    pipeline_resource._refuse_aliases(params)
    pipeline = pipeline_resource.load(ctx, params["PipelineName"])
    sort = {"PipelineExecutionArn": "Name"}.get(params.get("SortBy"), params.get("SortBy"))
    query = list_query({**params, "SortBy": sort})
    query.parent = pipeline.arn
    records, token = ctx.backends.resources.list(ctx.account_id, ctx.region, KIND, query)
    return {"PipelineExecutionSummaries": [_summary(r) for r in records], "NextToken": token}


@operation("sagemaker", "UpdatePipelineExecution")
def update_pipeline_execution(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = load(ctx, params["PipelineExecutionArn"], conn=conn, lock=True)
        for member in ("PipelineExecutionDescription", "PipelineExecutionDisplayName", "ParallelismConfiguration"):
            if member in params:
                record.data[member] = params[member]
        record.data["LastModifiedTime"] = record.modified_at = now()
        ctx.backends.resources.save(record, conn=conn, touch=False)
    kick(ctx.backends, record.arn)  # a higher parallelism may let more steps start
    return {"PipelineExecutionArn": record.arn}


@operation("sagemaker", "DescribePipelineDefinitionForExecution", store_read=True)
def describe_pipeline_definition_for_execution(ctx: Context, params: dict) -> dict:
    record = load(ctx, params["PipelineExecutionArn"])
    pipeline = pipeline_resource.load(ctx, record.parent)
    row = pipeline_resource.version(ctx, pipeline, record.data["PipelineVersionId"])
    return {"PipelineDefinition": row["definition"], "CreationTime": row["created_at"]}


def _page(items: list, params: dict, ctx: Context, what: str) -> tuple[list, str | None]:
    """A page of an in-memory list; the token names the position and the list it belongs to."""
    start = 0
    if params.get("NextToken"):
        start = ctx.backends.resources.read_page_token(params["NextToken"], what)["at"]
    size = params.get("MaxResults") or 50
    page = items[start : start + size]
    more = start + size < len(items)
    return page, (ctx.backends.resources.page_token(what, at=start + size) if more else None)


@operation("sagemaker", "ListPipelineParametersForExecution", store_read=True)
def list_pipeline_parameters_for_execution(ctx: Context, params: dict) -> dict:
    record = load(ctx, params["PipelineExecutionArn"])
    values = [{"Name": name, "Value": _as_given(value)} for name, value in record.data[PARAMETERS].items()]
    page, token = _page(values, params, ctx, f"parameters:{record.arn}")
    return {"PipelineParameters": page, "NextToken": token}


def _as_given(value) -> str:
    """A typed parameter value as StartPipelineExecution would carry it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@operation("sagemaker", "ListPipelineExecutionSteps", store_read=True)
def list_pipeline_execution_steps(ctx: Context, params: dict) -> dict:
    if not params.get("PipelineExecutionArn"):
        raise validation("PipelineExecutionArn is required.")
    record = load(ctx, params["PipelineExecutionArn"])
    steps = [_step_view(name, state) for name, state in record.data[STEPS].items()]
    # Newest first by default, as SageMaker lists them; ties in start order.
    steps.sort(
        key=lambda s: (s["StartTime"], record.data[STEPS][s["StepName"]]["Order"]),
        reverse=(params.get("SortOrder") or "Descending") == "Descending",
    )
    page, token = _page(steps, params, ctx, f"steps:{record.arn}:{params.get('SortOrder')}")
    return {"PipelineExecutionSteps": page, "NextToken": token}


def _step_view(name: str, state: dict) -> dict:
    view = {
        "StepName": name,
        "StepDisplayName": state.get("DisplayName"),
        "StepDescription": state.get("Description"),
        "StartTime": state["StartTime"],
        "EndTime": state.get("EndTime"),
        "StepStatus": state["Status"],
        "FailureReason": state.get("FailureReason"),
        "Metadata": state.get("Metadata") or None,
        "AttemptCount": state.get("AttemptCount"),
    }
    if state.get("CacheSource"):
        view["CacheHitResult"] = {"SourcePipelineExecutionArn": state["CacheSource"]}
    if state.get("SelectiveSource"):
        view["SelectiveExecutionResult"] = {"SourcePipelineExecutionArn": state["SelectiveSource"]}
    return view


# -- Stop, Retry ----------------------------------------------------------------------------------------


@operation("sagemaker", "StopPipelineExecution")
def stop_pipeline_execution(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = load(ctx, params["PipelineExecutionArn"], conn=conn, lock=True)
        status = record.data["PipelineExecutionStatus"]
        if status in ("Stopping", "Stopped"):
            return {"PipelineExecutionArn": record.arn}
        if status != "Executing":
            raise validation(
                f"Pipeline execution '{record.arn}' is {status}: only an Executing execution can be stopped."
            )
        record.data["PipelineExecutionStatus"] = record.status = "Stopping"
        record.data["LastModifiedTime"] = now()
        ctx.backends.resources.save(record, conn=conn)
    kick(ctx.backends, record.arn)
    return {"PipelineExecutionArn": record.arn}


@operation("sagemaker", "RetryPipelineExecution")
def retry_pipeline_execution(ctx: Context, params: dict) -> dict:
    token = params["ClientRequestToken"]
    with ctx.store.write() as conn:
        record = load(ctx, params["PipelineExecutionArn"], conn=conn, lock=True)
        if token in record.data[TOKENS]:
            return {"PipelineExecutionArn": record.arn}  # this retry was already made
        status = record.data["PipelineExecutionStatus"]
        if status not in ("Failed", "Stopped"):
            raise validation(
                f"Pipeline execution '{record.arn}' is {status}: only a Failed or Stopped execution can be retried."
            )
        steps, past = record.data[STEPS], record.data.setdefault(PAST_ATTEMPTS, {})
        for name in [n for n, s in steps.items() if s["Status"] in ("Failed", "Stopped")]:
            past[name] = steps.pop(name)["AttemptCount"]  # the engine starts it again, as its next attempt
        record.data.pop("FailureReason", None)
        if params.get("ParallelismConfiguration"):
            record.data["ParallelismConfiguration"] = params["ParallelismConfiguration"]
        record.data[TOKENS].append(token)
        record.data["PipelineExecutionStatus"] = record.status = "Executing"
        record.data["LastModifiedTime"] = now()
        ctx.backends.resources.save(record, conn=conn)
    kick(ctx.backends, record.arn)
    return {"PipelineExecutionArn": record.arn}


# -- Callback answers ------------------------------------------------------------------------------------


def _answer(ctx: Context, params: dict, outcome: str, output: dict) -> dict:
    token, request = params["CallbackToken"], params.get("ClientRequestToken")
    with ctx.store.write() as conn:
        row = conn.execute(
            select(C).where(C.c.token == token, C.c.account_id == ctx.account_id, C.c.region == ctx.region)
        ).first()
        if row is None:
            raise validation(f"Callback token '{token}' is not valid.")
        if row.outcome == TIMED_OUT:
            raise validation(f"Callback token '{token}' has expired: its step timed out waiting for an answer.")
        if row.outcome is not None:
            if request and row.output.get("ClientRequestToken") == request:
                return {"PipelineExecutionArn": row.execution_arn}  # the same answer again
            raise validation(f"Callback token '{token}' was already answered ({row.outcome}).")
        record = load(ctx, row.execution_arn, conn=conn)
        step = record.data[STEPS].get(row.step_name) or {}
        # The token's row is written before its message is sent, the step's state only after: a fast worker
        # can answer before that state is saved (no step yet, or Starting). Refused only once the step has
        # moved on: another attempt's token, or an end.
        moved_on = step.get("Token") not in (None, token) or step.get("Status") not in (None, "Starting", "Executing")
        if record.status not in ACTIVE or moved_on:
            raise validation(
                f"The step '{row.step_name}' of '{row.execution_arn}' is not waiting for callback token '{token}'."
            )
        conn.execute(
            update(C)
            .where(C.c.token == token)
            .values(outcome=outcome, output={**output, "ClientRequestToken": request})
        )
    kick(ctx.backends, row.execution_arn)
    return {"PipelineExecutionArn": row.execution_arn}


@operation("sagemaker", "SendPipelineExecutionStepSuccess")
def send_pipeline_execution_step_success(ctx: Context, params: dict) -> dict:
    return _answer(ctx, params, "Succeeded", {"OutputParameters": params.get("OutputParameters") or []})


@operation("sagemaker", "SendPipelineExecutionStepFailure")
def send_pipeline_execution_step_failure(ctx: Context, params: dict) -> dict:
    return _answer(
        ctx, params, "Failed", {"FailureReason": params.get("FailureReason") or "The callback reported a failure."}
    )
