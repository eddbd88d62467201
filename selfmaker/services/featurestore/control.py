"""The control plane: feature groups (CreateFeatureGroup ... ListFeatureGroups) and feature metadata.

A feature group is a generic resource (services/kinds.py) with its own
checks on create and update. Creation and deletion are state transitions
the reconciler completes (Creating -> Created, Deleting -> gone),
so the status a client polls is the one it would see on AWS. Both are
records the reconciler moves forward (lifecycle.py), kicked here so they move at once.
"""

from __future__ import annotations

from ...engines.reconciler import kick
from ...objects.access import check_s3_uri
from ...server.errors import AWSError, validation
from ...server.operations import Context, operation
from ...store import schema
from ...store.resources import Record, now
from ..kinds import Kind
from .definitions import RESERVED_NAMES
from .state import feature_store

R = schema.resources

DEFAULT_CATALOG = "AwsDataCatalog"
DEFAULT_DATABASE = "sagemaker_featurestore"
MAX_FEATURES = 2500


# -- CreateFeatureGroup ----------------------------------------------------------


def _check_definitions(definitions: list[dict], in_memory: bool) -> None:
    seen: set[str] = set()
    for d in definitions:
        name = d["FeatureName"]
        if name.lower() in RESERVED_NAMES:
            raise validation(
                f"Feature name {name} is reserved: {', '.join(RESERVED_NAMES)} are added to every offline store record."
            )
        if name.lower() in seen:
            raise validation(f"Feature name {name} is defined more than once (names are case-insensitive).")
        seen.add(name.lower())
        collection = d.get("CollectionType")
        vector = (d.get("CollectionConfig") or {}).get("VectorConfig")
        if collection and not in_memory:
            raise validation(
                f"Feature {name} has CollectionType {collection}: collection types need an online "
                "store with StorageType InMemory."
            )
        if collection == "Vector":
            if d["FeatureType"] != "Fractional":
                raise validation(f"Feature {name} is a Vector: its FeatureType must be Fractional.")
            if not vector:
                raise validation(f"Feature {name} is a Vector: CollectionConfig.VectorConfig.Dimension is required.")
        elif vector:
            raise validation(f"Feature {name}: CollectionConfig applies to Vector features only.")


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    definitions = params["FeatureDefinitions"]
    if len(definitions) > MAX_FEATURES:
        raise validation(f"A feature group has at most {MAX_FEATURES} features.")
    online = dict(params.get("OnlineStoreConfig") or {})
    offline = dict(params.get("OfflineStoreConfig") or {})
    in_memory = online.get("StorageType") == "InMemory"
    _check_definitions(definitions, in_memory)
    by_name = {d["FeatureName"]: d for d in definitions}
    record_id = by_name.get(params["RecordIdentifierFeatureName"])
    event_time = by_name.get(params["EventTimeFeatureName"])
    if record_id is None:
        raise validation(
            f"RecordIdentifierFeatureName {params['RecordIdentifierFeatureName']} is not one of the FeatureDefinitions."
        )
    if event_time is None:
        raise validation(f"EventTimeFeatureName {params['EventTimeFeatureName']} is not one of the FeatureDefinitions.")
    if record_id["FeatureType"] not in ("String", "Integral") or record_id.get("CollectionType"):
        raise validation("The record identifier feature must be a scalar String or Integral feature.")
    if event_time["FeatureType"] not in ("String", "Fractional") or event_time.get("CollectionType"):
        raise validation(
            "The event time feature must be a scalar String (ISO-8601) or Fractional (epoch seconds) feature."
        )
    if not online.get("EnableOnlineStore") and not offline:
        raise validation("Enable the online store, configure the offline store, or both.")
    if online.get("EnableOnlineStore"):
        online.setdefault("StorageType", "Standard")
    elif online and (online.get("TtlDuration") or online.get("StorageType")):
        raise validation("OnlineStoreConfig settings need EnableOnlineStore set to true.")
    data["OnlineStoreConfig"] = online or None

    epoch = int(data["CreationTime"])
    if offline:
        if offline.get("TableFormat") == "Iceberg" and event_time["FeatureType"] != "String":
            raise validation("Iceberg offline stores need a String (ISO-8601) event time feature.")
        s3 = dict(offline["S3StorageConfig"])
        if not s3["S3Uri"].startswith("s3://"):
            raise validation(f"S3Uri {s3['S3Uri']} must be an s3://bucket/prefix URI.")
        check_s3_uri(ctx.backends, ctx.account_id, s3["S3Uri"], "OfflineStoreConfig.S3StorageConfig.S3Uri")
        base = s3["S3Uri"].rstrip("/")
        s3["ResolvedOutputS3Uri"] = (
            f"{base}/{ctx.account_id}/sagemaker/{ctx.region}/offline-store/{params['FeatureGroupName']}-{epoch}/data"
        )
        offline["S3StorageConfig"] = s3
        offline.setdefault("DisableGlueTableCreation", False)
        offline.setdefault(
            "DataCatalogConfig",
            {
                "TableName": f"{params['FeatureGroupName'].lower()}_{epoch}",
                "Catalog": DEFAULT_CATALOG,
                "Database": DEFAULT_DATABASE,
            },
        )
        if offline.get("TableFormat") in (None, "Default"):
            offline["TableFormat"] = "Glue"
        data["OfflineStoreConfig"] = offline
        data["OfflineStoreStatus"] = {"Status": "Active"}
    data["ThroughputConfig"] = params.get("ThroughputConfig") or {"ThroughputMode": "OnDemand"}
    data["FeatureGroupStatus"] = "Creating"
    data["FeatureMetadata"] = {}  # feature name -> {Description, Parameters, CreationTime, LastModifiedTime}


def _present(ctx: Context, record: Record) -> dict:
    # NextToken pages FeatureDefinitions past 2,500, which a group never has: AWS sends it empty.
    return {**record.data, "NextToken": ""}


def _summarize(record: Record) -> dict:
    return {
        k: record.data.get(k)
        for k in ("FeatureGroupName", "FeatureGroupArn", "CreationTime", "FeatureGroupStatus", "OfflineStoreStatus")
    }


def _list_params(params: dict) -> dict:
    """ListFeatureGroups spells the common list parameters its own way."""
    sort = {"FeatureGroupStatus": "Status", "OfflineStoreStatus": "OfflineStoreStatus"}
    return {
        **params,
        "StatusEquals": params.get("FeatureGroupStatusEquals"),
        "SortBy": sort.get(params.get("SortBy"), params.get("SortBy")),
    }


def _extra_filters(ctx: Context, params: dict) -> list:
    if params.get("OfflineStoreStatusEquals"):
        return [R.c.data["OfflineStoreStatus"]["Status"].as_string() == params["OfflineStoreStatusEquals"]]
    return []


# -- UpdateFeatureGroup ------------------------------------------------------------


def _on_update(ctx: Context, params: dict, record: Record) -> None:
    data = record.data
    if data["FeatureGroupStatus"] != "Created":
        raise AWSError(
            "ResourceInUse",
            f"Feature group {record.name} is {data['FeatureGroupStatus']}; it can be updated once it is Created.",
        )
    online = data.get("OnlineStoreConfig") or {}
    additions = params.get("FeatureAdditions") or []
    if additions:
        existing = data["FeatureDefinitions"]
        if len(existing) + len(additions) > MAX_FEATURES:
            raise AWSError("ResourceLimitExceeded", f"A feature group has at most {MAX_FEATURES} features.")
        _check_definitions(existing + additions, online.get("StorageType") == "InMemory")
        data["FeatureDefinitions"] = existing + additions
    update = params.get("OnlineStoreConfig")
    if update:
        if not online.get("EnableOnlineStore"):
            raise validation(f"Feature group {record.name} has no online store to configure.")
        if update.get("StorageType") and update["StorageType"] != online.get("StorageType"):
            raise validation("The online store's StorageType cannot be changed after creation.")
        if update.get("TtlDuration"):
            online["TtlDuration"] = update["TtlDuration"]
        data["OnlineStoreConfig"] = online
    if params.get("ThroughputConfig"):
        data["ThroughputConfig"] = {**data.get("ThroughputConfig", {}), **params["ThroughputConfig"]}
    data["LastUpdateStatus"] = {"Status": "Successful"}
    feature_store(ctx.backends).groups.forget(record.account_id, record.region, record.name)


def _refuse_if_busy(record: Record) -> None:
    if record.data["FeatureGroupStatus"] in ("Creating", "Deleting"):
        raise AWSError(
            "ResourceInUse",
            f"Feature group {record.name} is {record.data['FeatureGroupStatus']}; wait until that finishes.",
        )


FEATURE_GROUP = Kind(
    "FeatureGroup",
    "feature-group",
    label="feature group",
    operations=("Describe", "List", "Update"),
    status_member="FeatureGroupStatus",
    search_type="FeatureGroup",
    on_create=_on_create,
    on_update=_on_update,
    present=_present,
    summarize=_summarize,
    extra_filters=_extra_filters,
    list_params=_list_params,
    not_found="Resource Not Found: Amazon SageMaker can't find a FeatureGroup with name {name}",
    not_found_code="ResourceNotFound",
    exists="Resource Already Exists: FeatureGroup with name {name} already exists. Choose a different name.",
    exists_code="ResourceInUse",
).register()


@operation("sagemaker", "CreateFeatureGroup")
def create_feature_group(ctx: Context, params: dict) -> dict:
    result = FEATURE_GROUP.create(ctx, params)
    fs = feature_store(ctx.backends)
    fs.groups.forget(ctx.account_id, ctx.region, params["FeatureGroupName"])
    kick(ctx.backends, result["FeatureGroupArn"])  # provisioned at once: Creating -> Created
    return result


@operation("sagemaker", "DeleteFeatureGroup")
def delete_feature_group(ctx: Context, params: dict) -> dict:
    """Deleting, then gone once the reconciler has flushed its offline rows and dropped its online records."""
    with ctx.store.write() as conn:
        record = FEATURE_GROUP.load(ctx, params["FeatureGroupName"], conn=conn, lock=True)
        _refuse_if_busy(record)
        record.data["FeatureGroupStatus"] = record.status = "Deleting"
        record.data.pop("FailureReason", None)
        ctx.backends.resources.save(record, conn=conn)
    fs = feature_store(ctx.backends)
    fs.groups.forget(record.account_id, record.region, record.name)
    kick(ctx.backends, record.arn)
    return {}


# -- feature metadata --------------------------------------------------------------


def _feature(ctx: Context, record: Record, feature_name: str) -> dict:
    definition = next((d for d in record.data["FeatureDefinitions"] if d["FeatureName"] == feature_name), None)
    if definition is None:
        raise AWSError(
            "ResourceNotFound",
            f"Resource Not Found: Feature {feature_name} does not exist in feature group {record.name}.",
        )
    return definition


@operation("sagemaker", "DescribeFeatureMetadata")
def describe_feature_metadata(ctx: Context, params: dict) -> dict:
    record = FEATURE_GROUP.load(ctx, params["FeatureGroupName"])
    definition = _feature(ctx, record, params["FeatureName"])
    meta = record.data.get("FeatureMetadata", {}).get(definition["FeatureName"], {})
    return {
        "FeatureGroupArn": record.arn,
        "FeatureGroupName": record.name,
        "FeatureName": definition["FeatureName"],
        "FeatureType": definition["FeatureType"],
        "CreationTime": meta.get("CreationTime", record.data["CreationTime"]),
        "LastModifiedTime": meta.get("LastModifiedTime", record.data["CreationTime"]),
        "Description": meta.get("Description"),
        "Parameters": meta.get("Parameters", []),
    }


@operation("sagemaker", "UpdateFeatureMetadata")
def update_feature_metadata(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = FEATURE_GROUP.load(ctx, params["FeatureGroupName"], conn=conn, lock=True)
        definition = _feature(ctx, record, params["FeatureName"])
        all_meta = record.data.setdefault("FeatureMetadata", {})
        meta = all_meta.setdefault(definition["FeatureName"], {"CreationTime": record.data["CreationTime"]})
        if "Description" in params:
            meta["Description"] = params["Description"]
        parameters = {p["Key"]: p["Value"] for p in meta.get("Parameters", [])}
        for key in params.get("ParameterRemovals") or []:
            parameters.pop(key, None)
        for p in params.get("ParameterAdditions") or []:
            parameters[p["Key"]] = p["Value"]
        meta["Parameters"] = [{"Key": k, "Value": v} for k, v in parameters.items()]
        meta["LastModifiedTime"] = now()
        ctx.backends.resources.save(record, conn=conn, touch=False)
    return {}
