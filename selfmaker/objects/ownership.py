"""Which account owns each bucket, kept in the metadata database.

The object store is the arbiter of whether a bucket exists (its create is
atomic); this table only records who created it and in which region, so it
works the same over the local store and a shared remote S3. A bucket without
a row (created directly through the object store, e.g. by SelfMaker itself)
belongs to the default account.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, select

from ..store import schema

_buckets = schema.buckets


@dataclass(frozen=True)
class Ownership:
    account_id: str
    region: str


class BucketOwners:
    def __init__(self, store, default_account: str, default_region: str):
        self.store = store
        self.default = Ownership(default_account, default_region)

    def of(self, bucket: str) -> Ownership:
        with self.store.read() as conn:
            row = conn.execute(
                select(_buckets.c.account_id, _buckets.c.region).where(_buckets.c.name == bucket)
            ).first()
        return Ownership(*row) if row else self.default

    def all(self) -> dict[str, Ownership]:
        with self.store.read() as conn:
            rows = conn.execute(select(_buckets.c.name, _buckets.c.account_id, _buckets.c.region)).all()
        return {name: Ownership(account, region) for name, account, region in rows}

    def record(self, bucket: str, account_id: str, region: str) -> None:
        """Note the creator of a bucket the store has just created (replacing any stale row)."""
        with self.store.write() as conn:
            conn.execute(delete(_buckets).where(_buckets.c.name == bucket))
            conn.execute(
                _buckets.insert().values(name=bucket, account_id=account_id, region=region, created_at=time.time())
            )

    def forget(self, bucket: str) -> None:
        with self.store.write() as conn:
            conn.execute(delete(_buckets).where(_buckets.c.name == bucket))
