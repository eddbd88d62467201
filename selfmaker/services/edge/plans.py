"""Edge deployment plans and their stages, and what each device is asked to run.

A plan names its models (ModelHandle -> a COMPLETED edge packaging job) and a fleet;
its stages choose devices. StartEdgeDeploymentStage picks the stage's devices
(registered ones only; a device already deployed by another stage of the plan is
skipped) and marks them READYTODEPLOY. GetDeployments hands each device its
deployments (READYTODEPLOY becomes INPROGRESS); the agent's DeploymentResult in a
heartbeat makes the device DEPLOYED or FAILED. A stage's status is computed from
its devices: INPROGRESS while any is pending, then FAILED if any failed, else DEPLOYED.

Per-stage and per-device state is kept in the plan record under ``_Stages``:
``{stage: {"Status", "StartTime", "Message", "Devices": {device: {"Status", "Message", "StartTime"}}}}``.
"""

from __future__ import annotations

import hashlib
import math

from ...server.errors import AWSError, validation
from ...server.operations import Context, operation
from ...store.resources import ListQuery, Record, now
from ..kinds import KINDS, Kind
from . import device_records
from .fleets import DEVICE_FLEET

STATE = "_Stages"
PENDING = ("READYTODEPLOY", "INPROGRESS")
ACTIVE_STAGE = ("STARTING", "INPROGRESS", "STOPPING")
DEFAULT_CONFIG = {"FailureHandlingPolicy": "ROLLBACK_ON_FAILURE"}  # when a stage gives no DeploymentConfig


# -- declaration ------------------------------------------------------------------------------------------


def _check_stages(stages: list[dict], existing: list[dict]) -> None:
    names = {s["StageName"].lower() for s in existing}
    for stage in stages:
        if stage["StageName"].lower() in names:
            raise validation(f"Stage {stage['StageName']} is named more than once in the plan.")
        names.add(stage["StageName"].lower())
        selection = stage["DeviceSelectionConfig"]
        kind = selection["DeviceSubsetType"]
        if kind == "PERCENTAGE" and not 0 <= selection.get("Percentage", -1) <= 100:
            raise validation(f"Stage {stage['StageName']}: PERCENTAGE needs a Percentage from 0 to 100.")
        if kind == "SELECTION" and not selection.get("DeviceNames"):
            raise validation(f"Stage {stage['StageName']}: SELECTION needs DeviceNames.")
        if kind == "NAMECONTAINS" and not selection.get("DeviceNameContains"):
            raise validation(f"Stage {stage['StageName']}: NAMECONTAINS needs DeviceNameContains.")
        stage.setdefault("DeploymentConfig", dict(DEFAULT_CONFIG))


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    try:
        data["DeviceFleetName"] = DEVICE_FLEET.load(ctx, params["DeviceFleetName"]).name
    except AWSError:
        raise validation(f"Device fleet {params['DeviceFleetName']} does not exist.") from None
    handles = set()
    for config in params["ModelConfigs"]:
        if config["ModelHandle"].lower() in handles:
            raise validation(f"ModelHandle {config['ModelHandle']} is used more than once.")
        handles.add(config["ModelHandle"].lower())
        _packaging_job(ctx, config["EdgePackagingJobName"])  # it must exist; COMPLETED is checked at start
    data["Stages"] = [dict(s) for s in params.get("Stages") or []]
    _check_stages(data["Stages"], [])
    data[STATE] = {s["StageName"]: {"Status": "READYTODEPLOY", "Devices": {}} for s in data["Stages"]}


def _packaging_job(ctx: Context, name: str) -> Record:
    try:
        return KINDS["EdgePackagingJob"].load(ctx, name)
    except AWSError:
        raise validation(f"Edge packaging job {name} does not exist.") from None


def _on_delete(ctx: Context, record: Record, conn) -> None:
    busy = [s for s, state in record.data[STATE].items() if stage_status(state) in ACTIVE_STAGE]
    if busy:
        raise AWSError("ResourceInUse", f"Stages {', '.join(busy)} of plan {record.name} are active; stop them first.")


def _counts(record: Record) -> dict:
    success = pending = failed = 0
    for state in record.data[STATE].values():
        s, p, f = _stage_counts(state)
        success, pending, failed = success + s, pending + p, failed + f
    return {"EdgeDeploymentSuccess": success, "EdgeDeploymentPending": pending, "EdgeDeploymentFailed": failed}


def _summary(record: Record) -> dict:
    d = record.data
    keep = ("EdgeDeploymentPlanArn", "EdgeDeploymentPlanName", "DeviceFleetName", "CreationTime", "LastModifiedTime")
    return {**{k: d[k] for k in keep}, **_counts(record)}


def _list_params(params: dict) -> dict:
    if params.get("SortBy") == "DEVICE_FLEET_NAME":
        params = {**params, "SortBy": "Parent"}  # the fleet is the plan's parent column
    return params


def _fleet_filter(ctx: Context, params: dict) -> list:
    if params.get("DeviceFleetNameContains"):
        return [device_records.R.c.parent.contains(params["DeviceFleetNameContains"], autoescape=True)]
    return []


PLAN = Kind(
    "EdgeDeploymentPlan",
    "edge-deployment",
    label="edge deployment plan",
    operations=("Create", "List", "Delete"),
    parent_member="DeviceFleetName",
    not_found="Edge deployment plan {name} does not exist.",
    not_found_code="ResourceNotFound",
    exists="Edge deployment plan {name} already exists.",
    on_create=_on_create,
    on_delete=_on_delete,
    summarize=_summary,
    list_params=_list_params,
    extra_filters=_fleet_filter,
).register()


# -- stage status -------------------------------------------------------------------------------------------


def _stage_counts(state: dict) -> tuple[int, int, int]:
    statuses = [d["Status"] for d in state["Devices"].values()]
    return statuses.count("DEPLOYED"), sum(s in PENDING for s in statuses), statuses.count("FAILED")


def stage_status(state: dict) -> str:
    if state["Status"] in ("READYTODEPLOY", "STOPPED"):
        return state["Status"]
    _, pending, failed = _stage_counts(state)
    if pending:
        return "INPROGRESS"
    return "FAILED" if failed else "DEPLOYED"


def _stage_summary(stage: dict, state: dict) -> dict:
    success, pending, failed = _stage_counts(state)
    status = {
        "StageStatus": stage_status(state),
        "EdgeDeploymentSuccessInStage": success,
        "EdgeDeploymentPendingInStage": pending,
        "EdgeDeploymentFailedInStage": failed,
    }
    if state.get("Message"):
        status["EdgeDeploymentStatusMessage"] = state["Message"]
    if state.get("StartTime"):
        status["EdgeDeploymentStageStartTime"] = state["StartTime"]
    return {**stage, "DeploymentStatus": status}


@operation("sagemaker", "DescribeEdgeDeploymentPlan", store_read=True)
def describe_plan(ctx: Context, params: dict) -> dict:
    record = PLAN.load(ctx, params["EdgeDeploymentPlanName"])
    data = record.data
    stages = data["Stages"]
    scope = ("DescribeEdgeDeploymentPlan", record.arn)
    start = ctx.backends.resources.read_page_token(params["NextToken"], scope)["at"] if params.get("NextToken") else 0
    size = params.get("MaxResults") or 10
    page = stages[start : start + size]
    out = {k: data[k] for k in ("EdgeDeploymentPlanArn", "EdgeDeploymentPlanName", "ModelConfigs", "DeviceFleetName")}
    out.update(_counts(record), CreationTime=data["CreationTime"], LastModifiedTime=data["LastModifiedTime"])
    out["Stages"] = [_stage_summary(s, data[STATE][s["StageName"]]) for s in page]
    if start + size < len(stages):
        out["NextToken"] = ctx.backends.resources.page_token(scope, at=start + size)
    return out


def _stage(record: Record, name: str) -> dict:
    for stage in record.data["Stages"]:
        if stage["StageName"] == name:
            return stage
    raise AWSError("ResourceNotFound", f"Stage {name} does not exist in edge deployment plan {record.name}.")


@operation("sagemaker", "CreateEdgeDeploymentStage")
def create_stage(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = PLAN.load(ctx, params["EdgeDeploymentPlanName"], conn=conn, lock=True)
        stages = [dict(s) for s in params["Stages"]]
        _check_stages(stages, record.data["Stages"])
        record.data["Stages"] += stages
        for stage in stages:
            record.data[STATE][stage["StageName"]] = {"Status": "READYTODEPLOY", "Devices": {}}
        record.data["LastModifiedTime"] = now()
        ctx.backends.resources.save(record, conn=conn)
    return {}


@operation("sagemaker", "DeleteEdgeDeploymentStage")
def delete_stage(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = PLAN.load(ctx, params["EdgeDeploymentPlanName"], conn=conn, lock=True)
        stage = _stage(record, params["StageName"])
        if stage_status(record.data[STATE][stage["StageName"]]) in ACTIVE_STAGE:
            raise AWSError("ResourceInUse", f"Stage {stage['StageName']} is active; stop it first.")
        record.data["Stages"].remove(stage)
        del record.data[STATE][stage["StageName"]]
        record.data["LastModifiedTime"] = now()
        ctx.backends.resources.save(record, conn=conn)
    return {}


def _select(record: Record, stage: dict, candidates: list[Record]) -> list[str]:
    """The registered devices a stage's DeviceSelectionConfig picks, in name order."""
    selection = stage["DeviceSelectionConfig"]
    names = sorted(r.data["DeviceName"] for r in candidates)
    kind = selection["DeviceSubsetType"]
    if kind == "SELECTION":
        wanted = selection["DeviceNames"]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise validation(
                f"Devices {', '.join(unknown)} are not registered in fleet {record.data['DeviceFleetName']}."
            )
        return sorted(set(wanted))
    if kind == "NAMECONTAINS":
        return [n for n in names if selection["DeviceNameContains"] in n]
    # PERCENTAGE: a deterministic subset, the same for the same plan and fleet, spread by a hash of the
    # plan and device names so that different plans do not always start on the same devices.
    count = math.ceil(len(names) * selection["Percentage"] / 100)
    ranked = sorted(names, key=lambda n: hashlib.sha256(f"{record.name}/{n}".encode()).hexdigest())
    return sorted(ranked[:count])


@operation("sagemaker", "StartEdgeDeploymentStage")
def start_stage(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = PLAN.load(ctx, params["EdgeDeploymentPlanName"], conn=conn, lock=True)
        stage = _stage(record, params["StageName"])
        state = record.data[STATE][stage["StageName"]]
        if stage_status(state) in ACTIVE_STAGE or stage_status(state) == "DEPLOYED":
            raise validation(f"Stage {stage['StageName']} is {stage_status(state)}; it cannot be started.")
        for config in record.data["ModelConfigs"]:
            job = _packaging_job(ctx, config["EdgePackagingJobName"])
            if job.status != "COMPLETED":
                raise validation(f"Edge packaging job {job.name} is {job.status}, not COMPLETED.")
        deployed_elsewhere = {
            device
            for name, other in record.data[STATE].items()
            if name != stage["StageName"]
            for device, d in other["Devices"].items()
            if d["Status"] == "DEPLOYED"
        }
        chosen = [
            n
            for n in _select(record, stage, device_records.registered(ctx, record.data["DeviceFleetName"]))
            if n not in deployed_elsewhere
        ]
        if not chosen:
            raise validation(
                f"No registered device (not deployed by another stage) matches stage {stage['StageName']}."
            )
        at = now()
        state.update(Status="INPROGRESS", StartTime=at, Message="")
        state["Devices"] = {n: {"Status": "READYTODEPLOY", "StartTime": at} for n in chosen}
        record.data["LastModifiedTime"] = at
        ctx.backends.resources.save(record, conn=conn)
    return {}


@operation("sagemaker", "StopEdgeDeploymentStage")
def stop_stage(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = PLAN.load(ctx, params["EdgeDeploymentPlanName"], conn=conn, lock=True)
        stage = _stage(record, params["StageName"])
        state = record.data[STATE][stage["StageName"]]
        if stage_status(state) != "INPROGRESS":
            raise validation(f"Stage {stage['StageName']} is {stage_status(state)}; only an INPROGRESS stage stops.")
        # Devices that already answered keep what they deployed; the others are not asked any more.
        for device in state["Devices"].values():
            if device["Status"] in PENDING:
                device.update(Status="STOPPED", Message="The stage was stopped before the device deployed.")
        state.update(Status="STOPPED", Message="Stopped by StopEdgeDeploymentStage.")
        record.data["LastModifiedTime"] = now()
        ctx.backends.resources.save(record, conn=conn)
    return {}


@operation("sagemaker", "ListStageDevices", store_read=True)
def list_stage_devices(ctx: Context, params: dict) -> dict:
    record = PLAN.load(ctx, params["EdgeDeploymentPlanName"])
    stage = _stage(record, params["StageName"])
    data = record.data
    deployed_in = {
        device: name
        for name, state in data[STATE].items()
        for device, d in state["Devices"].items()
        if d["Status"] == "DEPLOYED"
    }
    fleet = data["DeviceFleetName"]
    rows = []
    for device, d in sorted(data[STATE][stage["StageName"]]["Devices"].items()):
        elsewhere = deployed_in.get(device) not in (None, stage["StageName"])
        if params.get("ExcludeDevicesDeployedInOtherStage") and elsewhere:
            continue
        row = {
            "EdgeDeploymentPlanArn": record.arn,
            "EdgeDeploymentPlanName": record.name,
            "StageName": stage["StageName"],
            "DeviceFleetName": fleet,
            "DeviceName": device,
            "DeviceArn": device_records.arn(ctx, fleet, device),
            "DeviceDeploymentStatus": d["Status"],
            "DeploymentStartTime": d.get("StartTime"),
        }
        if device in deployed_in:
            row["DeployedStageName"] = deployed_in[device]
        if d.get("Message"):
            row["DeviceDeploymentStatusMessage"] = d["Message"]
        rows.append(row)
    scope = ("ListStageDevices", record.arn, stage["StageName"], bool(params.get("ExcludeDevicesDeployedInOtherStage")))
    start = ctx.backends.resources.read_page_token(params["NextToken"], scope)["at"] if params.get("NextToken") else 0
    size = params.get("MaxResults") or 100
    out: dict = {"DeviceDeploymentSummaries": rows[start : start + size]}
    if start + size < len(rows):
        out["NextToken"] = ctx.backends.resources.page_token(scope, at=start + size)
    return out


# -- what devices are asked to run, and what they report ------------------------------------------------------


def _fleet_plans(ctx: Context, fleet: str) -> list[Record]:
    plans: list[Record] = []
    query = ListQuery(parent=fleet, descending=False, max_results=500)
    while True:
        page, token = ctx.backends.resources.list(ctx.account_id, ctx.region, PLAN.name, query)
        plans += page
        if not token:
            return plans
        query.next_token = token


def deployments_for(ctx: Context, fleet: str, device: str) -> list[dict]:
    """The deployments ``device`` is to run: per ModelHandle, the most recently started stage that chose it
    wins (a second plan replaces the first plan's model of the same handle). READYTODEPLOY becomes INPROGRESS."""
    assignments = []  # (start time, plan, stage)
    for plan in _fleet_plans(ctx, fleet):
        for stage in plan.data["Stages"]:
            state = plan.data[STATE][stage["StageName"]]
            mine = state["Devices"].get(device)
            if state["Status"] != "READYTODEPLOY" and mine and mine["Status"] in (*PENDING, "DEPLOYED", "FAILED"):
                assignments.append((mine["StartTime"], plan, stage))
    assignments.sort(key=lambda a: a[0], reverse=True)
    taken: set[str] = set()
    deployments = []
    for _, plan, stage in assignments:
        definitions = []
        for config in plan.data["ModelConfigs"]:
            handle = config["ModelHandle"]
            if handle in taken:
                continue
            taken.add(handle)
            job = KINDS["EdgePackagingJob"].load(ctx, config["EdgePackagingJobName"]).data
            definitions.append(
                {
                    "ModelHandle": handle,
                    "S3Url": job["ModelArtifact"],
                    "Checksum": {"Type": "SHA1", "Sum": job["_ArchiveSha1"]},
                    "State": "DEPLOY",
                }
            )
        if definitions:
            deployments.append(
                {
                    "DeploymentName": plan.name,
                    "Type": "Model",
                    "FailureHandlingPolicy": stage["DeploymentConfig"]["FailureHandlingPolicy"],
                    "Definitions": definitions,
                }
            )
            _mark(ctx, plan.arn, stage["StageName"], device, from_status="READYTODEPLOY", to_status="INPROGRESS")
    return deployments


def _mark(ctx: Context, plan_arn: str, stage: str, device: str, from_status, to_status: str, message: str = "") -> None:
    def change(record, conn):
        state = record.data[STATE].get(stage)
        mine = state and state["Devices"].get(device)
        if not mine or state["Status"] == "STOPPED" or (from_status and mine["Status"] not in from_status):
            return False
        mine.update(Status=to_status, Message=message)
        return None

    ctx.backends.resources.mutate(change, arn=plan_arn)


def record_result(ctx: Context, fleet: str, device: str, result: dict) -> None:
    """A DeploymentResult from a heartbeat: the device's deployment of that plan is DEPLOYED or FAILED."""
    plan = ctx.backends.resources.get(ctx.account_id, ctx.region, PLAN.name, name=result.get("DeploymentName") or "")
    if plan is None or plan.data["DeviceFleetName"] != fleet:
        return  # a plan deleted since, or never ours: nothing to record
    status = (result.get("DeploymentStatus") or "").upper()
    if status not in ("SUCCESS", "FAIL", "FAILED", "DEPLOYED"):
        return  # an interim report
    ok = status in ("SUCCESS", "DEPLOYED")
    failures = [
        f"{m.get('ModelHandle')}: {m.get('StatusReason') or 'failed'}"
        for m in result.get("DeploymentModels") or []
        if m.get("Status") == "FAIL"
    ]
    message = result.get("DeploymentStatusMessage") or "; ".join(failures)
    # The stage that chose the device most recently is the one this result answers.
    chosen = [
        (state["Devices"][device]["StartTime"], name)
        for name, state in plan.data[STATE].items()
        if device in state["Devices"]
    ]
    if chosen:
        stage = max(chosen)[1]
        _mark(
            ctx, plan.arn, stage, device, from_status=PENDING, to_status="DEPLOYED" if ok else "FAILED", message=message
        )


def forget_device(ctx: Context, fleet: str, device: str) -> None:
    """A deregistered device will not answer: its pending deployments stop, so stages can finish."""
    for plan in _fleet_plans(ctx, fleet):
        for name, state in plan.data[STATE].items():
            if state["Devices"].get(device, {}).get("Status") in PENDING:
                _mark(
                    ctx,
                    plan.arn,
                    name,
                    device,
                    from_status=PENDING,
                    to_status="STOPPED",
                    message="Device deregistered.",
                )
