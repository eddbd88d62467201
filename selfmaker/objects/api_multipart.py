"""S3 multipart uploads: create, upload part (and part copy), complete, abort, list parts and uploads."""

from __future__ import annotations

import re

from ..server.errors import AWSError
from ..server.http import Response
from .api_objects import check_declared_size, copy_source, write_condition
from .base import MAX_KEYS, MAX_PART_NUMBER, CompletedPart, key_bytes
from .call import S3Call, check_read_conditions, owner_id
from .digests import ALGORITHMS, Expected, check_checksum_value, normalise_algorithm
from .xml import add, add_all, document, iso8601, malformed, parse, text, xml_response

_COPY_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
_CHECKSUM_TYPES = ("COMPOSITE", "FULL_OBJECT")


def _upload_id(call: S3Call) -> str:
    return call.query("uploadId") or ""


def _part_number(call: S3Call) -> int:
    raw = call.query("partNumber") or ""
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PART_NUMBER:
        raise AWSError(
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=raw,
        )
    return int(raw)


async def create_multipart_upload(call: S3Call) -> Response:
    await call.authorize()
    key_bytes(call.object_key)
    meta = call.meta_from_headers()
    algorithm = normalise_algorithm(call.header("x-amz-checksum-algorithm"))
    checksum_type = call.header("x-amz-checksum-type")
    if checksum_type is not None and (checksum_type not in _CHECKSUM_TYPES or algorithm is None):
        raise AWSError(
            "InvalidRequest",
            "The x-amz-checksum-type header needs x-amz-checksum-algorithm and must be COMPOSITE or FULL_OBJECT.",
        )
    if algorithm and checksum_type is None:  # S3's defaults
        checksum_type = "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    upload_id = await call.run(
        call.store.create_multipart_upload,
        call.bucket,
        call.key,
        meta=meta,
        checksum_algorithm=algorithm,
        checksum_type=checksum_type,
    )
    root = document("InitiateMultipartUploadResult")
    add_all(root, {"Bucket": call.bucket, "Key": call.key, "UploadId": upload_id})
    headers = [("x-amz-checksum-algorithm", algorithm), ("x-amz-checksum-type", checksum_type)] if algorithm else []
    return xml_response(root, headers=headers)


async def upload_part(call: S3Call) -> Response:
    await call.authorize()
    part_number = _part_number(call)
    check_declared_size(call)
    _algorithm, expected = call.body_claims()
    part = await call.run(
        call.store.upload_part,
        call.bucket,
        call.key,
        _upload_id(call),
        part_number,
        call.body_for_thread(expected),
        expected=expected,
    )
    headers = [("ETag", f'"{part.etag}"')]
    headers += [(f"x-amz-checksum-{a.lower()}", v) for a, v in part.checksums.items()]
    return Response(200, b"", headers)


async def upload_part_copy(call: S3Call) -> Response:
    await call.authorize()
    src_bucket, src_key = copy_source(call)
    await call.authorize(src_bucket)
    part_number = _part_number(call)
    copy_range = call.header("x-amz-copy-source-range")
    part = await call.run(_copy_part, call, src_bucket, src_key, part_number, copy_range)
    root = document("CopyPartResult")
    add_all(root, {"ETag": f'"{part.etag}"', "LastModified": iso8601(part.last_modified)})
    add_all(root, {f"Checksum{a}": v for a, v in part.checksums.items()})
    return xml_response(root)


def _copy_part(call: S3Call, src_bucket: str, src_key: str, part_number: int, copy_range: str | None):
    """On the pool: stream the source (range) straight into the part."""
    with call.store.open_object(src_bucket, src_key) as reader:
        check_read_conditions(call, reader.info, prefix="x-amz-copy-source-")
        start, end = 0, reader.info.size
        if copy_range is not None:
            match = _COPY_RANGE.match(copy_range.strip())
            if not match or int(match[1]) > int(match[2]) or int(match[2]) >= reader.info.size:
                raise AWSError(
                    "InvalidArgument",
                    "The x-amz-copy-source-range value must be of the form "
                    "bytes=first-last where first and last are the zero-based offsets of the first and "
                    "last bytes to copy",
                    ArgumentName="x-amz-copy-source-range",
                    ArgumentValue=copy_range,
                )
            start, end = int(match[1]), int(match[2]) + 1
        return call.store.upload_part(
            call.bucket_name, call.object_key, _upload_id(call), part_number, reader.chunks(start, end)
        )


async def complete_multipart_upload(call: S3Call) -> Response:
    await call.authorize()
    root = parse(await call.small_body())
    if root.tag != "CompleteMultipartUpload":
        raise malformed()
    parts = []
    for element in root.findall("Part"):
        number, etag = text(element, "PartNumber"), text(element, "ETag")
        if not number or not number.isdigit() or etag is None:
            raise malformed()
        checksums = {
            a: check_checksum_value(a, value, f"Checksum{a}")
            for a in ALGORITHMS
            if (value := text(element, f"Checksum{a}"))
        }
        parts.append(CompletedPart(int(number), etag.strip().strip('"'), checksums))
    # The whole object's checksum and size may be claimed in headers; the body's own claims were checked above.
    expected = Expected()
    for algorithm in ALGORITHMS:
        header = f"x-amz-checksum-{algorithm.lower()}"
        if (value := call.header(header)) is not None:
            expected.checksums[algorithm] = value if "-" in value else check_checksum_value(algorithm, value, header)
    size = call.header("x-amz-mp-object-size")
    expected.size = int(size) if size and size.isdigit() else None
    info = await call.run(
        call.store.complete_multipart_upload,
        call.bucket,
        call.key,
        _upload_id(call),
        parts,
        expected=expected,
        condition=write_condition(call),
    )
    result = document("CompleteMultipartUploadResult")
    add_all(
        result,
        {"Location": f"/{call.bucket}/{call.key}", "Bucket": call.bucket, "Key": call.key, "ETag": f'"{info.etag}"'},
    )
    add_all(result, {f"Checksum{a}": v for a, v in info.checksums.items()})
    if info.checksum_type:
        add(result, "ChecksumType", info.checksum_type)
    return xml_response(result)


async def abort_multipart_upload(call: S3Call) -> Response:
    await call.authorize()
    await call.run(call.store.abort_multipart_upload, call.bucket, call.key, _upload_id(call))
    return Response(204)


async def list_parts(call: S3Call) -> Response:
    await call.authorize()
    marker = call.int_param("part-number-marker", 0, 0)
    max_parts = call.int_param("max-parts", MAX_KEYS, 0)
    page = await call.run(
        call.store.list_parts, call.bucket, call.key, _upload_id(call), marker, min(max_parts, MAX_KEYS)
    )
    root = document("ListPartsResult")
    add_all(
        root, {"Bucket": call.bucket, "Key": call.key, "UploadId": page.upload.upload_id, "PartNumberMarker": marker}
    )
    if page.is_truncated and page.parts:
        add(root, "NextPartNumberMarker", page.parts[-1].part_number)
    add_all(root, {"MaxParts": max_parts, "IsTruncated": page.is_truncated})
    for part in page.parts:
        entry = add(root, "Part")
        add_all(
            entry,
            {
                "PartNumber": part.part_number,
                "LastModified": iso8601(part.last_modified),
                "ETag": f'"{part.etag}"',
                "Size": part.size,
            },
        )
        add_all(entry, {f"Checksum{a}": v for a, v in part.checksums.items() if a == page.upload.checksum_algorithm})
    _add_people(root, call)
    add(root, "StorageClass", "STANDARD")
    add_all(root, {"ChecksumAlgorithm": page.upload.checksum_algorithm, "ChecksumType": page.upload.checksum_type})
    return xml_response(root)


async def list_multipart_uploads(call: S3Call) -> Response:
    await call.authorize()
    encode = call.url_encoder()
    prefix, delimiter = call.query("prefix") or "", call.query("delimiter") or ""
    key_marker, id_marker = call.query("key-marker") or "", call.query("upload-id-marker") or ""
    max_uploads = call.int_param("max-uploads", MAX_KEYS, 0)
    page = await call.run(
        call.store.list_multipart_uploads,
        call.bucket,
        prefix,
        delimiter,
        key_marker,
        id_marker,
        min(max_uploads, MAX_KEYS),
    )
    root = document("ListMultipartUploadsResult")
    add_all(root, {"Bucket": call.bucket, "KeyMarker": encode(key_marker), "UploadIdMarker": id_marker})
    if page.is_truncated:
        last = page.uploads[-1] if page.uploads else None
        add_all(
            root,
            {
                "NextKeyMarker": encode(last.key) if last else None,
                "NextUploadIdMarker": last.upload_id if last else None,
            },
        )
    add_all(
        root,
        {
            "Prefix": encode(prefix),
            "Delimiter": encode(delimiter) if delimiter else None,
            "MaxUploads": max_uploads,
            "EncodingType": call.query("encoding-type"),
            "IsTruncated": page.is_truncated,
        },
    )
    for upload in page.uploads:
        entry = add(root, "Upload")
        add_all(entry, {"Key": encode(upload.key), "UploadId": upload.upload_id})
        _add_people(entry, call)
        add_all(
            entry,
            {
                "StorageClass": "STANDARD",
                "Initiated": iso8601(upload.initiated),
                "ChecksumAlgorithm": upload.checksum_algorithm,
                "ChecksumType": upload.checksum_type,
            },
        )
    for common in page.common_prefixes:
        add(add(root, "CommonPrefixes"), "Prefix", encode(common))
    return xml_response(root)


def _add_people(parent, call: S3Call) -> None:
    for role in ("Initiator", "Owner"):
        add_all(add(parent, role), {"ID": owner_id(call.account_id), "DisplayName": call.account_id})
