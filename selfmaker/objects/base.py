"""The object store interface: S3's data model, small enough to read in one sitting.

Two backends implement it: :mod:`.local` (a directory; the embedded default)
and :mod:`.remote` (any S3-compatible service through boto3). The S3 endpoint
serves whichever is configured, and jobs and pipelines use the same interface
directly. Errors are :class:`AWSError` with S3's codes (NoSuchBucket, NoSuchKey,
BadDigest, ...), so callers can branch on ``err.code`` whichever backend answers.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Self
from urllib.parse import urlparse

from ..server.errors import AWSError
from .digests import Expected

CHUNK_SIZE = 1 << 20
MAX_KEY_BYTES = 1024
MAX_KEYS = 1000
MIN_PART_SIZE = 5 << 20
MAX_PART_NUMBER = 10_000
MAX_SINGLE_PUT = 5 << 30

# A body is bytes, an iterable of byte chunks, or a readable binary file.
Body = bytes | bytearray | memoryview | Iterable[bytes] | BinaryIO

# Standard headers S3 stores with an object and returns on GET/HEAD (besides Content-Type).
STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")


@dataclass
class ObjectMeta:
    """What the writer says about an object: its content type, standard headers and user metadata."""

    content_type: str = "binary/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)  # names from STORED_HEADERS
    user: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* without the prefix, lower-cased names

    def to_json(self) -> dict:
        return {"content_type": self.content_type, "headers": self.headers, "user": self.user}

    @classmethod
    def from_json(cls, data: dict) -> ObjectMeta:
        return cls(
            data.get("content_type", "binary/octet-stream"), dict(data.get("headers", {})), dict(data.get("user", {}))
        )


@dataclass
class BucketInfo:
    name: str
    created: float  # epoch seconds


@dataclass
class ObjectInfo:
    key: str
    size: int
    etag: str  # hex MD5, or "<hex>-<parts>" for multipart objects; without quotes
    last_modified: float  # epoch seconds
    meta: ObjectMeta = field(default_factory=ObjectMeta)
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64 (COMPOSITE values end in -N)
    checksum_type: str | None = None  # FULL_OBJECT or COMPOSITE, when there is a checksum
    parts_count: int | None = None  # for multipart objects


@dataclass
class ListPage:
    """One page of a listing, in UTF-8 byte order, objects and common prefixes interleaved as S3 counts them."""

    objects: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str | None  # the last key or common prefix returned, when truncated


@dataclass
class Condition:
    """Conditional write (If-Match / If-None-Match: *), checked atomically with the write."""

    if_match: str | None = None  # bare ETag the current object must have
    if_none_match: str | None = None  # "*": the key must not exist


@dataclass
class PartInfo:
    part_number: int
    size: int
    etag: str
    last_modified: float
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass
class CompletedPart:
    """A part as CompleteMultipartUpload names it."""

    part_number: int
    etag: str
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass
class UploadInfo:
    upload_id: str
    key: str
    initiated: float
    meta: ObjectMeta = field(default_factory=ObjectMeta)
    checksum_algorithm: str | None = None
    checksum_type: str | None = None


@dataclass
class PartsPage:
    upload: UploadInfo
    parts: list[PartInfo]
    is_truncated: bool


@dataclass
class UploadsPage:
    uploads: list[UploadInfo]
    common_prefixes: list[str]
    is_truncated: bool


class ObjectReader(ABC):
    """An open object: its info and its bytes, consistent with each other even if the key is overwritten."""

    info: ObjectInfo

    @abstractmethod
    def chunks(self, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive; None = to the end)."""

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.chunks(start, end))

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ObjectStore(ABC):
    """Buckets of objects, with S3's semantics. Every write is atomic: readers see the old or the new object."""

    # -- buckets ---------------------------------------------------------------

    @abstractmethod
    def create_bucket(self, bucket: str) -> BucketInfo:
        """BucketAlreadyExists when it exists (ownership is the endpoint's business)."""

    @abstractmethod
    def head_bucket(self, bucket: str) -> BucketInfo:
        """NoSuchBucket when it does not exist."""

    @abstractmethod
    def list_buckets(self) -> list[BucketInfo]: ...

    @abstractmethod
    def delete_bucket(self, bucket: str) -> None:
        """BucketNotEmpty while it holds objects; pending multipart uploads are aborted."""

    # -- objects ---------------------------------------------------------------

    @abstractmethod
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
        """Store ``body`` under ``key``, computing its MD5 and ``checksum_algorithm`` as it streams.

        ``expected`` is verified after the last byte (BadDigest and friends); nothing is
        visible until it holds.
        """

    @abstractmethod
    def open_object(self, bucket: str, key: str) -> ObjectReader:
        """NoSuchBucket / NoSuchKey; close the reader (or use ``with``)."""

    @abstractmethod
    def head_object(self, bucket: str, key: str) -> ObjectInfo: ...

    @abstractmethod
    def delete_object(self, bucket: str, key: str) -> None:
        """Deleting a missing key succeeds, as in S3."""

    @abstractmethod
    def list_objects(
        self, bucket: str, prefix: str = "", delimiter: str = "", start_after: str = "", max_keys: int = MAX_KEYS
    ) -> ListPage:
        """Keys after ``start_after`` under ``prefix``, rolled up at ``delimiter``; entries carry no meta."""

    @abstractmethod
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
        """Copy an object; ``meta`` None keeps the source's metadata (S3's COPY directive)."""

    # -- multipart uploads -----------------------------------------------------

    @abstractmethod
    def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        meta: ObjectMeta | None = None,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> str:
        """A new upload id."""

    @abstractmethod
    def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Body, *, expected: Expected | None = None
    ) -> PartInfo: ...

    @abstractmethod
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
        """Join the named parts (InvalidPart, InvalidPartOrder, EntityTooSmall) into the object."""

    @abstractmethod
    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None: ...

    @abstractmethod
    def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int = 0, max_parts: int = MAX_KEYS
    ) -> PartsPage: ...

    @abstractmethod
    def list_multipart_uploads(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = MAX_KEYS,
    ) -> UploadsPage: ...

    def close(self) -> None:
        pass

    # -- conveniences built on the primitives ---------------------------------------

    def get_object(self, bucket: str, key: str, start: int = 0, end: int | None = None) -> bytes:
        with self.open_object(bucket, key) as reader:
            return reader.read(start, end)

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, following pages."""
        marker = ""
        while True:
            page = self.list_objects(bucket, prefix=prefix, start_after=marker)
            yield from page.objects
            if not page.is_truncated:
                return
            if page.next_marker is None:  # a truncated page says where the next one starts
                raise RuntimeError(f"a truncated listing of {bucket} without a next marker")
            marker = page.next_marker

    def download_prefix(self, uri: str, local_dir: str | os.PathLike) -> list[Path]:
        """Copy every object under ``s3://bucket/prefix`` into ``local_dir``.

        An object lands at its key less the prefix (and leading '/'); a URI naming a single
        object lands under its base name. A key ending in '/' (a "folder" marker) makes a
        directory. Keys that would land outside ``local_dir`` ('..') are refused with InvalidArgument.
        """
        bucket, prefix = parse_s3_uri(uri)
        root = Path(local_dir).resolve()
        written: list[Path] = []
        for info in self.iter_objects(bucket, prefix):
            relative = info.key[len(prefix) :].lstrip("/")
            if info.key.endswith("/"):
                _inside(root, relative).mkdir(parents=True, exist_ok=True)
                continue
            target = _inside(root, relative or info.key.rsplit("/", 1)[-1])
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")
            with self.open_object(bucket, info.key) as reader, open(partial, "wb") as out:
                for chunk in reader.chunks():
                    out.write(chunk)
            os.replace(partial, target)
            written.append(target)
        return written

    def upload_directory(self, local_dir: str | os.PathLike, uri: str) -> list[ObjectInfo]:
        """Upload every file under ``local_dir`` to ``s3://bucket/prefix/<relative path>``."""
        bucket, prefix = parse_s3_uri(uri)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        root = Path(local_dir)
        uploaded = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = prefix + path.relative_to(root).as_posix()
            with open(path, "rb") as f:
                uploaded.append(self.put_object(bucket, key, f))
        return uploaded


def _inside(root: Path, relative: str) -> Path:
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise AWSError("InvalidArgument", f"Key {relative!r} would be written outside {root}.")
    return target


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix")."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise AWSError("InvalidArgument", f"{uri!r} is not an s3://bucket/key URI.")
    return parsed.netloc, uri[len("s3://") + len(parsed.netloc) :].lstrip("/")


# -- names --------------------------------------------------------------------------

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def check_bucket_name(name: str) -> str:
    """S3's general-purpose bucket naming rules; InvalidBucketName otherwise."""
    if (
        not _BUCKET_NAME.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP_ADDRESS.match(name)
        or name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        or name.endswith(("-s3alias", "--ol-s3", "--x-s3"))
    ):
        raise AWSError("InvalidBucketName", "The specified bucket is not valid.", BucketName=name)
    return name


def key_bytes(key: str) -> bytes:
    """The key as stored and ordered: its UTF-8 bytes (KeyTooLongError past 1024)."""
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise AWSError("InvalidArgument", "Object keys must be valid UTF-8.") from None
    if not raw:
        raise AWSError("InvalidArgument", "An object key must not be empty.")
    if len(raw) > MAX_KEY_BYTES:
        raise AWSError("KeyTooLongError", "Your key is too long.", MaxSizeAllowed=MAX_KEY_BYTES, Size=len(raw))
    return raw


def no_such_bucket(bucket: str) -> AWSError:
    return AWSError("NoSuchBucket", "The specified bucket does not exist.", 404, BucketName=bucket)


def no_such_key(key: str) -> AWSError:
    return AWSError("NoSuchKey", "The specified key does not exist.", 404, Key=key)


def no_such_upload(upload_id: str) -> AWSError:
    return AWSError(
        "NoSuchUpload",
        "The specified multipart upload does not exist. The upload ID may be invalid, "
        "or the upload may have been aborted or completed.",
        404,
        UploadId=upload_id,
    )


def precondition_failed(condition: str) -> AWSError:
    return AWSError(
        "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.", 412, Condition=condition
    )


def check_condition(condition: Condition | None, current_etag: str | None) -> None:
    """For conditional writes: raise unless ``condition`` holds for the object now under the key."""
    if condition is None:
        return
    if condition.if_none_match == "*" and current_etag is not None:
        raise precondition_failed("If-None-Match")
    if condition.if_match is not None:
        if current_etag is None:
            raise no_such_key("")
        if condition.if_match not in ("*", current_etag):
            raise precondition_failed("If-Match")
