"""The feature store's per-server state: the local file, the online store, the group cache, the offline writer.

Built once per server, on first use (a request or the worker's start-up).
"""

from __future__ import annotations

import time

import anyio

from ...server.errors import AWSError
from .definitions import Group, validation_error
from .journal import Journal
from .localdb import LocalDB
from .offline import OfflineWriter
from .online import open_online_store

GROUP_CACHE_SECONDS = 1.0  # how stale another server's view of an updated group may be


class GroupCache:
    """Feature group definitions by name, so a GetRecord does not parse its group from the database.

    Updates and deletes on this server drop the entry at once; other servers
    (sharing a PostgreSQL metadata store) see them within GROUP_CACHE_SECONDS.
    """

    def __init__(self, backends):
        self.backends = backends
        self._entries: dict[tuple[str, str, str], tuple[float, Group | None]] = {}

    def _fresh(self, account_id: str, region: str, name: str) -> tuple[float, Group | None] | None:
        entry = self._entries.get((account_id, region, name.lower()))
        return entry if entry is not None and time.monotonic() - entry[0] < GROUP_CACHE_SECONDS else None

    def get(self, account_id: str, region: str, name: str) -> Group | None:
        if entry := self._fresh(account_id, region, name):
            return entry[1]
        key, now = (account_id, region, name.lower()), time.monotonic()
        record = self.backends.resources.get(account_id, region, "FeatureGroup", name=name)
        group = Group.from_data(account_id, region, record.data, record.status) if record else None
        self._entries[key] = (now, group)
        return group

    def forget(self, account_id: str, region: str, name: str) -> None:
        self._entries.pop((account_id, region, name.lower()), None)

    def require(self, ctx, name_or_arn: str) -> Group:
        """The Created group a runtime request names; ResourceNotFound (404) or ValidationError otherwise."""
        name = self._name(ctx, name_or_arn)
        return self._created(self.get(ctx.account_id, ctx.region, name), name)

    async def require_async(self, ctx, name_or_arn: str) -> Group:
        """``require`` from the event loop: from the cache while it is fresh (no I/O), else the group is read
        from the metadata store (maybe a remote PostgreSQL) on a worker thread."""
        name = self._name(ctx, name_or_arn)
        if entry := self._fresh(ctx.account_id, ctx.region, name):
            group = entry[1]
        else:
            group = await anyio.to_thread.run_sync(self.get, ctx.account_id, ctx.region, name)
        return self._created(group, name)

    @staticmethod
    def _name(ctx, name_or_arn: str) -> str:
        if not name_or_arn.startswith("arn:"):
            return name_or_arn
        # Only the caller's own feature group ARN, in this region, names a group here.
        parts = name_or_arn.split(":", 5)
        if (
            len(parts) < 6
            or (parts[3], parts[4]) != (ctx.region, ctx.account_id)
            or not parts[5].startswith("feature-group/")
        ):
            raise not_found(name_or_arn)
        return parts[5].split("/", 1)[-1]

    @staticmethod
    def _created(group: Group | None, name: str) -> Group:
        if group is None or group.status in ("Deleting", "DeleteFailed"):
            raise not_found(name)
        if group.status != "Created":
            raise validation_error(
                f"Feature group {group.name} is {group.status}; records can be written and read once it is Created."
            )
        return group


def not_found(name: str) -> AWSError:
    return AWSError(
        "ResourceNotFound", f"Resource Not Found: Amazon SageMaker can't find a FeatureGroup with name {name}", 404
    )


class FeatureStore:
    def __init__(self, backends):
        settings = backends.settings
        self.backends = backends
        self.db = LocalDB(settings.data_dir / "featurestore" / "featurestore.db")
        self.journal = Journal(self.db)
        self.online = open_online_store(getattr(settings, "online_store_url", None), self.db, self.journal)
        self.groups = GroupCache(backends)
        self.offline = OfflineWriter(backends, self.journal)

    def close(self) -> None:
        self.online.close()
        self.db.close()


def feature_store(backends) -> FeatureStore:
    return backends.shared("featurestore", lambda: FeatureStore(backends))


async def feature_store_async(backends) -> FeatureStore:
    """``feature_store`` from the event loop: made on a worker thread the first time (it opens files and
    connects to the online store)."""
    return backends.services.get("featurestore") or await anyio.to_thread.run_sync(feature_store, backends)
