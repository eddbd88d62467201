"""An S3-compatible service (AWS S3, MinIO, Ceph RGW) as the object store, through boto3.

``s3://[bucket-prefix]?endpoint_url=http://minio:9000&region=us-east-1&profile=name&addressing_style=path``:
SelfMaker bucket ``b`` is the remote bucket ``<bucket-prefix>b``, so one remote
account can host several SelfMaker installations. Credentials come from boto3's
usual chain (environment, profile, instance role). Bodies are staged to a local
temporary file first: digests are verified before anything reaches the remote,
and a failed upload never leaves a partial object there either.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..server.errors import AWSError
from .base import (
    CHUNK_SIZE,
    MAX_KEYS,
    MAX_SINGLE_PUT,
    STORED_HEADERS,
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
    key_bytes,
    no_such_bucket,
    no_such_key,
)
from .digests import ALGORITHMS, Expected, b64
from .staging import Staged, stage

# boto3 parameter names of the stored standard headers
_HEADER_PARAMS = {name: name.replace("-", "") for name in STORED_HEADERS}


def _checksum_params(checksums: dict[str, str]) -> dict[str, str]:
    return {f"Checksum{algorithm}": value for algorithm, value in checksums.items()}


def _checksums_from(response: dict) -> dict[str, str]:
    return {a: response[f"Checksum{a}"] for a in ALGORITHMS if response.get(f"Checksum{a}")}


def _meta_params(meta: ObjectMeta) -> dict:
    params = {"ContentType": meta.content_type, "Metadata": meta.user}
    params.update({_HEADER_PARAMS[name]: value for name, value in meta.headers.items() if name != "Expires"})
    if "Expires" in meta.headers:  # boto3 takes a datetime; send the header as the client gave it
        params["Expires"] = meta.headers["Expires"]
    return params


def _meta_from(response: dict) -> ObjectMeta:
    headers = {
        name: response[param] for name, param in _HEADER_PARAMS.items() if response.get(param) and name != "Expires"
    }
    expires = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("expires")
    if expires:
        headers["Expires"] = expires
    return ObjectMeta(response.get("ContentType") or "binary/octet-stream", headers, response.get("Metadata", {}))


def _condition_params(condition: Condition | None) -> dict:
    params = {}
    if condition and condition.if_match:
        params["IfMatch"] = f'"{condition.if_match}"' if condition.if_match != "*" else "*"
    if condition and condition.if_none_match:
        params["IfNoneMatch"] = condition.if_none_match
    return params


class RemoteObjectStore(ObjectStore):
    def __init__(
        self,
        bucket_prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        addressing_style: str | None = None,
        staging_dir: str | None = None,
    ):
        self.prefix = bucket_prefix
        self.endpoint_url = endpoint_url
        session = boto3.session.Session(profile_name=profile, region_name=region)
        config = Config(
            s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
            retries={"mode": "standard"},
            max_pool_connections=32,
        )
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.region = self.client.meta.region_name
        self.staging = Path(staging_dir or tempfile.gettempdir())
        self._upload_algorithms: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RemoteObjectStore(prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"

    def _name(self, bucket: str) -> str:
        return self.prefix + bucket

    @contextmanager
    def _calling(self, bucket: str | None = None, key: str | None = None):
        """Remote errors as our AWSError, with the remote's code and status; bucket names without the prefix."""
        try:
            yield
        except ClientError as err:
            error = err.response.get("Error", {})
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            code = error.get("Code", str(status))
            if code in ("404", "NoSuchBucket") and (code == "NoSuchBucket" or key is None):
                raise no_such_bucket(bucket or "") from None
            if code in ("404", "NoSuchKey"):
                raise no_such_key(key or "") from None
            if code == "NoSuchUpload":
                raise AWSError(code, error.get("Message", ""), 404, UploadId=error.get("UploadId", "")) from None
            fields = {k: v for k, v in error.items() if k not in ("Code", "Message", "BucketName")}
            if bucket is not None and "BucketName" in error:
                fields["BucketName"] = bucket
            raise AWSError(code, error.get("Message", code), status, **fields) from None
        except BotoCoreError as err:
            raise AWSError("ServiceUnavailable", f"The object store behind SelfMaker failed: {err}", 503) from None

    def _stage(self, body: Body, expected: Expected | None, algorithms=()) -> Staged:
        return stage(body, self.staging, algorithms, expected, durable=False)

    # -- buckets -----------------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> BucketInfo:
        check_bucket_name(bucket)
        params = {}
        if self.region and self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            with self._calling(bucket):
                self.client.create_bucket(Bucket=self._name(bucket), **params)
        except AWSError as err:
            if err.code == "BucketAlreadyOwnedByYou":
                raise AWSError(
                    "BucketAlreadyExists", "The requested bucket name is not available.", 409, BucketName=bucket
                ) from None
            raise
        return self.head_bucket(bucket)

    def head_bucket(self, bucket: str) -> BucketInfo:
        for info in self._remote_buckets(self._name(bucket)):
            if info.name == bucket:
                return info
        raise no_such_bucket(bucket)

    def list_buckets(self) -> list[BucketInfo]:
        return sorted(self._remote_buckets(self.prefix), key=lambda b: b.name)

    def _remote_buckets(self, prefix: str) -> Iterator[BucketInfo]:
        params = {"Prefix": prefix} if prefix else {}
        with self._calling():
            for page in self.client.get_paginator("list_buckets").paginate(**params):
                for bucket in page.get("Buckets", []):
                    if bucket["Name"].startswith(self.prefix):
                        yield BucketInfo(bucket["Name"][len(self.prefix) :], bucket["CreationDate"].timestamp())

    def delete_bucket(self, bucket: str) -> None:
        with self._calling(bucket):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self._name(bucket)):
                for upload in page.get("Uploads", []):
                    self.client.abort_multipart_upload(
                        Bucket=self._name(bucket), Key=upload["Key"], UploadId=upload["UploadId"]
                    )
            self.client.delete_bucket(Bucket=self._name(bucket))

    # -- objects -----------------------------------------------------------------------------

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
        key_bytes(key)
        staged = self._stage(body, expected, [checksum_algorithm] if checksum_algorithm else ())
        try:
            if staged.size > MAX_SINGLE_PUT:
                raise AWSError(
                    "EntityTooLarge",
                    "Your proposed upload exceeds the maximum allowed object size.",
                    ProposedSize=staged.size,
                    MaxSizeAllowed=MAX_SINGLE_PUT,
                )
            checksums = {checksum_algorithm: staged.checksums[checksum_algorithm]} if checksum_algorithm else {}
            with open(staged.path, "rb") as f, self._calling(bucket, key):
                self.client.put_object(
                    Bucket=self._name(bucket),
                    Key=key,
                    Body=f,
                    ContentLength=staged.size,
                    ContentMD5=b64(staged.md5_digest),
                    **_meta_params(meta or ObjectMeta()),
                    **_checksum_params(checksums),
                    **_condition_params(condition),
                )
        finally:
            staged.discard()
        return self.head_object(bucket, key)

    def open_object(self, bucket: str, key: str) -> ObjectReader:
        return _RemoteReader(self, bucket, key, self.head_object(bucket, key))

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        key_bytes(key)
        try:
            with self._calling(bucket, key):
                response = self.client.head_object(Bucket=self._name(bucket), Key=key, ChecksumMode="ENABLED")
        except AWSError as err:
            if err.code == "NoSuchKey":
                self.head_bucket(bucket)  # a HEAD 404 does not say which of the two is missing
            raise
        etag = response["ETag"].strip('"')
        parts = int(etag.rsplit("-", 1)[1]) if "-" in etag else None
        checksums = _checksums_from(response)
        return ObjectInfo(
            key,
            response["ContentLength"],
            etag,
            response["LastModified"].timestamp(),
            _meta_from(response),
            checksums,
            response.get("ChecksumType") or ("FULL_OBJECT" if checksums else None),
            parts,
        )

    def delete_object(self, bucket: str, key: str) -> None:
        key_bytes(key)
        with self._calling(bucket, key):
            self.client.delete_object(Bucket=self._name(bucket), Key=key)

    def list_objects(
        self, bucket: str, prefix: str = "", delimiter: str = "", start_after: str = "", max_keys: int = MAX_KEYS
    ) -> ListPage:
        remote_start = start_after
        if (
            delimiter
            and start_after.startswith(prefix)
            and start_after.endswith(delimiter)
            and start_after.find(delimiter, len(prefix)) == len(start_after) - len(delimiter)
        ):
            # Resuming after a common prefix: start past every key under it.
            remote_start = start_after + "\U0010ffff"
        params = {"Bucket": self._name(bucket), "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            params["Delimiter"] = delimiter
        if remote_start:
            params["StartAfter"] = remote_start
        with self._calling(bucket):
            response = self.client.list_objects_v2(**params)
        objects = [
            ObjectInfo(o["Key"], o["Size"], o["ETag"].strip('"'), o["LastModified"].timestamp())
            for o in response.get("Contents", [])
        ]
        prefixes = [p["Prefix"] for p in response.get("CommonPrefixes", []) if p["Prefix"] != start_after]
        truncated = bool(response.get("IsTruncated"))
        last = max([o.key for o in objects[-1:]] + prefixes[-1:], key=lambda s: s.encode(), default=None)
        return ListPage(objects, prefixes, truncated, last if truncated else None)

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
        key_bytes(key)
        params = {"MetadataDirective": "COPY"}
        if meta is not None:
            params = {"MetadataDirective": "REPLACE", **_meta_params(meta)}
        if checksum_algorithm:
            params["ChecksumAlgorithm"] = checksum_algorithm
        with self._calling(bucket, key):
            self.client.copy_object(
                Bucket=self._name(bucket),
                Key=key,
                CopySource={"Bucket": self._name(src_bucket), "Key": src_key},
                **params,
                **_condition_params(condition),
            )
        return self.head_object(bucket, key)

    # -- multipart uploads -----------------------------------------------------------------------

    def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        meta: ObjectMeta | None = None,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> str:
        key_bytes(key)
        params = _meta_params(meta or ObjectMeta())
        if checksum_algorithm:
            params["ChecksumAlgorithm"] = checksum_algorithm
        if checksum_type:
            params["ChecksumType"] = checksum_type
        with self._calling(bucket, key):
            upload_id = self.client.create_multipart_upload(Bucket=self._name(bucket), Key=key, **params)["UploadId"]
        with self._lock:
            self._upload_algorithms[upload_id] = checksum_algorithm
        return upload_id

    def _upload_algorithm(self, bucket: str, key: str, upload_id: str) -> str | None:
        with self._lock:
            if upload_id in self._upload_algorithms:
                return self._upload_algorithms[upload_id]
        algorithm = self.list_parts(bucket, key, upload_id, max_parts=1).upload.checksum_algorithm
        with self._lock:
            self._upload_algorithms[upload_id] = algorithm
        return algorithm

    def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Body, *, expected: Expected | None = None
    ) -> PartInfo:
        algorithm = self._upload_algorithm(bucket, key, upload_id)
        staged = self._stage(body, expected, [algorithm] if algorithm else ())
        try:
            with open(staged.path, "rb") as f, self._calling(bucket, key):
                response = self.client.upload_part(
                    Bucket=self._name(bucket),
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=part_number,
                    Body=f,
                    ContentLength=staged.size,
                    ContentMD5=b64(staged.md5_digest),
                    **_checksum_params({algorithm: staged.checksums[algorithm]} if algorithm else {}),
                )
        finally:
            staged.discard()
        return PartInfo(part_number, staged.size, response["ETag"].strip('"'), 0.0, _checksums_from(response))

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
        listed = [
            {"PartNumber": p.part_number, "ETag": f'"{p.etag.strip(chr(34))}"', **_checksum_params(p.checksums)}
            for p in parts
        ]
        with self._calling(bucket, key):
            self.client.complete_multipart_upload(
                Bucket=self._name(bucket),
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
                **_checksum_params(expected.checksums if expected else {}),
                **_condition_params(condition),
            )
        with self._lock:
            self._upload_algorithms.pop(upload_id, None)
        return self.head_object(bucket, key)

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        with self._calling(bucket, key):
            self.client.abort_multipart_upload(Bucket=self._name(bucket), Key=key, UploadId=upload_id)
        with self._lock:
            self._upload_algorithms.pop(upload_id, None)

    def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int = 0, max_parts: int = MAX_KEYS
    ) -> PartsPage:
        with self._calling(bucket, key):
            response = self.client.list_parts(
                Bucket=self._name(bucket),
                Key=key,
                UploadId=upload_id,
                PartNumberMarker=part_number_marker,
                MaxParts=max_parts,
            )
        upload = UploadInfo(
            upload_id,
            key,
            response["Initiated"].timestamp() if "Initiated" in response else 0.0,
            checksum_algorithm=response.get("ChecksumAlgorithm"),
            checksum_type=response.get("ChecksumType"),
        )
        parts = [
            PartInfo(
                p["PartNumber"], p["Size"], p["ETag"].strip('"'), p["LastModified"].timestamp(), _checksums_from(p)
            )
            for p in response.get("Parts", [])
        ]
        return PartsPage(upload, parts, bool(response.get("IsTruncated")))

    def list_multipart_uploads(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = MAX_KEYS,
    ) -> UploadsPage:
        params = {"Bucket": self._name(bucket), "Prefix": prefix, "MaxUploads": max_uploads}
        if delimiter:
            params["Delimiter"] = delimiter
        if key_marker:
            params["KeyMarker"] = key_marker
        if upload_id_marker:
            params["UploadIdMarker"] = upload_id_marker
        with self._calling(bucket):
            response = self.client.list_multipart_uploads(**params)
        uploads = [
            UploadInfo(
                u["UploadId"],
                u["Key"],
                u["Initiated"].timestamp(),
                checksum_algorithm=u.get("ChecksumAlgorithm"),
                checksum_type=u.get("ChecksumType"),
            )
            for u in response.get("Uploads", [])
        ]
        return UploadsPage(
            uploads, [p["Prefix"] for p in response.get("CommonPrefixes", [])], bool(response.get("IsTruncated"))
        )


class _RemoteReader(ObjectReader):
    """Ranged GETs pinned to the ETag seen at open time, so the bytes match ``info``."""

    def __init__(self, store: RemoteObjectStore, bucket: str, key: str, info: ObjectInfo):
        self.store, self.bucket, self.key, self.info = store, bucket, key, info

    def chunks(self, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        end = self.info.size if end is None else min(end, self.info.size)
        if start >= end:
            return
        with self.store._calling(self.bucket, self.key):
            response = self.store.client.get_object(
                Bucket=self.store._name(self.bucket),
                Key=self.key,
                Range=f"bytes={start}-{end - 1}",
                IfMatch=f'"{self.info.etag}"',
            )
        body = response["Body"]
        try:
            with self.store._calling(self.bucket, self.key):
                yield from body.iter_chunks(chunk_size)
        finally:
            body.close()
