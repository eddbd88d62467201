"""Feature Store: the control plane and the runtime's online semantics, through boto3."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import pytest

from support.featurestore import create_group, ensure_bucket, error_of, overwrite_stored_payload, record, wait_status
from support.waiting import wait_for

FEATURES = {"id": "String", "et": "Fractional", "n": "Integral", "score": "Fractional", "label": "String"}


@pytest.fixture
def rt(client):
    return client("sagemaker-featurestore-runtime")


@pytest.fixture
def bucket(client):
    return ensure_bucket(client("s3"))


@pytest.fixture
def group(sm, unique):
    """An online-only group with FEATURES."""
    name = unique("fg")
    assert create_group(sm, name, FEATURES)["FeatureGroupStatus"] == "Created"
    return name


def get(rt, group, rid, **kw):
    return rt.get_record(FeatureGroupName=group, RecordIdentifierValueAsString=rid, **kw).get("Record")


# -- control plane -------------------------------------------------------------------


def test_create_describe_list_delete(sm, unique, bucket):
    name = unique("fg-life")
    sm.create_feature_group(
        FeatureGroupName=name,
        RecordIdentifierFeatureName="id",
        EventTimeFeatureName="et",
        FeatureDefinitions=[
            {"FeatureName": "id", "FeatureType": "String"},
            {"FeatureName": "et", "FeatureType": "String"},
        ],
        OnlineStoreConfig={"EnableOnlineStore": True, "TtlDuration": {"Unit": "Hours", "Value": 2}},
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": f"s3://{bucket}/offline/"}},
        RoleArn="arn:aws:iam::123456789012:role/R",
        Description="life cycle",
        Tags=[{"Key": "t", "Value": "v"}],
    )
    first = sm.describe_feature_group(FeatureGroupName=name)
    assert first["FeatureGroupStatus"] in ("Creating", "Created")
    d = wait_status(sm, name)
    assert d["FeatureGroupStatus"] == "Created"
    epoch = int(d["CreationTime"].timestamp())
    offline = d["OfflineStoreConfig"]
    assert offline["S3StorageConfig"]["ResolvedOutputS3Uri"] == (
        f"s3://{bucket}/offline/123456789012/sagemaker/us-east-1/offline-store/{name}-{epoch}/data"
    )
    assert offline["DataCatalogConfig"] == {
        "TableName": f"{name}_{epoch}",
        "Catalog": "AwsDataCatalog",
        "Database": "sagemaker_featurestore",
    }
    assert offline["TableFormat"] == "Glue" and offline["DisableGlueTableCreation"] is False
    assert d["OfflineStoreStatus"] == {"Status": "Active"}
    assert d["OnlineStoreConfig"] == {
        "EnableOnlineStore": True,
        "StorageType": "Standard",
        "TtlDuration": {"Unit": "Hours", "Value": 2},
    }
    assert d["ThroughputConfig"] == {"ThroughputMode": "OnDemand"}
    assert d["Description"] == "life cycle"
    # by ARN too
    assert sm.describe_feature_group(FeatureGroupName=d["FeatureGroupArn"])["FeatureGroupName"] == name

    assert error_of(
        sm.create_feature_group,
        FeatureGroupName=name,
        RecordIdentifierFeatureName="id",
        EventTimeFeatureName="et",
        FeatureDefinitions=[
            {"FeatureName": "id", "FeatureType": "String"},
            {"FeatureName": "et", "FeatureType": "String"},
        ],
        OnlineStoreConfig={"EnableOnlineStore": True},
    ) == ("ResourceInUse", 400)

    sm.delete_feature_group(FeatureGroupName=name)

    def deleted() -> bool:
        try:
            assert sm.describe_feature_group(FeatureGroupName=name)["FeatureGroupStatus"] == "Deleting"
        except sm.exceptions.ResourceNotFound:
            return True
        return False

    wait_for(deleted, timeout=10, interval=0.05, what=f"feature group {name} to be deleted")
    assert error_of(sm.describe_feature_group, FeatureGroupName=name) == ("ResourceNotFound", 400)
    # The name is free again: a new incarnation, with none of the old records.
    create_group(sm, name, {"id": "String", "et": "String"})


def test_list_feature_groups_filters_and_sorts(sm, unique, bucket):
    prefix = unique("fglist")
    create_group(sm, f"{prefix}-b", FEATURES)
    create_group(sm, f"{prefix}-a", FEATURES, offline=f"s3://{bucket}/x")
    create_group(sm, f"{prefix}-c", FEATURES, offline="s3://no-such-bucket-for-fs/x")  # CreateFailed

    def names(**kw):
        return [
            s["FeatureGroupName"] for s in sm.list_feature_groups(NameContains=prefix, **kw)["FeatureGroupSummaries"]
        ]

    assert names(SortBy="Name", SortOrder="Ascending") == [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    assert names(SortBy="CreationTime", SortOrder="Descending") == [f"{prefix}-c", f"{prefix}-a", f"{prefix}-b"]
    assert names(FeatureGroupStatusEquals="CreateFailed") == [f"{prefix}-c"]
    assert sorted(names(OfflineStoreStatusEquals="Active")) == [f"{prefix}-a", f"{prefix}-c"]
    assert len(names(SortBy="FeatureGroupStatus")) == 3
    page = sm.list_feature_groups(NameContains=prefix, MaxResults=2, SortBy="Name", SortOrder="Ascending")
    rest = sm.list_feature_groups(
        NameContains=prefix, MaxResults=2, SortBy="Name", SortOrder="Ascending", NextToken=page["NextToken"]
    )
    assert [s["FeatureGroupName"] for s in page["FeatureGroupSummaries"] + rest["FeatureGroupSummaries"]] == [
        f"{prefix}-a",
        f"{prefix}-b",
        f"{prefix}-c",
    ]
    failed = sm.describe_feature_group(FeatureGroupName=f"{prefix}-c")
    assert "no-such-bucket-for-fs" in failed["FailureReason"]


@pytest.mark.parametrize(
    "definitions,record_id,event_time,extra",
    [
        ([("id", "String"), ("write_time", "String"), ("et", "String")], "id", "et", {}),  # reserved name
        ([("id", "String"), ("et", "String")], "missing", "et", {}),  # undefined record identifier
        ([("id", "String"), ("et", "Integral")], "id", "et", {}),  # event time must be String or Fractional
        ([("id", "String"), ("ID", "String"), ("et", "String")], "id", "et", {}),  # duplicate (case-insensitive)
        ([("id", "String"), ("et", "String"), ("v", "String", "List")], "id", "et", {}),  # collections need InMemory
        (
            [("id", "String"), ("et", "Fractional")],
            "id",
            "et",
            {"OfflineStoreConfig": {"S3StorageConfig": {"S3Uri": "s3://b/p"}, "TableFormat": "Iceberg"}},
        ),
    ],
)
def test_create_feature_group_rejects_bad_definitions(sm, unique, definitions, record_id, event_time, extra):
    defs = []
    for d in definitions:
        item = {"FeatureName": d[0], "FeatureType": d[1]}
        if len(d) > 2:
            item["CollectionType"] = d[2]
        defs.append(item)
    name = unique("fgbad")
    assert error_of(
        sm.create_feature_group,
        FeatureGroupName=name,
        RecordIdentifierFeatureName=record_id,
        EventTimeFeatureName=event_time,
        FeatureDefinitions=defs,
        **({"OnlineStoreConfig": {"EnableOnlineStore": True}} | extra),
    ) == ("ValidationException", 400)
    assert error_of(sm.describe_feature_group, FeatureGroupName=name)[0] == "ResourceNotFound"


def test_update_feature_group_and_feature_metadata(sm, rt, group):
    sm.update_feature_group(
        FeatureGroupName=group,
        FeatureAdditions=[{"FeatureName": "extra", "FeatureType": "String"}],
        OnlineStoreConfig={"TtlDuration": {"Unit": "Days", "Value": 1}},
    )
    d = sm.describe_feature_group(FeatureGroupName=group)
    assert d["FeatureDefinitions"][-1] == {"FeatureName": "extra", "FeatureType": "String"}
    assert d["OnlineStoreConfig"]["TtlDuration"] == {"Unit": "Days", "Value": 1}
    assert d["LastUpdateStatus"] == {"Status": "Successful"}
    event_time = int(time.time())
    rt.put_record(FeatureGroupName=group, Record=record(id="u", et=event_time, extra="new"))  # new feature writable
    out = rt.get_record(FeatureGroupName=group, RecordIdentifierValueAsString="u", ExpirationTimeResponse="Enabled")
    assert out["ExpiresAt"] == time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(event_time + 86400))
    assert error_of(
        sm.update_feature_group,
        FeatureGroupName=group,
        FeatureAdditions=[{"FeatureName": "n", "FeatureType": "String"}],
    ) == ("ValidationException", 400)

    sm.update_feature_metadata(
        FeatureGroupName=group,
        FeatureName="score",
        Description="how good",
        ParameterAdditions=[{"Key": "unit", "Value": "pct"}, {"Key": "owner", "Value": "me"}],
    )
    sm.update_feature_metadata(FeatureGroupName=group, FeatureName="score", ParameterRemovals=["owner"])
    meta = sm.describe_feature_metadata(FeatureGroupName=group, FeatureName="score")
    assert (meta["FeatureType"], meta["Description"], meta["Parameters"]) == (
        "Fractional",
        "how good",
        [{"Key": "unit", "Value": "pct"}],
    )
    assert error_of(sm.describe_feature_metadata, FeatureGroupName=group, FeatureName="nope")[0] == "ResourceNotFound"


# -- runtime: reads and writes ---------------------------------------------------------


def test_put_get_and_batch_get_return_exactly_what_was_written(rt, group, sm, unique):
    written = record(id="r1", et="1700000000.125", n="-42", score="0.1", label='héllo, "world"')
    rt.put_record(FeatureGroupName=group, Record=written)
    assert get(rt, group, "r1") == written
    assert get(rt, group, "r1", FeatureNames=["score", "label"]) == [written[3], written[4]]
    out = rt.get_record(FeatureGroupName=group, RecordIdentifierValueAsString="nobody")
    assert "Record" not in out and out["ResponseMetadata"]["HTTPStatusCode"] == 200

    other = unique("fg2")
    create_group(sm, other, {"key": "Integral", "time": "String", "v": "String"}, record_id="key", event_time="time")
    rt.put_record(FeatureGroupName=other, Record=record(key=7, time="2024-01-02T03:04:05Z", v="x"))
    batch = rt.batch_get_record(
        Identifiers=[
            {"FeatureGroupName": group, "RecordIdentifiersValueAsString": ["r1", "nobody"]},
            {"FeatureGroupName": other, "RecordIdentifiersValueAsString": ["7"], "FeatureNames": ["v"]},
            {"FeatureGroupName": "no-such-group", "RecordIdentifiersValueAsString": ["x"]},
        ]
    )
    assert batch["Records"] == [
        {"FeatureGroupName": group, "RecordIdentifierValueAsString": "r1", "Record": written},
        {
            "FeatureGroupName": other,
            "RecordIdentifierValueAsString": "7",
            "Record": [{"FeatureName": "v", "ValueAsString": "x"}],
        },
    ]
    assert [(e["FeatureGroupName"], e["ErrorCode"]) for e in batch["Errors"]] == [("no-such-group", "ResourceNotFound")]
    assert batch["UnprocessedIdentifiers"] == []
    too_many = [{"FeatureGroupName": group, "RecordIdentifiersValueAsString": [str(i) for i in range(60)]}] * 2
    assert error_of(rt.batch_get_record, Identifiers=too_many) == ("ValidationError", 400)


def test_reads_send_only_modeled_members_of_a_stored_record(rt, group):
    """A raw client may add members a FeatureValue does not have: they are not stored, so never read back
    (records are sent as stored, not walked value by value through the output model)."""
    written = record(id="r9", et="1700000000.5", n="3", score="0.5", label="x")

    def add_unknown_member(request, **_):
        body = json.loads(request.body)
        body["Record"][2]["Smuggled"] = "yes"
        request.data = json.dumps(body).encode()

    rt.meta.events.register("before-sign.sagemaker-featurestore-runtime.PutRecord", add_unknown_member)
    try:
        rt.put_record(FeatureGroupName=group, Record=written)
    finally:
        rt.meta.events.unregister("before-sign.sagemaker-featurestore-runtime.PutRecord", add_unknown_member)
    raw = rt.batch_get_record(Identifiers=[{"FeatureGroupName": group, "RecordIdentifiersValueAsString": ["r9"]}])
    assert raw["Records"][0]["Record"] == written
    assert get(rt, group, "r9") == written


@contextmanager
def raw_responses(rt):
    """The runtime's response bodies as sent, decoded before botocore's parser drops what a shape lacks."""
    bodies: list = []

    def keep(response_dict, **_):
        bodies.append(json.loads(response_dict["body"]))

    rt.meta.events.register("before-parse.sagemaker-featurestore-runtime", keep)
    try:
        yield bodies
    finally:
        rt.meta.events.unregister("before-parse.sagemaker-featurestore-runtime", keep)


def test_stored_bytes_are_sent_as_they_are_only_in_wire_form(rt, group, server):
    """Reads splice a stored record's bytes into the response only when they are exactly a Record's wire
    form; other stored bytes (an older server's record with an unknown member, a value that is no string)
    are decoded and written through the output model, so every response holds only modeled members."""
    now = time.time()
    written = record(id="w", et=f"{now:.3f}", n="7", score="0.25", label='é "quoted" \\ \ud800')
    legacy = [{**f, "Smuggled": "yes"} if f["FeatureName"] == "n" else f for f in written]
    untyped = [{**f, "ValueAsString": 7} if f["FeatureName"] == "n" else f for f in written]

    def with_id(features, rid):
        return [{**f, "ValueAsString": rid} if f["FeatureName"] == "id" else f for f in features]

    expected = {rid: with_id(written, rid) for rid in ("w1", "w2", "w3")}
    for features in expected.values():
        rt.put_record(FeatureGroupName=group, Record=features, TtlDuration={"Unit": "Hours", "Value": 1})
    overwrite_stored_payload(server, group, "w2", json.dumps(with_id(legacy, "w2")).encode())
    overwrite_stored_payload(server, group, "w3", json.dumps(with_id(untyped, "w3")).encode())

    with raw_responses(rt) as bodies:
        for rid in expected:
            get(rt, group, rid)
            get(rt, group, rid, FeatureNames=["n", "label"])
        rt.batch_get_record(
            Identifiers=[
                {"FeatureGroupName": group, "RecordIdentifiersValueAsString": ["w1", "w2", "w3"]},
                {"FeatureGroupName": group, "RecordIdentifiersValueAsString": ["w3"], "FeatureNames": ["n"]},
                # A lone surrogate echoed in Errors: the response is written by json, not orjson, around the records.
                {"FeatureGroupName": "no-such-group", "RecordIdentifiersValueAsString": ["x\udc00"]},
            ],
            ExpirationTimeResponse="Enabled",
        )
    *gets, batch = bodies
    assert gets == [
        body
        for rid in expected
        for body in ({"Record": expected[rid]}, {"Record": [expected[rid][2], expected[rid][4]]})
    ]
    assert [(r["RecordIdentifierValueAsString"], r["Record"]) for r in batch["Records"]] == [
        *expected.items(),
        ("w3", [expected["w3"][2]]),
    ]
    assert all(
        r["ExpiresAt"].endswith("Z")
        and r.keys() == {"FeatureGroupName", "RecordIdentifierValueAsString", "Record", "ExpiresAt"}
        for r in batch["Records"]
    )
    assert [e["RecordIdentifierValueAsString"] for e in batch["Errors"]] == ["x\udc00"]


def test_unknown_group_is_resource_not_found(rt):
    for call, kw in [
        (rt.get_record, {"RecordIdentifierValueAsString": "a"}),
        (rt.put_record, {"Record": record(id="a", et=1)}),
        (rt.delete_record, {"RecordIdentifierValueAsString": "a", "EventTime": "1"}),
    ]:
        assert error_of(call, FeatureGroupName="no-such-group", **kw) == ("ResourceNotFound", 404)


@pytest.mark.parametrize(
    "bad",
    [
        record(id="a", et=1, nope="x"),  # undefined feature
        record(id="a", et=1, n="1.5"),  # Integral
        record(id="a", et=1, n="9223372036854775808"),  # Integral beyond 64 bits
        record(id="a", et=1, score="abc"),  # Fractional
        record(id="a", et=1, score="nan"),
        record(et=1, n=1),  # no record identifier
        record(id="", et=1),  # empty record identifier
        record(id="a", n=1),  # no event time
        record(id="a", et="2024-01-01T00:00:00Z"),  # a Fractional event time given as a string date
        record(id="a", et=1, label=["x"]),  # a list for a scalar feature
        record(id="a", et=1, n=1) + record(n=2),  # a feature twice
    ],
)
def test_records_are_checked_against_the_definitions(rt, group, bad):
    assert error_of(rt.put_record, FeatureGroupName=group, Record=bad) == ("ValidationError", 400)
    assert get(rt, group, "a") is None


@pytest.mark.parametrize(
    "event_time,ok",
    [
        ("2024-02-29T23:59:59Z", True),
        ("2024-02-29T23:59:59.123Z", True),
        ("2023-02-29T00:00:00Z", False),
        ("2024-01-01 00:00:00Z", False),
        ("2024-01-01T00:00:00", False),
        ("2024-01-01T00:00:00.12Z", False),
        ("2024-01-01T00:00:00+01:00", False),
        ("1700000000", False),
    ],
)
def test_string_event_time_formats(sm, rt, unique, event_time, ok):
    name = unique("fgiso")
    create_group(sm, name, {"id": "String", "et": "String"})
    call = rt.put_record if ok else (lambda **kw: error_of(rt.put_record, **kw))
    result = call(FeatureGroupName=name, Record=record(id="a", et=event_time))
    if not ok:
        assert result == ("ValidationError", 400)
    assert (get(rt, name, "a") is not None) == ok


def test_collection_types(sm, rt, unique):
    name = unique("fgcoll")
    create_group(
        sm,
        name,
        {
            "id": "String",
            "et": "Fractional",
            "tags": ("String", "List"),
            "ids": ("Integral", "Set"),
            "emb": ("Fractional", "Vector", 3),
        },
        online={"StorageType": "InMemory"},
    )
    good = record(id="a", et=1, tags=["x", "x", "y"], ids=[1, 2], emb=[0.1, 0.2, 0.3])
    rt.put_record(FeatureGroupName=name, Record=good)
    assert get(rt, name, "a") == good
    for bad in (
        record(id="b", et=1, ids=[1, 1]),
        record(id="b", et=1, emb=[0.1, 0.2]),
        record(id="b", et=1, emb=["x", "1", "2"]),
        record(id="b", et=1, tags="x"),
    ):
        assert error_of(rt.put_record, FeatureGroupName=name, Record=bad) == ("ValidationError", 400)


def test_event_time_rule(rt, group):
    rt.put_record(FeatureGroupName=group, Record=record(id="e", et=200, n=1))
    rt.put_record(FeatureGroupName=group, Record=record(id="e", et=100, n=2))  # older: offline only
    assert get(rt, group, "e") == record(id="e", et=200, n=1)
    rt.put_record(FeatureGroupName=group, Record=record(id="e", et=200, n=3))  # equal: the later write wins
    assert get(rt, group, "e") == record(id="e", et=200, n=3)
    rt.put_record(FeatureGroupName=group, Record=record(id="e", et=300.5, n=4))  # newer
    assert get(rt, group, "e") == record(id="e", et=300.5, n=4)


def test_ttl_expiry(sm, rt, unique):
    name = unique("fgttl")
    create_group(
        sm,
        name,
        {"id": "String", "et": "Fractional", "v": "String"},
        online={"TtlDuration": {"Unit": "Minutes", "Value": 5}},
    )
    now = time.time()
    rt.put_record(FeatureGroupName=name, Record=record(id="fresh", et=f"{now:.3f}", v=1))
    out = rt.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="fresh", ExpirationTimeResponse="Enabled")
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(round(now, 3) + 300))
    assert out["ExpiresAt"].startswith(expected) and out["ExpiresAt"].endswith("Z")
    assert "ExpiresAt" not in rt.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="fresh")
    # Written 10 minutes after its event: already past the group's 5-minute TTL.
    rt.put_record(FeatureGroupName=name, Record=record(id="old", et=f"{now - 600:.3f}", v=1))
    assert get(rt, name, "old") is None
    # A record-level TTL overrides the group's; an expired record no longer blocks older events.
    rt.put_record(
        FeatureGroupName=name,
        Record=record(id="short", et=f"{now - 1:.3f}", v=1),
        TtlDuration={"Unit": "Seconds", "Value": 2},
    )
    assert get(rt, name, "short") is not None
    time.sleep(1.2)
    assert get(rt, name, "short") is None
    batch = rt.batch_get_record(Identifiers=[{"FeatureGroupName": name, "RecordIdentifiersValueAsString": ["short"]}])
    assert batch["Records"] == []
    rt.put_record(
        FeatureGroupName=name,
        Record=record(id="short", et=f"{now - 2:.3f}", v=2),
        TtlDuration={"Unit": "Hours", "Value": 1},
    )
    assert get(rt, name, "short") == record(id="short", et=f"{now - 2:.3f}", v=2)


def test_soft_and_hard_deletes_online(rt, group):
    rt.put_record(FeatureGroupName=group, Record=record(id="d", et=100, n=1))
    rt.delete_record(FeatureGroupName=group, RecordIdentifierValueAsString="d", EventTime="150")
    assert get(rt, group, "d") is None
    rt.put_record(FeatureGroupName=group, Record=record(id="d", et=120, n=2))  # older than the delete
    assert get(rt, group, "d") is None
    rt.put_record(FeatureGroupName=group, Record=record(id="d", et=160, n=3))  # newer: visible again
    assert get(rt, group, "d") == record(id="d", et=160, n=3)
    # A soft delete that is not later than the record leaves it.
    rt.delete_record(FeatureGroupName=group, RecordIdentifierValueAsString="d", EventTime="160")
    assert get(rt, group, "d") == record(id="d", et=160, n=3)
    # A hard delete that is not later is refused.
    assert error_of(
        rt.delete_record,
        FeatureGroupName=group,
        RecordIdentifierValueAsString="d",
        EventTime="100",
        DeletionMode="HardDelete",
    ) == ("ValidationError", 400)
    assert get(rt, group, "d") is not None
    rt.delete_record(
        FeatureGroupName=group, RecordIdentifierValueAsString="d", EventTime="170", DeletionMode="HardDelete"
    )
    assert get(rt, group, "d") is None
    rt.put_record(FeatureGroupName=group, Record=record(id="d", et=1, n=4))  # hard-deleted: nothing to be newer than
    assert get(rt, group, "d") == record(id="d", et=1, n=4)
    assert error_of(
        rt.delete_record, FeatureGroupName=group, RecordIdentifierValueAsString="d", EventTime="not-a-time"
    ) == ("ValidationError", 400)


def test_list_records_and_batch_write(rt, group):
    result = rt.batch_write_record(
        Entries=[{"FeatureGroupName": group, "Record": record(id=f"r{i}", et=10, n=i)} for i in range(5)]
        + [{"FeatureGroupName": group, "Record": record(id="bad", et=10, n="x")}]
    )
    assert [e["Entry"]["Record"][0]["ValueAsString"] for e in result["Errors"]] == ["bad"]
    assert result["Errors"][0]["ErrorCode"] == "ValidationError"
    rt.delete_record(FeatureGroupName=group, RecordIdentifierValueAsString="r2", EventTime="11")
    page = rt.list_records(FeatureGroupName=group, MaxResults=2)
    assert page["RecordIdentifiers"] == ["r0", "r1"]
    rest = rt.list_records(FeatureGroupName=group, MaxResults=10, NextToken=page["NextToken"])
    assert rest["RecordIdentifiers"] == ["r3", "r4"] and "NextToken" not in rest
    every = rt.list_records(FeatureGroupName=group, IncludeSoftDeletedRecords=True)["RecordIdentifiers"]
    assert every == ["r0", "r1", "r2", "r3", "r4"]


def test_target_stores_must_exist(rt, group):
    assert error_of(
        rt.put_record, FeatureGroupName=group, Record=record(id="t", et=1), TargetStores=["OfflineStore"]
    ) == ("ValidationError", 400)
    rt.put_record(FeatureGroupName=group, Record=record(id="t", et=1), TargetStores=["OnlineStore"])
    assert get(rt, group, "t") is not None


def test_integral_record_identifiers_are_canonical(sm, rt, unique):
    name = unique("fgint")
    create_group(sm, name, {"id": "Integral", "et": "Fractional"})
    rt.put_record(FeatureGroupName=name, Record=record(id="007", et=1))
    assert get(rt, name, "7") == record(id="007", et=1)
    assert error_of(rt.get_record, FeatureGroupName=name, RecordIdentifierValueAsString="x") == ("ValidationError", 400)
