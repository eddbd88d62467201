"""The feature store's background worker: one thread per server.

It moves feature groups through their states (Creating -> Created or
CreateFailed; Deleting -> gone or DeleteFailed), flushes the offline journal
to Parquet within FLUSH_DELAY of a write (and completely at start-up and at
shutdown), keeps OfflineStoreStatus honest (Blocked while the object store
refuses files), and purges expired online records.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import select

from ...objects.access import AccountObjects
from ...server.app import background_worker
from ...server.errors import AWSError
from ...store import schema
from ...store.resources import Record
from .definitions import Group
from .offline import OfflineWriteFailed, split_uri
from .state import feature_store

log = logging.getLogger("selfmaker.featurestore")

FLUSH_DELAY = 1.0  # seconds a journaled row may wait before the flusher writes it
FLUSH_ROWS = 10_000  # or as soon as this many are pending
POLL = 0.25
SWEEP_EVERY = 10.0  # look for groups to create or delete even when nobody woke us (other servers' requests)
PURGE_EVERY = 60.0


class FeatureStoreWorker:
    def __init__(self, backends):
        self.backends = backends
        self.fs = feature_store(backends)
        self.writer = self.fs.offline
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._blocked: dict[str, str] = {}  # group key -> why its files cannot be written

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="featurestore-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.fs.wake()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._flush()  # whatever arrived since the last pass
        self.fs.close()

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        self._flush()  # rows journaled before a crash or a shutdown
        last_sweep = last_purge = 0.0
        while not self._stop.is_set():
            try:
                woken = self.fs.wait(POLL)
                clock = time.monotonic()
                if woken or clock - last_sweep >= SWEEP_EVERY:
                    last_sweep = clock
                    self._transitions()
                if self._flush_due():
                    self._flush()
                if clock - last_purge >= PURGE_EVERY:
                    last_purge = clock
                    self.fs.online.purge_expired(time.time())
            except Exception:  # the worker must outlive any one failure; the next pass retries
                log.exception("feature store worker pass failed")
                time.sleep(1.0)

    def _flush_due(self) -> bool:
        oldest = self.fs.journal.oldest_ms()
        if oldest is None:
            return bool(self.fs.journal.batches())
        return time.time() * 1000 - oldest >= FLUSH_DELAY * 1000 or self.fs.journal.pending() >= FLUSH_ROWS

    def _flush(self, grp: str | None = None) -> None:
        try:
            self.writer.flush(grp)
        except OfflineWriteFailed as err:
            self._note_blocked(grp, err.failures)
            if grp is not None:
                raise
        else:
            self._note_blocked(grp, {})

    def _note_blocked(self, grp: str | None, failures: dict[str, str]) -> None:
        """OfflineStoreStatus after a flush (of one group, or all): Blocked where it failed, else Active."""
        for key, reason in failures.items():
            if self._blocked.get(key) != reason:  # said once, not at every retry
                log.warning("offline store of feature group %s blocked: %s", key, reason)
                self._set_offline_status(key, reason)
        for key in list(self._blocked):
            if key not in failures and (grp is None or key == grp):
                self._set_offline_status(key, None)

    # -- feature group states ----------------------------------------------------

    def _transitions(self) -> None:
        R = schema.resources
        with self.backends.store.read() as conn:
            rows = conn.execute(select(R.c.account_id, R.c.region, R.c.name, R.c.status).where(
                R.c.kind == "FeatureGroup", R.c.status.in_(("Creating", "Deleting")))).all()
        for account_id, region, name, status in rows:
            if status == "Creating":
                self._provision(account_id, region, name)
            else:
                self._delete(account_id, region, name)

    def _record(self, conn, account_id: str, region: str, name: str) -> Record | None:
        return self.backends.resources.get(account_id, region, "FeatureGroup", name=name, conn=conn)

    def _provision(self, account_id: str, region: str, name: str) -> None:
        """Creating -> Created once the offline store's bucket is there; CreateFailed if it is not."""
        record = self.backends.resources.get(account_id, region, "FeatureGroup", name=name)
        failure = None
        uri = ((record.data.get("OfflineStoreConfig") or {}).get("S3StorageConfig") or {}).get("ResolvedOutputS3Uri")
        if uri and self.backends.objects is not None:
            bucket, _ = split_uri(uri)
            try:  # as the group's account: another account's bucket is not accessible
                AccountObjects.of(self.backends, account_id).head_bucket(bucket)
            except AWSError:
                failure = f"The offline store's S3 bucket {bucket} does not exist or is not accessible."
        self._set_status(account_id, region, name, "Creating", "CreateFailed" if failure else "Created", failure)

    def _delete(self, account_id: str, region: str, name: str) -> None:
        """Flush the group's pending offline rows, drop its online records, then forget it."""
        record = self.backends.resources.get(account_id, region, "FeatureGroup", name=name)
        group = Group.from_data(account_id, region, record.data, record.status)
        try:
            self._flush(group.key)
        except AWSError as err:
            self._set_status(account_id, region, name, "Deleting", "DeleteFailed",
                             f"{self.fs.journal.pending(group.key)} records could not be written to the offline "
                             f"store: {err.message}")
            return
        self.fs.online.drop_group(group.key)
        with self.backends.store.write() as conn:
            current = self._record(conn, account_id, region, name)
            if current is not None and current.status == "Deleting":
                self.backends.resources.delete(current.arn, conn=conn)
        self.fs.groups.forget(account_id, region, name)

    def _set_status(self, account_id: str, region: str, name: str, expected: str, status: str,
                    failure: str | None = None) -> None:
        def change(record: Record, _conn) -> bool | None:
            if record.status != expected:
                return False  # someone else moved it on
            record.data["FeatureGroupStatus"] = record.status = status
            if failure:
                record.data["FailureReason"] = failure

        self.backends.resources.mutate(change, account_id=account_id, region=region, kind="FeatureGroup", name=name,
                                       touch=False)
        self.fs.groups.forget(account_id, region, name)

    def _set_offline_status(self, grp: str, blocked_reason: str | None) -> None:
        group = self.writer.group_for(grp)
        if blocked_reason is None:
            self._blocked.pop(grp, None)
        else:
            self._blocked[grp] = blocked_reason
        if group is None:
            return
        status = {"Status": "Blocked", "BlockedReason": blocked_reason[:1024]} if blocked_reason \
            else {"Status": "Active"}
        def change(record: Record, _conn) -> bool | None:
            if record.data.get("OfflineStoreStatus") == status:
                return False
            record.data["OfflineStoreStatus"] = status

        self.backends.resources.mutate(change, account_id=group.account_id, region=group.region, kind="FeatureGroup",
                                       name=group.name, touch=False)


@background_worker
def start_feature_store_worker(backends) -> FeatureStoreWorker:
    return FeatureStoreWorker(backends)
