"""Pipelines and their versions: Create/Describe/Update/Delete/ListPipelines, ListPipelineVersions,
UpdatePipelineVersion.

A pipeline is a named resource (kind ``Pipeline``); its definitions live in the
``pipeline_versions`` table, one immutable row per Create or Update, so an
execution always runs (and describes) the definition it started with. A
definition is parsed and checked by :mod:`selfmaker.engines.pipeline_language` before
anything is stored: a bad one is a ValidationException that says what and where.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import delete, func, insert, select, update

from ...engines import pipeline_language
from ...objects.access import AccountObjects, check_s3_uri
from ...server.errors import AWSError, already_exists, validation
from ...server.operations import Context, handler_for, operation
from ...store import schema
from ...store.resources import AlreadyExists, Record, now
from .. import tagging
from ..kinds import Kind, list_query

R = schema.resources
V = schema.pipeline_versions

TOKEN = "_ClientRequestToken"  # the CreatePipeline request that made it (a retry of it answers the same ARN)
LATEST = "_LatestVersionId"

# The operation each job-like step type needs; a step type whose operation is not served yet is refused.
STEP_OPERATIONS = {
    "Training": "CreateTrainingJob",
    "Processing": "CreateProcessingJob",
    "Transform": "CreateTransformJob",
    "Model": "CreateModel",
    "RegisterModel": "CreateModelPackage",
}


def parse(text: str) -> pipeline_language.Definition:
    """The definition, or a ValidationException naming what is wrong and where."""
    try:
        definition = pipeline_language.parse(text)
    except pipeline_language.NotAJsonObject as err:
        raise validation(str(err)) from None
    except pipeline_language.DefinitionError as err:
        raise validation(f"Invalid pipeline definition: {err}") from None
    for step in definition.steps.values():
        needed = STEP_OPERATIONS.get(step.type)
        if needed and handler_for("sagemaker", needed) is None:
            raise validation(
                f"Invalid pipeline definition: Step '{step.name}': step type {step.type} is not "
                f"supported by SelfMaker yet ({needed} is not implemented)."
            )
        if step.type == "Callback" and not step.raw.get("SqsQueueUrl"):
            raise validation(f"Invalid pipeline definition: Step '{step.name}': a Callback step needs SqsQueueUrl.")
    return definition


@lru_cache(maxsize=256)
def parsed(text: str) -> pipeline_language.Definition:
    """Definitions are immutable once stored: parse each once per process."""
    return pipeline_language.parse(text)


def _definition_text(ctx: Context, params: dict, required: bool) -> str | None:
    inline, location = params.get("PipelineDefinition"), params.get("PipelineDefinitionS3Location")
    if inline is not None and location is not None:
        raise validation("Specify either PipelineDefinition or PipelineDefinitionS3Location, not both.")
    if location is not None:
        if location.get("VersionId"):
            raise validation(
                "PipelineDefinitionS3Location.VersionId is not supported by SelfMaker: "
                "its object store keeps one version of each object."
            )
        uri = f"s3://{location['Bucket']}/{location['ObjectKey']}"
        check_s3_uri(ctx.backends, ctx.account_id, uri, "PipelineDefinitionS3Location")
        try:
            with AccountObjects.of(ctx.backends, ctx.account_id).open_object(
                location["Bucket"], location["ObjectKey"]
            ) as reader:
                raw = reader.read()
        except AWSError as err:
            raise validation(f"Could not read the pipeline definition from {uri}: {err.message}") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise validation("The pipeline definition in S3 is not UTF-8 text.") from None
    if inline is None and required:
        raise validation("Either PipelineDefinition or PipelineDefinitionS3Location must be specified.")
    return inline


def _refuse_aliases(params: dict) -> None:
    for member in ("PipelineVersionAliases", "PipelineVersionAlias", "PipelineVersionAliasOperations"):
        if params.get(member):
            raise validation(f"{member} is not supported by SelfMaker yet; name versions by PipelineVersionId.")


# -- versions --------------------------------------------------------------------------------------


def add_version(conn, pipeline_arn: str, version_id: int, definition: str, created: float) -> None:
    conn.execute(
        insert(V).values(pipeline_arn=pipeline_arn, version_id=version_id, definition=definition, created_at=created)
    )


def version(ctx: Context, pipeline: Record, version_id: int | None, conn=None) -> dict:
    """One version's row as a dict; the latest without ``version_id``."""
    version_id = pipeline.data[LATEST] if version_id is None else version_id
    query = select(V).where(V.c.pipeline_arn == pipeline.arn, V.c.version_id == version_id)
    if conn is not None:
        row = conn.execute(query).first()
    else:
        with ctx.store.read() as c:
            row = c.execute(query).first()
    if row is None:
        raise AWSError("ResourceNotFound", f"Pipeline version {version_id} of '{pipeline.arn}' does not exist.")
    return dict(row._mapping)


def note_execution(conn, pipeline_arn: str, version_id: int, execution_arn: str) -> None:
    conn.execute(
        update(V)
        .where(V.c.pipeline_arn == pipeline_arn, V.c.version_id == version_id)
        .values(last_execution_arn=execution_arn)
    )


# -- the kind --------------------------------------------------------------------------------------


def _summary(record: Record) -> dict:
    d = record.data
    summary = {
        k: d.get(k)
        for k in (
            "PipelineArn",
            "PipelineName",
            "PipelineDisplayName",
            "PipelineDescription",
            "RoleArn",
            "CreationTime",
            "LastModifiedTime",
        )
    }
    summary["LastExecutionTime"] = d.get("LastRunTime")
    return summary


def _prefix_filter(ctx: Context, params: dict) -> list:
    prefix = params.get("PipelineNamePrefix")
    return [R.c.name_key.startswith(prefix.lower(), autoescape=True)] if prefix else []


PIPELINE = Kind(
    "Pipeline",
    "pipeline",
    operations=("List",),  # its other handlers are its own (below): they keep the definitions' versions
    not_found="Pipeline '{arn}' does not exist.",
    not_found_code="ResourceNotFound",
    summarize=_summary,
    extra_filters=_prefix_filter,
    search_type="Pipeline",
).register()


# -- Create, Describe, Update, Delete: the record and its definitions' versions, written together ---------------


@operation("sagemaker", "CreatePipeline")
def create_pipeline(ctx: Context, params: dict) -> dict:
    _refuse_aliases(params)
    text = _definition_text(ctx, params, required=True)
    parse(text)
    name, token = params["PipelineName"], params["ClientRequestToken"]
    arn = PIPELINE.arn(ctx, name)
    created = now()
    data = {
        k: v
        for k, v in params.items()
        if k not in ("Tags", "ClientRequestToken", "PipelineDefinition", "PipelineDefinitionS3Location")
    }
    data.setdefault("PipelineDisplayName", name)
    data.update(
        {
            "PipelineArn": arn,
            "PipelineStatus": "Active",
            "CreationTime": created,
            "LastModifiedTime": created,
            TOKEN: token,
            LATEST: 1,
        }
    )
    try:
        with ctx.store.write() as conn:
            ctx.backends.resources.create(
                account_id=ctx.account_id,
                region=ctx.region,
                kind=PIPELINE.name,
                name=name,
                arn=arn,
                data=data,
                status="Active",
                created=created,
                conn=conn,
            )
            add_version(conn, arn, 1, text, created)
            if params.get("Tags"):
                tagging.add(conn, arn, params["Tags"])
    except AlreadyExists:
        existing = PIPELINE.load(ctx, name)
        if existing.data.get(TOKEN) == token:  # the same request again: same answer
            return {"PipelineArn": existing.arn}
        raise already_exists(
            "ValidationException",
            f"Pipeline names must be unique within an AWS account and "
            f"region. Pipeline with name ({name}) already exists.",
        ) from None
    return {"PipelineArn": arn}


@operation("sagemaker", "DescribePipeline")
def describe_pipeline(ctx: Context, params: dict) -> dict:
    _refuse_aliases(params)
    record = PIPELINE.load(ctx, params["PipelineName"])
    row = version(ctx, record, params.get("PipelineVersionId"))
    out = {**record.data, "PipelineDefinition": row["definition"]}
    if row["display_name"]:
        out["PipelineVersionDisplayName"] = row["display_name"]
    if row["description"]:
        out["PipelineVersionDescription"] = row["description"]
    return out


@operation("sagemaker", "UpdatePipeline")
def update_pipeline(ctx: Context, params: dict) -> dict:
    _refuse_aliases(params)
    text = _definition_text(ctx, params, required=False)
    if text is not None:
        parse(text)
    with ctx.store.write() as conn:
        record = PIPELINE.load(ctx, params["PipelineName"], conn=conn, lock=True)
        if text is None:
            text = version(ctx, record, None, conn=conn)["definition"]
        changed = now()
        version_id = record.data[LATEST] + 1
        add_version(conn, record.arn, version_id, text, changed)
        record.data.update(
            {
                k: v
                for k, v in params.items()
                if k not in ("PipelineName", "PipelineDefinition", "PipelineDefinitionS3Location")
            }
        )
        record.data.update({LATEST: version_id, "LastModifiedTime": changed})
        record.modified_at = changed
        ctx.backends.resources.save(record, conn=conn, touch=False)
    return {"PipelineArn": record.arn, "PipelineVersionId": version_id}


@operation("sagemaker", "DeletePipeline")
def delete_pipeline(ctx: Context, params: dict) -> dict:
    from . import executions  # imports this module: bound late

    with ctx.store.write() as conn:
        record = PIPELINE.load(ctx, params["PipelineName"], conn=conn, lock=True)
        running = conn.execute(
            select(func.count())
            .select_from(R)
            .where(R.c.kind == "PipelineExecution", R.c.parent == record.arn, R.c.status.in_(sorted(executions.ACTIVE)))
        ).scalar()
        if running:
            raise validation(
                f"Pipeline '{record.arn}' has {running} running execution(s): stop them with "
                "StopPipelineExecution before deleting it."
            )
        execution_arns = [
            row.arn
            for row in conn.execute(select(R.c.arn).where(R.c.kind == "PipelineExecution", R.c.parent == record.arn))
        ]
        for arn in execution_arns:
            ctx.backends.resources.delete(arn, conn=conn)
        conn.execute(delete(V).where(V.c.pipeline_arn == record.arn))
        conn.execute(delete(schema.pipeline_step_cache).where(schema.pipeline_step_cache.c.pipeline_arn == record.arn))
        ctx.backends.resources.delete(record.arn, conn=conn)
    return {"PipelineArn": record.arn}


def load(ctx: Context, name_or_arn: str, conn=None, lock: bool = False) -> Record:
    return PIPELINE.load(ctx, name_or_arn, conn=conn, lock=lock)


@operation("sagemaker", "ListPipelineVersions")
def list_pipeline_versions(ctx: Context, params: dict) -> dict:
    pipeline = load(ctx, params["PipelineName"])
    query = list_query(params)
    cond = [V.c.pipeline_arn == pipeline.arn]
    if query.created_after is not None:
        cond.append(V.c.created_at > query.created_after)
    if query.created_before is not None:
        cond.append(V.c.created_at < query.created_before)
    if query.next_token:
        after = ctx.backends.resources.read_page_token(query.next_token, ["versions", pipeline.arn])["after"]
        cond.append(V.c.version_id < after if query.descending else V.c.version_id > after)
    order = V.c.version_id.desc() if query.descending else V.c.version_id.asc()
    with ctx.store.read() as conn:
        rows = conn.execute(select(V).where(*cond).order_by(order).limit(query.max_results + 1)).all()
    page, more = rows[: query.max_results], len(rows) > query.max_results
    summaries = []
    for row in page:
        summaries.append(
            {
                "PipelineArn": pipeline.arn,
                "PipelineVersionId": row.version_id,
                "CreationTime": row.created_at,
                "PipelineVersionDisplayName": row.display_name,
                "PipelineVersionDescription": row.description,
                "LastExecutionPipelineExecutionArn": row.last_execution_arn,
            }
        )
    token = ctx.backends.resources.page_token(["versions", pipeline.arn], after=page[-1].version_id) if more else None
    return {"PipelineVersionSummaries": summaries, "NextToken": token}


@operation("sagemaker", "UpdatePipelineVersion")
def update_pipeline_version(ctx: Context, params: dict) -> dict:
    _refuse_aliases(params)
    with ctx.store.write() as conn:
        pipeline = load(ctx, params["PipelineArn"], conn=conn)
        version(ctx, pipeline, params["PipelineVersionId"], conn=conn)  # exists, or ResourceNotFound
        changes = {
            column: params[member]
            for member, column in (
                ("PipelineVersionDisplayName", "display_name"),
                ("PipelineVersionDescription", "description"),
            )
            if member in params
        }
        if changes:
            conn.execute(
                update(V)
                .where(V.c.pipeline_arn == pipeline.arn, V.c.version_id == params["PipelineVersionId"])
                .values(**changes)
            )
    return {"PipelineArn": pipeline.arn, "PipelineVersionId": params["PipelineVersionId"]}
