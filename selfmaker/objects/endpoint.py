"""The S3-compatible REST endpoint: path-style (/bucket/key) and virtual-host (bucket.localhost) requests.

A request is authenticated, resolved to (bucket, key, subresource), routed to a
handler in api_buckets / api_objects / api_multipart, and any AWSError becomes
S3's XML error document. S3 features SelfMaker does not implement answer 501
NotImplemented naming the operation, never a pretend success.
"""

from __future__ import annotations

import logging
import time
import uuid
from urllib.parse import unquote_to_bytes

from ..observability import server_metrics
from ..server.errors import AWSError
from ..server.http import Request, Response
from ..server.models import service_model
from ..server.operations import declare_implemented
from . import api_buckets, api_multipart, api_objects
from .call import S3Call
from .ownership import BucketOwners
from .xml import error_response

log = logging.getLogger("selfmaker.s3")


async def _list_objects(call: S3Call) -> Response:
    if call.query("list-type") == "2":
        return await api_buckets.list_objects_v2(call)
    return await api_buckets.list_objects(call)


async def _put_object(call: S3Call) -> Response:
    if call.header("x-amz-copy-source") is not None:
        return await api_objects.copy_object(call)
    return await api_objects.put_object(call)


async def _upload_part(call: S3Call) -> Response:
    if call.header("x-amz-copy-source") is not None:
        return await api_multipart.upload_part_copy(call)
    return await api_multipart.upload_part(call)


# (level, method, subresource) -> handler; level is "service", "bucket" or "object".
ROUTES = {
    ("service", "GET", None): api_buckets.list_buckets,
    ("bucket", "PUT", None): api_buckets.create_bucket,
    ("bucket", "HEAD", None): api_buckets.head_bucket,
    ("bucket", "DELETE", None): api_buckets.delete_bucket,
    ("bucket", "GET", "location"): api_buckets.get_bucket_location,
    ("bucket", "GET", None): _list_objects,
    ("bucket", "GET", "uploads"): api_multipart.list_multipart_uploads,
    ("bucket", "POST", "delete"): api_objects.delete_objects,
    ("object", "PUT", None): _put_object,
    ("object", "GET", None): api_objects.get_object,
    ("object", "HEAD", None): api_objects.head_object,
    ("object", "DELETE", None): api_objects.delete_object,
    ("object", "POST", "uploads"): api_multipart.create_multipart_upload,
    ("object", "PUT", "uploadId"): _upload_part,
    ("object", "POST", "uploadId"): api_multipart.complete_multipart_upload,
    ("object", "DELETE", "uploadId"): api_multipart.abort_multipart_upload,
    ("object", "GET", "uploadId"): api_multipart.list_parts,
}

IMPLEMENTED = [
    "ListBuckets",
    "CreateBucket",
    "HeadBucket",
    "DeleteBucket",
    "GetBucketLocation",
    "ListObjects",
    "ListObjectsV2",
    "PutObject",
    "GetObject",
    "HeadObject",
    "DeleteObject",
    "DeleteObjects",
    "CopyObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
    "ListMultipartUploads",
]
declare_implemented("s3", IMPLEMENTED)

# Query parameters that select a sub-resource (and so an operation) rather than parameterise one.
# Value: the operation's name without its Get/Put/Delete verb, or a full name starting with "!".
_SUBRESOURCES = {
    "uploads": "",
    "uploadId": "",
    "delete": "",
    "location": "",
    "acl": "{Bucket}Acl",
    "accelerate": "BucketAccelerateConfiguration",
    "analytics": "BucketAnalyticsConfiguration",
    "cors": "BucketCors",
    "encryption": "BucketEncryption",
    "intelligent-tiering": "BucketIntelligentTieringConfiguration",
    "inventory": "BucketInventoryConfiguration",
    "lifecycle": "BucketLifecycleConfiguration",
    "logging": "BucketLogging",
    "metrics": "BucketMetricsConfiguration",
    "notification": "BucketNotificationConfiguration",
    "object-lock": "ObjectLockConfiguration",
    "ownershipControls": "BucketOwnershipControls",
    "policy": "BucketPolicy",
    "policyStatus": "BucketPolicyStatus",
    "publicAccessBlock": "PublicAccessBlock",
    "replication": "BucketReplication",
    "requestPayment": "BucketRequestPayment",
    "tagging": "{Bucket}Tagging",
    "versioning": "BucketVersioning",
    "website": "BucketWebsite",
    "versions": "!ListObjectVersions",
    "session": "!CreateSession",
    "legal-hold": "ObjectLegalHold",
    "retention": "ObjectRetention",
    "restore": "!RestoreObject",
    "select": "!SelectObjectContent",
    "attributes": "!GetObjectAttributes",
    "torrent": "!GetObjectTorrent",
    "metadataTable": "BucketMetadataTableConfiguration",
    "renameObject": "!RenameObject",
}
_VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Head", "POST": "Post"}


def _operation_name(level: str, method: str, subresource: str | None) -> str:
    """The botocore name of an S3 operation we do not serve, for the NotImplemented message."""
    pattern = _SUBRESOURCES.get(subresource or "", "")
    if pattern.startswith("!"):
        return pattern[1:]
    noun = pattern.replace("{Bucket}", "Object" if level == "object" else "Bucket")
    name = _VERBS.get(method, method.title()) + noun
    if noun and name in service_model("s3").operation_names:
        return name
    return f"{method} {level}" + (f" ?{subresource}" if subresource else "")


def _target(request: Request, bucket_host: str | None) -> tuple[str | None, str | None]:
    """(bucket, key) from the raw path, percent-decoded exactly (a '+' stays a '+')."""
    raw = request.raw_path.encode("latin-1")
    bucket: str | None
    if bucket_host is not None:
        bucket, key = bucket_host, raw[1:]
    else:
        bucket_raw, _, key = raw[1:].partition(b"/")
        bucket = unquote_to_bytes(bucket_raw).decode("utf-8", "replace") or None
    try:
        decoded = unquote_to_bytes(key).decode("utf-8")
    except UnicodeDecodeError:
        raise AWSError("InvalidURI", "Couldn't parse the specified URI: the key is not valid UTF-8.") from None
    return bucket, decoded or None


def _subresource(request: Request) -> str | None:
    for name in request.query:
        if name in _SUBRESOURCES:
            return name
    return None


_MAX_DRAIN = 64 << 20  # past this, an unread body is not worth reading: the connection is closed instead


class _BodyTracker:
    """Notes how far the request body has been read, so that an early answer leaves the connection usable."""

    def __init__(self, request: Request):
        self._receive = request.receive
        self._expects_continue = request.headers.get("expect", "").lower() == "100-continue"
        self.started = False
        self.finished = not _has_body(request)
        request.receive = self

    async def __call__(self):
        self.started = True
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.finished = True
        return message

    async def drain(self, response: Response) -> None:
        """Answering before the body is read (errors, refusals) must not leave body bytes on the connection.

        A client waiting for ``100 Continue`` never sends the body once it has a final answer,
        but botocore then reuses the connection: close it. Otherwise read and drop the rest
        of the body, up to a bound, and close the connection past that.
        """
        if self._expects_continue and not self.started:
            response.headers.append(("Connection", "close"))
            return
        remaining = _MAX_DRAIN
        while not self.finished and remaining > 0:
            remaining -= len((await self()).get("body", b""))
        if not self.finished:
            response.headers.append(("Connection", "close"))


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "0")
    return "transfer-encoding" in request.headers or (length.isdigit() and int(length) > 0)


async def handle_s3(backends, request: Request, scope, bucket_host: str | None) -> Response:
    started = time.perf_counter()
    request_id = uuid.uuid4().hex[:16].upper()
    operation, error_code = "", ""
    head = request.method == "HEAD"
    resource = request.path
    body = _BodyTracker(request)
    try:
        principal = backends.authenticator.authenticate(
            request, scope, request.headers.get("x-amz-content-sha256"), service="s3"
        )
        bucket, key = _target(request, bucket_host)
        level = "object" if key else "bucket" if bucket else "service"
        subresource = _subresource(request)
        handler = ROUTES.get((level, request.method, subresource))
        if handler is None:
            if request.method not in _VERBS:
                raise AWSError(
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.",
                    405,
                    Method=request.method,
                    ResourceType=level.upper(),
                )
            operation = _operation_name(level, request.method, subresource)
            raise AWSError(
                "NotImplemented",
                f"SelfMaker does not implement the S3 operation {operation}. "
                "See docs/coverage.md for the operations it serves.",
                501,
                Operation=operation,
            )
        operation = _served_operation(handler)
        owners = BucketOwners(backends.store, backends.settings.default_account, backends.settings.region)
        call = S3Call(backends, request, principal, owners, bucket, key, request_id)
        response = await handler(call)
    except AWSError as err:
        error_code = err.code
        response = error_response(err, request_id, resource, head=head)
    except Exception:
        error_code = "InternalError"
        log.exception("S3 %s %s failed", request.method, request.path)
        response = error_response(
            AWSError("InternalError", "We encountered an internal error. Please try again.", 500),
            request_id,
            resource,
            head=head,
        )
    if not body.finished:
        await body.drain(response)
    response.headers.append(("x-amz-request-id", request_id))
    response.headers.append(("x-amz-id-2", request_id))
    # Until the answer starts: a GetObject's body streams after this.
    server_metrics(backends).observe_api("s3", operation, time.perf_counter() - started, error_code)
    return response


def _served_operation(handler) -> str:
    """The S3 operation a route's handler serves, by its name (``get_bucket_location``: GetBucketLocation)."""
    return "".join(word.title() for word in handler.__name__.strip("_").split("_"))
