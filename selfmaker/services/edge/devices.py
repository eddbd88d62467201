"""Devices: RegisterDevices, UpdateDevices, DeregisterDevices, DescribeDevice, ListDevices.

What a device reports (its last heartbeat, agent version and models) is written by
SendHeartbeat (:mod:`.runtime`) and shown here as AWS shapes it.
"""

from __future__ import annotations

from ...server.errors import AWSError, validation
from ...server.operations import Context, operation
from ...store.resources import ListQuery, now
from .. import tagging
from . import device_records, plans
from .fleets import DEVICE_FLEET

R = device_records.R
_SUMMARY = ("DeviceName", "DeviceArn", "Description", "DeviceFleetName", "IotThingName", "RegistrationTime")


def _unique(names: list[str]) -> None:
    seen = set()
    for name in names:
        if name.lower() in seen:
            raise validation(f"Device {name} is named more than once in the request.")
        seen.add(name.lower())


@operation("sagemaker", "RegisterDevices")
def register_devices(ctx: Context, params: dict) -> dict:
    fleet = DEVICE_FLEET.load(ctx, params["DeviceFleetName"]).name
    _unique([d["DeviceName"] for d in params["Devices"]])
    at = now()
    with ctx.store.write() as conn:
        # All or nothing: every device is checked before any is written.
        existing = {
            d["DeviceName"]: device_records.get(ctx, fleet, d["DeviceName"], conn=conn, lock=True)
            for d in params["Devices"]
        }
        for name, record in existing.items():
            if record is not None and record.status == device_records.REGISTERED:
                raise validation(f"Device {name} is already registered in device fleet {fleet}.")
        for device in params["Devices"]:
            name = device["DeviceName"]
            data = {
                **device,
                "DeviceFleetName": fleet,
                "DeviceArn": device_records.arn(ctx, fleet, name),
                "RegistrationTime": at,
                "CreationTime": at,
                "LastModifiedTime": at,
            }
            old = existing[name]
            if old is not None:  # deregistered before: registered afresh, its old reports forgotten
                old.data, old.status = data, device_records.REGISTERED
                ctx.backends.resources.save(old, conn=conn)
            else:
                ctx.backends.resources.create(
                    account_id=ctx.account_id,
                    region=ctx.region,
                    kind=device_records.KIND,
                    name=device_records.key(fleet, name),
                    arn=data["DeviceArn"],
                    data=data,
                    status=device_records.REGISTERED,
                    parent=fleet,
                    created=at,
                    conn=conn,
                )
            if params.get("Tags"):
                tagging.add(conn, data["DeviceArn"], params["Tags"])
    return {}


def _registered(ctx: Context, fleet: str, names: list[str], conn) -> list:
    found = []
    for name in names:
        record = device_records.get(ctx, fleet, name, conn=conn, lock=True)
        if record is None or record.status != device_records.REGISTERED:
            raise validation(f"Device {name} is not registered in device fleet {fleet}.")
        found.append(record)
    return found


@operation("sagemaker", "UpdateDevices")
def update_devices(ctx: Context, params: dict) -> dict:
    fleet = DEVICE_FLEET.load(ctx, params["DeviceFleetName"]).name
    _unique([d["DeviceName"] for d in params["Devices"]])
    with ctx.store.write() as conn:
        found = _registered(ctx, fleet, [d["DeviceName"] for d in params["Devices"]], conn)
        for record, device in zip(found, params["Devices"], strict=True):
            for member in ("Description", "IotThingName"):
                if member in device:
                    record.data[member] = device[member]
            record.data["LastModifiedTime"] = now()
            ctx.backends.resources.save(record, conn=conn)
    return {}


@operation("sagemaker", "DeregisterDevices")
def deregister_devices(ctx: Context, params: dict) -> dict:
    fleet = DEVICE_FLEET.load(ctx, params["DeviceFleetName"]).name
    _unique(params["DeviceNames"])
    with ctx.store.write() as conn:
        for record in _registered(ctx, fleet, params["DeviceNames"], conn):
            record.status = device_records.DEREGISTERED
            record.data["LastModifiedTime"] = now()
            ctx.backends.resources.save(record, conn=conn)
    for name in params["DeviceNames"]:  # after the commit: each plan is its own read-change-write
        plans.forget_device(ctx, fleet, name)
    return {}


def _models(data: dict, detail: bool) -> list[dict]:
    keep = (
        ("ModelName", "ModelVersion", "LatestSampleTime", "LatestInference")
        if detail
        else ("ModelName", "ModelVersion")
    )
    return [{k: m[k] for k in keep if m.get(k) is not None} for m in data.get("Models") or []]


@operation("sagemaker", "DescribeDevice", store_read=True)
def describe_device(ctx: Context, params: dict) -> dict:
    record = device_records.get(ctx, params["DeviceFleetName"], params["DeviceName"])
    if record is None or record.status != device_records.REGISTERED:
        raise AWSError(
            "ResourceNotFound",
            f"Device {params['DeviceName']} is not registered in device fleet {params['DeviceFleetName']}.",
        )
    data = record.data
    out = {k: data[k] for k in (*_SUMMARY, "LatestHeartbeat", "AgentVersion") if data.get(k) is not None}
    out["Models"] = _models(data, detail=True)
    return out


@operation("sagemaker", "ListDevices", store_read=True)
def list_devices(ctx: Context, params: dict) -> dict:
    query = ListQuery(
        status=device_records.REGISTERED,
        parent=params.get("DeviceFleetName"),
        max_results=params.get("MaxResults") or 100,
        next_token=params.get("NextToken"),
    )
    if params.get("LatestHeartbeatAfter") is not None:
        query.where.append(R.c.data["LatestHeartbeat"].as_float() > params["LatestHeartbeatAfter"])
    if params.get("ModelName"):
        # "|a|b|": the names of the models the device last reported, so one LIKE finds a whole name.
        query.where.append(R.c.data["_ModelNames"].as_string().contains(f"|{params['ModelName']}|", autoescape=True))
    found, token = ctx.backends.resources.list(ctx.account_id, ctx.region, device_records.KIND, query)
    summaries = []
    for record in found:
        data = record.data
        summary = {k: data[k] for k in (*_SUMMARY, "LatestHeartbeat", "AgentVersion") if data.get(k) is not None}
        summary["Models"] = _models(data, detail=False)
        summaries.append(summary)
    return {"DeviceSummaries": summaries, "NextToken": token}
