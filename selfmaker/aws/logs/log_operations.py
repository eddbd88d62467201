"""The CloudWatch Logs operations the SageMaker SDKs call (JSON 1.1, ``Logs_20140328.*``).

Log groups, streams, PutLogEvents, and the three readers the SDK tails jobs and
endpoints with: DescribeLogStreams, GetLogEvents (forward/backward tokens) and
FilterLogEvents. Every pagination token is HMAC-signed by the server, bound to
the list it pages, and refused with InvalidParameterException if altered.
"""

from __future__ import annotations

import re

from sqlalchemy import and_, func, or_, select

from ...server.errors import AWSError, already_exists
from ...server.operations import Context, operation
from ...store import tag_store
from . import filter_pattern
from .log_store import (
    E,
    G,
    S,
    bytewise,
    create_group,
    create_stream,
    delete_group_contents,
    delete_stream_events,
    find_group,
    find_stream,
    group_arn,
    group_not_found,
    has_prefix,
    insert_events,
    invalid_parameter,
    now_ms,
    stream_arn,
    stream_not_found,
)

DESCRIBE_LIMIT = 50
EVENTS_LIMIT = 10_000
RESPONSE_BYTES = 1_048_576  # GetLogEvents / FilterLogEvents return at most 1 MB of events
BATCH_BYTES = 1_048_576  # PutLogEvents: sum of (UTF-8 message + 26 bytes) per batch
EVENT_OVERHEAD = 26
BATCH_SPAN_MS = 24 * 3600 * 1000
TOO_NEW_MS = 2 * 3600 * 1000
TOO_OLD_MS = 14 * 24 * 3600 * 1000
FILTER_SCAN_ROWS = 50_000  # FilterLogEvents examines this many events per call, then hands back a token
_SCAN_BATCH = 2_000

_GROUP_ARN = re.compile(r"arn:aws[a-z-]*:logs:(?P<region>[^:]*):(?P<account>\d{12}):log-group:(?P<name>[^:]+)(?::\*)?")


# -- tokens -------------------------------------------------------------------------


def _issue(ctx: Context, scope, **position) -> str:
    return ctx.backends.resources.page_token(scope, **position)


def _redeem(ctx: Context, token: str, scope) -> dict:
    """The position in a token we issued for exactly this list (``scope``), or InvalidParameterException."""
    return ctx.backends.resources.read_page_token(
        token, scope, invalid_parameter("The specified nextToken is invalid.")
    )


# -- resolving names ----------------------------------------------------------------


def _group_name(ctx: Context, params: dict) -> str:
    """logGroupName, or logGroupIdentifier (a name or ARN): exactly one of them."""
    name, identifier = params.get("logGroupName"), params.get("logGroupIdentifier")
    if name and identifier:
        raise invalid_parameter("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    if identifier and identifier.startswith("arn:"):
        arn = _GROUP_ARN.fullmatch(identifier)
        if arn is None:
            raise invalid_parameter(f"Invalid log group ARN: {identifier}")
        if (arn["account"], arn["region"]) != (ctx.account_id, ctx.region):
            raise group_not_found()  # groups of other accounts and regions are not visible here
        return arn["name"]
    if not (name or identifier):
        raise invalid_parameter("Either logGroupName or logGroupIdentifier must be specified.")
    return name or identifier


def _require_group(ctx: Context, conn, name: str):
    group = find_group(conn, ctx.account_id, ctx.region, name)
    if group is None:
        raise group_not_found()
    return group


def _require_stream(conn, group_id: int, name: str):
    stream = find_stream(conn, group_id, name)
    if stream is None:
        raise stream_not_found()
    return stream


# -- groups and streams -------------------------------------------------------------


@operation("logs", "CreateLogGroup")
def create_log_group(ctx: Context, params: dict) -> None:
    if params.get("kmsKeyId"):
        raise invalid_parameter("SelfMaker does not encrypt log groups with KMS keys: omit kmsKeyId.")
    if params.get("deletionProtectionEnabled"):
        raise invalid_parameter(
            "SelfMaker does not support deletion protection for log groups: omit deletionProtectionEnabled."
        )
    name = params["logGroupName"]
    with ctx.store.write() as conn:
        if not create_group(conn, ctx.account_id, ctx.region, name, params.get("logGroupClass", "STANDARD")):
            raise already_exists("ResourceAlreadyExistsException", "The specified log group already exists")
        if params.get("tags"):
            tag_store.add(
                conn,
                group_arn(ctx.account_id, ctx.region, name),
                [{"Key": k, "Value": v} for k, v in params["tags"].items()],
            )


@operation("logs", "DeleteLogGroup")
def delete_log_group(ctx: Context, params: dict) -> None:
    name = params["logGroupName"]
    with ctx.store.write() as conn:
        delete_group_contents(conn, _require_group(ctx, conn, name).id)
        tag_store.forget(conn, group_arn(ctx.account_id, ctx.region, name))


@operation("logs", "CreateLogStream")
def create_log_stream(ctx: Context, params: dict) -> None:
    with ctx.store.write() as conn:
        group = _require_group(ctx, conn, params["logGroupName"])
        if not create_stream(conn, group.id, params["logStreamName"]):
            raise already_exists("ResourceAlreadyExistsException", "The specified log stream already exists")


@operation("logs", "DeleteLogStream")
def delete_log_stream(ctx: Context, params: dict) -> None:
    with ctx.store.write() as conn:
        group = _require_group(ctx, conn, params["logGroupName"])
        delete_stream_events(conn, _require_stream(conn, group.id, params["logStreamName"]).id)


@operation("logs", "DescribeLogGroups")
def describe_log_groups(ctx: Context, params: dict) -> dict:
    prefix, pattern = params.get("logGroupNamePrefix"), params.get("logGroupNamePattern")
    identifiers = params.get("logGroupIdentifiers")
    if sum(x is not None for x in (prefix, pattern, identifiers)) > 1:
        raise invalid_parameter(
            "logGroupNamePrefix, logGroupNamePattern and logGroupIdentifiers are mutually exclusive parameters."
        )
    accounts = params.get("accountIdentifiers")
    limit = params.get("limit", DESCRIBE_LIMIT)
    cls = params.get("logGroupClass")
    scope = ["groups", ctx.account_id, ctx.region, prefix, pattern, identifiers, accounts, cls]
    after = _redeem(ctx, params["nextToken"], scope)["n"] if params.get("nextToken") else None

    if accounts is not None and ctx.account_id not in accounts:
        return {"logGroups": []}  # SelfMaker has no linked (cross-account observability) accounts
    stored = select(func.coalesce(func.sum(S.c.stored_bytes), 0)).where(S.c.group_id == G.c.id).scalar_subquery()
    with ctx.store.read() as conn:
        name = bytewise(G.c.name, conn)
        query = select(G, stored.label("bytes")).where(G.c.account_id == ctx.account_id, G.c.region == ctx.region)
        if prefix:
            query = query.where(has_prefix(G.c.name, prefix))
        if pattern:
            query = query.where(func.lower(G.c.name).contains(pattern.lower(), autoescape=True))
        if identifiers:
            query = query.where(G.c.name.in_([_identifier_name(ctx, i) for i in identifiers]))
        if cls:
            query = query.where(G.c.log_group_class == cls)
        if after is not None:
            query = query.where(name > after)
        rows = conn.execute(query.order_by(name).limit(limit + 1)).all()
    out = {"logGroups": [_group_out(ctx, row) for row in rows[:limit]]}
    if len(rows) > limit:
        out["nextToken"] = _issue(ctx, scope, n=rows[limit - 1].name)
    return out


def _identifier_name(ctx: Context, identifier: str) -> str | None:
    try:
        return _group_name(ctx, {"logGroupIdentifier": identifier})
    except AWSError:
        return None  # another account's ARN matches nothing here


def _group_out(ctx: Context, row) -> dict:
    arn = group_arn(ctx.account_id, ctx.region, row.name)
    return {
        "logGroupName": row.name,
        "creationTime": row.created_ms,
        "retentionInDays": row.retention_days,
        "metricFilterCount": 0,
        "arn": f"{arn}:*",
        "logGroupArn": arn,
        "storedBytes": row.bytes,
        "logGroupClass": row.log_group_class,
    }


@operation("logs", "DescribeLogStreams")
def describe_log_streams(ctx: Context, params: dict) -> dict:
    group_name = _group_name(ctx, params)
    prefix = params.get("logStreamNamePrefix")
    by_time = params.get("orderBy", "LogStreamName") == "LastEventTime"
    if by_time and prefix:
        raise invalid_parameter("Cannot order by LastEventTime with a logStreamNamePrefix.")
    descending = params.get("descending", False)
    limit = params.get("limit", DESCRIBE_LIMIT)
    with ctx.store.read() as conn:
        group = _require_group(ctx, conn, group_name)
        scope = ["streams", group.id, prefix, by_time, descending]
        cursor = _redeem(ctx, params["nextToken"], scope) if params.get("nextToken") else None
        sort = func.coalesce(S.c.last_event_ms, 0) if by_time else bytewise(S.c.name, conn)
        query = select(S).where(S.c.group_id == group.id)
        if prefix:
            query = query.where(has_prefix(S.c.name, prefix))
        if cursor is not None:
            query = query.where(_beyond((sort, S.c.id), (cursor["v"], cursor["i"]), descending))
        order = (sort.desc(), S.c.id.desc()) if descending else (sort, S.c.id)
        rows = conn.execute(query.order_by(*order).limit(limit + 1)).all()
    out = {"logStreams": [_stream_out(ctx, group_name, row) for row in rows[:limit]]}
    if len(rows) > limit:
        last = rows[limit - 1]
        value = (last.last_event_ms or 0) if by_time else last.name
        out["nextToken"] = _issue(ctx, scope, v=value, i=last.id)
    return out


def _beyond(columns, values, descending: bool):
    """Rows after (or before, descending) a (sort value, id) keyset position."""
    (sort, id_), (value, last_id) = columns, values
    if descending:
        return or_(sort < value, and_(sort == value, id_ < last_id))
    return or_(sort > value, and_(sort == value, id_ > last_id))


def _stream_out(ctx: Context, group_name: str, row) -> dict:
    return {
        "logStreamName": row.name,
        "creationTime": row.created_ms,
        "firstEventTimestamp": row.first_event_ms,
        "lastEventTimestamp": row.last_event_ms,
        "lastIngestionTime": row.last_ingested_ms,
        "arn": stream_arn(ctx.account_id, ctx.region, group_name, row.name),
        # Deprecated for streams in 2019; AWS always reports zero (the group's storedBytes is real).
        "storedBytes": 0,
    }


# -- writing events -----------------------------------------------------------------


@operation("logs", "PutLogEvents")
def put_log_events(ctx: Context, params: dict) -> dict:
    """Store a batch. Like CloudWatch Logs today, batches need not be in chronological order
    (sequence tokens are ignored), but events more than 14 days old or 2 hours in the future are
    rejected and reported in rejectedLogEventsInfo; the rest are stored."""
    events = params["logEvents"]
    size = sum(len(e["message"].encode("utf-8")) + EVENT_OVERHEAD for e in events)
    if size > BATCH_BYTES:
        raise invalid_parameter(f"Upload too large: {size} bytes exceeds limit of {BATCH_BYTES}")
    stamps = [e["timestamp"] for e in events]
    if max(stamps) - min(stamps) > BATCH_SPAN_MS:
        raise invalid_parameter(
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."
        )
    now = now_ms()
    too_old = [i for i, ts in enumerate(stamps) if ts < now - TOO_OLD_MS]
    too_new = [i for i, ts in enumerate(stamps) if ts > now + TOO_NEW_MS]
    rejected = set(too_old) | set(too_new)
    accepted = [(e["timestamp"], e["message"]) for i, e in enumerate(events) if i not in rejected]
    with ctx.store.write() as conn:
        group = _require_group(ctx, conn, params["logGroupName"])
        stream = _require_stream(conn, group.id, params["logStreamName"])
        insert_events(conn, group.id, stream.id, accepted)
    info = {}
    if too_old:
        info["tooOldLogEventEndIndex"] = max(too_old) + 1  # exclusive, as AWS reports it
    if too_new:
        info["tooNewLogEventStartIndex"] = min(too_new)
    return {"rejectedLogEventsInfo": info or None}


# -- reading events -----------------------------------------------------------------
# A GetLogEvents token is a gap between two events of a stream, written as the
# (timestamp, id) of the event just before it: forward reads what follows the
# gap, backward reads what precedes it. Reading forward at the end of a stream
# returns the very same token, which is how tailers know to wait and ask again.

_BEGINNING = (-1, 0)  # the gap before every event (timestamps are >= 0)


def _after(gap):
    t, i = gap
    return or_(E.c.timestamp > t, and_(E.c.timestamp == t, E.c.id > i))


def _up_to(gap):
    t, i = gap
    return or_(E.c.timestamp < t, and_(E.c.timestamp == t, E.c.id <= i))


def _token(ctx: Context, direction: str, stream_id: int, gap) -> str:
    return f"{direction}/" + _issue(ctx, ["events", direction, stream_id], t=gap[0], i=gap[1])


def _read_token(ctx: Context, token: str, stream_id: int) -> tuple[str, tuple[int, int]]:
    direction, _, signed = token.partition("/")
    payload = _redeem(ctx, signed, ["events", direction, stream_id])
    return direction, (payload["t"], payload["i"])


def _within_bytes(rows, budget: int = RESPONSE_BYTES) -> list:
    kept, used = [], 0
    for row in rows:
        used += len(row.message.encode("utf-8")) + EVENT_OVERHEAD
        if used > budget and kept:
            break
        kept.append(row)
    return kept


@operation("logs", "GetLogEvents")
def get_log_events(ctx: Context, params: dict) -> dict:
    group_name = _group_name(ctx, params)
    limit = params.get("limit", EVENTS_LIMIT)
    with ctx.store.read() as conn:
        group = _require_group(ctx, conn, group_name)
        stream = _require_stream(conn, group.id, params["logStreamName"])
        if params.get("nextToken"):
            direction, gap = _read_token(ctx, params["nextToken"], stream.id)
        else:
            direction, gap = ("f", _BEGINNING) if params.get("startFromHead") else ("b", None)
        query = select(E.c.id, E.c.timestamp, E.c.message, E.c.ingested_ms).where(E.c.stream_id == stream.id)
        if params.get("startTime") is not None:
            query = query.where(E.c.timestamp >= params["startTime"])
        if params.get("endTime") is not None:
            query = query.where(E.c.timestamp < params["endTime"])
        if direction == "f":
            rows = _within_bytes(
                conn.execute(query.where(_after(gap)).order_by(E.c.timestamp, E.c.id).limit(limit)).all()
            )
        else:
            if gap is not None:
                query = query.where(_up_to(gap))
            newest_first = conn.execute(query.order_by(E.c.timestamp.desc(), E.c.id.desc()).limit(limit)).all()
            rows = _within_bytes(newest_first)[::-1]
    if rows:
        first, last = rows[0], rows[-1]
        forward, backward = (last.timestamp, last.id), (first.timestamp, first.id - 1)
    else:  # nothing (more) here: hand back the same position in both directions
        forward = backward = gap if gap is not None else _BEGINNING
    return {
        "events": [{"timestamp": r.timestamp, "message": r.message, "ingestionTime": r.ingested_ms} for r in rows],
        "nextForwardToken": _token(ctx, "f", stream.id, forward),
        "nextBackwardToken": _token(ctx, "b", stream.id, backward),
    }


def _rows_after(conn, query, gap):
    """The rows of an ordered event query that follow a gap, fetched a batch at a time."""
    while True:
        rows = conn.execute(query.where(_after(gap)).limit(_SCAN_BATCH)).all()
        yield from rows
        if len(rows) < _SCAN_BATCH:
            return
        gap = (rows[-1].timestamp, rows[-1].id)


@operation("logs", "FilterLogEvents")
def filter_log_events(ctx: Context, params: dict) -> dict:
    """Events of a group (optionally some of its streams) in time order, matching a term filter pattern.

    Each call examines at most FILTER_SCAN_ROWS events; when it stops early it
    returns a nextToken even if this page is short, as CloudWatch Logs does.
    """
    group_name = _group_name(ctx, params)
    names, prefix = params.get("logStreamNames"), params.get("logStreamNamePrefix")
    if names and prefix:
        raise invalid_parameter("logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
    try:
        pattern = filter_pattern.parse(params.get("filterPattern"))
    except filter_pattern.PatternError as err:
        raise invalid_parameter(str(err)) from None
    limit = params.get("limit", EVENTS_LIMIT)
    start, end = params.get("startTime"), params.get("endTime")

    with ctx.store.read() as conn:
        group = _require_group(ctx, conn, group_name)
        scope = ["filter", group.id, names, prefix, start, end, params.get("filterPattern")]
        cursor = _BEGINNING
        if params.get("nextToken"):
            payload = _redeem(ctx, params["nextToken"], scope)
            cursor = (payload["t"], payload["i"])
        query = (
            select(E.c.id, E.c.timestamp, E.c.message, E.c.ingested_ms, S.c.name.label("stream"))
            .join(S, S.c.id == E.c.stream_id)
            .where(E.c.group_id == group.id)
        )
        if names:
            query = query.where(S.c.name.in_(names))
        if prefix:
            query = query.where(has_prefix(S.c.name, prefix))
        if start is not None:
            query = query.where(E.c.timestamp >= start)
        if end is not None:
            query = query.where(E.c.timestamp <= end)  # inclusive here, unlike GetLogEvents
        query = query.order_by(E.c.timestamp, E.c.id)

        matched, scanned, used, more = [], 0, 0, False
        for row in _rows_after(conn, query, cursor):
            if len(matched) == limit or scanned == FILTER_SCAN_ROWS:
                more = True
                break
            if pattern.matches(row.message):
                used += len(row.message.encode("utf-8")) + EVENT_OVERHEAD
                if used > RESPONSE_BYTES and matched:
                    more = True
                    break
                matched.append(row)
            cursor = (row.timestamp, row.id)
            scanned += 1

    out = {
        "events": [
            {
                "logStreamName": r.stream,
                "timestamp": r.timestamp,
                "message": r.message,
                "ingestionTime": r.ingested_ms,
                "eventId": str(r.id),
            }
            for r in matched
        ]
    }
    if more:
        out["nextToken"] = _issue(ctx, scope, t=cursor[0], i=cursor[1])
    return out
