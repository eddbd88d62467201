"""SageMaker Experiments: experiments, trials, trial components, and the links between them.

A trial belongs to one experiment (kept in the resources' parent column); a
trial component may belong to several trials (the trial_component_links table,
which also carries each trial's experiment, so "the components of an
experiment" is one indexed lookup). Metric series live in :mod:`.experiment_metrics`.

Deletes follow AWS: an experiment goes only once its trials are deleted, a trial
only once no component is associated with it, and a component only once it is
disassociated from every trial ("... is linked to 1 or more trials and cannot be
deleted", the message AWS sends; see aws/sagemaker-python-sdk#1515).

Jobs record their own components through :func:`record_job` (and
:func:`record_job_metrics`), the way SageMaker creates ``<job>-aws-training-job``.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from ..server.errors import AWSError, validation
from ..server.operations import Context, operation
from ..store import schema
from ..store.db import Connection
from ..store.resources import Record, now
from . import experiment_metrics, lineage
from .kinds import Kind

R = schema.resources
LINKS = schema.trial_component_links


def _default_display_name(name_member: str):
    def fill(ctx: Context, params: dict, data: dict) -> None:
        data.setdefault("DisplayName", data[name_member])

    return fill


def _any(conn: Connection, query) -> bool:
    return conn.execute(query.limit(1)).first() is not None


def _in_use(kind: Kind, record: Record, what: str) -> AWSError:
    return validation(f"{kind.name} '{record.arn}' {what} and cannot be deleted.")


# -- experiments ---------------------------------------------------------------


def _experiment_trials(ctx: Context, experiment: Record):
    return select(R.c.id).where(
        R.c.account_id == ctx.account_id,
        R.c.region == ctx.region,
        R.c.kind == TRIAL.name,
        R.c.parent == experiment.name,
    )


def _delete_experiment(ctx: Context, record: Record, conn: Connection) -> None:
    if _any(conn, _experiment_trials(ctx, record)):
        raise _in_use(EXPERIMENT, record, "has 1 or more trials")


def _experiment_summary(record: Record) -> dict:
    return {**record.data, "ExperimentSource": record.data.get("Source")}


EXPERIMENT = Kind(
    "Experiment",
    "experiment",
    search_type="Experiment",
    default_max_results=10,
    not_found="Experiment '{arn}' does not exist.",
    not_found_code="ResourceNotFound",
    exists="Experiment with name {name} already exists.",
    on_create=_default_display_name("ExperimentName"),
    on_delete=_delete_experiment,
    summarize=_experiment_summary,
).register()


# -- trials ----------------------------------------------------------------------


def _create_trial(ctx: Context, params: dict, data: dict) -> None:
    experiment = EXPERIMENT.load(ctx, params["ExperimentName"])
    data["ExperimentName"] = experiment.name  # as the experiment spells it: the parent column matches exactly
    data.setdefault("DisplayName", data["TrialName"])


def _delete_trial(ctx: Context, record: Record, conn: Connection) -> None:
    if _any(conn, select(LINKS.c.component_arn).where(LINKS.c.trial_arn == record.arn)):
        raise _in_use(TRIAL, record, "has 1 or more trial components associated with it")


def _trial_filters(ctx: Context, params: dict) -> list:
    where = []
    if params.get("ExperimentName"):
        where.append(R.c.parent == EXPERIMENT.load(ctx, params["ExperimentName"]).name)
    if params.get("TrialComponentName"):
        component = TRIAL_COMPONENT.load(ctx, params["TrialComponentName"])
        where.append(R.c.arn.in_(select(LINKS.c.trial_arn).where(LINKS.c.component_arn == component.arn)))
    return where


def _trial_summary(record: Record) -> dict:
    return {**record.data, "TrialSource": record.data.get("Source")}


def _present_trial(ctx: Context, record: Record) -> dict:
    """DescribeTrial's members, plus the components Search shows (TrialComponentSummaries)."""
    query = (
        select(R.c.name, R.c.arn, R.c.created_at, R.c.data)
        .join(LINKS, LINKS.c.component_arn == R.c.arn)
        .where(LINKS.c.trial_arn == record.arn)
        .order_by(LINKS.c.created_at)
    )
    with ctx.store.read() as conn:
        rows = conn.execute(query).all()
    components = [
        {
            "TrialComponentName": row.name,
            "TrialComponentArn": row.arn,
            "CreationTime": row.created_at,
            "TrialComponentSource": row.data.get("Source"),
            "CreatedBy": row.data.get("CreatedBy"),
        }
        for row in rows
    ]
    return {**record.data, "TrialComponentSummaries": components or None}


TRIAL = Kind(
    "Trial",
    "experiment-trial",
    label="trial",
    search_type="ExperimentTrial",
    parent_member="ExperimentName",
    default_max_results=10,
    not_found="Trial '{arn}' does not exist.",
    not_found_code="ResourceNotFound",
    exists="Trial with name {name} already exists.",
    on_create=_create_trial,
    on_delete=_delete_trial,
    extra_filters=_trial_filters,
    summarize=_trial_summary,
    present=_present_trial,
).register()


# -- trial components ------------------------------------------------------------

# Map members of a component that UpdateTrialComponent merges into, and the list that removes keys.
_MERGED = {
    "Parameters": "ParametersToRemove",
    "InputArtifacts": "InputArtifactsToRemove",
    "OutputArtifacts": "OutputArtifactsToRemove",
}


def _update_component(ctx: Context, params: dict, record: Record) -> None:
    for member, removals in _MERGED.items():
        both = sorted(set(params.get(member) or {}) & set(params.get(removals) or []))
        if both:
            raise validation(f"{member} and {removals} both name {', '.join(both)}: set a key or remove it, not both.")
    data = record.data
    for member in ("DisplayName", "Status", "StartTime", "EndTime"):
        if member in params:
            data[member] = params[member]
    for member, removals in _MERGED.items():
        merged = {**(data.get(member) or {}), **(params.get(member) or {})}
        for key in params.get(removals) or []:
            merged.pop(key, None)
        if merged:
            data[member] = merged
        else:
            data.pop(member, None)


def _delete_component(ctx: Context, record: Record, conn: Connection) -> None:
    if _any(conn, select(LINKS.c.trial_arn).where(LINKS.c.component_arn == record.arn)):
        raise _in_use(TRIAL_COMPONENT, record, "is linked to 1 or more trials")
    # A trial component is a lineage entity too: like artifacts, actions and contexts, it stays
    # while lineage associations name it.
    lineage.refuse_delete_while_associated("trial component")(ctx, record, conn)
    experiment_metrics.forget(conn, record.arn)


_COMPONENT_FILTERS = ("ExperimentName", "TrialName", "SourceArn")


def _component_filters(ctx: Context, params: dict) -> list:
    given = [m for m in _COMPONENT_FILTERS if params.get(m)]
    if len(given) > 1:
        raise validation(
            f"Filter by only one of {', '.join(_COMPONENT_FILTERS)}: this request gives {' and '.join(given)}."
        )
    if params.get("ExperimentName"):
        experiment = EXPERIMENT.load(ctx, params["ExperimentName"])
        return [R.c.arn.in_(select(LINKS.c.component_arn).where(LINKS.c.experiment_arn == experiment.arn))]
    if params.get("TrialName"):
        trial = TRIAL.load(ctx, params["TrialName"])
        return [R.c.arn.in_(select(LINKS.c.component_arn).where(LINKS.c.trial_arn == trial.arn))]
    if params.get("SourceArn"):
        return [R.c.data["Source"]["SourceArn"].as_string() == params["SourceArn"]]
    return []


def _component_summary(record: Record) -> dict:
    return {**record.data, "TrialComponentSource": record.data.get("Source")}


def _present_component(ctx: Context, record: Record) -> dict:
    """DescribeTrialComponent's members (with metric summaries), plus the Parents Search shows."""
    with ctx.store.read() as conn:
        summaries = experiment_metrics.summaries(conn, record.arn)
        parents = conn.execute(
            select(LINKS.c.trial_name, LINKS.c.experiment_name)
            .where(LINKS.c.component_arn == record.arn)
            .order_by(LINKS.c.created_at)
        ).all()
    source = record.data.get("Source")
    return {
        **record.data,
        "Metrics": summaries or None,
        "Sources": [source] if source else None,
        "Parents": [{"TrialName": p.trial_name, "ExperimentName": p.experiment_name} for p in parents] or None,
    }


TRIAL_COMPONENT = Kind(
    "TrialComponent",
    "experiment-trial-component",
    label="trial component",
    search_type="ExperimentTrialComponent",
    default_max_results=10,
    not_found="TrialComponent '{arn}' does not exist.",
    not_found_code="ResourceNotFound",
    exists="TrialComponent with name {name} already exists.",
    on_create=_default_display_name("TrialComponentName"),
    on_update=_update_component,
    on_delete=_delete_component,
    extra_filters=_component_filters,
    summarize=_component_summary,
    present=_present_component,
).register()


# -- associations ----------------------------------------------------------------


def link(ctx: Context, conn: Connection, trial: Record, component: Record) -> None:
    """Put a component in a trial. Idempotent: the SDK's Run associated on every load until it learnt to check
    first "to avoid costly calls" (aws/sagemaker-python-sdk#3956), so a repeat is not an error."""
    exists = conn.execute(
        select(LINKS.c.trial_arn).where(LINKS.c.trial_arn == trial.arn, LINKS.c.component_arn == component.arn)
    ).first()
    if not exists:
        experiment_name = trial.data["ExperimentName"]
        conn.execute(
            insert(LINKS).values(
                trial_arn=trial.arn,
                component_arn=component.arn,
                experiment_arn=EXPERIMENT.arn(ctx, experiment_name),
                trial_name=trial.name,
                experiment_name=experiment_name,
                created_at=now(),
            )
        )


@operation("sagemaker", "AssociateTrialComponent")
def associate_trial_component(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        component = TRIAL_COMPONENT.load(ctx, params["TrialComponentName"], conn=conn)
        trial = TRIAL.load(ctx, params["TrialName"], conn=conn)
        link(ctx, conn, trial, component)
    return {"TrialComponentArn": component.arn, "TrialArn": trial.arn}


@operation("sagemaker", "DisassociateTrialComponent")
def disassociate_trial_component(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        component = TRIAL_COMPONENT.load(ctx, params["TrialComponentName"], conn=conn)
        trial = TRIAL.load(ctx, params["TrialName"], conn=conn)
        conn.execute(delete(LINKS).where(LINKS.c.trial_arn == trial.arn, LINKS.c.component_arn == component.arn))
    return {"TrialComponentArn": component.arn, "TrialArn": trial.arn}


# -- the components SageMaker keeps for jobs ---------------------------------------

# A job ARN's resource type -> (the component's SourceType, the suffix of its name), as SageMaker names them.
JOB_SOURCES = {
    "training-job": ("SageMakerTrainingJob", "aws-training-job"),
    "processing-job": ("SageMakerProcessingJob", "aws-processing-job"),
    "transform-job": ("SageMakerTransformJob", "aws-transform-job"),
}


def _job(job_arn: str) -> tuple[str, str, str]:
    """(job name, SourceType, component name) for a job ARN."""
    resource_type, _, job_name = job_arn.split(":", 5)[-1].partition("/")
    if resource_type not in JOB_SOURCES:
        raise ValueError(f"not a training, processing or transform job ARN: {job_arn}")
    source_type, suffix = JOB_SOURCES[resource_type]
    return job_name, source_type, f"{job_name}-{suffix}"


def job_component_name(job_arn: str) -> str:
    """The name of the trial component SageMaker keeps for a job, e.g. ``<job>-aws-training-job``."""
    return _job(job_arn)[2]


def check_experiment_config(ctx: Context, config: dict | None) -> None:
    """Raise the error a Create*Job request gets when its ExperimentConfig names what does not exist."""
    config = config or {}
    experiment = EXPERIMENT.load(ctx, config["ExperimentName"]) if config.get("ExperimentName") else None
    if config.get("TrialName"):
        trial = TRIAL.load(ctx, config["TrialName"])
        if experiment is not None and trial.data["ExperimentName"] != experiment.name:
            raise validation(f"Trial '{trial.arn}' is not part of experiment '{experiment.arn}'.")


def _parameter(value) -> dict:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"NumberValue": value}
    return {"StringValue": str(value)}


def _artifact(value) -> dict:
    return value if isinstance(value, dict) else {"Value": str(value)}


def record_job(
    ctx: Context,
    job_arn: str,
    *,
    status: str | None = None,
    message: str | None = None,
    start_time: float | None = None,
    end_time: float | None = None,
    parameters: dict | None = None,
    input_artifacts: dict | None = None,
    output_artifacts: dict | None = None,
    experiment_config: dict | None = None,
) -> str:
    """Create or update the trial component of a training, processing or transform job; return its ARN.

    Call it when the job is created (with its ExperimentConfig) and again as it moves on; what is left None
    is kept. ``parameters`` maps names to plain values (numbers become NumberValue, the rest StringValue);
    artifacts map names to an S3 URI or a ``{"Value", "MediaType"}`` dict. With an ExperimentConfig the
    component joins its TrialName, or, given only an ExperimentName, a new trial named like the component
    (SageMaker's ExperimentConfig: "If not specified, a new trial is created").
    """
    _, source_type, name = _job(job_arn)
    config = experiment_config or {}
    check_experiment_config(ctx, config)
    params: dict = {"TrialComponentName": name}
    if config.get("TrialComponentDisplayName"):
        params["DisplayName"] = config["TrialComponentDisplayName"]
    if status is not None:
        params["Status"] = {"PrimaryStatus": status, **({"Message": message} if message else {})}
    for member, value in (("StartTime", start_time), ("EndTime", end_time)):
        if value is not None:
            params[member] = value
    for member, values, shape in (
        ("Parameters", parameters, _parameter),
        ("InputArtifacts", input_artifacts, _artifact),
        ("OutputArtifacts", output_artifacts, _artifact),
    ):
        if values:
            params[member] = {key: shape(value) for key, value in values.items()}
    source = {"SourceArn": job_arn, "SourceType": source_type}
    if not _created(TRIAL_COMPONENT, ctx, {**params, "Source": source}):
        TRIAL_COMPONENT.update(ctx, params)
    if config.get("TrialName") or config.get("ExperimentName"):
        _join_trial(ctx, config, name, source)
    return TRIAL_COMPONENT.arn(ctx, name)


def _created(kind: Kind, ctx: Context, params: dict) -> bool:
    """Create a resource unless it exists already; whether this call created it."""
    try:
        kind.create(ctx, params)
        return True
    except AWSError as err:
        if not err.exists:
            raise
        return False


def _join_trial(ctx: Context, config: dict, component_name: str, source: dict) -> None:
    trial_name = config.get("TrialName")
    if not trial_name:
        trial_name = component_name
        _created(TRIAL, ctx, {"TrialName": trial_name, "ExperimentName": config["ExperimentName"], "Source": source})
    with ctx.store.write() as conn:
        link(ctx, conn, TRIAL.load(ctx, trial_name, conn=conn), TRIAL_COMPONENT.load(ctx, component_name, conn=conn))


def record_job_metrics(ctx: Context, job_arn: str, points) -> None:
    """Add a job's metric points (:class:`.experiment_metrics.Point`) to its trial component (see :func:`record_job`)."""
    with ctx.store.write() as conn:
        component = TRIAL_COMPONENT.load(ctx, job_component_name(job_arn), conn=conn)
        experiment_metrics.record(conn, component.arn, points, source_arn=job_arn)
