"""Devices as stored: one record per (fleet, device), shared by the control and data planes.

A device's record is kept after DeregisterDevices with the status DEREGISTERED, so
its agent learns it was deregistered (GetDeviceRegistration) rather than never
known; it goes with its fleet. The connected rule lives here, once.
"""

from __future__ import annotations

from sqlalchemy import select

from ...server.operations import Context
from ...store import schema
from ...store.resources import ListQuery, Record

KIND = "Device"
REGISTERED = "REGISTERED"
DEREGISTERED = "DEREGISTERED"

R = schema.resources


def key(fleet: str, device: str) -> str:
    """The stored name: device names are unique within their fleet."""
    return f"{fleet}/{device}"


def arn(ctx: Context, fleet: str, device: str) -> str:
    return ctx.arn("sagemaker", f"device-fleet/{fleet.lower()}/device/{device.lower()}")


def get(ctx: Context, fleet: str, device: str, conn=None, lock: bool = False) -> Record | None:
    return ctx.backends.resources.get(ctx.account_id, ctx.region, KIND, name=key(fleet, device), conn=conn, lock=lock)


def registered(ctx: Context, fleet: str) -> list[Record]:
    """Every device registered in ``fleet``, oldest first."""
    found: list[Record] = []
    query = ListQuery(parent=fleet, status=REGISTERED, descending=False, max_results=500)
    while True:
        page, token = ctx.backends.resources.list(ctx.account_id, ctx.region, KIND, query)
        found += page
        if not token:
            return found
        query.next_token = token


def connected(data: dict, at: float, ttl: int) -> bool:
    """A device is connected while its last heartbeat is at most the CacheTTL old (docs/edge.md)."""
    beat = data.get("LatestHeartbeat")
    return beat is not None and at - beat <= ttl


def forget_fleet(ctx: Context, fleet: str, conn) -> None:
    """Delete the (deregistered) device records of a fleet being deleted, tags and all."""
    mine = (R.c.account_id == ctx.account_id, R.c.region == ctx.region, R.c.kind == KIND, R.c.parent == fleet)
    for (device_arn,) in conn.execute(select(R.c.arn).where(*mine)).all():
        ctx.backends.resources.delete(device_arn, conn=conn)
