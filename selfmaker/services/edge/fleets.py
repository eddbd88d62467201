"""Device fleets (Create/Describe/Update/Delete/ListDeviceFleets) and GetDeviceFleetReport.

A fleet is a record: its OutputConfig, RoleArn and IoT role alias are kept as
given (SelfMaker has no AWS IoT; the alias is the ARN AWS would have created).
The report is computed from the devices' last heartbeats at the moment it is
asked for; the connected rule is :func:`device_records.connected`.
"""

from __future__ import annotations

from collections import Counter

from ...objects.access import check_s3_uri
from ...server.errors import AWSError
from ...server.operations import Context, operation
from ...store.resources import now
from ..kinds import Kind
from . import device_records


def _role_alias(ctx: Context, fleet: str) -> str:
    # What EnableIotRoleAlias makes on AWS: the alias "SageMakerEdge-<fleet>" for the fleet's role.
    return ctx.arn("iot", f"rolealias/SageMakerEdge-{fleet}")


def _check_output(ctx: Context, params: dict) -> None:
    check_s3_uri(
        ctx.backends, ctx.account_id, params["OutputConfig"]["S3OutputLocation"], "OutputConfig.S3OutputLocation"
    )


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    _check_output(ctx, params)
    if data.pop("EnableIotRoleAlias", False):
        data["IotRoleAlias"] = _role_alias(ctx, params["DeviceFleetName"])


def _on_update(ctx: Context, params: dict, record) -> None:
    _check_output(ctx, params)
    data = record.data
    data["OutputConfig"] = params["OutputConfig"]
    for member in ("RoleArn", "Description"):
        if member in params:
            data[member] = params[member]
    if "EnableIotRoleAlias" in params:
        if params["EnableIotRoleAlias"]:
            data["IotRoleAlias"] = _role_alias(ctx, record.name)
        else:
            data.pop("IotRoleAlias", None)


def _on_delete(ctx: Context, record, conn) -> None:
    store = ctx.backends.resources
    if device_records.registered(ctx, record.name):
        raise AWSError("ResourceInUse", f"Device fleet {record.name} has registered devices; deregister them first.")
    if store.count(ctx.account_id, ctx.region, "EdgeDeploymentPlan", parent=record.name):
        raise AWSError("ResourceInUse", f"Device fleet {record.name} is used by edge deployment plans.")
    device_records.forget_fleet(ctx, record.name, conn)  # deregistered devices' records go with their fleet


def _summary(record) -> dict:
    d = record.data
    return {k: d[k] for k in ("DeviceFleetArn", "DeviceFleetName", "CreationTime", "LastModifiedTime")}


DEVICE_FLEET = Kind(
    "DeviceFleet",
    "device-fleet",
    not_found="Device fleet {name} does not exist.",
    not_found_code="ResourceNotFound",
    exists="Device fleet {name} already exists.",
    exists_code="ResourceInUse",
    on_create=_on_create,
    on_update=_on_update,
    on_delete=_on_delete,
    summarize=_summary,
).register()


@operation("sagemaker", "GetDeviceFleetReport")
def get_device_fleet_report(ctx: Context, params: dict) -> dict:
    fleet = DEVICE_FLEET.load(ctx, params["DeviceFleetName"])
    at = now()
    ttl = ctx.backends.settings.edge_cache_ttl
    members = device_records.registered(ctx, fleet.name)
    online = [d for d in members if device_records.connected(d.data, at, ttl)]
    agents = Counter(d.data["AgentVersion"] for d in members if d.data.get("AgentVersion"))
    stats: dict[tuple[str, str], Counter] = {}
    for device in members:
        is_online = device_records.connected(device.data, at, ttl)
        for model in device.data.get("Models") or []:
            counts = stats.setdefault((model["ModelName"], model["ModelVersion"]), Counter())
            if not is_online:
                counts["OfflineDeviceCount"] += 1
                continue
            counts["ConnectedDeviceCount"] += 1
            # Active: it answered a prediction within the TTL; sampling: it captured data within the TTL.
            counts["ActiveDeviceCount"] += _recent(model.get("LatestInference"), at, ttl)
            counts["SamplingDeviceCount"] += _recent(model.get("LatestSampleTime"), at, ttl)
    data = fleet.data
    return {
        "DeviceFleetArn": data["DeviceFleetArn"],
        "DeviceFleetName": data["DeviceFleetName"],
        "OutputConfig": data.get("OutputConfig"),
        "Description": data.get("Description"),
        "ReportGenerated": at,
        "DeviceStats": {"ConnectedDeviceCount": len(online), "RegisteredDeviceCount": len(members)},
        "AgentVersions": [{"Version": v, "AgentCount": n} for v, n in sorted(agents.items())],
        "ModelStats": [
            {
                "ModelName": name,
                "ModelVersion": version,
                **{
                    k: counts[k]
                    for k in ("OfflineDeviceCount", "ConnectedDeviceCount", "ActiveDeviceCount", "SamplingDeviceCount")
                },
            }
            for (name, version), counts in sorted(stats.items())
        ],
    }


def _recent(when: float | None, at: float, ttl: int) -> int:
    return int(when is not None and at - when <= ttl)
