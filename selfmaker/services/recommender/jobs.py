"""The InferenceRecommendationsJob kind: Create, Describe, List, Stop, ListInferenceRecommendationsJobSteps.

CreateInferenceRecommendationsJob checks the request (the model's limits and AWS's
documented rules), plans the benchmarks (one per candidate: an instance type and one
combination of environment parameter values, or the existing endpoint named in
InputConfig.Endpoints) and kicks the controller (controller.py), which runs them.
Statuses: PENDING → IN_PROGRESS → COMPLETED | FAILED, and STOPPING → STOPPED.
"""

from __future__ import annotations

import itertools

from ...engines.reconciler import kick
from ...server.errors import validation
from ...server.operations import Context, operation
from ...store import schema
from ...store.resources import Record, now
from ..catalog import MODEL
from ..hosting.endpoint_configs import check_serverless
from ..hosting.endpoints import ENDPOINT
from ..kinds import Kind
from ..registry import MODEL_PACKAGE
from . import execution_log

R = schema.resources

ACTIVE = frozenset({"PENDING", "IN_PROGRESS", "STOPPING"})
# A Default job benchmarks the model package's supported real-time instance types (or the container
# config's), else these: CPU types of our instance table, small to medium. At most DEFAULT_MAX_TESTS.
DEFAULT_INSTANCE_TYPES = ("ml.c5.large", "ml.m5.large", "ml.c5.xlarge")
DEFAULT_MAX_TESTS = 3
DEFAULT_JOB_SECONDS = 3600  # JobDurationInSeconds when the request gives none (AWS: 7200 for Advanced)
MAX_JOB_SECONDS = 18000
PHASE_SECONDS = (120, 3600)  # AWS: "For custom load tests, the value should be between 120 and 3600."
MAX_INITIAL_USERS = 3
MAX_SPAWN_RATE = 3  # users per minute
MAX_INVOCATIONS = (1, 30000)
PERCENTILES = ("P95", "P99")
MAX_RECOMMENDATIONS = 10


def _burstable(instance_type: str | None) -> bool:
    return bool(instance_type) and instance_type.startswith("ml.t2.")


def _no_burstable(instance_type: str, where: str) -> None:
    if _burstable(instance_type):
        raise validation(
            f"Instance type {instance_type} in {where} is not supported: Inference Recommender does not "
            "benchmark burstable instances (ml.t2.*)."
        )


# -- what the job runs on -----------------------------------------------------------------------------------


def model_source(ctx: Context, input_config: dict) -> dict:
    """{container, model_name?, package_arn?, package?}: the container to deploy and where it came from."""
    package_arn, model_name = input_config.get("ModelPackageVersionArn"), input_config.get("ModelName")
    if bool(package_arn) == bool(model_name):
        raise validation("InputConfig needs either ModelPackageVersionArn or ModelName, and not both.")
    if package_arn:
        package = MODEL_PACKAGE.load(ctx, package_arn).data
        containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
        if not containers:
            raise validation(f"Model package {package_arn} has no InferenceSpecification.Containers to deploy.")
        return {"container": containers[0], "package_arn": package_arn, "package": package}
    model = MODEL.load(ctx, model_name).data
    container = model.get("PrimaryContainer") or (model.get("Containers") or [None])[0]
    if not container:
        raise validation(f"Model {model_name} has no container to deploy.")
    return {"container": container, "model_name": model_name, "model": model}


def payload_source(params: dict, source: dict) -> tuple[str, str]:
    """(SamplePayloadUrl, content type) the benchmarks send: the job's PayloadConfig, else the package's."""
    payload = ((params["InputConfig"].get("ContainerConfig") or {}).get("PayloadConfig")) or {}
    package = source.get("package") or {}
    url = payload.get("SamplePayloadUrl") or package.get("SamplePayloadUrl")
    types = payload.get("SupportedContentTypes") or (package.get("InferenceSpecification") or {}).get(
        "SupportedContentTypes"
    )
    if not url:
        raise validation(
            "Inference Recommender needs sample payloads: give InputConfig.ContainerConfig.PayloadConfig."
            "SamplePayloadUrl, or a model package with a SamplePayloadUrl."
        )
    return url, (types or ["application/octet-stream"])[0]


def _environment_combinations(config: dict) -> list[dict[str, str]]:
    ranges = (config.get("EnvironmentParameterRanges") or {}).get("CategoricalParameterRanges") or []
    names = [r["Name"] for r in ranges]
    if len(set(names)) != len(names):
        raise validation("CategoricalParameterRanges names an environment variable twice.")
    return [dict(zip(names, values)) for values in itertools.product(*(r["Value"] for r in ranges))] or [{}]


def candidates(params: dict, source: dict) -> list[dict]:
    """One entry per benchmark: {instance_type, serverless?, environment, inference_spec?} or {endpoint}."""
    input_config = params["InputConfig"]
    if input_config.get("Endpoints"):
        return [{"endpoint": e["EndpointName"]} for e in input_config["Endpoints"]]
    if params["JobType"] == "Advanced" and input_config.get("EndpointConfigurations"):
        found = []
        for config in input_config["EndpointConfigurations"]:
            for environment in _environment_combinations(config):
                found.append(
                    {
                        "instance_type": config.get("InstanceType"),
                        "serverless": config.get("ServerlessConfig"),
                        "environment": environment,
                        "inference_spec": config.get("InferenceSpecificationName"),
                    }
                )
        return found
    package = source.get("package") or {}
    supported = (package.get("InferenceSpecification") or {}).get("SupportedRealtimeInferenceInstanceTypes") or (
        input_config.get("ContainerConfig") or {}
    ).get("SupportedInstanceTypes")
    types = [t for t in (supported or DEFAULT_INSTANCE_TYPES) if not _burstable(t)] or list(DEFAULT_INSTANCE_TYPES)
    return [{"instance_type": t, "serverless": None, "environment": {}} for t in types[:DEFAULT_MAX_TESTS]]


# -- checks -------------------------------------------------------------------------------------------------


def _check_traffic(pattern: dict, job_seconds: int) -> None:
    kind = pattern.get("TrafficType") or "PHASES"
    if kind == "STAIRS":
        stairs = pattern.get("Stairs")
        if not stairs or not all(stairs.get(k) for k in ("DurationInSeconds", "NumberOfSteps", "UsersPerStep")):
            raise validation(
                "TrafficPattern of TrafficType STAIRS needs Stairs with DurationInSeconds, "
                "NumberOfSteps and UsersPerStep."
            )
        if stairs["DurationInSeconds"] > job_seconds:
            raise validation("Stairs.DurationInSeconds must not exceed JobDurationInSeconds.")
        return
    phases = pattern.get("Phases")
    if not phases:
        raise validation("TrafficPattern of TrafficType PHASES needs at least one Phase.")
    low, high = PHASE_SECONDS
    previous_final = None
    for i, phase in enumerate(phases):
        users, rate = phase.get("InitialNumberOfUsers", 1), phase.get("SpawnRate", 0)
        seconds = phase.get("DurationInSeconds", low)
        if not low <= seconds <= high:
            raise validation(
                f"Phases[{i}].DurationInSeconds must be between {low} and {high} seconds for a custom load "
                f"test; it is {seconds}."
            )
        if not 1 <= users <= MAX_INITIAL_USERS:
            raise validation(
                f"Phases[{i}].InitialNumberOfUsers must be between 1 and {MAX_INITIAL_USERS}; it is {users}."
            )
        if rate > MAX_SPAWN_RATE:
            raise validation(
                f"Phases[{i}].SpawnRate must be between 0 and {MAX_SPAWN_RATE} users per minute; it is {rate}."
            )
        if previous_final is not None and abs(users - previous_final) > MAX_INITIAL_USERS:
            raise validation(
                f"Phases[{i}].InitialNumberOfUsers ({users}) must be within {MAX_INITIAL_USERS} of the number "
                f"of users at the end of Phases[{i - 1}] ({previous_final})."
            )
        previous_final = _final_users(phase)
    total = sum(p.get("DurationInSeconds", low) for p in phases)
    if total > job_seconds:
        raise validation(f"The phases last {total} seconds, more than JobDurationInSeconds ({job_seconds}).")


def _final_users(phase: dict) -> int:
    from .analysis import final_users

    return final_users(phase)


def _check_stopping(conditions: dict) -> None:
    invocations = conditions.get("MaxInvocations")
    low, high = MAX_INVOCATIONS
    if invocations is not None and not low <= invocations <= high:
        raise validation(f"StoppingConditions.MaxInvocations must be between {low} and {high} per minute.")
    for threshold in conditions.get("ModelLatencyThresholds") or []:
        if threshold.get("Percentile") not in PERCENTILES:
            raise validation("ModelLatencyThresholds.Percentile must be P95 or P99.")
        if not threshold.get("ValueInMilliseconds") or threshold["ValueInMilliseconds"] < 1:
            raise validation("ModelLatencyThresholds.ValueInMilliseconds must be at least 1.")


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    input_config = params["InputConfig"]
    advanced = params["JobType"] == "Advanced"
    if not advanced:
        extra = [m for m in ("TrafficPattern", "EndpointConfigurations", "ResourceLimit") if input_config.get(m)] + (
            ["StoppingConditions"] if params.get("StoppingConditions") else []
        )
        if extra:
            raise validation(f"{', '.join(extra)} apply to Advanced jobs only; this job's JobType is Default.")
    if input_config.get("VpcConfig"):
        raise validation("SelfMaker does not support VpcConfig for Inference Recommender jobs: endpoints run here.")
    job_seconds = input_config.get("JobDurationInSeconds") or DEFAULT_JOB_SECONDS
    if job_seconds > MAX_JOB_SECONDS:
        raise validation(f"JobDurationInSeconds must be at most {MAX_JOB_SECONDS}.")
    for i, config in enumerate(input_config.get("EndpointConfigurations") or []):
        if bool(config.get("InstanceType")) == bool(config.get("ServerlessConfig")):
            raise validation(f"EndpointConfigurations[{i}] needs either InstanceType or ServerlessConfig.")
        if config.get("ServerlessConfig"):
            check_serverless(config["ServerlessConfig"], f"EndpointConfigurations[{i}].ServerlessConfig")
        if config.get("InstanceType"):
            _no_burstable(config["InstanceType"], f"EndpointConfigurations[{i}]")
    for t in (input_config.get("ContainerConfig") or {}).get("SupportedInstanceTypes") or []:
        _no_burstable(t, "ContainerConfig.SupportedInstanceTypes")
    if input_config.get("TrafficPattern"):
        _check_traffic(input_config["TrafficPattern"], job_seconds)
    _check_stopping(params.get("StoppingConditions") or {})
    source = model_source(ctx, input_config)
    for endpoint in input_config.get("Endpoints") or []:
        record = ENDPOINT.load(ctx, endpoint["EndpointName"])
        if record.status != "InService":
            raise validation(f"Endpoint {endpoint['EndpointName']} is {record.status}, not InService.")
    url, content_type = payload_source(params, source)
    planned = candidates(params, source)
    limit = (input_config.get("ResourceLimit") or {}).get("MaxNumberOfTests")
    if limit is not None and len(planned) > limit:
        raise validation(
            f"The job calls for {len(planned)} benchmarks (instance types x environment parameter values); "
            f"ResourceLimit.MaxNumberOfTests allows {limit}."
        )
    data.setdefault("JobDescription", "")
    data.update(
        Status="PENDING",
        _Subject=source.get("model_name") or source.get("package_arn"),
        _Payload={"url": url, "content_type": content_type},
        _Steps=[{"candidate": c, "Status": "PENDING"} for c in planned],
        _Deadline=data["CreationTime"] + job_seconds,
    )


# -- presenting ---------------------------------------------------------------------------------------------


def present(ctx: Context, record: Record) -> dict:
    return {k: v for k, v in record.data.items() if not k.startswith("_")}


def _summary(record: Record) -> dict:
    data = record.data
    out = {
        k: data[k]
        for k in (
            "JobName",
            "JobDescription",
            "JobType",
            "JobArn",
            "Status",
            "CreationTime",
            "CompletionTime",
            "RoleArn",
            "LastModifiedTime",
            "FailureReason",
        )
        if k in data
    }
    input_config = data["InputConfig"]
    for member in ("ModelName", "ModelPackageVersionArn"):
        if input_config.get(member):
            out[member] = input_config[member]
    out["SamplePayloadUrl"] = data["_Payload"]["url"]
    return out


def _list_filters(ctx: Context, params: dict) -> list:
    subject = params.get("ModelNameEquals") or params.get("ModelPackageVersionArnEquals")
    return [R.c.parent == subject] if subject else []


def _started(ctx: Context, arn: str) -> None:
    record = JOB.load(ctx, arn.rsplit("/", 1)[-1])
    execution_log.write(
        ctx.backends,
        ctx.account_id,
        ctx.region,
        record.name,
        f"Job {record.name} ({record.data['JobType']}) created: {len(record.data['_Steps'])} benchmark(s) planned.",
    )
    kick(ctx.backends, arn)


JOB = Kind(
    "InferenceRecommendationsJob",
    "inference-recommendations-job",
    label="inference recommendations job",
    operations=("Create", "Describe", "List"),
    name_member="JobName",
    arn_member="JobArn",
    status_member="Status",
    parent_member="_Subject",
    on_create=_on_create,
    present=present,
    summarize=_summary,
    extra_filters=_list_filters,
    not_found="Could not find inference recommendations job {name}.",
    exists="Inference recommendations job {name} already exists.",
    default_max_results=10,
    after_create=_started,
).register()


@operation("sagemaker", "StopInferenceRecommendationsJob")
def stop_job(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = JOB.load(ctx, params["JobName"], conn=conn, lock=True)
        if record.status in ("STOPPING", "STOPPED"):
            return {}
        if record.status not in ("PENDING", "IN_PROGRESS"):
            raise validation(
                f"Inference recommendations job {record.name} is {record.status}: only a PENDING or "
                "IN_PROGRESS job can be stopped."
            )
        record.data.update(Status="STOPPING", LastModifiedTime=now())
        record.status = "STOPPING"
        ctx.backends.resources.save(record, conn=conn)
    kick(ctx.backends, record.arn)
    return {}


STEP_MEMBERS = (
    "Metrics",
    "EndpointMetrics",
    "EndpointConfiguration",
    "ModelConfiguration",
    "FailureReason",
    "InvocationStartTime",
    "InvocationEndTime",
)


def step_view(job_name: str, step: dict) -> dict:
    benchmark = {k: step[k] for k in STEP_MEMBERS if step.get(k) is not None}
    benchmark.setdefault("ModelConfiguration", {})
    return {"StepType": "BENCHMARK", "JobName": job_name, "Status": step["Status"], "InferenceBenchmark": benchmark}


@operation("sagemaker", "ListInferenceRecommendationsJobSteps", store_read=True)
def list_steps(ctx: Context, params: dict) -> dict:
    record = JOB.load(ctx, params["JobName"])
    steps = [step_view(record.name, s) for s in record.data["_Steps"]]
    if params.get("Status"):
        steps = [s for s in steps if s["Status"] == params["Status"]]
    if params.get("StepType") not in (None, "BENCHMARK"):
        steps = []
    size = params.get("MaxResults") or 50
    scope = f"ir-steps:{record.arn}:{params.get('Status')}"
    start = 0
    if params.get("NextToken"):
        start = ctx.backends.resources.read_page_token(params["NextToken"], scope)["start"]
    page = steps[start : start + size]
    out: dict = {"Steps": page}
    if start + size < len(steps):
        out["NextToken"] = ctx.backends.resources.page_token(scope, start=start + size)
    return out
