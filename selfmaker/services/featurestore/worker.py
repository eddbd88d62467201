"""The feature store's background flusher: one periodic thread per server.

It flushes the offline journal to Parquet within FLUSH_DELAY of a write (and
completely at start-up and at shutdown), keeps OfflineStoreStatus honest
(Blocked while the object store refuses files), and purges expired online
records. Feature group states (Creating, Deleting) are the reconciler's: see
lifecycle.py.
"""

from __future__ import annotations

import logging
import threading
import time

from ...backends import background_worker
from ...engines.periodic import STOP_TIMEOUT, Periodic
from ...store.resources import Record
from .offline import OfflineWriteFailed
from .state import feature_store

log = logging.getLogger("selfmaker.featurestore")

FLUSH_DELAY = 1.0  # seconds a journaled row may wait before the flusher writes it
FLUSH_ROWS = 10_000  # or as soon as this many are pending
POLL = 0.25
PURGE_EVERY = 60.0


class FeatureStoreWorker(Periodic):
    def __init__(self, backends):
        super().__init__("featurestore-worker", POLL, run_at_start=True)
        self.backends = backends
        self.fs = feature_store(backends)
        self.writer = self.fs.offline
        self._blocked: dict[str, str] = {}  # group key -> why its files cannot be written
        self._blocked_lock = threading.Lock()  # this thread and the reconciler's (deleting a group) flush
        self._flushed_all = False
        self._last_purge = 0.0

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        super().stop(timeout)  # and so a last flush of whatever arrived since the last pass
        self.fs.close()

    # -- one pass ------------------------------------------------------------------

    def run(self) -> None:
        if not self._flushed_all:  # rows journaled before a crash or a shutdown
            self.flush()
            self._flushed_all = True
        elif self._flush_due():
            self.flush()
        clock = time.monotonic()
        if clock - self._last_purge >= PURGE_EVERY:
            self._last_purge = clock
            self.fs.online.purge_expired(time.time())

    def run_final(self) -> None:
        self.flush()

    def _flush_due(self) -> bool:
        oldest = self.fs.journal.oldest_ms()
        if oldest is None:
            return bool(self.fs.journal.batches())
        return time.time() * 1000 - oldest >= FLUSH_DELAY * 1000 or self.fs.journal.pending() >= FLUSH_ROWS

    def flush(self, grp: str | None = None) -> None:
        """Write the journal (of one group, or all) to the offline store; raise for one group that failed."""
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
        with self._blocked_lock:
            for key, reason in failures.items():
                if self._blocked.get(key) != reason:  # said once, not at every retry
                    log.warning("offline store of feature group %s blocked: %s", key, reason)
                    self._set_offline_status(key, reason)
            for key in list(self._blocked):
                if key not in failures and (grp is None or key == grp):
                    self._set_offline_status(key, None)

    def _set_offline_status(self, grp: str, blocked_reason: str | None) -> None:
        group = self.writer.group_for(grp)
        if blocked_reason is None:
            self._blocked.pop(grp, None)
        else:
            self._blocked[grp] = blocked_reason
        if group is None:
            return
        status = (
            {"Status": "Blocked", "BlockedReason": blocked_reason[:1024]} if blocked_reason else {"Status": "Active"}
        )

        def change(record: Record, _conn) -> bool | None:
            if record.data.get("OfflineStoreStatus") == status:
                return False
            record.data["OfflineStoreStatus"] = status

        self.backends.resources.mutate(
            change, account_id=group.account_id, region=group.region, kind="FeatureGroup", name=group.name, touch=False
        )


def worker(backends) -> FeatureStoreWorker:
    return backends.shared("featurestore.worker", lambda: FeatureStoreWorker(backends))


@background_worker
def start_feature_store_worker(backends) -> FeatureStoreWorker:
    return worker(backends)
