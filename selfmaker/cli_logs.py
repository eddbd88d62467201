"""`selfmaker logs NAME`: the log lines of a job, an endpoint or a pipeline execution, through the server's
CloudWatch Logs API (as `aws logs tail` reads them), optionally followed (-f) as they come.

NAME is found among training, processing, transform, compilation and tuning jobs, then endpoints (``--kind``
says which when names clash); ``PIPELINE/EXECUTION_ID`` (the NAME `selfmaker ps` shows) or an ARN names a
pipeline execution. What each reads:

- a job: its group (/aws/sagemaker/TrainingJobs, ...), the streams ``JOB/algo-N-<time>``;
- a tuning job: its training jobs' streams, each line labelled with its training job;
- an endpoint: /aws/sagemaker/Endpoints/NAME, one stream per instance (``VARIANT/INSTANCE``; ``--variant`` and
  ``--instance`` narrow it);
- a pipeline execution: the job of each step (``--step`` picks one), each line labelled with its step.

Lines of every stream come in time order (FilterLogEvents). Following ends when the job or execution
ends (exit status 3 if it failed), or for an endpoint when it is deleted or on Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .cli_client import CommandError, Connection, add_connection_arguments, duration, run
from .cli_ps import SOURCES

POLL_SECONDS = 1.0
# Instances ship their lines in batches: a later batch may carry earlier timestamps. Every poll re-reads this
# far back and skips the events already printed, so a late batch of another stream is not lost.
LAG_MS = 30_000


@dataclass(frozen=True)
class JobType:
    kind: str
    describe: str
    name_member: str
    status_member: str
    log_group: str
    arn_type: str  # the resource type in its ARN
    terminal: frozenset[str]
    failed: frozenset[str]


_ENDED = frozenset({"Completed", "Failed", "Stopped"})
JOB_TYPES = (
    JobType(
        "training",
        "describe_training_job",
        "TrainingJobName",
        "TrainingJobStatus",
        "/aws/sagemaker/TrainingJobs",
        "training-job",
        _ENDED,
        frozenset({"Failed"}),
    ),
    JobType(
        "processing",
        "describe_processing_job",
        "ProcessingJobName",
        "ProcessingJobStatus",
        "/aws/sagemaker/ProcessingJobs",
        "processing-job",
        _ENDED,
        frozenset({"Failed"}),
    ),
    JobType(
        "transform",
        "describe_transform_job",
        "TransformJobName",
        "TransformJobStatus",
        "/aws/sagemaker/TransformJobs",
        "transform-job",
        _ENDED,
        frozenset({"Failed"}),
    ),
    JobType(
        "compilation",
        "describe_compilation_job",
        "CompilationJobName",
        "CompilationJobStatus",
        "/aws/sagemaker/CompilationJobs",
        "compilation-job",
        frozenset({"COMPLETED", "FAILED", "STOPPED"}),
        frozenset({"FAILED"}),
    ),
)
TRAINING = JOB_TYPES[0]
TUNING_ARN_TYPE = "hyper-parameter-tuning-job"
KINDS = (*(t.kind for t in JOB_TYPES), "tuning", "endpoint", "pipeline")
# The metadata member of a pipeline step that names the job it ran.
STEP_JOBS = {"TrainingJob": "training", "ProcessingJob": "processing", "TransformJob": "transform"}


@dataclass(frozen=True)
class LogSource:
    """Streams of one group under one prefix; ``label`` names them in the output ("" = by stream)."""

    group: str
    prefix: str
    label: str = ""
    endpoint: bool = False  # an endpoint's streams are its instances (VARIANT/INSTANCE), a job's JOB/HOST-TIME


@dataclass
class Target:
    what: str  # "training job x", for the messages
    sources: Callable[[], list[LogSource]]  # asked again at each poll: tuning and pipelines gain jobs as they go
    status: Callable[[], str]
    terminal: frozenset[str]
    failed: frozenset[str] = frozenset()


@dataclass
class _Cursor:
    start_ms: int | None
    seen: dict[str, int] = field(default_factory=dict)  # event id -> timestamp, for the last LAG_MS


def _not_found(err) -> bool:
    code = err.response.get("Error", {}).get("Code", "")
    return code in ("ValidationException", "ResourceNotFound", "ResourceNotFoundException")


def _exists(describe: Callable[[], object]) -> bool:
    """Whether a Describe call finds its resource (False on the server's not-found answers; other errors raise)."""
    from botocore.exceptions import ClientError

    try:
        describe()
    except ClientError as err:
        if _not_found(err):
            return False
        raise
    return True


# -- finding what NAME is ---------------------------------------------------------------------------------------


def _job_target(sm, job_type: JobType, name: str) -> Target | None:

    describe = getattr(sm, job_type.describe)
    if not _exists(lambda: describe(**{job_type.name_member: name})):
        return None
    return Target(
        f"{job_type.kind} job {name}",
        lambda: [LogSource(job_type.log_group, f"{name}/")],
        lambda: describe(**{job_type.name_member: name})[job_type.status_member],
        job_type.terminal,
        job_type.failed,
    )


def _tuning_sources(sm, name: str) -> list[LogSource]:
    sources, token = [], None
    while True:
        page = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, **({"NextToken": token} if token else {})
        )
        for job in page["TrainingJobSummaries"]:
            sources.append(LogSource(TRAINING.log_group, f"{job['TrainingJobName']}/", job["TrainingJobName"]))
        token = page.get("NextToken")
        if not token:
            return sorted(sources, key=lambda s: s.label)


def _tuning_target(sm, name: str) -> Target | None:

    def status() -> str:
        return sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)["HyperParameterTuningJobStatus"]

    if not _exists(status):
        return None
    return Target(f"tuning job {name}", lambda: _tuning_sources(sm, name), status, _ENDED, frozenset({"Failed"}))


def _endpoint_target(sm, name: str, variant: str | None, instance: str | None) -> Target | None:
    from botocore.exceptions import ClientError

    def status() -> str:
        try:
            return sm.describe_endpoint(EndpointName=name)["EndpointStatus"]
        except ClientError as err:
            if _not_found(err):
                return "Deleted"
            raise

    if status() == "Deleted":
        return None
    prefix = f"{variant}/" if variant else ""
    if instance:
        prefix += instance
    group = f"/aws/sagemaker/Endpoints/{name}"
    if instance and not variant:  # an instance id alone: its stream is VARIANT/ID under any variant
        return Target(
            f"endpoint {name}",
            lambda: [LogSource(group, f"{v}/{instance}", endpoint=True) for v in _variants(sm, name)],
            status,
            frozenset({"Deleted"}),
        )
    return Target(f"endpoint {name}", lambda: [LogSource(group, prefix, endpoint=True)], status, frozenset({"Deleted"}))


def _variants(sm, name: str) -> list[str]:
    from botocore.exceptions import ClientError

    try:
        described = sm.describe_endpoint(EndpointName=name)
    except ClientError as err:
        if _not_found(err):
            return []
        raise
    return [v["VariantName"] for v in described.get("ProductionVariants", [])]


def _steps(sm, arn: str) -> list[dict]:
    """The execution's steps in the order they started (the API lists the newest first)."""
    steps, token = [], None
    while True:
        page = sm.list_pipeline_execution_steps(PipelineExecutionArn=arn, **({"NextToken": token} if token else {}))
        steps += page["PipelineExecutionSteps"]
        token = page.get("NextToken")
        if not token:
            return steps[::-1]


def _step_sources(sm, arn: str, step: str | None, job_types: dict[str, JobType]) -> list[LogSource]:
    sources = []
    for entry in _steps(sm, arn):
        if step is not None and entry["StepName"] != step:
            continue
        metadata = entry.get("Metadata", {})
        for member, kind in STEP_JOBS.items():
            if job_arn := metadata.get(member, {}).get("Arn"):
                job = name_from_arn(sm, kind, job_arn)
                sources.append(LogSource(job_types[kind].log_group, f"{job}/", entry["StepName"]))
        if tuning_arn := metadata.get("TuningJob", {}).get("Arn"):
            for source in _tuning_sources(sm, name_from_arn(sm, "tuning", tuning_arn)):
                sources.append(LogSource(source.group, source.prefix, f"{entry['StepName']}/{source.label}"))
    return sources


def name_from_arn(sm, kind: str, arn: str) -> str:
    """The name of the resource an ARN names: ARNs spell it in lower case, log streams as it was given."""
    source = next(source for source in SOURCES if source.kind == kind)
    lowered, token = arn.rsplit("/", 1)[-1], None
    while True:
        page = getattr(sm, source.operation)(NameContains=lowered, **({"NextToken": token} if token else {}))
        for summary in page[source.items]:
            if summary[source.arn] == arn:
                return summary[source.name]
        token = page.get("NextToken")
        if not token:
            return lowered


def _check_step(sm, arn: str, step: str, running: bool) -> None:
    """A step that ran something other than a job, or that the execution does not have, is said now."""
    steps = _steps(sm, arn)
    named = [s for s in steps if s["StepName"] == step]
    if named:
        ran = list(named[-1].get("Metadata", {}))
        if ran and not set(ran) & {*STEP_JOBS, "TuningJob"}:
            raise CommandError(f"selfmaker: step {step} is a {ran[0]} step: it runs no job, so it has no logs")
    elif not running:
        names = ", ".join(dict.fromkeys(s["StepName"] for s in steps)) or "none"
        raise CommandError(f"selfmaker: the execution has no step named {step!r} (its steps: {names})")


def _pipeline_target(sm, arn: str, step: str | None) -> Target | None:

    def status() -> str:
        return sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"]

    if not _exists(status):
        return None
    job_types = {t.kind: t for t in JOB_TYPES}
    if step is not None:
        _check_step(sm, arn, step, status() in ("Executing", "Stopping"))
    return Target(
        f"pipeline execution {arn}",
        lambda: _step_sources(sm, arn, step, job_types),
        status,
        frozenset({"Succeeded", "Failed", "Stopped", "CompletedWithFailures"}),
        frozenset({"Failed", "CompletedWithFailures"}),
    )


def _execution_arn(connection: Connection, name: str) -> str:
    """The ARN of PIPELINE/EXECUTION_ID: the caller's account, as the server sees it."""
    pipeline, _, execution = name.partition("/")
    if not pipeline or not execution or "/" in execution:
        raise CommandError(f"selfmaker: {name!r} is not PIPELINE/EXECUTION_ID, a job or endpoint name, or an ARN")
    account = connection.client("sts").get_caller_identity()["Account"]
    return f"arn:aws:sagemaker:{connection.region}:{account}:pipeline/{pipeline}/execution/{execution}"


def resolve(connection: Connection, sm, name: str, args) -> Target:
    kind = args.kind
    if name.startswith("arn:"):
        resource = name.split(":", 5)[-1]
        resource_type = resource.partition("/")[0]
        if resource_type == "pipeline":
            kind = "pipeline"
        else:
            by_type = {t.arn_type: t.kind for t in JOB_TYPES} | {TUNING_ARN_TYPE: "tuning", "endpoint": "endpoint"}
            if resource_type not in by_type:
                raise CommandError(f"selfmaker: {name} names no job, endpoint or pipeline execution")
            kind = by_type[resource_type]
            name = name_from_arn(sm, kind, name)
    elif "/" in name and kind in (None, "pipeline"):
        kind, name = "pipeline", _execution_arn(connection, name)
    if args.step and kind != "pipeline":
        raise CommandError("selfmaker: --step is for a pipeline execution (PIPELINE/EXECUTION_ID or its ARN)")
    if (args.variant or args.instance) and kind not in (None, "endpoint"):
        raise CommandError("selfmaker: --variant and --instance are for an endpoint")

    target = None
    if kind == "pipeline":
        target = _pipeline_target(sm, name, args.step)
    else:
        finders: list[tuple[str, Callable[[], Target | None]]] = [
            *((t.kind, lambda t=t: _job_target(sm, t, name)) for t in JOB_TYPES),
            ("tuning", lambda: _tuning_target(sm, name)),
            ("endpoint", lambda: _endpoint_target(sm, name, args.variant, args.instance)),
        ]
        if args.variant or args.instance:
            finders = [f for f in finders if f[0] == "endpoint"]
        for finder_kind, find in finders:
            if kind in (None, finder_kind) and (target := find()) is not None:
                break
    if target is None:
        looked = {None: "job or endpoint", "pipeline": "pipeline execution", "endpoint": "endpoint"}.get(kind)
        looked = looked or f"{kind} job"
        raise CommandError(f"selfmaker: no {looked} named {name!r} at {connection.endpoint_url}")
    return target


# -- reading ----------------------------------------------------------------------------------------------------


def _events(logs, source: LogSource, cursor: _Cursor) -> Iterator[dict]:
    """The events of ``source`` not printed yet, in time order."""
    params: dict = {"logGroupName": source.group}
    if source.prefix:
        params["logStreamNamePrefix"] = source.prefix
    if cursor.start_ms is not None:
        params["startTime"] = cursor.start_ms
    token = None
    while True:
        try:
            page = logs.filter_log_events(**params, **({"nextToken": token} if token else {}))
        except logs.exceptions.ResourceNotFoundException:  # nothing has logged to the group yet
            return
        for event in page["events"]:
            if event["eventId"] not in cursor.seen:
                cursor.seen[event["eventId"]] = event["timestamp"]
                yield event
        token = page.get("nextToken")
        if not token:
            break
    if cursor.seen:
        newest = max(cursor.seen.values())
        cursor.start_ms = newest - LAG_MS
        cursor.seen = {k: t for k, t in cursor.seen.items() if t >= cursor.start_ms}


def _label(source: LogSource, stream: str, source_streams: int) -> str:
    """[step or training job][/instance]: the instance only where the source has several."""
    if source.endpoint:
        return stream  # VARIANT/INSTANCE
    host = stream[len(source.prefix) :].rsplit("-", 1)[0]  # algo-2 of JOB/algo-2-<creation time>
    if source_streams > 1:
        return f"{source.label}/{host}" if source.label else host
    return source.label


def follow(target: Target, logs, follow: bool, since_ms: int | None, as_json: bool, out=None) -> int:
    out = out or sys.stdout
    cursors: dict[LogSource, _Cursor] = {}
    streams: dict[LogSource, set[str]] = {}
    while True:
        status = target.status()  # before the lines, so none written before the end is missed
        batch = []
        for source in target.sources():
            cursor = cursors.setdefault(source, _Cursor(since_ms))
            for event in _events(logs, source, cursor):
                streams.setdefault(source, set()).add(event["logStreamName"])
                batch.append((event["timestamp"], source, event))
        batch.sort(key=lambda item: item[0])
        for timestamp, source, event in batch:
            stream = event["logStreamName"]
            if as_json:
                line = json.dumps(
                    {
                        "timestamp": timestamp,
                        "source": source.label or None,
                        "logGroupName": source.group,
                        "logStreamName": stream,
                        "message": event["message"],
                    }
                )
            else:
                label = _label(source, stream, len(streams[source]))
                line = f"[{label}] {event['message']}" if label else event["message"]
            print(line, file=out, flush=True)
        ended = status in target.terminal
        if ended or not follow:
            print(f"{target.what}: {status}", file=sys.stderr)
            return 3 if status in target.failed else 0
        time.sleep(POLL_SECONDS)


def main(connection: Connection, args) -> int:
    sm = connection.client("sagemaker")
    target = resolve(connection, sm, args.name, args)
    since_ms = int((time.time() - args.since) * 1000) if args.since is not None else None
    return follow(target, connection.client("logs"), args.follow, since_ms, args.json)


def add_parser(sub) -> None:
    logs = sub.add_parser(
        "logs", help="the logs of a job, an endpoint or a pipeline execution's steps (-f follows them)"
    )
    logs.add_argument("name", help="a job or endpoint name, PIPELINE/EXECUTION_ID (as `selfmaker ps` shows), or an ARN")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until it ends (Ctrl-C stops)"
    )
    logs.add_argument("--kind", choices=KINDS, help="what NAME is, when a job and an endpoint share it")
    logs.add_argument("--step", help="a pipeline execution: only this step's job")
    logs.add_argument("--variant", help="an endpoint: only this production variant's instances")
    logs.add_argument("--instance", help="an endpoint: only this instance (its id, as in the stream name)")
    logs.add_argument("--since", type=duration, help="only lines of the last 30m, 2h, 1d... (default: all)")
    logs.add_argument("--json", action="store_true", help="one JSON object per line (timestamp, stream, message)")
    add_connection_arguments(logs)
    logs.set_defaults(func=lambda args: run(lambda connection: main(connection, args), args))
