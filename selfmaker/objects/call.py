"""One S3 request being served: who asks, for which bucket and key, and the helpers every handler shares.

The object store is synchronous (files, SQLite, boto3); handlers run its calls
on a dedicated thread pool and bridge request and response bodies between that
pool and the event loop in 1 MiB pieces, so no body is ever held in memory whole.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, overload
from urllib.parse import quote

from ..server.errors import AWSError
from ..server.http import Request
from .base import (
    CHUNK_SIZE,
    MAX_SINGLE_PUT,
    STORED_HEADERS,
    ObjectInfo,
    ObjectMeta,
    ObjectReader,
    ObjectStore,
    no_such_bucket,
)
from .chunked import AwsChunkedDecoder
from .digests import ALGORITHMS, Digester, Expected, check_checksum_value, decode_content_md5, normalise_algorithm
from .ownership import BucketOwners, Ownership
from .xml import MAX_XML_BODY

if TYPE_CHECKING:
    from ..backends import Backends
    from ..server.auth import Principal

# Store calls block; they get their own pool so long uploads never starve asyncio's default one.
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="s3-io")
_HEX_SHA256 = frozenset("0123456789abcdef")
MAX_USER_METADATA = 2048  # bytes of x-amz-meta-* names and values, as S3 allows

# Headers S3 understands but SelfMaker does not honour: refusing beats pretending.
_UNSUPPORTED_HEADERS = {
    "x-amz-server-side-encryption-customer-algorithm": "server-side encryption with customer keys",
    "x-amz-tagging": "object tagging",
    "x-amz-object-lock-mode": "object lock",
    "x-amz-object-lock-retain-until-date": "object lock",
    "x-amz-object-lock-legal-hold": "object lock",
    "x-amz-website-redirect-location": "website redirects",
}
# With S3's default "bucket owner enforced" ownership, only these canned ACLs are accepted (and change nothing).
_ACCEPTED_ACLS = {"private", "bucket-owner-full-control"}


def owner_id(account_id: str) -> str:
    """A stable 64-hex canonical user id for an account, shaped like S3's."""
    return hashlib.sha256(f"selfmaker:{account_id}".encode()).hexdigest()


@dataclass
class S3Call:
    backends: Backends
    request: Request
    principal: Principal
    owners: BucketOwners
    bucket: str | None
    key: str | None
    request_id: str

    @property
    def store(self) -> ObjectStore:
        return self.backends.objects

    @property
    def account_id(self) -> str:
        return self.principal.account_id

    @property
    def bucket_name(self) -> str:
        """The bucket the request names; a path that names none (``//key``) names no bucket there is."""
        if self.bucket is None:
            raise no_such_bucket("")
        return self.bucket

    @property
    def object_key(self) -> str:
        """The key of an object request (the router sends a request to an object handler only when it names one)."""
        if self.key is None:
            raise RuntimeError("an object handler was called for a request that names no key")
        return self.key

    @overload
    def header(self, name: str) -> str | None: ...
    @overload
    def header(self, name: str, default: str) -> str: ...
    def header(self, name: str, default: str | None = None) -> str | None:
        return self.request.headers.get(name, default)

    def query(self, name: str) -> str | None:
        return self.request.query_value(name)

    def int_param(self, name: str, default: int, low: int, high: int | None = None) -> int:
        """An integer query parameter within [low, high]; InvalidArgument otherwise."""
        raw = self.query(name)
        if raw is None:
            return default
        value = int(raw) if raw.lstrip("-").isdigit() else low - 1
        if value < low or (high is not None and value > high):
            raise AWSError(
                "InvalidArgument",
                f"Provided {name} not an integer or within integer range",
                ArgumentName=name,
                ArgumentValue=raw,
            )
        return value

    def url_encoder(self):
        """For listings: EncodingType=url percent-encodes keys and prefixes (botocore asks for it by default)."""
        encoding = self.query("encoding-type")
        if encoding is None:
            return lambda value: value
        if encoding != "url":
            raise AWSError(
                "InvalidArgument",
                "Invalid Encoding Method specified in Request",
                ArgumentName="encoding-type",
                ArgumentValue=encoding,
            )
        return lambda value: quote(value, safe="/") if value is not None else None

    async def run(self, fn, *args, **kwargs):
        """Run a blocking store call on the I/O pool."""
        return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(fn, *args, **kwargs))

    # -- access ----------------------------------------------------------------------------------

    async def authorize(self, bucket: str | None = None) -> Ownership:
        """The bucket's ownership, once the caller is known to own it (AccessDenied or NoSuchBucket otherwise)."""
        bucket = bucket or self.bucket
        ownership = await self.run(self.owners.of, bucket)
        expected_owner = self.header("x-amz-expected-bucket-owner")
        if ownership.account_id != self.account_id or (expected_owner and expected_owner != ownership.account_id):
            await self.run(self.store.head_bucket, bucket)  # a missing bucket is NoSuchBucket, for anyone
            raise AWSError("AccessDenied", "Access Denied", 403)
        return ownership

    # -- request bodies ------------------------------------------------------------------------------

    async def small_body(self) -> bytes:
        """A bounded body (XML documents), with Content-MD5 / checksum headers verified."""
        algorithm, expected = self.body_claims()
        data = bytearray()
        async for chunk in self._payload(expected):
            data += chunk
            if len(data) > MAX_XML_BODY:
                raise AWSError("MalformedXML", "The XML you provided was too large.")
        digester = Digester(sorted({algorithm, *expected.checksums} - {None}), sha256=bool(expected.sha256_hex))
        digester.update(bytes(data))
        digester.verify(expected)
        return bytes(data)

    def body_claims(self) -> tuple[str | None, Expected]:
        """The checksum algorithm to store, and what the headers claim about the body."""
        expected = Expected()
        if (md5 := self.header("content-md5")) is not None:
            expected.md5_hex = decode_content_md5(md5)
        algorithm = normalise_algorithm(
            self.header("x-amz-sdk-checksum-algorithm") or self.header("x-amz-checksum-algorithm")
        )
        sent = {a: v for a in ALGORITHMS if (v := self.header(f"x-amz-checksum-{a.lower()}")) is not None}
        if len(sent) > 1:
            raise AWSError(
                "InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            )
        for name, value in sent.items():
            header = f"x-amz-checksum-{name.lower()}"
            expected.checksums[name] = check_checksum_value(name, value, header)
        trailer = self.trailing_checksum()
        named = next(iter(sent)) if sent else trailer
        if algorithm and named and algorithm != named:
            raise AWSError("InvalidRequest", "Value for x-amz-sdk-checksum-algorithm header is invalid.")
        content_sha256 = self.header("x-amz-content-sha256", "")
        if len(content_sha256) == 64 and set(content_sha256) <= _HEX_SHA256:
            expected.sha256_hex = content_sha256
        if self.is_aws_chunked():
            decoded = self.header("x-amz-decoded-content-length")
            expected.size = int(decoded) if decoded and decoded.isdigit() else None
        elif (length := self.header("content-length")) and length.isdigit():
            expected.size = int(length)  # a client that disconnects early must not leave a short object
        return algorithm or named, expected

    def trailing_checksum(self) -> str | None:
        trailer = self.header("x-amz-trailer")
        if not trailer:
            return None
        name = trailer.strip().lower()
        if not name.startswith("x-amz-checksum-"):
            raise AWSError("InvalidRequest", f"The trailer {trailer!r} is not supported.")
        return normalise_algorithm(name[len("x-amz-checksum-") :])

    def is_aws_chunked(self) -> bool:
        return "aws-chunked" in (self.header("content-encoding") or "") or self.header(
            "x-amz-content-sha256", ""
        ).startswith("STREAMING-")

    async def _payload(self, expected: Expected | None) -> AsyncIterator[bytes]:
        """The body as the object's bytes: aws-chunked decoded, trailing checksums moved into ``expected``."""
        if not self.is_aws_chunked():
            async for chunk in _capped(self.request.stream()):
                yield chunk
            return
        decoder = AwsChunkedDecoder(self.request.stream(), getattr(self.principal, "streaming", None))
        async for chunk in _capped(decoder):
            yield chunk
        if (algorithm := self.trailing_checksum()) is not None:
            header = f"x-amz-checksum-{algorithm.lower()}"
            value = decoder.trailers.get(header)
            if value is None:
                raise AWSError("InvalidRequest", f"The request promised the trailer {header} but did not send it.")
            if expected is not None:
                expected.checksums[algorithm] = check_checksum_value(algorithm, value, header)

    def body_for_thread(self, expected: Expected | None) -> Iterable[bytes]:
        """The body as a blocking iterator for a store call on the pool, pulled from the loop 1 MiB at a time."""
        return _ThreadBridge(self._payload(expected), asyncio.get_running_loop())

    # -- object headers ------------------------------------------------------------------------------

    def meta_from_headers(self) -> ObjectMeta:
        self.refuse_unsupported_headers()
        headers = {}
        for name in STORED_HEADERS:
            value = self.header(name.lower())
            if name == "Content-Encoding" and value:  # aws-chunked describes the transfer, not the object
                value = ",".join(v for v in (p.strip() for p in value.split(",")) if v and v != "aws-chunked")
            if value:
                headers[name] = value
        user = {k[len("x-amz-meta-") :]: v for k, v in self.request.headers.items() if k.startswith("x-amz-meta-")}
        if sum(len(k) + len(v) for k, v in user.items()) > MAX_USER_METADATA:
            raise AWSError(
                "MetadataTooLarge",
                "Your metadata headers exceed the maximum allowed metadata size.",
                MaxSizeAllowed=MAX_USER_METADATA,
            )
        return ObjectMeta(self.header("content-type") or "binary/octet-stream", headers, user)

    def refuse_unsupported_headers(self) -> None:
        # SSE-S3 (AES256) is what S3 applies to every object anyway, and the SageMaker SDK asks for
        # aws:kms with the account's default key on its code uploads. SelfMaker has no key service: both
        # are accepted, and the data at rest is protected as the data directory's disk is (docs/s3.md).
        # A named KMS key or a customer key we cannot honour, so those are refused, never pretended.
        sse = self.header("x-amz-server-side-encryption")
        if sse not in (None, "AES256", "aws:kms") or self.header("x-amz-server-side-encryption-aws-kms-key-id"):
            raise AWSError(
                "NotImplemented",
                "SelfMaker does not implement server-side encryption with a named "
                "KMS key; only AES256 and aws:kms with the default key are accepted.",
                501,
                Header="x-amz-server-side-encryption",
            )
        for header, feature in _UNSUPPORTED_HEADERS.items():
            if self.header(header) is not None:
                raise AWSError(
                    "NotImplemented", f"SelfMaker does not implement {feature} ({header}).", 501, Header=header
                )
        acl = self.header("x-amz-acl")
        granted = any(name.startswith("x-amz-grant-") for name in self.request.headers)
        if granted or (acl is not None and acl not in _ACCEPTED_ACLS):
            raise AWSError("AccessControlListNotSupported", "The bucket does not allow ACLs")
        storage_class = self.header("x-amz-storage-class")
        if storage_class not in (None, "STANDARD"):
            raise AWSError(
                "InvalidStorageClass",
                "The storage class you specified is not valid",
                StorageClassRequested=storage_class,
            )


async def _capped(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """A body that declared no size (Transfer-Encoding: chunked) still stops at S3's 5 GiB."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > MAX_SINGLE_PUT:
            raise AWSError(
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed object size.",
                MaxSizeAllowed=MAX_SINGLE_PUT,
            )
        yield chunk


def checksum_headers(info: ObjectInfo) -> list[tuple[str, str]]:
    headers = [(f"x-amz-checksum-{a.lower()}", v) for a, v in info.checksums.items()]
    if info.checksum_type:
        headers.append(("x-amz-checksum-type", info.checksum_type))
    return headers


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None  # S3 ignores conditional dates it cannot read


def etag_matches(header: str, etag: str) -> bool:
    return any(tag.strip().strip('"') in ("*", etag) for tag in header.split(","))


def check_read_conditions(call: S3Call, info: ObjectInfo, prefix: str = "") -> int | None:
    """RFC 7232 as S3 applies it: 412 raised, 304 returned, None when the object should be served.

    ``prefix`` is "x-amz-copy-source-" for a copy's conditions on its source (which fail with 412 only).
    """
    header = lambda name: call.header(prefix + name)  # noqa: E731
    modified = int(info.last_modified)
    if_match, if_none_match = header("if-match"), header("if-none-match")
    if if_match is not None and not etag_matches(if_match, info.etag):
        raise AWSError(
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
            412,
            Condition=prefix + "If-Match",
        )
    unmodified_since = parse_http_date(header("if-unmodified-since"))
    if if_match is None and unmodified_since is not None and modified > unmodified_since:
        raise AWSError(
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
            412,
            Condition=prefix + "If-Unmodified-Since",
        )
    not_modified = 412 if prefix else 304
    if if_none_match is not None and etag_matches(if_none_match, info.etag):
        return _not_modified(not_modified, prefix + "If-None-Match")
    modified_since = parse_http_date(header("if-modified-since"))
    if if_none_match is None and modified_since is not None and modified <= modified_since:
        return _not_modified(not_modified, prefix + "If-Modified-Since")
    return None


def _not_modified(status: int, condition: str) -> int:
    if status == 412:
        raise AWSError(
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
            412,
            Condition=condition,
        )
    return status


async def stream_reader(call: S3Call, reader: ObjectReader, start: int, end: int) -> AsyncIterator[bytes]:
    """Serve ``reader``'s bytes [start, end) chunk by chunk from the pool, closing it at the end."""
    chunks = reader.chunks(start, end, CHUNK_SIZE)
    try:
        while (chunk := await call.run(next, chunks, None)) is not None:
            yield chunk
    finally:
        await call.run(reader.close)


class _ThreadBridge:
    """A blocking iterator over an async one, for code running on a pool thread."""

    def __init__(self, source: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop):
        self._source = source
        self._loop = loop
        self._done = False

    async def _next_piece(self) -> bytes | None:
        piece = bytearray()
        while len(piece) < CHUNK_SIZE and not self._done:
            try:
                piece += await self._source.__anext__()
            except StopAsyncIteration:
                self._done = True
        return bytes(piece) if piece else None

    def __iter__(self) -> Iterator[bytes]:
        while (piece := asyncio.run_coroutine_threadsafe(self._next_piece(), self._loop).result()) is not None:
            yield piece
