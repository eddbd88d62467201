"""S3 bucket operations: create, head, list, delete, location, and the object listings."""

from __future__ import annotations

import base64
import binascii
from xml.sax.saxutils import escape

from ..server.errors import AWSError
from ..server.http import Response
from .base import MAX_KEYS, check_bucket_name
from .call import S3Call, owner_id
from .xml import add, add_all, add_raw, document, iso8601, parse, text, xml_response

# -- buckets ------------------------------------------------------------------------------------


async def list_buckets(call: S3Call) -> Response:
    prefix = call.query("prefix") or ""
    max_buckets = call.int_param("max-buckets", 10_000, 1, 10_000)
    after = _decode_token(token) if (token := call.query("continuation-token")) else ""
    region_filter = call.query("bucket-region")
    owners = await call.run(call.owners.all)
    buckets = []
    for bucket in await call.run(call.store.list_buckets):
        ownership = owners.get(bucket.name, call.owners.default)
        if (
            ownership.account_id == call.account_id
            and bucket.name.startswith(prefix)
            and bucket.name > after
            and (not region_filter or ownership.region == region_filter)
        ):
            buckets.append((bucket, ownership))
    root = document("ListAllMyBucketsResult")
    listed = add(root, "Buckets")
    for bucket, ownership in buckets[:max_buckets]:
        entry = add(listed, "Bucket")
        add_all(entry, {"Name": bucket.name, "CreationDate": iso8601(bucket.created), "BucketRegion": ownership.region})
    owner = add(root, "Owner")
    add_all(owner, {"DisplayName": call.account_id, "ID": owner_id(call.account_id)})
    if len(buckets) > max_buckets:
        add(root, "ContinuationToken", _encode_token(buckets[max_buckets - 1][0].name))
    if prefix:
        add(root, "Prefix", prefix)
    return xml_response(root)


async def create_bucket(call: S3Call) -> Response:
    bucket = check_bucket_name(call.bucket_name)
    call.refuse_unsupported_headers()
    region = call.principal.region or call.backends.settings.region
    body = await call.small_body()
    if body.strip():
        constraint = text(parse(body), "LocationConstraint")
        if constraint:
            region = constraint
    try:
        await call.run(call.store.create_bucket, bucket)
    except AWSError as err:
        if err.code != "BucketAlreadyExists":
            raise
        if (await call.run(call.owners.of, bucket)).account_id == call.account_id:
            raise AWSError(
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already own it.",
                409,
                BucketName=bucket,
            ) from None
        raise
    await call.run(call.owners.record, bucket, call.account_id, region)
    return Response(200, b"", [("Location", f"/{bucket}")])


async def head_bucket(call: S3Call) -> Response:
    ownership = await call.authorize()
    await call.run(call.store.head_bucket, call.bucket)
    return Response(200, b"", [("x-amz-bucket-region", ownership.region), ("Content-Length", "0")])


async def delete_bucket(call: S3Call) -> Response:
    await call.authorize()
    await call.run(call.store.delete_bucket, call.bucket)
    await call.run(call.owners.forget, call.bucket)
    return Response(204)


async def get_bucket_location(call: S3Call) -> Response:
    ownership = await call.authorize()
    await call.run(call.store.head_bucket, call.bucket)
    root = document("LocationConstraint")
    # us-east-1 is the one region S3 reports as an empty constraint.
    root.text = None if ownership.region == "us-east-1" else ownership.region
    return xml_response(root)


# -- listings ----------------------------------------------------------------------------------------


async def list_objects_v2(call: S3Call) -> Response:
    await call.authorize()
    encode = call.url_encoder()
    prefix, delimiter = call.query("prefix") or "", call.query("delimiter") or ""
    token, start_after = call.query("continuation-token"), call.query("start-after") or ""
    max_keys = call.int_param("max-keys", MAX_KEYS, 0)
    marker = _decode_token(token) if token is not None else start_after
    page = await call.run(call.store.list_objects, call.bucket, prefix, delimiter, marker, min(max_keys, MAX_KEYS))
    root = document("ListBucketResult")
    add_all(root, {"Name": call.bucket, "Prefix": encode(prefix)})
    if token is not None:
        add(root, "ContinuationToken", token)
    if start_after:
        add(root, "StartAfter", encode(start_after))
    if page.is_truncated:
        add(root, "NextContinuationToken", _encode_token(page.next_marker))
    add_all(
        root,
        {
            "KeyCount": len(page.objects) + len(page.common_prefixes),
            "MaxKeys": max_keys,
            "Delimiter": encode(delimiter) if delimiter else None,
            "EncodingType": call.query("encoding-type"),
            "IsTruncated": page.is_truncated,
        },
    )
    _add_entries(root, call, page, encode, with_owner=call.query("fetch-owner") == "true")
    return xml_response(root)


async def list_objects(call: S3Call) -> Response:
    await call.authorize()
    encode = call.url_encoder()
    prefix, delimiter, marker = call.query("prefix") or "", call.query("delimiter") or "", call.query("marker") or ""
    max_keys = call.int_param("max-keys", MAX_KEYS, 0)
    page = await call.run(call.store.list_objects, call.bucket, prefix, delimiter, marker, min(max_keys, MAX_KEYS))
    root = document("ListBucketResult")
    add_all(root, {"Name": call.bucket, "Prefix": encode(prefix), "Marker": encode(marker)})
    if page.is_truncated and delimiter:  # without a delimiter, clients continue from the last key
        add(root, "NextMarker", encode(page.next_marker))
    add_all(
        root,
        {
            "MaxKeys": max_keys,
            "Delimiter": encode(delimiter) if delimiter else None,
            "EncodingType": call.query("encoding-type"),
            "IsTruncated": page.is_truncated,
        },
    )
    _add_entries(root, call, page, encode, with_owner=True)
    return xml_response(root)


def _add_entries(root, call: S3Call, page, encode, with_owner: bool) -> None:
    owner = (
        f"<Owner><DisplayName>{call.account_id}</DisplayName><ID>{owner_id(call.account_id)}</ID></Owner>"
        if with_owner
        else ""
    )
    add_raw(
        root,
        "".join(
            f"<Contents><Key>{escape(encode(info.key))}</Key><LastModified>{iso8601(info.last_modified)}</LastModified>"
            f'<ETag>"{info.etag}"</ETag><Size>{info.size}</Size><StorageClass>STANDARD</StorageClass>{owner}'
            "</Contents>"
            for info in page.objects
        ),
    )
    for common in page.common_prefixes:
        add(add(root, "CommonPrefixes"), "Prefix", encode(common))


def _encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, ValueError):
        raise AWSError(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            ArgumentName="continuation-token",
            ArgumentValue=token,
        ) from None
