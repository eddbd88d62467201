"""Events in: PutEvents, SageMaker's own state changes (:func:`emit`), and TestEventPattern.

An event is written to the outbox (``events_outbox``) in the caller's transaction: for PutEvents
the request's, for a SageMaker state change the one that stored the change, so an event exists
exactly when its change does. The delivery worker (aws/events/delivery.py) matches it against
the bus's rules afterwards; nothing is lost to a restart in between.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

from ...server.errors import AWSError, validation
from ...server.operations import Context, operation
from ...store import schema
from .pattern import compile_pattern, matches
from .rules import DEFAULT_BUS, require_bus

OUTBOX = schema.events_outbox
MAX_ENTRIES_BYTES = 256 * 1024
REQUIRED_EVENT_FIELDS = ("id", "account", "source", "time", "region", "resources", "detail-type")
_WAKERS: list = []  # the delivery worker's wake(), once it runs (see delivery.py)


def iso_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_event(
    account_id: str,
    region: str,
    source: str,
    detail_type: str,
    detail: dict,
    resources: list[str] | None = None,
    at: float | None = None,
) -> dict:
    """An event as EventBridge hands it to targets, its members in AWS's order."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account_id,
        "time": iso_time(time.time() if at is None else at),
        "region": region,
        "resources": list(resources or []),
        "detail": detail,
    }


def emit(conn, event: dict, bus: str = DEFAULT_BUS) -> None:
    """Put ``event`` in the outbox of its account's ``bus``, in the transaction ``conn``."""
    conn.execute(
        OUTBOX.insert().values(
            account_id=event["account"],
            region=event["region"],
            bus=bus,
            event=json.dumps(event, separators=(",", ":")),
            created_at=time.time(),
        )
    )


def wake_delivery() -> None:
    """Ask the delivery worker to look at the outbox now (a no-op before it runs)."""
    for wake in _WAKERS:
        wake()


# -- PutEvents ---------------------------------------------------------------------------


def _entry_error(code: str, message: str) -> dict:
    return {"ErrorCode": code, "ErrorMessage": message}


def _entry_event(ctx: Context, conn, entry: dict) -> tuple[dict, str] | dict:
    """(event, bus) for one PutEvents entry, or its entry error."""
    for member in ("Source", "DetailType", "Detail"):
        if not entry.get(member):
            return _entry_error(
                "InvalidArgument", f"Parameter {member} is not valid. Reason: {member} is a required argument."
            )
    if entry["Source"].startswith("aws."):
        # Only AWS services put events from aws.* sources; a caller cannot pass for SageMaker.
        return _entry_error("NotAuthorizedForSourceException", "Not authorized for the source.")
    try:
        detail = json.loads(entry["Detail"], parse_constant=_refuse_constant)
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        return _entry_error("MalformedDetail", "Detail is malformed.")
    try:
        bus = require_bus(conn, ctx, entry.get("EventBusName"))
    except AWSError as err:
        return _entry_error(err.code, err.message)
    at = entry.get("Time")
    event = new_event(
        ctx.account_id, ctx.region, entry["Source"], entry["DetailType"], detail, entry.get("Resources"), at
    )
    return event, bus


def _refuse_constant(name: str):
    raise ValueError(name)


@operation("events", "PutEvents")
def put_events(ctx: Context, params: dict) -> dict:
    if params.get("EndpointId"):
        raise validation("EndpointId (global endpoints) is not supported by SelfMaker.")
    entries = params["Entries"]
    size = sum(len(json.dumps(e, default=str)) for e in entries)
    if size > MAX_ENTRIES_BYTES:
        raise validation(f"Total size of the entries in the request is over the limit of {MAX_ENTRIES_BYTES} bytes.")
    results, failed = [], 0
    with ctx.store.write() as conn:
        for entry in entries:
            outcome = _entry_event(ctx, conn, entry)
            if isinstance(outcome, dict):
                failed += 1
                results.append(outcome)
                continue
            event, bus = outcome
            emit(conn, event, bus)
            results.append({"EventId": event["id"]})
    wake_delivery()
    return {"FailedEntryCount": failed, "Entries": results}


# -- TestEventPattern --------------------------------------------------------------------


@operation("events", "TestEventPattern")
def test_event_pattern(ctx: Context, params: dict) -> dict:
    pattern = compile_pattern(params["EventPattern"])
    try:
        event = json.loads(params["Event"], parse_constant=_refuse_constant)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise validation("Parameter Event is not valid. Reason: Event is not a JSON object.")
    missing = [f for f in REQUIRED_EVENT_FIELDS if f not in event]
    if missing:
        raise validation(
            "Parameter Event is not valid. Reason: Provided Event must have mandatory fields: "
            f"[{', '.join(REQUIRED_EVENT_FIELDS)}]; missing: {', '.join(missing)}."
        )
    if event["account"] != ctx.account_id:
        raise validation("Parameter Event is not valid. Reason: Value of account must be the caller's account.")
    return {"Result": matches(pattern, event)}
