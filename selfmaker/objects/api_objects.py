"""S3 object operations: put, get, head, delete, batch delete, copy."""

from __future__ import annotations

import re
from urllib.parse import unquote

from ..server.errors import AWSError
from ..server.http import Response
from .base import MAX_SINGLE_PUT, Condition, ObjectInfo, key_bytes
from .call import S3Call, check_read_conditions, checksum_headers, stream_reader
from .xml import add, add_all, document, http_date, iso8601, malformed, parse, text, xml_response

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
MAX_DELETE_KEYS = 1000


def write_condition(call: S3Call) -> Condition | None:
    """If-Match / If-None-Match: * on a write (S3 conditional writes)."""
    if_match, if_none_match = call.header("if-match"), call.header("if-none-match")
    if if_none_match is not None and if_none_match.strip() != "*":
        raise AWSError("NotImplemented", "If-None-Match on a write accepts only '*'.", 501, Header="If-None-Match")
    if if_match is None and if_none_match is None:
        return None
    return Condition(if_match.strip().strip('"') if if_match else None, "*" if if_none_match else None)


def check_declared_size(call: S3Call, limit: int = MAX_SINGLE_PUT) -> None:
    declared = call.header("x-amz-decoded-content-length") or call.header("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise AWSError(
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed object size.",
            ProposedSize=declared,
            MaxSizeAllowed=limit,
        )


async def put_object(call: S3Call) -> Response:
    await call.authorize()
    key_bytes(call.object_key)
    meta = call.meta_from_headers()
    check_declared_size(call)
    algorithm, expected = call.body_claims()
    info = await call.run(
        call.store.put_object,
        call.bucket,
        call.key,
        call.body_for_thread(expected),
        meta=meta,
        checksum_algorithm=algorithm,
        expected=expected,
        condition=write_condition(call),
    )
    return Response(200, b"", [("ETag", f'"{info.etag}"'), *checksum_headers(info)])


def _object_headers(call: S3Call, info: ObjectInfo, with_checksums: bool) -> list[tuple[str, str]]:
    headers = {
        "Content-Type": info.meta.content_type,
        "ETag": f'"{info.etag}"',
        "Last-Modified": http_date(info.last_modified),
        "Accept-Ranges": "bytes",
        **info.meta.headers,
    }
    for param, header in _RESPONSE_OVERRIDES.items():
        if (value := call.query(param)) is not None:
            headers[header] = value
    listed = list(headers.items()) + [(f"x-amz-meta-{k}", v) for k, v in info.meta.user.items()]
    if with_checksums and (call.header("x-amz-checksum-mode") or "").upper() == "ENABLED":
        listed += checksum_headers(info)
    return listed


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) for a satisfiable single Range, None for the whole object; InvalidRange (416) otherwise."""
    match = _RANGE.match(header.strip()) if header else None
    if not match or match.groups() == ("", ""):
        return None  # absent, several ranges, or unparseable: S3 serves the whole object
    first, last = match.groups()
    if first == "":  # the final N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _invalid_range(size)
        return max(size - length, 0), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or (last != "" and int(last) < start):
        raise _invalid_range(size)
    return start, end


def _invalid_range(size: int) -> AWSError:
    return AWSError(
        "InvalidRange", "The requested range is not satisfiable", 416, ActualObjectSize=size, RangeRequested=""
    )


def _refuse_versions_and_parts(call: S3Call) -> None:
    version = call.query("versionId")
    if version not in (None, "null"):
        raise AWSError(
            "InvalidArgument", "Invalid version id specified", ArgumentName="versionId", ArgumentValue=version
        )
    if call.query("partNumber") is not None:
        raise AWSError("NotImplemented", "SelfMaker does not implement GET or HEAD by partNumber.", 501)


async def get_object(call: S3Call) -> Response:
    await call.authorize()
    _refuse_versions_and_parts(call)
    reader = await call.run(call.store.open_object, call.bucket, call.key)
    try:
        info = reader.info
        if check_read_conditions(call, info) == 304:
            await call.run(reader.close)
            return Response(304, b"", [("ETag", f'"{info.etag}"'), ("Last-Modified", http_date(info.last_modified))])
        span = _byte_range(call.header("range"), info.size)
    except BaseException:
        await call.run(reader.close)
        raise
    start, end = span or (0, info.size)
    # A checksum covers the whole object: S3 returns it only when the whole object is served.
    headers = _object_headers(call, info, with_checksums=span is None) + [("Content-Length", str(end - start))]
    if span is not None:
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{info.size}"))
    return Response(206 if span else 200, headers=headers, stream=stream_reader(call, reader, start, end))


async def head_object(call: S3Call) -> Response:
    await call.authorize()
    _refuse_versions_and_parts(call)
    info = await call.run(call.store.head_object, call.bucket, call.key)
    if check_read_conditions(call, info) == 304:
        return Response(304, b"", [("ETag", f'"{info.etag}"'), ("Last-Modified", http_date(info.last_modified))])
    span = _byte_range(call.header("range"), info.size)
    start, end = span or (0, info.size)
    headers = _object_headers(call, info, with_checksums=span is None) + [("Content-Length", str(end - start))]
    if span is not None:
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{info.size}"))
    return Response(206 if span else 200, b"", headers)


async def delete_object(call: S3Call) -> Response:
    await call.authorize()
    _refuse_versions_and_parts(call)
    await call.run(call.store.delete_object, call.bucket, call.key)
    return Response(204)


async def delete_objects(call: S3Call) -> Response:
    await call.authorize()
    root = parse(await call.small_body())
    if root.tag != "Delete":
        raise malformed()
    quiet = (text(root, "Quiet") or "").lower() == "true"
    keys = [text(element, "Key") for element in root.findall("Object")]
    if not keys or len(keys) > MAX_DELETE_KEYS or None in keys:
        raise malformed()
    outcomes = await call.run(_delete_each, call.store, call.bucket, keys)
    result = document("DeleteResult")
    for key, error in outcomes:
        if error is None:
            if not quiet:
                add(add(result, "Deleted"), "Key", key)
        else:
            add_all(add(result, "Error"), {"Key": key, "Code": error.code, "Message": error.message})
    return xml_response(result)


def _delete_each(store, bucket: str, keys: list[str]) -> list[tuple[str, AWSError | None]]:
    outcomes: list[tuple[str, AWSError | None]] = []
    for key in keys:
        try:
            store.delete_object(bucket, key)
            outcomes.append((key, None))
        except AWSError as err:
            if err.code == "NoSuchBucket":
                raise
            outcomes.append((key, err))
    return outcomes


def copy_source(call: S3Call) -> tuple[str, str]:
    """x-amz-copy-source: ``[/]bucket/key[?versionId=null]``, URL-encoded."""
    raw = call.header("x-amz-copy-source") or ""
    path, _, query = raw.partition("?")
    if query and query not in ("versionId=null",):
        raise AWSError("NotImplemented", "SelfMaker keeps no object versions to copy from.", 501)
    try:
        source = unquote(path, errors="strict").lstrip("/")
    except UnicodeDecodeError:
        source = ""
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise AWSError(
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source",
            ArgumentValue=raw,
        )
    return bucket, key


async def copy_object(call: S3Call) -> Response:
    await call.authorize()
    src_bucket, src_key = copy_source(call)
    await call.authorize(src_bucket)
    key_bytes(call.object_key)
    directive = (call.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise AWSError(
            "InvalidArgument",
            "Unknown metadata directive.",
            ArgumentName="x-amz-metadata-directive",
            ArgumentValue=directive,
        )
    meta = call.meta_from_headers() if directive == "REPLACE" else None
    if directive == "COPY":
        call.refuse_unsupported_headers()
    algorithm = call.body_claims()[0]
    if (src_bucket, src_key) == (call.bucket, call.key) and directive == "COPY" and algorithm is None:
        raise AWSError(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to "
            "itself without changing the object's metadata, storage class, website redirect location or "
            "encryption attributes.",
        )
    source = await call.run(call.store.head_object, src_bucket, src_key)
    check_read_conditions(call, source, prefix="x-amz-copy-source-")
    info = await call.run(
        call.store.copy_object,
        src_bucket,
        src_key,
        call.bucket,
        call.key,
        meta=meta,
        checksum_algorithm=algorithm,
        condition=write_condition(call),
    )
    result = document("CopyObjectResult")
    add_all(result, {"ETag": f'"{info.etag}"', "LastModified": iso8601(info.last_modified)})
    add_all(result, {f"Checksum{a}": v for a, v in info.checksums.items()})
    if info.checksum_type:
        add(result, "ChecksumType", info.checksum_type)
    return xml_response(result)
