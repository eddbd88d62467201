"""sagemaker-featurestore-runtime: PutRecord, GetRecord, BatchGetRecord, DeleteRecord, BatchWriteRecord, ListRecords.

A write is checked against the group's definitions, then handed to the
online store together with its offline journal row (see online/base.py for
the event-time rule and journal ordering). Reads serve the stored record as
it was written.
"""

from __future__ import annotations

import json
import re
import time

from ...server.errors import AWSError
from ...server.operations import Context, operation
from ...server.serialize import RawJSON, Verbatim, decode_json
from .definitions import (
    MAX_RECORD_BYTES,
    Group,
    iso_time,
    parse_event_time,
    parse_scalar,
    ttl_seconds,
    validation_error,
)
from .journal import OfflineRow
from .online import Change, Outcome
from .state import feature_store, feature_store_async

SERVICE = "sagemaker-featurestore-runtime"
BATCH_GET_MAX_RECORDS = 100
BATCH_GET_MAX_GROUPS = 10
LIST_RECORDS_DEFAULT = 100
WIRE_MEMBERS = frozenset(("FeatureName", "ValueAsString", "ValueAsStringList"))  # a FeatureValue's members

# A stored record that is already exactly a Record on the wire: a non-empty JSON list of FeatureValues,
# each {"FeatureName": string} then ValueAsString or ValueAsStringList, strings of ASCII without control
# characters (JSON's escapes allowed), no whitespace: what PutRecord stores (json.dumps of the modeled
# members, in boto3's member order). Such bytes are spliced into the response as they are; anything else
# (a record stored before PutRecord dropped unknown members, another member order) is decoded and written
# through the output model.
_STRING = rb'"(?:[^"\\\x00-\x1f\x80-\xff]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+"'
# The same strings when the record holds no backslash (so no escape): one character class to scan, not a
# group of alternatives per string. Most records have none, and this grammar checks them in about 2/3 of
# the time (BatchGetRecord checks 100 records of 50 features; the check was a third of its server CPU).
_PLAIN_STRING = rb'"[^"\\\x00-\x1f\x80-\xff]*+"'


def _wire_record_grammar(string: bytes) -> re.Pattern[bytes]:
    strings = rb"\[(?:" + string + rb"(?:," + string + rb")*+)?\]"
    feature_value = (
        rb'\{"FeatureName":' + string + rb'(?:,"ValueAsString(?:":' + string + rb'|List":' + strings + rb"))?\}"
    )
    return re.compile(rb"\[" + feature_value + rb"(?:," + feature_value + rb")*+\]")


WIRE_RECORD = _wire_record_grammar(_STRING)
_PLAIN_WIRE_RECORD = _wire_record_grammar(_PLAIN_STRING)


def is_wire_record(payload: bytes) -> bool:
    """The bytes are a Record exactly as it goes on the wire (the grammar above)."""
    grammar = WIRE_RECORD if b"\\" in payload else _PLAIN_WIRE_RECORD
    return grammar.fullmatch(payload) is not None


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- writes --------------------------------------------------------------------


def put(ctx: Context, group: Group, record: list[dict], target_stores: list[str] | None, ttl: dict | None) -> None:
    online, offline = group.target_stores(target_stores)
    parsed = group.parse_record(record)
    # Only the modeled members are kept (validation ignores unknown ones), so reads can send it verbatim.
    record = [{k: v for k, v in f.items() if k in WIRE_MEMBERS and v is not None} for f in record]
    payload = json.dumps(record, separators=(",", ":")).encode()
    if len(payload) > MAX_RECORD_BYTES:
        raise validation_error(f"The record is {len(payload)} bytes; a record is at most {MAX_RECORD_BYTES}.")
    received_ms = _now_ms()
    change = None
    if online:
        seconds = ttl_seconds(ttl) or group.ttl_seconds
        expires_at = parsed.event_time + seconds if seconds else None
        change = Change("put", parsed.record_id, parsed.event_time, payload, expires_at)
    rows = [OfflineRow(parsed.values, parsed.event_time, received_ms)] if offline else []
    fs = feature_store(ctx.backends)
    fs.online.write(group.key, change, rows, received_ms / 1000)


@operation(SERVICE, "PutRecord")
def put_record(ctx: Context, params: dict) -> dict:
    group = feature_store(ctx.backends).groups.require(ctx, params["FeatureGroupName"])
    put(ctx, group, params["Record"], params.get("TargetStores"), params.get("TtlDuration"))
    return {}


@operation(SERVICE, "BatchWriteRecord")
def batch_write_record(ctx: Context, params: dict) -> dict:
    groups = feature_store(ctx.backends).groups
    errors = []
    for entry in params["Entries"]:
        try:
            group = groups.require(ctx, entry["FeatureGroupName"])
            put(
                ctx,
                group,
                entry["Record"],
                entry.get("TargetStores"),
                entry.get("TtlDuration") or params.get("TtlDuration"),
            )
        except AWSError as err:
            errors.append({"Entry": entry, "ErrorCode": err.code, "ErrorMessage": err.message})
    return {"Errors": errors, "UnprocessedEntries": []}


@operation(SERVICE, "DeleteRecord")
def delete_record(ctx: Context, params: dict) -> dict:
    group = feature_store(ctx.backends).groups.require(ctx, params["FeatureGroupName"])
    online, offline = group.target_stores(params.get("TargetStores"))
    record_id = params["RecordIdentifierValueAsString"]
    id_value = parse_scalar(group.features[group.record_id_name], record_id)
    event_time_feature = group.features[group.event_time_name]
    event_time = parse_event_time(event_time_feature, params["EventTime"])
    mode = params.get("DeletionMode") or "SoftDelete"
    received_ms = _now_ms()
    change = (
        Change("soft_delete" if mode == "SoftDelete" else "hard_delete", str(id_value), event_time) if online else None
    )
    # The delete marker: the record's id and the delete's event time, every other feature null.
    marker = OfflineRow(
        {group.record_id_name: id_value, group.event_time_name: parse_scalar(event_time_feature, params["EventTime"])},
        event_time,
        received_ms,
        is_deleted=True,
    )
    outcome = feature_store(ctx.backends).online.write(
        group.key, change, [marker] if offline else [], received_ms / 1000
    )
    if outcome is Outcome.STALE:
        raise validation_error(
            f"HardDelete of record {record_id} refused: its EventTime {params['EventTime']} is "
            "not later than the stored record's. Nothing was deleted."
        )
    return {}


# -- reads ---------------------------------------------------------------------


def _render(stored, feature_names: list[str] | None, expiration: str | None) -> dict:
    payload = stored.payload
    if not feature_names and type(payload) is bytes and is_wire_record(payload):
        out: dict = {"Record": RawJSON(payload)}  # sent as stored: not decoded, not encoded again
    else:
        out = {"Record": _decoded(payload, feature_names)}
    if expiration == "Enabled" and stored.expires_at is not None:
        out["ExpiresAt"] = iso_time(stored.expires_at)
    return out


def _decoded(payload: bytes, feature_names: list[str] | None) -> list[dict] | None:
    """The stored record's wanted features, to be written through the output model (or as they are, once
    checked to hold only modeled members)."""
    record = decode_json(payload)
    if feature_names:
        wanted = set(feature_names)
        record = [f for f in record if f["FeatureName"] in wanted]
    if all(_wire_clean(f) for f in record):  # no need to walk each value through the output model
        record = Verbatim(record)
    return record or None


def _wire_clean(feature) -> bool:
    """A decoded FeatureValue with only its modeled members, each of its type."""
    if type(feature) is not dict or type(feature.get("FeatureName")) is not str:
        return False
    for name, value in feature.items():
        if name == "ValueAsStringList":
            if type(value) is not list or any(type(item) is not str for item in value):
                return False
        elif name not in WIRE_MEMBERS or type(value) is not str:
            return False
    return True


def _online(group: Group) -> Group:
    if not group.online:
        raise validation_error(f"The online store is not enabled for feature group {group.name}.")
    return group


def _online_group(ctx: Context, name: str) -> Group:
    return _online(feature_store(ctx.backends).groups.require(ctx, name))


# GetRecord and BatchGetRecord are coroutines, so they run on the event loop: handing each one to a worker
# thread (and waking it) was a fifth of a GetRecord's server time on Redis (docs/benchmarks.md). They check
# what the other operations check (the group by the caller's account, from the cache or read on a worker
# thread; FeatureNames; the record identifier) and await the online store's read (Redis: an asyncio read
# with a timeout; the embedded file: read in place, its reads never wait).


@operation(SERVICE, "GetRecord")
async def get_record(ctx: Context, params: dict) -> dict:
    fs = await feature_store_async(ctx.backends)
    group = _online(await fs.groups.require_async(ctx, params["FeatureGroupName"]))
    names = params.get("FeatureNames")
    group.check_feature_names(names)
    record_id = group.record_key(params["RecordIdentifierValueAsString"])
    found = await fs.online.get_many_async(group.key, [record_id], time.time())
    if record_id not in found:
        return {}  # no record is not an error: an empty 200
    return _render(found[record_id], names, params.get("ExpirationTimeResponse"))


@operation(SERVICE, "BatchGetRecord")
async def batch_get_record(ctx: Context, params: dict) -> dict:
    identifiers = params["Identifiers"]
    if sum(len(i["RecordIdentifiersValueAsString"]) for i in identifiers) > BATCH_GET_MAX_RECORDS:
        raise validation_error(f"BatchGetRecord reads at most {BATCH_GET_MAX_RECORDS} records per request.")
    if len({i["FeatureGroupName"] for i in identifiers}) > BATCH_GET_MAX_GROUPS:
        raise validation_error(f"BatchGetRecord reads from at most {BATCH_GET_MAX_GROUPS} feature groups.")
    fs = await feature_store_async(ctx.backends)
    now = time.time()
    records, errors = [], []
    for ident in identifiers:
        ids = ident["RecordIdentifiersValueAsString"]
        try:
            group = _online(await fs.groups.require_async(ctx, ident["FeatureGroupName"]))
            group.check_feature_names(ident.get("FeatureNames"))
            keys = {rid: group.record_key(rid) for rid in ids}
        except AWSError as err:  # reported per record, as AWS does; the other identifiers are still read
            errors += [
                {
                    "FeatureGroupName": ident["FeatureGroupName"],
                    "RecordIdentifierValueAsString": rid,
                    "ErrorCode": err.code,
                    "ErrorMessage": err.message,
                }
                for rid in ids
            ]
            continue
        found = await fs.online.get_many_async(group.key, list(set(keys.values())), now)
        for rid in ids:
            if keys[rid] in found:
                rendered = _render(found[keys[rid]], ident.get("FeatureNames"), params.get("ExpirationTimeResponse"))
                if rendered["Record"]:
                    records.append(
                        {
                            "FeatureGroupName": ident["FeatureGroupName"],
                            "RecordIdentifierValueAsString": rid,
                            **rendered,
                        }
                    )
    return {"Records": records, "Errors": errors, "UnprocessedIdentifiers": []}


@operation(SERVICE, "ListRecords")
def list_records(ctx: Context, params: dict) -> dict:
    group = _online_group(ctx, params["FeatureGroupName"])
    limit = params.get("MaxResults") or LIST_RECORDS_DEFAULT
    after = None
    signer, scope = ctx.backends.resources, ["ListRecords", group.key]
    if params.get("NextToken"):
        after = signer.read_page_token(
            params["NextToken"],
            scope,
            validation_error(
                "Invalid pagination token: this NextToken was not issued by this server for this feature group."
            ),
        )["after"]
    ids = feature_store(ctx.backends).online.list_ids(
        group.key, after, limit + 1, bool(params.get("IncludeSoftDeletedRecords")), time.time()
    )
    out: dict = {"RecordIdentifiers": ids[:limit]}
    if len(ids) > limit:
        out["NextToken"] = signer.page_token(scope, after=ids[limit - 1])
    return out
