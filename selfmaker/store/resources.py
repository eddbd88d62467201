"""Persistence of named resources: create, read, update, delete, and keyset-paginated lists.

Lists page by (sort key, id) rather than by offset, so a page over 10,000
resources costs what a page over 100 does, and a NextToken stays correct while
other clients create and delete. Tokens are HMAC-signed: a forged or altered
token is refused instead of silently returning the wrong page. Every service's
paginated answers use the same tokens (page_token / read_page_token), and
work outside requests edits records through one read-change-write (mutate).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import operator
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from ..errors import AWSError, validation
from . import schema
from .db import Store

R = schema.resources

SORT_COLUMNS = {
    "Name": R.c.name_key,
    "CreationTime": R.c.created_at,
    "LastModifiedTime": R.c.modified_at,
    "Status": R.c.status,
    "Parent": R.c.parent,  # e.g. an edge deployment plan's fleet, a packaging job's model name
}


def now() -> float:
    """The current time as AWS reports it: epoch seconds at millisecond precision.

    Storing exactly what clients see keeps "CreationTimeAfter=<a time we returned>" exact.
    """
    return round(time.time(), 3)


class AlreadyExists(Exception):
    pass


# Observers of a kind's writes: ``observer(conn, before, after)`` runs in the transaction that creates
# (``before`` None) or saves a record of that kind, with the record as it was and as it is now. Every
# write of a named resource passes create or save, so this is the one place a change is seen (the
# SageMaker state-change events are put in EventBridge's outbox this way, committed with the change).
_OBSERVERS: dict[str, list[Callable[[Any, Record | None, Record], None]]] = {}


def observe(kind: str, observer: Callable[[Any, Record | None, Record], None]) -> None:
    """Call ``observer`` in the transaction of every create and save of a ``kind`` record."""
    _OBSERVERS.setdefault(kind, []).append(observer)


@dataclass
class Record:
    id: int
    kind: str
    arn: str
    name: str
    account_id: str
    region: str
    parent: str | None
    status: str | None
    created_at: float
    modified_at: float
    data: dict


@dataclass
class ListQuery:
    name_contains: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    modified_after: float | None = None
    modified_before: float | None = None
    inclusive_times: bool = False  # the time bounds above include their own instant
    status: str | None = None
    parent: str | None = None
    sort_by: str = "CreationTime"
    descending: bool = True
    max_results: int = 100
    next_token: str | None = None
    # Kind-specific SQL conditions, e.g. R.c.data["Source"]["SourceArn"].as_string() == x
    where: list = field(default_factory=list)


# Every read selects the Record's fields in the Record's order (name_key last, for list
# tokens), so a row becomes a Record by position: one C-level unpack, not eleven
# attribute lookups per row.
_COLUMNS = (
    R.c.id,
    R.c.kind,
    R.c.arn,
    R.c.name,
    R.c.account_id,
    R.c.region,
    R.c.parent,
    R.c.status,
    R.c.created_at,
    R.c.modified_at,
    R.c.data,
    R.c.name_key,
)
_RECORD_WIDTH = len(_COLUMNS) - 1


def _row(row) -> Record:
    return Record(*row[:_RECORD_WIDTH])


# The single-resource lookups, built once with bind parameters: building and cache-keying
# a select on every call cost more than SQLite takes to answer it (Describe is mostly this).
_BY_NAME = select(*_COLUMNS).where(
    R.c.kind == bindparam("kind"),
    R.c.account_id == bindparam("account_id"),
    R.c.region == bindparam("region"),
    R.c.name_key == bindparam("name_key"),
)
# By ARN within one account and region: an ARN naming another account's resource finds nothing. (Only a
# kind that shares resources across accounts by policy reads another account's record, through get_by_arn.)
_BY_KIND_AND_ARN = select(*_COLUMNS).where(
    R.c.kind == bindparam("kind"),
    R.c.arn == bindparam("arn"),
    R.c.account_id == bindparam("account_id"),
    R.c.region == bindparam("region"),
)
_BY_ARN = select(*_COLUMNS).where(R.c.arn == bindparam("arn"))
_BY_ID = select(*_COLUMNS).where(R.c.id == bindparam("id"))
# The same, holding the row until the transaction ends (PostgreSQL; SQLite renders no FOR UPDATE,
# its writers are already serialized by the store's write lock).
_BY_NAME_LOCKED = _BY_NAME.with_for_update()
_BY_KIND_AND_ARN_LOCKED = _BY_KIND_AND_ARN.with_for_update()
_BY_ARN_LOCKED = _BY_ARN.with_for_update()


# Time filters: the ListQuery field, the column, and its comparison (exclusive, inclusive).
_TIME_BOUNDS = {
    "created_after": (R.c.created_at, operator.gt, operator.ge),
    "created_before": (R.c.created_at, operator.lt, operator.le),
    "modified_after": (R.c.modified_at, operator.gt, operator.ge),
    "modified_before": (R.c.modified_at, operator.lt, operator.le),
}


def _list_statement(sort_by: str, descending: bool, inclusive_times: bool, names: frozenset, where=()):
    """A page of a list, with a bind parameter for every value in ``names``.

    Lists differ only in which filters they use, so the statements are few and are
    cached (below): building and cache-keying one costs more than SQLite takes to run it.
    """
    column = SORT_COLUMNS[sort_by]
    cond = [
        R.c.account_id == bindparam("account_id"),
        R.c.region == bindparam("region"),
        R.c.kind == bindparam("kind"),
        *where,
    ]
    if "name_like" in names:
        cond.append(R.c.name_key.like(bindparam("name_like"), escape="\\"))
    for name, (time_column, exclusive, inclusive) in _TIME_BOUNDS.items():
        if name in names:
            cond.append((inclusive if inclusive_times else exclusive)(time_column, bindparam(name)))
    if "status" in names:
        cond.append(R.c.status == bindparam("status"))
    if "parent" in names:
        cond.append(R.c.parent == bindparam("parent"))
    if "after_value" in names:
        # A row-value comparison, not "column < v OR (column = v AND id < i)": with bound
        # parameters SQLite walks every row of the kind for the OR, but seeks the
        # (..., sort column, id) index for the row value, so a deep page costs what the first does.
        position, last = tuple_(column, R.c.id), tuple_(bindparam("after_value"), bindparam("after_id"))
        cond.append(position < last if descending else position > last)
    order = (column.desc(), R.c.id.desc()) if descending else (column.asc(), R.c.id.asc())
    return select(*_COLUMNS).where(*cond).order_by(*order).limit(bindparam("limit"))


_cached_list_statement = lru_cache(maxsize=512)(_list_statement)


def _check_lock(lock: bool, conn) -> None:
    if lock and conn is None:  # a lock outside a transaction would end with the read: a bug, not a no-op
        raise ValueError("a locked read needs the write transaction (conn) the record is saved in")


class ResourceStore:
    def __init__(self, store: Store):
        self.store = store
        self._token_key = store.secret("pagination-token-key")

    # -- single resources -------------------------------------------------

    def create(
        self,
        *,
        account_id: str,
        region: str,
        kind: str,
        name: str,
        arn: str,
        data: dict,
        status: str | None = None,
        parent: str | None = None,
        created: float | None = None,
        conn=None,
    ) -> Record:
        created = now() if created is None else created
        values: dict[str, Any] = dict(
            account_id=account_id,
            region=region,
            kind=kind,
            arn=arn,
            name=name,
            name_key=name.lower(),
            parent=parent,
            status=status,
            created_at=created,
            modified_at=created,
            data=data,
        )

        def run(c) -> Record:
            new_id = c.execute(insert(R).values(**values)).inserted_primary_key[0]
            record = Record(id=new_id, **{k: v for k, v in values.items() if k != "name_key"})
            for observer in _OBSERVERS.get(kind, ()):
                observer(c, None, record)
            return record

        try:
            if conn is not None:
                return run(conn)
            with self.store.write() as c:
                return run(c)
        except IntegrityError:
            raise AlreadyExists(name) from None

    def get(
        self,
        account_id: str,
        region: str,
        kind: str,
        *,
        name: str | None = None,
        arn: str | None = None,
        conn=None,
        lock: bool = False,
    ) -> Record | None:
        """The record named by ``name`` or ``arn`` in this account and region.

        ``lock`` (with ``conn``, a write transaction) holds the row until the transaction ends, for a
        read that is written back in it: on PostgreSQL a reconciler's :meth:`mutate` then waits instead
        of landing between the read and the save (and being overwritten by it). SQLite's writers are
        serialized by the store's write lock already.
        """
        _check_lock(lock, conn)
        if arn is not None:
            query = _BY_KIND_AND_ARN_LOCKED if lock else _BY_KIND_AND_ARN
            values = {"kind": kind, "arn": arn, "account_id": account_id, "region": region}
        else:
            query = _BY_NAME_LOCKED if lock else _BY_NAME
            values = {"kind": kind, "account_id": account_id, "region": region, "name_key": (name or "").lower()}
        if conn is not None:
            row = conn.execute(query, values).first()
        else:
            with self.store.read() as c:
                row = c.execute(query, values).first()
        return _row(row) if row else None

    def get_by_arn(self, arn: str, conn=None, lock: bool = False) -> Record | None:
        """The resource with this ARN, whichever account owns it: for the server's own bookkeeping and for
        checks that compare its owner with the caller. A request's lookups go through :meth:`get`.
        ``lock``: as :meth:`get`'s."""
        _check_lock(lock, conn)
        if conn is not None:
            row = conn.execute(_BY_ARN_LOCKED if lock else _BY_ARN, {"arn": arn}).first()
        else:
            with self.store.read() as c:
                row = c.execute(_BY_ARN, {"arn": arn}).first()
        return _row(row) if row else None

    def save(self, record: Record, conn=None, touch: bool = True) -> Record:
        """Write back a record's data and status, read in the same transaction with ``lock=True`` (or through
        :meth:`mutate`) so that no other writer's change lands in between and is lost."""
        if touch:
            record.modified_at = now()
        stmt = (
            update(R)
            .where(R.c.id == record.id)
            .values(data=record.data, status=record.status, modified_at=record.modified_at, parent=record.parent)
        )
        observers = _OBSERVERS.get(record.kind, ())

        def run(c) -> None:
            before = c.execute(_BY_ID, {"id": record.id}).first() if observers else None
            c.execute(stmt)
            if before is not None:
                for observer in observers:
                    observer(c, _row(before), record)

        if conn is not None:
            run(conn)
        else:
            with self.store.write() as c:
                run(c)
        return record

    def mutate(
        self,
        change: Callable[[Record, Any], bool | None],
        *,
        arn: str | None = None,
        account_id: str = "",
        region: str = "",
        kind: str = "",
        name: str | None = None,
        touch: bool = True,
    ) -> Record | None:
        """Read one record, let ``change`` edit it, and write it back, in one transaction.

        This is how work outside a request (a reconciler, a worker) edits a record that requests edit too.

        The record is named by ``arn``, or by ``account_id``, ``region``, ``kind`` and ``name``. It is read
        inside the write transaction under its row lock (SELECT ... FOR UPDATE on PostgreSQL; on SQLite
        the store's write lock already serializes writers), so ``change`` sees every write that landed
        before (a Stop, an Update) and none can land between the read and the write: nothing is lost,
        so there is nothing to retry.

        ``change(record, conn)`` edits ``record.data`` and ``record.status`` and may write more through
        ``conn``, in the same transaction. It returns False to leave the record as it is (the record
        moved on: nothing to do), or raises to undo the whole transaction (the change no longer applies).
        ``touch`` stamps LastModifiedTime, in the data and the column, with one time.

        Returns the record as it is now stored, or None when there is no such record.
        """
        with self.store.write() as conn:
            if arn is not None:
                row = conn.execute(_BY_ARN_LOCKED, {"arn": arn}).first()
            else:
                row = conn.execute(
                    _BY_NAME_LOCKED,
                    {"kind": kind, "account_id": account_id, "region": region, "name_key": (name or "").lower()},
                ).first()
            if row is None:
                return None
            record = _row(row)
            if change(record, conn) is False:
                return record
            if touch:
                record.modified_at = record.data["LastModifiedTime"] = now()
            return self.save(record, conn=conn, touch=False)

    def delete(self, arn: str, conn=None) -> None:
        def run(c):
            c.execute(delete(R).where(R.c.arn == arn))
            c.execute(delete(schema.tags).where(schema.tags.c.arn == arn))

        if conn is not None:
            run(conn)
        else:
            with self.store.write() as c:
                run(c)

    def count(self, account_id: str, region: str, kind: str, parent: str | None = None) -> int:
        cond = [R.c.account_id == account_id, R.c.region == region, R.c.kind == kind]
        if parent is not None:
            cond.append(R.c.parent == parent)
        with self.store.read() as c:
            return c.execute(select(func.count()).select_from(R).where(*cond)).scalar_one()

    def iterate(self, account_id: str, region: str, kinds: Iterable[str], batch: int = 500):
        """Every resource of these kinds, in creation order, read in batches (for Search)."""
        last = 0
        kinds = list(kinds)
        while True:
            query = (
                select(*_COLUMNS)
                .where(R.c.account_id == account_id, R.c.region == region, R.c.kind.in_(kinds), R.c.id > last)
                .order_by(R.c.id)
                .limit(batch)
            )
            with self.store.read() as c:
                rows = c.execute(query).all()
            for row in rows:
                yield _row(row)
            if len(rows) < batch:
                return
            last = rows[-1].id

    # -- lists ---------------------------------------------------------------

    def list(self, account_id: str, region: str, kind: str, q: ListQuery) -> tuple[list[Record], str | None]:
        column = SORT_COLUMNS.get(q.sort_by)
        if column is None:
            raise validation(f"Unsupported SortBy value {q.sort_by}.")
        values = {"account_id": account_id, "region": region, "kind": kind, "limit": q.max_results + 1}
        if q.name_contains:
            # Case-insensitive substring match, with LIKE's wildcards taken literally.
            needle = q.name_contains.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            values["name_like"] = f"%{needle}%"
        for name in _TIME_BOUNDS:
            if (bound := getattr(q, name)) is not None:
                values[name] = bound
        if q.status is not None:
            values["status"] = q.status
        if q.parent is not None:
            values["parent"] = q.parent
        fingerprint = self._fingerprint(account_id, region, kind, q)
        if q.next_token:
            values["after_value"], values["after_id"] = self._read_token(q.next_token, fingerprint)
        shape = (q.sort_by, q.descending, q.inclusive_times, frozenset(values))
        # Kind-specific conditions carry their own values, so only plain lists share a statement.
        query = _list_statement(*shape, where=tuple(q.where)) if q.where else _cached_list_statement(*shape)
        with self.store.read() as c:
            rows = c.execute(query, values).all()
        records = [_row(r) for r in rows[: q.max_results]]
        token = None
        if len(rows) > q.max_results:
            last = rows[q.max_results - 1]
            token = self._make_token(getattr(last, column.key), last.id, fingerprint)
        return records, token

    # -- tokens --------------------------------------------------------------

    @staticmethod
    def _fingerprint(account_id: str, region: str, kind: str, q: ListQuery) -> str:
        """What a token is valid for: the same list with the same filters and order."""
        parts = [
            account_id,
            region,
            kind,
            q.name_contains,
            q.created_after,
            q.created_before,
            q.modified_after,
            q.modified_before,
            q.inclusive_times,
            q.status,
            q.parent,
            q.sort_by,
            q.descending,
            [str(w.compile(compile_kwargs={"literal_binds": True})) for w in q.where],
        ]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]

    def sign(self, payload: Any) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        mac = hmac.new(self._token_key, raw, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")

    def unsign(self, token: str) -> Any:
        """The payload of a token this server signed, or None (forged, altered, or not a token at all)."""
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, raw = blob[:16], blob[16:]
            if not hmac.compare_digest(mac, hmac.new(self._token_key, raw, hashlib.sha256).digest()[:16]):
                return None
            return json.loads(raw)
        except (ValueError, TypeError):
            return None

    # The one NextToken of every paginated answer, whatever the service: the position of the next
    # page, signed, and bound to the list it belongs to (``scope``: anything JSON that names the list,
    # its filters and its order), so a token is never redeemed against another list.

    def page_token(self, scope: Any, **position) -> str:
        """A NextToken for the page after ``position`` (JSON values) of the list ``scope`` names."""
        return self.sign({"s": _scope_digest(scope), **position})

    def read_page_token(self, token: str, scope: Any, refuse: AWSError | None = None) -> dict:
        """The position a NextToken holds, if this server issued it for this list; otherwise ``refuse``
        is raised: each service's own error (code and words), ValidationException by default."""
        payload = self.unsign(token)
        if not isinstance(payload, dict) or payload.pop("s", None) != _scope_digest(scope):
            raise refuse or invalid_page_token()
        return payload

    def _make_token(self, value, last_id: int, fingerprint: str) -> str:
        return self.page_token(fingerprint, v=value, i=last_id)

    def _read_token(self, token: str, fingerprint: str):
        position = self.read_page_token(token, fingerprint)
        return position["v"], position["i"]


def _scope_digest(scope: Any) -> str:
    """A short, order-independent name of a list's scope: tokens stay small however long the filters."""
    text = json.dumps(scope, default=str, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def invalid_page_token() -> AWSError:
    """SageMaker's answer to a NextToken it did not issue for this list (forged, altered, or another list's)."""
    return validation(
        "Invalid pagination token: this NextToken was not issued by this server for this list "
        "(the same filters and sort order)."
    )
