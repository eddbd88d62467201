"""Helpers shared by the feature store tests: groups that are ready to use, records as the runtime spells them."""

from __future__ import annotations

from support.waiting import status_in, wait_for

BUCKET = "selfmaker-featurestore-tests"


def ensure_bucket(s3, bucket: str = BUCKET) -> str:
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    except s3.exceptions.ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return bucket


def wait_status(sm, name: str, wanted=("Created", "CreateFailed"), timeout: float = 10.0) -> dict:
    return wait_for(
        lambda: sm.describe_feature_group(FeatureGroupName=name),
        status_in("FeatureGroupStatus", wanted),
        timeout=timeout,
        interval=0.05,
        what=f"feature group {name} to be {'/'.join(wanted)}",
    )


def create_group(
    sm,
    name: str,
    features: dict[str, str],
    *,
    record_id: str = "id",
    event_time: str = "et",
    online: bool | dict = True,
    offline: str | None = None,
    table_format: str | None = None,
    wait: bool = True,
    **extra,
) -> dict:
    """features: name -> FeatureType (or (FeatureType, CollectionType[, Dimension]))."""
    definitions = []
    for fname, ftype in features.items():
        if isinstance(ftype, tuple):
            d = {"FeatureName": fname, "FeatureType": ftype[0], "CollectionType": ftype[1]}
            if ftype[1] == "Vector":
                d["CollectionConfig"] = {"VectorConfig": {"Dimension": ftype[2]}}
            definitions.append(d)
        else:
            definitions.append({"FeatureName": fname, "FeatureType": ftype})
    params = dict(
        FeatureGroupName=name,
        RecordIdentifierFeatureName=record_id,
        EventTimeFeatureName=event_time,
        FeatureDefinitions=definitions,
        **extra,
    )
    if online:
        params["OnlineStoreConfig"] = {"EnableOnlineStore": True, **(online if isinstance(online, dict) else {})}
    if offline:
        params["OfflineStoreConfig"] = {"S3StorageConfig": {"S3Uri": offline}}
        if table_format:
            params["OfflineStoreConfig"]["TableFormat"] = table_format
    sm.create_feature_group(**params)
    return wait_status(sm, name) if wait else sm.describe_feature_group(FeatureGroupName=name)


def record(**values) -> list[dict]:
    """record(id="a", et="1.5", tags=["x", "y"]) -> a PutRecord Record."""
    out = []
    for name, value in values.items():
        if isinstance(value, list):
            out.append({"FeatureName": name, "ValueAsStringList": [str(v) for v in value]})
        else:
            out.append({"FeatureName": name, "ValueAsString": str(value)})
    return out


def error_of(call, *args, **kwargs) -> tuple[str, int]:
    """(error code, HTTP status) of a call that must fail."""
    from botocore.exceptions import ClientError

    try:
        call(*args, **kwargs)
    except ClientError as err:
        return err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{call} succeeded; it should have failed")


def wait_for_query(athena, qid: str, timeout: float = 30.0) -> dict:
    """GetQueryExecution until the query has ended (SUCCEEDED, FAILED, CANCELLED); its QueryExecution."""
    return wait_for(
        lambda: athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"],
        lambda execution: execution["Status"]["State"] not in ("QUEUED", "RUNNING"),
        timeout=timeout,
        interval=0.05,
        what=f"query {qid} to end",
    )


def overwrite_stored_payload(server, group: str, record_id: str, payload: bytes) -> None:
    """Replace a stored record's bytes behind the server's back, in whichever online store it uses: how a
    record written by an older server (or another writer) looks to the read path."""
    args = server.extra_args
    if "--online-store-url" in args:
        import redis

        r = redis.Redis.from_url(args[args.index("--online-store-url") + 1])
        (key,) = r.keys(f"sm:fs:{{*:{group.lower()}:*}}:r:{record_id}")
        r.hset(key, "p", payload)
        return
    import sqlite3

    conn = sqlite3.connect(server.data_dir / "featurestore" / "featurestore.db", timeout=30)
    try:
        with conn:
            changed = conn.execute(
                "UPDATE online_records SET payload = ? WHERE grp LIKE ? AND rid = ?",
                (payload, f"%:{group.lower()}:%", record_id),
            ).rowcount
        assert changed == 1, changed
    finally:
        conn.close()
