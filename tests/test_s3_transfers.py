"""S3 integrity and multipart: checksums, aws-chunked bodies, multipart uploads and copies, s3transfer."""

from __future__ import annotations

import hashlib
import os
import zlib

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from support.s3 import MB, b64, bucket_fixture, error_code, raw_request, s3_fixture, status  # noqa: F401  (the s3 and bucket fixtures)

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
