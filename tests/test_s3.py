"""The S3-compatible endpoint through boto3 and the AWS CLI: buckets, objects, listings, copy, addressing."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.s3 import bucket_fixture, error_code, s3_fixture, status  # noqa: F401  (the s3 and bucket fixtures)

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
