"""`selfmaker ps`: what is running on the server and what failed lately, with age and status.

By default: everything active (jobs in progress, pipeline executions executing, endpoints and notebook
instances up or changing) whatever its age, and what failed in the last day. ``--failed`` shows only
failures, ``--all`` every status; ``--since`` sets the window (a failure's window is its last change, where
the List operation can filter on it). Everything comes from the API's own List operations (pipeline executions
from one Search, since ListPipelineExecutions takes one pipeline at a time), so the answer is the caller's
account on the server, as the SDK would see it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from .cli_client import (
    Connection,
    add_connection_arguments,
    add_output_argument,
    age,
    duration,
    iso,
    print_json,
    run,
    table,
)

DEFAULT_WINDOW = 86400.0  # what counts as "recently failed" unless --since says otherwise
# Per status ("": any status), the time after which a resource must have changed to be listed (None: ever).
Windows = dict[str, datetime | None]


@dataclass(frozen=True)
class Source:
    """One kind of long-running resource and how its List operation names things."""

    kind: str
    operation: str  # the boto3 method of its List operation
    items: str  # the list member of the answer
    name: str
    arn: str
    status: str
    active: tuple[str, ...]
    failed: tuple[str, ...]
    describe: str = ""  # the Describe method that holds FailureReason, when the summary has none
    created: str = "CreationTime"


SOURCES = (
    Source(
        "training",
        "list_training_jobs",
        "TrainingJobSummaries",
        "TrainingJobName",
        "TrainingJobArn",
        "TrainingJobStatus",
        ("InProgress", "Stopping"),
        ("Failed",),
        "describe_training_job",
    ),
    Source(
        "processing",
        "list_processing_jobs",
        "ProcessingJobSummaries",
        "ProcessingJobName",
        "ProcessingJobArn",
        "ProcessingJobStatus",
        ("InProgress", "Stopping"),
        ("Failed",),
    ),
    Source(
        "transform",
        "list_transform_jobs",
        "TransformJobSummaries",
        "TransformJobName",
        "TransformJobArn",
        "TransformJobStatus",
        ("InProgress", "Stopping"),
        ("Failed",),
    ),
    Source(
        "tuning",
        "list_hyper_parameter_tuning_jobs",
        "HyperParameterTuningJobSummaries",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobArn",
        "HyperParameterTuningJobStatus",
        ("InProgress", "Stopping"),
        ("Failed",),
        "describe_hyper_parameter_tuning_job",
    ),
    Source(
        "compilation",
        "list_compilation_jobs",
        "CompilationJobSummaries",
        "CompilationJobName",
        "CompilationJobArn",
        "CompilationJobStatus",
        ("STARTING", "INPROGRESS", "STOPPING"),
        ("FAILED",),
        "describe_compilation_job",
    ),
    Source(
        "pipeline",
        "list_pipeline_executions",
        "PipelineExecutionSummaries",
        "",  # named <pipeline>/<execution id> (what `selfmaker logs` takes)
        "PipelineExecutionArn",
        "PipelineExecutionStatus",
        ("Executing", "Stopping"),
        ("Failed", "CompletedWithFailures"),
        created="StartTime",
    ),
    Source(
        "endpoint",
        "list_endpoints",
        "Endpoints",
        "EndpointName",
        "EndpointArn",
        "EndpointStatus",
        ("Creating", "Updating", "SystemUpdating", "RollingBack", "InService", "Deleting", "UpdateRollbackFailed"),
        ("Failed",),
        "describe_endpoint",
    ),
    Source(
        "notebook",
        "list_notebook_instances",
        "NotebookInstances",
        "NotebookInstanceName",
        "NotebookInstanceArn",
        "NotebookInstanceStatus",
        ("Pending", "InService", "Stopping", "Updating", "Deleting", "PendingMaintenance", "InMaintenance"),
        ("Failed",),
        "describe_notebook_instance",
    ),
)
KINDS = tuple(source.kind for source in SOURCES)


@dataclass
class Row:
    kind: str
    name: str
    status: str
    created: datetime | None
    detail: str
    arn: str

    def as_json(self, now: float) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "created": iso(self.created),
            "age_seconds": int(now - self.created.timestamp()) if self.created else None,
            "detail": self.detail,
            "arn": self.arn,
        }


def _pages(client, operation: str, items: str, **params) -> Iterator[dict]:
    token = None
    while True:
        page = getattr(client, operation)(**params, **({"NextToken": token} if token else {}))
        yield from page.get(items, [])
        token = page.get("NextToken")
        if not token:
            return


def _window_filter(client, operation: str, after: datetime | None) -> dict:
    """The List operation's own "changed since" filter (its last change where the model has one)."""
    if after is None:
        return {}
    api_name = client.meta.method_to_api_mapping[operation]
    members = client.meta.service_model.operation_model(api_name).input_shape.members
    for member in ("LastModifiedTimeAfter", "CreationTimeAfter", "CreatedAfter"):
        if member in members:
            return {member: after}
    return {}


def _execution_search(wanted: set[str] | None, after_for: Windows) -> dict:
    """Search's expression for the executions wanted: per status (Equals: a SearchExpression may hold one In
    only), changed (LastModifiedTime) within its window; {} for every execution."""
    clauses = []
    for status in sorted(wanted) if wanted is not None else [""]:
        filters = [{"Name": "PipelineExecutionStatus", "Operator": "Equals", "Value": status}] if status else []
        after = after_for.get(status)
        if after is not None:
            filters.append({"Name": "LastModifiedTime", "Operator": "GreaterThanOrEqualTo", "Value": after.isoformat()})
        if not filters:
            return {}
        clauses.append({"Filters": filters})
    return clauses[0] if len(clauses) == 1 else {"SubExpressions": clauses, "Operator": "Or"}


def _pipeline_executions(sm, wanted: set[str] | None, after_for: Windows) -> Iterator[dict]:
    """Every pipeline's executions wanted, as ListPipelineExecutions summaries, from one Search (its pages):
    ListPipelineExecutions lists one pipeline at a time, so it would take a call per pipeline."""
    expression = _execution_search(wanted, after_for)
    params = {"Resource": "PipelineExecution", "MaxResults": 100, "SortBy": "CreationTime", "SortOrder": "Descending"}
    for record in _pages(sm, "search", "Results", **params, **({"SearchExpression": expression} if expression else {})):
        execution = record["PipelineExecution"]
        pipeline = execution["PipelineArn"].rsplit("/", 1)[-1]
        yield {
            "PipelineExecutionArn": execution["PipelineExecutionArn"],
            "PipelineExecutionStatus": execution["PipelineExecutionStatus"],
            "StartTime": execution.get("CreationTime"),
            "PipelineExecutionDisplayName": execution.get("PipelineExecutionDisplayName", ""),
            "PipelineExecutionFailureReason": execution.get("FailureReason", ""),
            "_name": f"{pipeline}/{execution['PipelineExecutionArn'].rsplit('/', 1)[-1]}",
        }


def _summaries(sm, source: Source, wanted: set[str] | None, after_for: Windows) -> Iterator[dict]:
    """The summaries of ``source`` whose status is wanted (None: any), each status with its own window."""
    if source.kind == "pipeline":
        yield from _pipeline_executions(sm, wanted, after_for)
        return
    for status in sorted(wanted) if wanted is not None else [""]:
        params = {"StatusEquals": status} if status else {}
        yield from _pages(
            sm, source.operation, source.items, **params, **_window_filter(sm, source.operation, after_for.get(status))
        )


def _detail(sm, source: Source, summary: dict) -> str:
    status = summary[source.status]
    if status in source.failed:
        reason = summary.get("FailureReason") or summary.get("PipelineExecutionFailureReason")
        if not reason and source.describe:
            described = getattr(sm, source.describe)(**{source.name: summary[source.name]})
            reason = described.get("FailureReason")
        return (reason or "").splitlines()[0] if reason else ""
    if summary.get("SecondaryStatus") and summary["SecondaryStatus"] != status:
        return summary["SecondaryStatus"]
    if counters := summary.get("TrainingJobStatusCounters"):
        return f"training jobs: {counters.get('Completed', 0)} completed, {counters.get('InProgress', 0)} running"
    if summary.get("InstanceType"):
        return summary["InstanceType"]
    return summary.get("PipelineExecutionDisplayName", "")


def collect(sm, kinds: tuple[str, ...], mode: str, since: float | None, now: float) -> list[Row]:
    """Rows of what ``mode`` asks for: "default" (active, and failed within the window), "failed" or "all"."""
    window = since if since is not None else (None if mode == "all" else DEFAULT_WINDOW)
    after = datetime.fromtimestamp(now - window, UTC) if window is not None else None
    rows = []
    for source in SOURCES:
        if source.kind not in kinds:
            continue
        wanted: set[str] | None
        after_for: Windows
        if mode == "all":
            wanted, after_for = None, {"": after}
        elif mode == "failed":
            wanted, after_for = set(source.failed), dict.fromkeys(source.failed, after)
        else:  # active whatever their age (unless --since), failed within the window
            wanted = {*source.active, *source.failed}
            after_for = dict.fromkeys(source.active, after if since is not None else None)
            after_for |= dict.fromkeys(source.failed, after)
        seen = set()
        for summary in _summaries(sm, source, wanted, after_for):
            if summary[source.arn] in seen:
                continue
            seen.add(summary[source.arn])
            rows.append(
                Row(
                    source.kind,
                    summary.get("_name") or summary[source.name],
                    summary[source.status],
                    summary.get(source.created),
                    _detail(sm, source, summary),
                    summary[source.arn],
                )
            )
    rows.sort(key=lambda r: r.created.timestamp() if r.created else 0, reverse=True)
    return rows


def main(connection: Connection, args) -> int:
    now = time.time()
    mode = "all" if args.all else "failed" if args.failed else "default"
    kinds = tuple(args.kind) if args.kind else KINDS
    rows = collect(connection.client("sagemaker"), kinds, mode, args.since, now)
    if args.json:
        print_json([row.as_json(now) for row in rows])
        return 0
    if not rows:
        what = {"all": "nothing", "failed": "no failures", "default": "nothing running and no failures"}[mode]
        window = "" if mode == "all" and args.since is None else " in the window" if args.since else " in the last day"
        print(f"{what}{window} at {connection.endpoint_url} (account of {connection.access_key})")
        return 0
    table(
        ("KIND", "NAME", "STATUS", "AGE", "DETAIL"),
        [(r.kind, r.name, r.status, age(r.created, now), r.detail) for r in rows],
    )
    return 0


def add_parser(sub) -> None:
    ps = sub.add_parser("ps", help="what is running on the server, and what failed lately (jobs, pipelines, endpoints)")
    which = ps.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every status, not only active ones and failures")
    which.add_argument("--failed", action="store_true", help="failures only")
    ps.add_argument(
        "--since",
        type=duration,
        help="only what changed within this long (30m, 2h, 7d); default: failures of the last day, "
        "active things whatever their age, --all without limit",
    )
    ps.add_argument("--kind", action="append", choices=KINDS, help="only this kind (repeatable)")
    add_output_argument(ps)
    add_connection_arguments(ps)
    ps.set_defaults(func=lambda args: run(lambda connection: main(connection, args), args))
