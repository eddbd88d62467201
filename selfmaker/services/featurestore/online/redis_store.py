"""The Redis online store, for several SelfMaker servers sharing one online store.

A record is a hash ``sm:fs:{<group>}:r:<id>`` (e: event time, x: expiry, d:
tombstone, p: payload) that Redis itself expires at ExpiresAt; a sorted set
``sm:fs:{<group>}`` indexes the ids for ListRecords. The hash tag keeps one
group's keys on one cluster slot. Each change is one Lua script, so the
event-time comparison and the write are atomic however many servers write.
The offline journal stays in this server's local file and is committed
before Redis is touched: an acknowledged write is always journaled.
"""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlparse

import redis
import redis.asyncio

from ..journal import Journal, OfflineRow
from .base import Change, OnlineStore, Outcome, Stored

# KEYS: record, index. ARGV: event time, payload, expiry in epoch ms ('' = none), record id.
_PUT = """
local cur = redis.call('HGET', KEYS[1], 'e')
if cur and tonumber(ARGV[1]) < tonumber(cur) then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'd', '0', 'p', ARGV[2], 'x', ARGV[3])
if ARGV[3] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) else redis.call('PERSIST', KEYS[1]) end
redis.call('ZADD', KEYS[2], 0, ARGV[4])
return 1
"""
# KEYS: record, index. ARGV: event time, record id.
_SOFT_DELETE = """
local cur = redis.call('HGET', KEYS[1], 'e')
if cur and tonumber(ARGV[1]) <= tonumber(cur) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'd', '1', 'p', '', 'x', '')
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""
# KEYS: record, index. ARGV: event time, record id. -1: refused as stale.
_HARD_DELETE = """
local cur = redis.call('HGET', KEYS[1], 'e')
if cur and tonumber(ARGV[1]) <= tonumber(cur) then return -1 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# KEYS: records. One command whose reply is every key's HMGET, instead of a pipeline of HMGETs, whose
# packing and parsing in redis-py were half of a 100-record BatchGetRecord's read. The fields go back as
# Redis holds them: joining them into one string in Lua cost Redis a third of the batch's read (Lua
# copies and hashes each 2.5 KB string it builds) and Python a split that copied the payload again.
_GET_MANY = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, 'e', 'x', 'd', 'p') end
return out
"""

# How long a read from the event loop waits for Redis (the URL's socket_timeout, when it sets one, instead):
# past it the request fails as a dropped connection does, and the loop's other requests never wait on it.
READ_TIMEOUT_SECONDS = 10.0
# Connections the event loop's reads may hold at once (one per read in flight; idle ones are reused). More
# concurrent reads wait for one: a flood of requests does not open a flood of connections to Redis.
MAX_LOOP_CONNECTIONS = 32


class RedisOnlineStore(OnlineStore):
    def __init__(self, url: str, journal: Journal):
        self.client = redis.Redis.from_url(url)
        try:
            self.client.ping()
        except redis.RedisError as exc:
            where = urlparse(url)
            raise ValueError(
                f"the Redis online store at {where.hostname}:{where.port} is not reachable: {exc}"
            ) from exc
        self.journal = journal
        self._put = self.client.register_script(_PUT)
        self._soft_delete = self.client.register_script(_SOFT_DELETE)
        self._hard_delete = self.client.register_script(_HARD_DELETE)
        self._get_many = self.client.register_script(_GET_MANY)
        self._readers = threading.local()
        self._reader_connections: list = []  # every thread's, to close them
        self._reader_lock = threading.Lock()
        # The event loop's reads: asyncio connections made by a pool of the same URL (address, credentials,
        # TLS, parser), without redis-py's per-write timeout (a task per command); one timeout per read instead.
        self._loop_pool = redis.asyncio.Redis.from_url(url).connection_pool
        self._read_timeout = self._loop_pool.connection_kwargs.get("socket_timeout") or READ_TIMEOUT_SECONDS
        self._loop_pool.connection_kwargs["socket_timeout"] = None
        self._loop = None  # the loop the connections below belong to
        self._loop_idle: list = []
        self._loop_slots: asyncio.Semaphore | None = None

    def _read(self, *command):
        """One read command on this thread's own connection (made by the client's pool, so with its address,
        credentials, TLS and parser). GetRecord is one round trip: redis-py's per-command machinery around
        it (pool checkout with a readiness poll, retry wrapper, metrics) cost about as much as the round
        trip itself. A connection that broke is made again once: Redis restarted, or dropped it idle."""
        conn = getattr(self._readers, "connection", None)
        if conn is None:
            conn = self._readers.connection = self.client.connection_pool.make_connection()
            with self._reader_lock:
                self._reader_connections.append(conn)
        for attempt in (1, 2):
            try:
                conn.send_command(*command)
                return conn.read_response()
            except redis.ResponseError:
                raise  # Redis answered (the reply is read whole): the connection is fine
            except (redis.ConnectionError, redis.TimeoutError):
                conn.disconnect()
                if attempt == 2:
                    raise
            except BaseException:
                conn.disconnect()  # a reply may be half read: never reuse this socket as it is
                raise

    def _read_many(self, keys: list[str]) -> list:
        try:
            return self._read("EVALSHA", self._get_many.sha, len(keys), *keys)
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts
            self._read("SCRIPT", "LOAD", _GET_MANY)
            return self._read("EVALSHA", self._get_many.sha, len(keys), *keys)

    async def _read_async(self, *command):
        """``_read`` from the event loop: one command on an idle connection of the loop's own (or a new one),
        the same errors, the same one retry of a connection that broke. Past the read timeout the connection
        is closed (a late reply must never answer the next command) and redis.TimeoutError raised."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections and the semaphore belong to one loop
            self._loop, self._loop_idle, self._loop_slots = loop, [], asyncio.Semaphore(MAX_LOOP_CONNECTIONS)
        assert self._loop_slots is not None
        async with self._loop_slots:
            conn = self._loop_idle.pop() if self._loop_idle else self._loop_pool.make_connection()
            for attempt in (1, 2):
                try:
                    async with asyncio.timeout(self._read_timeout):
                        await conn.send_command(*command)
                        reply = await conn.read_response()
                except redis.ResponseError:
                    self._loop_idle.append(conn)  # Redis answered (the reply is read whole): the connection is fine
                    raise
                except redis.ConnectionError:
                    await conn.disconnect(nowait=True)
                    if attempt == 2:
                        raise
                    continue
                except TimeoutError:
                    await conn.disconnect(nowait=True)
                    raise redis.TimeoutError(f"Redis did not answer within {self._read_timeout} s") from None
                except BaseException:
                    await conn.disconnect(nowait=True)  # a reply may be half read: never reuse this socket as it is
                    raise
                self._loop_idle.append(conn)
                return reply

    async def _read_many_async(self, keys: list[str]) -> list:
        try:
            return await self._read_async("EVALSHA", self._get_many.sha, len(keys), *keys)
        except redis.exceptions.NoScriptError:
            await self._read_async("SCRIPT", "LOAD", _GET_MANY)
            return await self._read_async("EVALSHA", self._get_many.sha, len(keys), *keys)

    @staticmethod
    def _index(grp: str) -> str:
        return f"sm:fs:{{{grp}}}"

    @staticmethod
    def _record(grp: str, rid: str) -> str:
        return f"sm:fs:{{{grp}}}:r:{rid}"

    def get_many(self, grp: str, record_ids: list[str], now: float) -> dict[str, Stored]:
        if len(record_ids) == 1:
            replies = [self._read("HMGET", self._record(grp, record_ids[0]), "e", "x", "d", "p")]
        else:
            replies = self._read_many([self._record(grp, rid) for rid in record_ids])
        return self._live(record_ids, replies, now)

    async def get_many_async(self, grp: str, record_ids: list[str], now: float) -> dict[str, Stored]:
        if len(record_ids) == 1:
            replies = [await self._read_async("HMGET", self._record(grp, record_ids[0]), "e", "x", "d", "p")]
        else:
            replies = await self._read_many_async([self._record(grp, rid) for rid in record_ids])
        return self._live(record_ids, replies, now)

    @staticmethod
    def _live(record_ids: list[str], replies: list, now: float) -> dict[str, Stored]:
        found = {}
        for rid, (e, x, d, p) in zip(record_ids, replies):
            if e is None or d == b"1":
                continue  # absent, or a soft-delete tombstone
            expires_at = int(x) / 1000 if x else None
            if expires_at is None or expires_at > now:
                found[rid] = Stored(float(e), expires_at, False, p)
        return found

    def write(self, grp: str, change: Change | None, offline: list[OfflineRow], now: float) -> Outcome:
        if change is not None and change.kind == "hard_delete":
            current = self.client.hget(self._record(grp, change.record_id), "e")
            if current is not None and float(current) >= change.event_time:
                return Outcome.STALE
        if offline:
            self.journal.append_now(grp, offline)
        if change is None:
            return Outcome.APPLIED
        keys = [self._record(grp, change.record_id), self._index(grp)]
        event_time = repr(change.event_time)
        if change.kind == "put":
            expiry = str(round(change.expires_at * 1000)) if change.expires_at is not None else ""
            applied = self._put(keys=keys, args=[event_time, change.payload, expiry, change.record_id])
        elif change.kind == "soft_delete":
            applied = self._soft_delete(keys=keys, args=[event_time, change.record_id])
        else:
            # Refused only if a newer record landed since the check above; the marker is journaled already,
            # which is what a SoftDelete of the same moment would have left.
            applied = self._hard_delete(keys=keys, args=[event_time, change.record_id])
        return Outcome.APPLIED if applied == 1 else Outcome.SUPERSEDED

    def list_ids(self, grp: str, after: str | None, limit: int, include_soft_deleted: bool, now: float) -> list[str]:
        index = self._index(grp)
        found: list[str] = []
        start = f"({after}" if after else "-"
        while len(found) < limit:
            ids = [i.decode() for i in self.client.zrangebylex(index, start, "+", start=0, num=limit)]
            if not ids:
                break
            pipe = self.client.pipeline(transaction=False)
            for rid in ids:
                pipe.hmget(self._record(grp, rid), "e", "d")
            gone = []
            for rid, (e, d) in zip(ids, pipe.execute()):
                if e is None:
                    gone.append(rid)  # expired by Redis: drop it from the index too
                elif include_soft_deleted or d != b"1":
                    found.append(rid)
            if gone:
                self.client.zrem(index, *gone)
            start = f"({ids[-1]}"
        return found[:limit]

    def drop_group(self, grp: str) -> None:
        index = self._index(grp)
        while ids := [i.decode() for i in self.client.zrange(index, 0, 999)]:
            self.client.unlink(*(self._record(grp, rid) for rid in ids))
            self.client.zrem(index, *ids)
        self.client.delete(index)

    def close(self) -> None:
        with self._reader_lock:
            for conn in self._reader_connections:
                conn.disconnect()
            self._reader_connections.clear()
        idle, self._loop_idle = self._loop_idle, []
        if idle and self._loop is not None and not self._loop.is_closed():
            # Called from a worker thread at shutdown: the loop's sockets are closed on the loop, without waiting.
            self._loop.call_soon_threadsafe(lambda: [conn._force_disconnect() for conn in idle])
        self.client.close()
