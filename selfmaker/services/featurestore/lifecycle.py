"""Feature group states as a persisted state machine the reconciler drives.

Creating -> Created once the offline store's bucket is there (CreateFailed if it
is not); Deleting -> gone once the group's pending offline rows are written and
its online records dropped (DeleteFailed if the rows cannot be written).
CreateFeatureGroup and DeleteFeatureGroup kick the group, so it moves at once;
a server that stopped mid-way resumes the group when it starts.
"""

from __future__ import annotations

from ...backends import Backends
from ...engines.reconciler import Controller, register
from ...objects.access import AccountObjects
from ...server.errors import AWSError
from ...store.resources import Record
from .definitions import Group
from .offline import split_uri
from .state import feature_store
from .worker import worker

KIND = "FeatureGroup"


def reconcile(backends: Backends, record: Record) -> None:
    if record.status == "Creating":
        _provision(backends, record)
    else:
        _delete(backends, record)
    return  # one step either way: no timer to come back on


def _provision(backends: Backends, record: Record) -> None:
    failure = None
    uri = ((record.data.get("OfflineStoreConfig") or {}).get("S3StorageConfig") or {}).get("ResolvedOutputS3Uri")
    if uri and backends.objects is not None:
        bucket, _ = split_uri(uri)
        try:  # as the group's account: another account's bucket is not accessible
            AccountObjects.of(backends, record.account_id).head_bucket(bucket)
        except AWSError:
            failure = f"The offline store's S3 bucket {bucket} does not exist or is not accessible."
    _set_status(backends, record, "Creating", "CreateFailed" if failure else "Created", failure)


def _delete(backends: Backends, record: Record) -> None:
    """Flush the group's pending offline rows, drop its online records, then forget it."""
    fs = feature_store(backends)
    group = Group.from_data(record.account_id, record.region, record.data, record.status)
    try:
        worker(backends).flush(group.key)
    except AWSError as err:
        _set_status(
            backends,
            record,
            "Deleting",
            "DeleteFailed",
            f"{fs.journal.pending(group.key)} records could not be written to the offline store: {err.message}",
        )
        return
    fs.online.drop_group(group.key)
    with backends.store.write() as conn:
        current = backends.resources.get_by_arn(record.arn, conn=conn, lock=True)
        if current is not None and current.status == "Deleting":
            backends.resources.delete(current.arn, conn=conn)
    fs.groups.forget(record.account_id, record.region, record.name)


def _set_status(backends: Backends, record: Record, expected: str, status: str, failure: str | None = None) -> None:
    def change(current: Record, _conn) -> bool | None:
        if current.status != expected:
            return False  # someone else moved it on
        current.data["FeatureGroupStatus"] = current.status = status
        if failure:
            current.data["FailureReason"] = failure

    backends.resources.mutate(change, arn=record.arn, touch=False)
    feature_store(backends).groups.forget(record.account_id, record.region, record.name)


register(Controller(KIND, frozenset({"Creating", "Deleting"}), reconcile))
