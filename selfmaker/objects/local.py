"""The embedded object store: a directory with an SQLite index and immutable blob files.

Layout under the root::

    index.sqlite3        buckets, objects, multipart uploads and parts
    blobs/ab/ab12...     object and part bodies, named by random ids
    staging/             bodies being received

Keys live only in the index (as UTF-8 BLOBs, so SQLite's memcmp order is S3's
byte order and listings are index range scans); no key or bucket name ever
becomes a path component, so nothing a client sends can reach outside the root.

A write streams to staging/, is fsynced and verified, renamed into blobs/, and
only then committed to the index in one transaction: a reader sees the old
object or the new one, and a crash leaves at worst an unreferenced blob. Blobs
are never modified, so an open reader keeps its snapshot when the key is
overwritten (POSIX keeps unlinked files readable through open descriptors).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..server.errors import AWSError
from ..store.sqlite_file import SQLiteFile
from .base import (
    CHUNK_SIZE,
    MAX_KEYS,
    MAX_PART_NUMBER,
    MIN_PART_SIZE,
    Body,
    BucketInfo,
    CompletedPart,
    Condition,
    ListPage,
    ObjectInfo,
    ObjectMeta,
    ObjectReader,
    ObjectStore,
    PartInfo,
    PartsPage,
    UploadInfo,
    UploadsPage,
    check_bucket_name,
    check_condition,
    key_bytes,
    no_such_bucket,
    no_such_key,
    no_such_upload,
)
from .digests import CRC_ALGORITHMS, Expected, composite_checksum, multipart_etag
from .staging import Staged, stage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,            -- UTF-8 bytes: BLOB comparison is S3's listing order
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified REAL NOT NULL,
    info TEXT NOT NULL,           -- JSON: meta, checksums, checksum_type, parts_count
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    upload_id TEXT NOT NULL,      -- starts with the creation time, so (key, upload_id) is S3's listing order
    initiated REAL NOT NULL,
    info TEXT NOT NULL,           -- JSON: meta, checksum_algorithm, checksum_type
    PRIMARY KEY (bucket, key, upload_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS uploads_by_id ON uploads (upload_id);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified REAL NOT NULL,
    checksums TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;
"""

_STALE_STAGING_SECONDS = 24 * 3600
_LIST_BATCH = 1000


def _successor(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``prefix`` (UTF-8 has no 0xff)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class LocalObjectStore(ObjectStore):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.blobs = self.root / "blobs"
        self.staging = self.root / "staging"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        self._index = self.root / "index.sqlite3"
        self._db = SQLiteFile(self._index, _SCHEMA)
        self._sweep_staging()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    # -- plumbing ------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        return self._db.conn()

    def _write(self):
        return self._db.write()

    def close(self) -> None:
        self._db.close()

    def _blob_path(self, name: str) -> Path:
        return self.blobs / name[:2] / name

    def _adopt(self, staged_path: Path) -> str:
        """Move a staged file into blobs/ under a new name (not yet referenced by the index)."""
        name = uuid.uuid4().hex
        target = self._blob_path(name)
        target.parent.mkdir(exist_ok=True)
        os.replace(staged_path, target)
        return name

    def _drop_blobs(self, names) -> None:
        for name in names:
            self._blob_path(name).unlink(missing_ok=True)

    def _sweep_staging(self) -> None:
        """Bodies left by a crash mid-upload."""
        cutoff = time.time() - _STALE_STAGING_SECONDS
        for path in self.staging.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass

    def _bucket_exists(self, conn, bucket: str) -> bool:
        return conn.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is not None

    def _require_bucket(self, conn, bucket: str) -> None:
        if not self._bucket_exists(conn, bucket):
            raise no_such_bucket(bucket)

    # -- buckets ---------------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> BucketInfo:
        check_bucket_name(bucket)
        created = time.time()
        with self._write() as conn:
            if self._bucket_exists(conn, bucket):
                raise AWSError(
                    "BucketAlreadyExists", "The requested bucket name is not available.", 409, BucketName=bucket
                )
            conn.execute("INSERT INTO buckets (name, created) VALUES (?, ?)", (bucket, created))
        return BucketInfo(bucket, created)

    def head_bucket(self, bucket: str) -> BucketInfo:
        row = self._conn().execute("SELECT name, created FROM buckets WHERE name = ?", (bucket,)).fetchone()
        if row is None:
            raise no_such_bucket(bucket)
        return BucketInfo(*row)

    def list_buckets(self) -> list[BucketInfo]:
        return [BucketInfo(*row) for row in self._conn().execute("SELECT name, created FROM buckets ORDER BY name")]

    def delete_bucket(self, bucket: str) -> None:
        with self._write() as conn:
            self._require_bucket(conn, bucket)
            if conn.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (bucket,)).fetchone():
                raise AWSError("BucketNotEmpty", "The bucket you tried to delete is not empty.", 409, BucketName=bucket)
            uploads = [r[0] for r in conn.execute("SELECT upload_id FROM uploads WHERE bucket = ?", (bucket,))]
            blobs = self._delete_uploads(conn, uploads)
            conn.execute("DELETE FROM buckets WHERE name = ?", (bucket,))
        self._drop_blobs(blobs)

    # -- objects ---------------------------------------------------------------------------

    def put_object(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        meta: ObjectMeta | None = None,
        checksum_algorithm: str | None = None,
        expected: Expected | None = None,
        condition: Condition | None = None,
    ) -> ObjectInfo:
        raw = key_bytes(key)
        self.head_bucket(bucket)  # fail before reading the body
        staged = stage(body, self.staging, [checksum_algorithm] if checksum_algorithm else (), expected)
        info = ObjectInfo(key, staged.size, staged.md5_hex, time.time(), meta or ObjectMeta())
        if checksum_algorithm:
            info.checksums = {checksum_algorithm: staged.checksums[checksum_algorithm]}
            info.checksum_type = "FULL_OBJECT"
        self._commit(bucket, raw, staged, info, condition)
        return info

    def _commit(
        self,
        bucket: str,
        raw_key: bytes,
        staged: Staged,
        info: ObjectInfo,
        condition: Condition | None,
        *,
        upload_id: str | None = None,
    ) -> None:
        """Make ``staged`` the object under the key (and, for a multipart completion, retire the upload)."""
        name = self._adopt(staged.path)
        retired: list[str] = []
        try:
            with self._write() as conn:
                self._require_bucket(conn, bucket)
                if upload_id is not None:
                    if not conn.execute("SELECT 1 FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone():
                        raise no_such_upload(upload_id)  # aborted while we were joining its parts
                    retired += self._delete_uploads(conn, [upload_id])
                row = conn.execute(
                    "SELECT blob, etag FROM objects WHERE bucket = ? AND key = ?", (bucket, raw_key)
                ).fetchone()
                check_condition(condition, row[1] if row else None)
                if row:
                    retired.append(row[0])
                conn.execute(
                    "INSERT OR REPLACE INTO objects (bucket, key, blob, size, etag, modified, info) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (bucket, raw_key, name, info.size, info.etag, info.last_modified, _info_json(info)),
                )
        except BaseException:
            self._drop_blobs([name])
            raise
        self._drop_blobs(retired)

    def open_object(self, bucket: str, key: str) -> _LocalReader:
        raw = key_bytes(key)
        for _ in range(5):
            row = self._object_row(bucket, raw)
            try:
                handle = open(self._blob_path(row[0]), "rb")
            except FileNotFoundError:
                continue  # overwritten between the lookup and the open: look again
            return _LocalReader(_info_from_row(key, row), handle)
        raise AWSError("SlowDown", "The key is being overwritten too often to read it; retry.", 503)

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        return _info_from_row(key, self._object_row(bucket, key_bytes(key)))

    def _object_row(self, bucket: str, raw_key: bytes):
        conn = self._conn()
        row = conn.execute(
            "SELECT blob, size, etag, modified, info FROM objects WHERE bucket = ? AND key = ?", (bucket, raw_key)
        ).fetchone()
        if row is None:
            self._require_bucket(conn, bucket)
            raise no_such_key(raw_key.decode())
        return row

    def delete_object(self, bucket: str, key: str) -> None:
        raw = key_bytes(key)
        with self._write() as conn:
            self._require_bucket(conn, bucket)
            row = conn.execute("SELECT blob FROM objects WHERE bucket = ? AND key = ?", (bucket, raw)).fetchone()
            if row:
                conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, raw))
        if row:
            self._drop_blobs([row[0]])

    def list_objects(
        self, bucket: str, prefix: str = "", delimiter: str = "", start_after: str = "", max_keys: int = MAX_KEYS
    ) -> ListPage:
        conn = self._conn()
        self._require_bucket(conn, bucket)
        page = ListPage([], [], False, None)
        if max_keys <= 0:
            return page
        pre, delim, marker = prefix.encode(), delimiter.encode(), start_after.encode()
        upper = _successor(pre) if pre else None
        # Seek position: keys >= low when inclusive, else > low.
        low, inclusive = (pre, True) if pre > marker else (marker, False)
        entries: list[ObjectInfo | str] = []
        while len(entries) <= max_keys:
            sql = (
                "SELECT key, size, etag, modified FROM objects WHERE bucket = ? AND key "
                + (">=" if inclusive else ">")
                + " ?"
                + (" AND key < ?" if upper else "")
                + " ORDER BY key LIMIT ?"
            )
            params = (bucket, low, *((upper,) if upper else ()), _LIST_BATCH)
            rows = conn.execute(sql, params).fetchall()
            for raw, size, etag, modified in rows:
                cut = raw.find(delim, len(pre)) if delim else -1
                if cut >= 0:
                    common = raw[: cut + len(delim)]
                    if common > marker:
                        entries.append(common.decode())
                    low, inclusive = _successor(common), True  # skip every key under this common prefix
                    break
                entries.append(ObjectInfo(raw.decode(), size, etag, modified))
                low, inclusive = raw, False
                if len(entries) > max_keys:
                    break
            else:
                if len(rows) < _LIST_BATCH:
                    break
        page.is_truncated = len(entries) > max_keys
        entries = entries[:max_keys]
        for entry in entries:
            if isinstance(entry, str):
                page.common_prefixes.append(entry)
            else:
                page.objects.append(entry)
        if page.is_truncated:
            last = entries[-1]
            page.next_marker = last if isinstance(last, str) else last.key
        return page

    def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        *,
        meta: ObjectMeta | None = None,
        checksum_algorithm: str | None = None,
        condition: Condition | None = None,
    ) -> ObjectInfo:
        raw = key_bytes(key)
        self.head_bucket(bucket)
        with self.open_object(src_bucket, src_key) as reader:
            source = reader.info
            algorithm = checksum_algorithm or next(iter(source.checksums), None)
            reusable = "-" not in source.etag and (
                algorithm is None or (source.checksum_type == "FULL_OBJECT" and algorithm in source.checksums)
            )
            staged = self._link(reader) if reusable else None
            if staged is None:  # a multipart source becomes a single-part object: its digests change
                staged = stage(reader.chunks(), self.staging, [algorithm] if algorithm else ())
                checksums = {algorithm: staged.checksums[algorithm]} if algorithm else {}
            else:
                checksums = {algorithm: source.checksums[algorithm]} if algorithm else {}
        info = ObjectInfo(
            key,
            staged.size,
            staged.md5_hex,
            time.time(),
            meta if meta is not None else source.meta,
            checksums,
            "FULL_OBJECT" if checksums else None,
        )
        self._commit(bucket, raw, staged, info, condition)
        return info

    def _link(self, reader: _LocalReader) -> Staged | None:
        """A second name for the reader's blob (blobs are immutable, so sharing the inode is safe)."""
        path = self.staging / f"link-{uuid.uuid4().hex}"
        try:
            os.link(f"/proc/self/fd/{reader.handle.fileno()}", path, follow_symlinks=True)
        except OSError:
            return None
        info = reader.info
        return Staged(path, info.size, info.etag, bytes.fromhex(info.etag), dict(info.checksums))

    # -- multipart uploads -------------------------------------------------------------------

    def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        meta: ObjectMeta | None = None,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> str:
        raw = key_bytes(key)
        if checksum_algorithm and checksum_type is None:
            checksum_type = "FULL_OBJECT" if checksum_algorithm == "CRC64NVME" else "COMPOSITE"
        if checksum_type == "FULL_OBJECT" and checksum_algorithm not in CRC_ALGORITHMS:
            raise AWSError(
                "InvalidRequest",
                f"The FULL_OBJECT checksum type cannot be used with the {checksum_algorithm} checksum algorithm.",
            )
        now = time.time()
        upload_id = f"{time.time_ns():016x}{uuid.uuid4().hex}"
        info = {
            "meta": (meta or ObjectMeta()).to_json(),
            "checksum_algorithm": checksum_algorithm,
            "checksum_type": checksum_type if checksum_algorithm else None,
        }
        with self._write() as conn:
            self._require_bucket(conn, bucket)
            conn.execute(
                "INSERT INTO uploads (bucket, key, upload_id, initiated, info) VALUES (?, ?, ?, ?, ?)",
                (bucket, raw, upload_id, now, json.dumps(info)),
            )
        return upload_id

    def _upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        conn = self._conn()
        row = conn.execute(
            "SELECT initiated, info FROM uploads WHERE bucket = ? AND key = ? AND upload_id = ?",
            (bucket, key_bytes(key), upload_id),
        ).fetchone()
        if row is None:
            self._require_bucket(conn, bucket)
            raise no_such_upload(upload_id)
        return _upload_info(key, upload_id, *row)

    def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Body, *, expected: Expected | None = None
    ) -> PartInfo:
        _check_part_number(part_number)
        upload = self._upload(bucket, key, upload_id)
        algorithms = [upload.checksum_algorithm] if upload.checksum_algorithm else []
        staged = stage(body, self.staging, algorithms, expected)
        name = self._adopt(staged.path)
        part = PartInfo(part_number, staged.size, staged.md5_hex, time.time(), staged.checksums)
        try:
            with self._write() as conn:
                if not conn.execute("SELECT 1 FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone():
                    raise no_such_upload(upload_id)
                old = conn.execute(
                    "SELECT blob FROM parts WHERE upload_id = ? AND part_number = ?", (upload_id, part_number)
                ).fetchone()
                conn.execute(
                    "INSERT OR REPLACE INTO parts (upload_id, part_number, blob, size, etag, modified, "
                    "checksums) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        upload_id,
                        part_number,
                        name,
                        part.size,
                        part.etag,
                        part.last_modified,
                        json.dumps(part.checksums),
                    ),
                )
        except BaseException:
            self._drop_blobs([name])
            raise
        if old:
            self._drop_blobs([old[0]])
        return part

    def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        *,
        expected: Expected | None = None,
        condition: Condition | None = None,
    ) -> ObjectInfo:
        upload = self._upload(bucket, key, upload_id)
        stored = {
            row[0]: row
            for row in self._conn().execute(
                "SELECT part_number, blob, size, etag, checksums FROM parts WHERE upload_id = ?", (upload_id,)
            )
        }
        chosen = _check_completed_parts(parts, stored)
        algorithm, checksum_type = upload.checksum_algorithm, upload.checksum_type
        full_object = [algorithm] if algorithm and checksum_type == "FULL_OBJECT" else []
        composite_claims = {} if full_object or expected is None else expected.checksums
        if (
            composite_claims and expected is not None
        ):  # a claimed COMPOSITE value is checked against the parts, not the bytes
            expected = replace(expected, checksums={})
        staged = stage(self._concatenated(chosen), self.staging, full_object, expected, md5=False)
        checksums: dict[str, str] = {}
        if algorithm and full_object:
            checksums = {algorithm: staged.checksums[algorithm]}
        elif algorithm:
            checksums = {algorithm: composite_checksum(algorithm, [json.loads(r[4])[algorithm] for r in chosen])}
        for claimed_algorithm, value in composite_claims.items():
            if checksums.get(claimed_algorithm, "").split("-")[0] != value.split("-")[0]:
                staged.discard()
                raise AWSError(
                    "BadDigest", f"The {claimed_algorithm} you specified did not match the calculated checksum."
                )
        info = ObjectInfo(
            key,
            staged.size,
            multipart_etag([r[3] for r in chosen]),
            time.time(),
            upload.meta,
            checksums,
            checksum_type if checksums else None,
            len(chosen),
        )
        self._commit(bucket, key_bytes(key), staged, info, condition, upload_id=upload_id)
        return info

    def _concatenated(self, rows) -> Iterator[bytes]:
        for row in rows:
            try:
                part = open(self._blob_path(row[1]), "rb")
            except FileNotFoundError:  # replaced by a concurrent UploadPart of the same number
                raise AWSError(
                    "InvalidPart", "A part changed while the upload was being completed.", PartNumber=row[0]
                ) from None
            with part:
                while chunk := part.read(CHUNK_SIZE):
                    yield chunk

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self._upload(bucket, key, upload_id)
        with self._write() as conn:
            blobs = self._delete_uploads(conn, [upload_id])
        self._drop_blobs(blobs)

    def _delete_uploads(self, conn, upload_ids: list[str]) -> list[str]:
        """Remove uploads and their parts from the index; the caller removes the returned blobs after commit."""
        blobs: list[str] = []
        for upload_id in upload_ids:
            blobs += [r[0] for r in conn.execute("SELECT blob FROM parts WHERE upload_id = ?", (upload_id,))]
            conn.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
            conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        return blobs

    def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int = 0, max_parts: int = MAX_KEYS
    ) -> PartsPage:
        upload = self._upload(bucket, key, upload_id)
        rows = (
            self._conn()
            .execute(
                "SELECT part_number, size, etag, modified, checksums FROM parts WHERE upload_id = ? AND part_number > ? "
                "ORDER BY part_number LIMIT ?",
                (upload_id, part_number_marker, max_parts + 1),
            )
            .fetchall()
        )
        parts = [
            PartInfo(n, size, etag, modified, json.loads(checksums)) for n, size, etag, modified, checksums in rows
        ]
        return PartsPage(upload, parts[:max_parts], len(parts) > max_parts)

    def list_multipart_uploads(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = MAX_KEYS,
    ) -> UploadsPage:
        conn = self._conn()
        self._require_bucket(conn, bucket)
        pre, marker = prefix.encode(), key_marker.encode()
        rows = conn.execute(
            "SELECT key, upload_id, initiated, info FROM uploads WHERE bucket = ? AND key >= ? AND key >= ? "
            "ORDER BY key, upload_id",
            (bucket, pre, marker),
        )
        page = UploadsPage([], [], False)
        count = 0
        for raw, upload_id, initiated, info in rows:
            if not raw.startswith(pre):
                break
            if raw == marker and (not upload_id_marker or upload_id <= upload_id_marker):
                continue
            key = raw.decode()
            if delimiter and (cut := key.find(delimiter, len(prefix))) >= 0:
                common = key[: cut + len(delimiter)]
                if common in page.common_prefixes or common.encode() <= marker:
                    continue
                entry = common
            else:
                entry = _upload_info(key, upload_id, initiated, info)
            if count == max_uploads:
                page.is_truncated = True
                break
            count += 1
            (page.common_prefixes if isinstance(entry, str) else page.uploads).append(entry)
        return page


class _LocalReader(ObjectReader):
    def __init__(self, info: ObjectInfo, handle):
        self.info = info
        self.handle = handle

    def chunks(self, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        end = self.info.size if end is None else min(end, self.info.size)
        fd = self.handle.fileno()
        position = start
        while position < end:
            chunk = os.pread(fd, min(chunk_size, end - position), position)
            if not chunk:
                raise AWSError("InternalError", "The stored object is shorter than its index entry.", 500)
            position += len(chunk)
            yield chunk

    def close(self) -> None:
        self.handle.close()


def _check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise AWSError(
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive.",
            ArgumentName="partNumber",
            ArgumentValue=str(part_number),
        )


def _check_completed_parts(parts: list[CompletedPart], stored: dict) -> list:
    """The stored part rows that ``parts`` names, after S3's checks."""
    if not parts:
        raise AWSError(
            "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema."
        )
    chosen = []
    for index, part in enumerate(parts):
        if index and part.part_number <= parts[index - 1].part_number:
            raise AWSError(
                "InvalidPartOrder",
                "The list of parts was not in ascending order. The parts list must be "
                "specified in order by part number.",
            )
        row = stored.get(part.part_number)
        mismatched = row is not None and any(json.loads(row[4]).get(a) != v for a, v in part.checksums.items())
        if row is None or row[3] != part.etag.strip('"') or mismatched:
            raise AWSError(
                "InvalidPart",
                "One or more of the specified parts could not be found. The part may not "
                "have been uploaded, or the specified entity tag may not match the part's entity tag.",
                PartNumber=part.part_number,
                ETag=part.etag,
            )
        chosen.append(row)
    for row in chosen[:-1]:
        if row[2] < MIN_PART_SIZE:
            raise AWSError(
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed object size.",
                ProposedSize=row[2],
                MinSizeAllowed=MIN_PART_SIZE,
                PartNumber=row[0],
            )
    return chosen


def _info_json(info: ObjectInfo) -> str:
    return json.dumps(
        {
            "meta": info.meta.to_json(),
            "checksums": info.checksums,
            "checksum_type": info.checksum_type,
            "parts_count": info.parts_count,
        }
    )


def _info_from_row(key: str, row) -> ObjectInfo:
    _blob, size, etag, modified, info = row
    data = json.loads(info)
    return ObjectInfo(
        key,
        size,
        etag,
        modified,
        ObjectMeta.from_json(data["meta"]),
        data["checksums"],
        data["checksum_type"],
        data["parts_count"],
    )


def _upload_info(key: str, upload_id: str, initiated: float, info: str) -> UploadInfo:
    data = json.loads(info)
    return UploadInfo(
        upload_id, key, initiated, ObjectMeta.from_json(data["meta"]), data["checksum_algorithm"], data["checksum_type"]
    )
