"""The S3-compatible endpoint and the object store backends, through boto3, s3transfer and the AWS CLI."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from selfmaker.objects import open_object_store
from support.clients import make_client
from support.waiting import wait_for

MB = 1 << 20


# -- helpers -------------------------------------------------------------------------------


def _wire_names(shape, names: set, seen: set) -> None:
    if shape is None or shape.name in seen:
        return
    seen.add(shape.name)
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            names.add(member.serialization.get("name", name))
            _wire_names(member, names, seen)
    elif shape.type_name == "list":
        names.add(shape.member.serialization.get("name", "member"))
        _wire_names(shape.member, names, seen)


def check_xml(operation_model, response_dict, problems: list, **_):
    """The S3 counterpart of conftest's JSON check: every element of a 2xx XML body is in the output shape."""
    body = response_dict.get("body") or b""
    shape = operation_model.output_shape
    if (
        response_dict.get("status_code", 200) >= 300
        or not isinstance(body, bytes)
        or not body.strip()
        or shape is None
        or shape.serialization.get("payload") in ("Body",)
    ):
        return
    names: set[str] = set()
    _wire_names(shape, names, set())
    root = ET.fromstring(body)
    for element in root.iter():
        tag = element.tag.split("}", 1)[-1]
        if element is not root and tag not in names:
            problems.append(f"{operation_model.name}: <{tag}> is not in {shape.name}")


@pytest.fixture
def s3(client, request):
    """An s3 client on the session server whose XML responses are checked against their output shapes."""
    problems: list[str] = []

    def make(**config):
        c = client("s3", **config)
        c.meta.events.register("before-parse.s3", lambda **kw: check_xml(problems=problems, **kw))
        return c

    yield make
    assert not problems, "\n".join(problems)


@pytest.fixture
def bucket(s3, unique):
    name = unique("bkt")
    s3().create_bucket(Bucket=name)
    return name


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def status(excinfo) -> int:
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def raw_request(server, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """A request exactly as written (no client-side path normalisation); returns (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


# -- buckets ------------------------------------------------------------------------------------


def test_bucket_lifecycle(s3, unique):
    c = s3()
    name, eu = unique("life"), unique("life-eu")
    c.create_bucket(Bucket=name)
    c.create_bucket(Bucket=eu, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    with pytest.raises(ClientError) as e:
        c.create_bucket(Bucket=name)
    assert (error_code(e), status(e)) == ("BucketAlreadyOwnedByYou", 409)
    for bad in ("UPPER", "a", "has_underscore", "192.168.1.1", "double..dot"):
        with pytest.raises(ClientError) as e:
            c.create_bucket(Bucket=bad)
        assert error_code(e) == "InvalidBucketName"

    listed = {b["Name"]: b for b in c.list_buckets()["Buckets"]}
    assert {name, eu} <= set(listed)
    assert listed[name]["CreationDate"].year >= 2024
    assert c.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert c.get_bucket_location(Bucket=eu)["LocationConstraint"] == "eu-west-1"
    assert c.get_bucket_location(Bucket=name).get("LocationConstraint") is None
    c.head_bucket(Bucket=name, ExpectedBucketOwner="123456789012")
    with pytest.raises(ClientError) as e:
        c.head_bucket(Bucket=name, ExpectedBucketOwner="999999999999")
    assert status(e) == 403

    c.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        c.delete_bucket(Bucket=name)
    assert (error_code(e), status(e)) == ("BucketNotEmpty", 409)
    c.delete_object(Bucket=name, Key="k")
    c.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        c.head_bucket(Bucket=name)
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        c.list_objects_v2(Bucket=name)
    assert (error_code(e), status(e)) == ("NoSuchBucket", 404)


def test_unimplemented_operations_say_so(s3, bucket):
    c = s3()
    for call in (
        lambda: c.get_bucket_policy(Bucket=bucket),
        lambda: c.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": []}),
        lambda: c.get_object_tagging(Bucket=bucket, Key="k"),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert (error_code(e), status(e)) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as e:
        c.get_bucket_policy(Bucket=bucket)
    assert "GetBucketPolicy" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId="my-key")
    assert error_code(e) == "NotImplemented"
    with pytest.raises(ClientError) as e:  # no half-served write: the object was not stored
        c.head_object(Bucket=bucket, Key="k")
    assert status(e) == 404
    # SSE-S3 and SSE-KMS with the default key (what the SageMaker SDK asks for on its code uploads).
    for mode in ("AES256", "aws:kms"):
        c.put_object(Bucket=bucket, Key=f"sse-{mode}", Body=b"x", ServerSideEncryption=mode)
        assert c.get_object(Bucket=bucket, Key=f"sse-{mode}")["Body"].read() == b"x"


# -- objects ----------------------------------------------------------------------------------------


def test_put_get_head_delete_with_metadata(s3, bucket):
    c = s3()
    put = c.put_object(
        Bucket=bucket,
        Key="docs/readme.txt",
        Body=b"hello world",
        ContentType="text/plain",
        Metadata={"owner": "team-a", "Stage": "raw"},
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="r.txt"',
        ContentLanguage="en",
    )
    assert put["ETag"] == f'"{hashlib.md5(b"hello world").hexdigest()}"'
    got = c.get_object(Bucket=bucket, Key="docs/readme.txt")
    assert got["Body"].read() == b"hello world"
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"owner": "team-a", "stage": "raw"}
    assert (got["CacheControl"], got["ContentLanguage"]) == ("max-age=60", "en")
    assert got["ContentDisposition"] == 'attachment; filename="r.txt"'
    assert got["ETag"] == put["ETag"] and got["ContentLength"] == 11
    head = c.head_object(Bucket=bucket, Key="docs/readme.txt")
    assert (head["ContentLength"], head["ETag"], head["Metadata"]["owner"]) == (11, put["ETag"], "team-a")
    assert abs((head["LastModified"] - got["LastModified"]).total_seconds()) < 1

    c.put_object(Bucket=bucket, Key="docs/readme.txt", Body=b"v2")  # overwrite is atomic and total
    assert c.get_object(Bucket=bucket, Key="docs/readme.txt")["Body"].read() == b"v2"
    assert c.head_object(Bucket=bucket, Key="docs/readme.txt")["ContentType"] == "binary/octet-stream"
    c.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert c.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""

    c.delete_object(Bucket=bucket, Key="docs/readme.txt")
    c.delete_object(Bucket=bucket, Key="docs/readme.txt")  # deleting a missing key succeeds, as in S3
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key="docs/readme.txt")
    assert (error_code(e), status(e)) == ("NoSuchKey", 404)
    assert e.value.response["Error"]["Key"] == "docs/readme.txt"
    with pytest.raises(ClientError) as e:
        c.head_object(Bucket=bucket, Key="docs/readme.txt")
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket + "-missing", Key="x")
    assert error_code(e) == "NoSuchBucket"


def test_conditional_writes(s3, bucket):
    c = s3()
    first = c.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert status(e) == 412
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket=bucket, Key="k", Body=b"2", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert status(e) == 412
    c.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch=first["ETag"])
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"3"


def test_ranged_and_conditional_get(s3, bucket):
    c = s3()
    data = bytes(range(256)) * 4
    etag = c.put_object(Bucket=bucket, Key="r", Body=data)["ETag"]
    for header, expected, content_range in (
        ("bytes=10-19", data[10:20], "bytes 10-19/1024"),
        ("bytes=1000-", data[1000:], "bytes 1000-1023/1024"),
        ("bytes=-24", data[-24:], "bytes 1000-1023/1024"),
        ("bytes=1020-5000", data[1020:], "bytes 1020-1023/1024"),
    ):
        got = c.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert (got["Body"].read(), got["ContentRange"], got["ContentLength"]) == (
            expected,
            content_range,
            len(expected),
        )
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key="r", Range="bytes=1024-")
    assert (error_code(e), status(e)) == ("InvalidRange", 416)

    assert c.get_object(Bucket=bucket, Key="r", IfMatch=etag)["Body"].read() == data
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key="r", IfMatch='"nope"')
    assert (error_code(e), status(e)) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key="r", IfNoneMatch=etag)
    assert status(e) == 304
    modified = c.head_object(Bucket=bucket, Key="r")["LastModified"]
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key="r", IfModifiedSince=modified)
    assert status(e) == 304
    got = c.get_object(Bucket=bucket, Key="r", ResponseContentType="application/x-test")
    assert got["ContentType"] == "application/x-test"


# -- listings --------------------------------------------------------------------------------------

KEYS = ["a/1", "a/2", "a/b/3", "a-b", "b", "c/", "c/d", "dir with space/x+y%z", "é/ü", "z", "zz/top/"]


def _expected_listing(keys, prefix="", delimiter=""):
    objects, prefixes = [], []
    for key in sorted(keys, key=lambda k: k.encode()):
        if not key.startswith(prefix):
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            common = key[: cut + len(delimiter)]
            if common not in prefixes:
                prefixes.append(common)
        else:
            objects.append(key)
    return objects, prefixes


@pytest.mark.parametrize(
    "prefix,delimiter", [("", ""), ("", "/"), ("a/", "/"), ("a", "/"), ("c/", ""), ("z", "/"), ("", "b")]
)
def test_list_objects_v2_pages(s3, unique, prefix, delimiter):
    c = s3()
    name = unique("lst")
    c.create_bucket(Bucket=name)
    for key in KEYS:
        c.put_object(Bucket=name, Key=key, Body=key.encode())
    want_objects, want_prefixes = _expected_listing(KEYS, prefix, delimiter)

    whole = c.list_objects_v2(Bucket=name, Prefix=prefix, Delimiter=delimiter)
    assert [o["Key"] for o in whole.get("Contents", [])] == want_objects
    assert [p["Prefix"] for p in whole.get("CommonPrefixes", [])] == want_prefixes
    assert whole["KeyCount"] == len(want_objects) + len(want_prefixes)

    objects, prefixes, pages = [], [], 0
    for page in c.get_paginator("list_objects_v2").paginate(
        Bucket=name, Prefix=prefix, Delimiter=delimiter, PaginationConfig={"PageSize": 2}
    ):
        pages += 1
        assert page["KeyCount"] <= 2
        objects += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert (objects, prefixes) == (want_objects, want_prefixes)
    assert pages == max(1, -(-(len(want_objects) + len(want_prefixes)) // 2))

    objects, prefixes = [], []  # v1: Marker / NextMarker
    for page in c.get_paginator("list_objects").paginate(
        Bucket=name, Prefix=prefix, Delimiter=delimiter, PaginationConfig={"PageSize": 3}
    ):
        objects += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if page["IsTruncated"] and delimiter:
            assert page["NextMarker"]
    assert (objects, prefixes) == (want_objects, want_prefixes)


def test_list_objects_details(s3, bucket):
    c = s3()
    for key in ("k1", "k2", "k3"):
        c.put_object(Bucket=bucket, Key=key, Body=b"12345")
    page = c.list_objects_v2(Bucket=bucket, StartAfter="k1", MaxKeys=1)
    assert [o["Key"] for o in page["Contents"]] == ["k2"] and page["IsTruncated"]
    entry = page["Contents"][0]
    assert (entry["Size"], entry["ETag"], entry["StorageClass"]) == (
        5,
        f'"{hashlib.md5(b"12345").hexdigest()}"',
        "STANDARD",
    )
    assert c.list_objects_v2(Bucket=bucket, MaxKeys=0)["KeyCount"] == 0
    raw = c.list_objects_v2(Bucket=bucket, EncodingType="url")  # botocore decodes; keys still exact
    assert [o["Key"] for o in raw["Contents"]] == ["k1", "k2", "k3"]
    with pytest.raises(ClientError) as e:
        c.list_objects_v2(Bucket=bucket, ContinuationToken="!!not-a-token!!")
    assert error_code(e) == "InvalidArgument"
    v1 = c.list_objects(Bucket=bucket, Marker="k2")
    assert [o["Key"] for o in v1["Contents"]] == ["k3"] and v1["Contents"][0]["Owner"]["ID"]


# -- copy and batch delete ---------------------------------------------------------------------------------


def test_copy_object(s3, bucket, unique):
    c = s3()
    other = unique("copy-dst")
    c.create_bucket(Bucket=other)
    c.put_object(Bucket=bucket, Key="src key+1", Body=b"payload", ContentType="text/csv", Metadata={"a": "1"})
    result = c.copy_object(Bucket=other, Key="copied", CopySource={"Bucket": bucket, "Key": "src key+1"})
    assert result["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"payload").hexdigest()}"'
    got = c.get_object(Bucket=other, Key="copied")
    assert (got["Body"].read(), got["ContentType"], got["Metadata"]) == (b"payload", "text/csv", {"a": "1"})

    c.copy_object(
        Bucket=bucket,
        Key="src key+1",
        CopySource={"Bucket": bucket, "Key": "src key+1"},
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="text/plain",
    )
    head = c.head_object(Bucket=bucket, Key="src key+1")
    assert (head["Metadata"], head["ContentType"]) == ({"b": "2"}, "text/plain")
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket=bucket, Key="src key+1", CopySource={"Bucket": bucket, "Key": "src key+1"})
    assert error_code(e) == "InvalidRequest"
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "missing"})
    assert error_code(e) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        c.copy_object(
            Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src key+1"}, CopySourceIfMatch='"0000"'
        )
    assert status(e) == 412
    c.put_object(Bucket=bucket, Key="src key+1", Body=b"changed")  # the copy is independent of its source
    assert c.get_object(Bucket=other, Key="copied")["Body"].read() == b"payload"


def test_delete_objects(s3, bucket):
    c = s3()
    for key in ("d/1", "d/2", "d/3", "keep"):
        c.put_object(Bucket=bucket, Key=key, Body=b"x")
    result = c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/1"}, {"Key": "d/2"}, {"Key": "nope"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["d/1", "d/2", "nope"]
    quiet = c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/3"}], "Quiet": True})
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert [o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]


# -- integrity ------------------------------------------------------------------------------------------


def test_checksums(s3, bucket):
    c = s3()
    data = b"checksum me" * 1000
    sha = c.put_object(Bucket=bucket, Key="sha", Body=data, ChecksumAlgorithm="SHA256")
    assert sha["ChecksumSHA256"] == b64(hashlib.sha256(data).digest())
    crc = c.put_object(Bucket=bucket, Key="crc", Body=data, ChecksumAlgorithm="CRC32")
    assert crc["ChecksumCRC32"] == b64(zlib.crc32(data).to_bytes(4, "big"))
    got = c.get_object(Bucket=bucket, Key="sha", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == sha["ChecksumSHA256"] and got["Body"].read() == data
    assert c.head_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")["ChecksumCRC32"] == crc["ChecksumCRC32"]
    c32c = c.put_object(Bucket=bucket, Key="c32c", Body=b"123456789", ChecksumCRC32C="4waSgw==")  # RFC 3720 vector
    assert c32c["ChecksumCRC32C"] == "4waSgw=="

    for wrong in (
        {"ChecksumSHA256": b64(hashlib.sha256(b"other").digest())},
        {"ChecksumCRC32": "AAAAAA=="},
        {"ContentMD5": b64(hashlib.md5(b"other").digest())},
    ):
        with pytest.raises(ClientError) as e:
            c.put_object(Bucket=bucket, Key="bad", Body=data, **wrong)
        assert (error_code(e), status(e)) == ("BadDigest", 400)
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket=bucket, Key="bad", Body=data, ChecksumSHA256="not base64")
    assert error_code(e) == "InvalidRequest"
    with pytest.raises(ClientError) as e:
        c.head_object(Bucket=bucket, Key="bad")
    assert status(e) == 404


def test_aws_chunked_body_with_trailing_checksum(server, s3, bucket):
    data = b"streamed " * 3000
    crc = b64(zlib.crc32(data).to_bytes(4, "big"))

    def chunked(trailer_value: str) -> bytes:
        pieces = [data[i : i + 8192] for i in range(0, len(data), 8192)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        return body + f"0\r\nx-amz-checksum-crc32:{trailer_value}\r\n\r\n".encode()

    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Type": "text/plain",
    }
    code, body = raw_request(server, "PUT", f"/{bucket}/chunked", chunked(crc), headers)
    assert code == 200, body
    got = s3().get_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32"] == crc and got["ContentType"] == "text/plain"
    assert "ContentEncoding" not in got  # aws-chunked describes the transfer, not the object

    wrong_hash = {"x-amz-content-sha256": hashlib.sha256(b"something else").hexdigest()}
    code, body = raw_request(server, "PUT", f"/{bucket}/hashed", b"payload", wrong_hash)
    assert code == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in body
    code, body = raw_request(server, "PUT", f"/{bucket}/chunked-bad", chunked("AAAAAA=="), headers)
    assert code == 400 and b"<Code>BadDigest</Code>" in body
    code, body = raw_request(server, "PUT", f"/{bucket}/truncated", chunked(crc)[:5000], headers)
    assert code == 400 and b"<Code>IncompleteBody</Code>" in body
    with pytest.raises(ClientError):
        s3().head_object(Bucket=bucket, Key="truncated")


# -- multipart ------------------------------------------------------------------------------------------


def test_multipart_operations(s3, bucket):
    c = s3()
    part1, part2 = os.urandom(5 * MB), b"tail"
    upload = c.create_multipart_upload(
        Bucket=bucket, Key="mp", ContentType="application/x-mp", Metadata={"m": "1"}, ChecksumAlgorithm="SHA256"
    )
    upload_id = upload["UploadId"]
    e1 = c.upload_part(
        Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=part1, ChecksumAlgorithm="SHA256"
    )
    e2 = c.upload_part(
        Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=2, Body=part2, ChecksumAlgorithm="SHA256"
    )
    assert e2["ChecksumSHA256"] == b64(hashlib.sha256(part2).digest())
    listed = c.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, 5 * MB), (2, 4)]
    assert listed["ChecksumAlgorithm"] == "SHA256"
    paged = c.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id, MaxParts=1)
    assert paged["IsTruncated"] and paged["NextPartNumberMarker"] == 1
    uploads = c.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp", upload_id)]

    with pytest.raises(ClientError) as e:
        c.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": e1["ETag"]},
                    {"PartNumber": 2, "ETag": '"00000000000000000000000000000000"'},
                ]
            },
        )
    assert error_code(e) == "InvalidPart"
    with pytest.raises(ClientError) as e:
        c.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2["ETag"]}, {"PartNumber": 1, "ETag": e1["ETag"]}]},
        )
    assert error_code(e) == "InvalidPartOrder"

    done = c.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": e1["ETag"], "ChecksumSHA256": e1["ChecksumSHA256"]},
                {"PartNumber": 2, "ETag": e2["ETag"], "ChecksumSHA256": e2["ChecksumSHA256"]},
            ]
        },
    )
    part_md5s = hashlib.md5(hashlib.md5(part1).digest() + hashlib.md5(part2).digest()).hexdigest()
    assert done["ETag"] == f'"{part_md5s}-2"'
    composite = hashlib.sha256(hashlib.sha256(part1).digest() + hashlib.sha256(part2).digest()).digest()
    assert done["ChecksumSHA256"] == f"{b64(composite)}-2"
    got = c.get_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert got["Body"].read() == part1 + part2
    assert (got["ContentType"], got["Metadata"], got["ETag"]) == ("application/x-mp", {"m": "1"}, done["ETag"])
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        c.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)
    assert (error_code(e), status(e)) == ("NoSuchUpload", 404)


def test_multipart_abort_small_parts_and_part_copy(s3, bucket):
    c = s3()
    upload_id = c.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    parts = [
        c.upload_part(Bucket=bucket, Key="small", UploadId=upload_id, PartNumber=n, Body=b"x" * 10) for n in (1, 2)
    ]
    with pytest.raises(ClientError) as e:
        c.complete_multipart_upload(
            Bucket=bucket,
            Key="small",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": p["ETag"]} for n, p in enumerate(parts)]},
        )
    assert error_code(e) == "EntityTooSmall"
    with pytest.raises(ClientError) as e:
        c.upload_part(Bucket=bucket, Key="small", UploadId=upload_id, PartNumber=10001, Body=b"x")
    assert error_code(e) == "InvalidArgument"
    c.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=upload_id)
    with pytest.raises(ClientError) as e:
        c.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=upload_id)
    assert error_code(e) == "NoSuchUpload"

    source = os.urandom(6 * MB)
    c.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = c.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    first = c.upload_part_copy(
        Bucket=bucket,
        Key="assembled",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceRange=f"bytes=0-{5 * MB - 1}",
    )
    second = c.upload_part_copy(
        Bucket=bucket, Key="assembled", UploadId=upload_id, PartNumber=2, CopySource={"Bucket": bucket, "Key": "source"}
    )
    c.complete_multipart_upload(
        Bucket=bucket,
        Key="assembled",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
                {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]},
            ]
        },
    )
    assert c.get_object(Bucket=bucket, Key="assembled")["Body"].read() == source[: 5 * MB] + source


def test_transfer_manager_50mb(s3, bucket, tmp_path):
    c = s3()
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(MB))
    config = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB, max_concurrency=4)
    c.upload_file(str(source), bucket, "data/big.bin", Config=config)
    head = c.head_object(Bucket=bucket, Key="data/big.bin")
    assert head["ContentLength"] == 50 * MB and head["ETag"].endswith('-7"')  # really multipart: 7 parts
    target = tmp_path / "back.bin"
    c.download_file(bucket, "data/big.bin", str(target), Config=config)
    with open(source, "rb") as a, open(target, "rb") as b:
        while chunk := a.read(4 * MB):
            assert chunk == b.read(4 * MB)
        assert b.read() == b""


# -- clients and addressing ------------------------------------------------------------------------------


def test_aws_cli_cp_and_ls(server, s3, bucket, tmp_path):
    if shutil.which("aws") is None:
        pytest.fail("the AWS CLI is part of the test dependencies")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }

    def aws(*args: str) -> str:
        done = subprocess.run(
            ["aws", "--endpoint-url", server.url, "s3", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    local = tmp_path / "up.txt"
    local.write_bytes(b"from the cli\n" * 100)
    aws("cp", str(local), f"s3://{bucket}/cli/up.txt")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "one.txt").write_text("1")
    (tree / "sub" / "two words.txt").write_text("2")
    aws("cp", "--recursive", str(tree), f"s3://{bucket}/cli/tree")
    listing = aws("ls", f"s3://{bucket}/cli/")
    assert "up.txt" in listing and "PRE tree/" in listing
    assert "two words.txt" in aws("ls", "--recursive", f"s3://{bucket}/cli/tree/")
    assert bucket in aws("ls")
    aws("cp", f"s3://{bucket}/cli/up.txt", str(tmp_path / "down.txt"))
    assert (tmp_path / "down.txt").read_bytes() == local.read_bytes()
    aws("cp", "--recursive", f"s3://{bucket}/cli/tree", str(tmp_path / "back"))
    assert (tmp_path / "back" / "sub" / "two words.txt").read_text() == "2"


@pytest.fixture
def localhost_subdomains(monkeypatch):
    """Resolve *.localhost to 127.0.0.1 as RFC 6761 intends (not every resolver does)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_virtual_host_addressing(server, bucket, localhost_subdomains):
    virtual = make_client("s3", f"http://localhost:{server.port}", s3={"addressing_style": "virtual"})
    seen_hosts = []
    virtual.meta.events.register("before-send.s3", lambda request, **_: seen_hosts.append(request.url))
    virtual.put_object(Bucket=bucket, Key="vh/key one", Body=b"virtual")
    assert virtual.get_object(Bucket=bucket, Key="vh/key one")["Body"].read() == b"virtual"
    assert [o["Key"] for o in virtual.list_objects_v2(Bucket=bucket, Prefix="vh/")["Contents"]] == ["vh/key one"]
    assert all(url.startswith(f"http://{bucket}.localhost:{server.port}/") for url in seen_hosts)


# -- safety ----------------------------------------------------------------------------------------------------


def test_keys_cannot_escape_the_store(server, s3, bucket):
    c = s3()
    tricky = [
        "../../escape.txt",
        "/abs/olute",
        "a/../../../b",
        "..",
        ".",
        "nul\x00byte",
        "back\\slash",
        "trailing/",
        "x" * 1024,
    ]
    for key in tricky:
        c.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in tricky:
        assert c.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [
        o["Key"] for o in c.get_paginator("list_objects_v2").paginate(Bucket=bucket).build_full_result()["Contents"]
    ]
    assert listed == sorted(tricky, key=lambda k: k.encode())
    # No key became a path: nothing anywhere near the data directory is named after one.
    names = {"escape.txt", "olute", "b", "nul\x00byte", "back\\slash", "trailing", "x" * 1024}
    assert not [p for p in server.data_dir.parent.rglob("*") if p.name in names]
    assert not Path("/escape.txt").exists()

    with pytest.raises(ClientError) as e:
        c.put_object(Bucket=bucket, Key="y" * 1025, Body=b"x")
    assert error_code(e) == "KeyTooLongError"
    for path in (
        f"/{bucket}/../../../../etc/passwd",
        f"/{bucket}/..%2F..%2F..%2Fetc%2Fpasswd",
        "/../../etc/passwd",
        "/..%2F..%2Fetc/passwd",
    ):
        code, body = raw_request(server, "GET", path)
        assert code in (400, 404) and b"root:" not in body


@pytest.mark.both_databases  # bucket ownership lives in the metadata database
def test_accounts_own_their_buckets(make_server, tmp_path, unique):
    credentials = tmp_path / "credentials.ini"
    credentials.write_text(
        "[AKIDALICE]\nsecret_access_key = alice-secret\naccount_id = 111111111111\n\n"
        "[AKIDBOB]\nsecret_access_key = bob-secret\naccount_id = 222222222222\n"
    )
    srv = make_server("s3-accounts", ["--auth", "strict", "--credentials-file", str(credentials)]).start()

    def as_(key, secret):
        return make_client("s3", srv.url, access_key=key, secret_key=secret, signature_version="s3v4")

    alice, bob = as_("AKIDALICE", "alice-secret"), as_("AKIDBOB", "bob-secret")
    name = unique("alice")
    alice.create_bucket(Bucket=name)
    alice.put_object(Bucket=name, Key="secret", Body=b"alice's")
    assert name in [b["Name"] for b in alice.list_buckets()["Buckets"]]
    assert name not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    for call in (
        lambda: bob.head_bucket(Bucket=name),
        lambda: bob.get_object(Bucket=name, Key="secret"),
        lambda: bob.put_object(Bucket=name, Key="x", Body=b"x"),
        lambda: bob.delete_bucket(Bucket=name),
        lambda: bob.copy_object(Bucket=name, Key="c", CopySource={"Bucket": name, "Key": "secret"}),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert status(e) == 403
    with pytest.raises(ClientError) as e:
        bob.create_bucket(Bucket=name)
    assert (error_code(e), status(e)) == ("BucketAlreadyExists", 409)
    with pytest.raises(ClientError) as e:
        bob.head_bucket(Bucket=name + "-missing")
    assert status(e) == 404
    assert alice.get_object(Bucket=name, Key="secret")["Body"].read() == b"alice's"

    # Signatures are checked over S3 requests too, and presigned URLs work (and are checked).
    with pytest.raises(ClientError) as e:
        as_("AKIDALICE", "wrong-secret").get_object(Bucket=name, Key="secret")
    assert (error_code(e), status(e)) == ("SignatureDoesNotMatch", 403)
    url = alice.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "secret"}, ExpiresIn=60)
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"alice's"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("Signature=", "Signature=0"))
    assert e.value.code == 403
    put_url = alice.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "via-url"}, ExpiresIn=60)
    with urllib.request.urlopen(urllib.request.Request(put_url, data=b"uploaded", method="PUT")) as response:
        assert response.status == 200
    assert alice.get_object(Bucket=name, Key="via-url")["Body"].read() == b"uploaded"


# -- the backends directly --------------------------------------------------------------------------------------


def test_remote_backend_against_our_server(server, unique, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    store = open_object_store(f"s3://rmt-?endpoint_url={server.url}&region=us-east-1")
    name = unique("b")
    store.create_bucket(name)
    assert name in [b.name for b in store.list_buckets()]
    info = store.put_object(name, "dir/a.txt", b"alpha", checksum_algorithm="SHA256")
    assert info.etag == hashlib.md5(b"alpha").hexdigest()
    assert info.checksums == {"SHA256": b64(hashlib.sha256(b"alpha").digest())}
    store.put_object(name, "dir/sub/b.txt", iter([b"be", b"ta"]))
    store.put_object(name, "other", b"x")
    assert store.get_object(name, "dir/sub/b.txt") == b"beta"
    assert store.get_object(name, "dir/a.txt", 1, 3) == b"lp"
    page = store.list_objects(name, prefix="dir/", delimiter="/")
    assert ([o.key for o in page.objects], page.common_prefixes) == (["dir/a.txt"], ["dir/sub/"])
    first = store.list_objects(name, delimiter="/", max_keys=1)
    assert first.is_truncated and first.common_prefixes == ["dir/"]
    rest = store.list_objects(name, delimiter="/", start_after=first.next_marker)
    assert [o.key for o in rest.objects] == ["other"] and rest.common_prefixes == []
    store.copy_object(name, "dir/a.txt", name, "copy.txt")
    assert store.head_object(name, "copy.txt").size == 5

    downloaded = store.download_prefix(f"s3://{name}/dir/", tmp_path / "down")
    assert sorted(p.relative_to(tmp_path / "down").as_posix() for p in downloaded) == ["a.txt", "sub/b.txt"]
    store.upload_directory(tmp_path / "down", f"s3://{name}/again")
    assert sorted(o.key for o in store.iter_objects(name, "again/")) == ["again/a.txt", "again/sub/b.txt"]

    upload_id = store.create_multipart_upload(name, "mp")
    from selfmaker.objects import CompletedPart

    p1 = store.upload_part(name, "mp", upload_id, 1, b"a" * (5 * MB))
    p2 = store.upload_part(name, "mp", upload_id, 2, b"b")
    assert [p.part_number for p in store.list_parts(name, "mp", upload_id).parts] == [1, 2]
    done = store.complete_multipart_upload(
        name, "mp", upload_id, [CompletedPart(1, p1.etag), CompletedPart(2, p2.etag)]
    )
    assert done.size == 5 * MB + 1 and done.parts_count == 2
    with store.open_object(name, "mp") as reader:
        assert reader.read(5 * MB - 1) == b"ab"

    from selfmaker.server.errors import AWSError

    with pytest.raises(AWSError) as e:
        store.get_object(name, "missing")
    assert e.value.code == "NoSuchKey"
    with pytest.raises(AWSError) as e:
        store.delete_bucket(name)
    assert e.value.code == "BucketNotEmpty"
    for info in list(store.iter_objects(name)):
        store.delete_object(name, info.key)
    store.delete_bucket(name)
    with pytest.raises(AWSError) as e:
        store.head_bucket(name)
    assert e.value.code == "NoSuchBucket"


def test_local_backend_helpers_refuse_escaping_keys(tmp_path):
    store = open_object_store((tmp_path / "objects").as_uri())
    store.create_bucket("helpers")
    store.put_object("helpers", "p/ok.txt", b"ok")
    store.put_object("helpers", "p/../../evil.txt", b"evil")
    from selfmaker.server.errors import AWSError

    with pytest.raises(AWSError):
        store.download_prefix("s3://helpers/p/", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    store.close()


def test_a_crash_mid_upload_leaves_no_partial_object(make_server):
    srv = make_server("s3-crash").start()
    c = make_client("s3", srv.url)
    c.create_bucket(Bucket="crash")
    c.put_object(Bucket="crash", Key="k", Body=b"old")
    conn = socket.create_connection(("127.0.0.1", srv.port))
    conn.sendall(b"PUT /crash/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n" + b"n" * 3_000_000)
    wait_for(
        lambda: any((srv.data_dir / "objects" / "staging").iterdir()),
        timeout=10,
        interval=0.05,
        what="the server to receive the body",
    )
    srv.kill()
    conn.close()
    srv.start()
    assert c.get_object(Bucket="crash", Key="k")["Body"].read() == b"old"
    assert [o["Key"] for o in c.list_objects_v2(Bucket="crash")["Contents"]] == ["k"]


def test_readers_keep_their_snapshot_while_a_key_is_overwritten(tmp_path):
    store = open_object_store((tmp_path / "objects").as_uri())
    store.create_bucket("snap")
    store.put_object("snap", "k", b"a" * (3 * MB))
    with store.open_object("snap", "k") as reader:
        first = next(reader.chunks(chunk_size=MB))
        store.put_object("snap", "k", b"b" * 10)
        store.delete_object("snap", "k")
        assert first + b"".join(reader.chunks(MB)) == b"a" * (3 * MB)
    assert list((tmp_path / "objects" / "staging").iterdir()) == []
    store.close()
