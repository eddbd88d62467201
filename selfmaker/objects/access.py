"""One account's view of the object store, and the check every user-supplied URI or host path passes.

A job, a model, an endpoint's data capture, a pipeline, a feature group or an
Athena query runs on behalf of one account. Whatever S3 URI it names is
hostile until checked: the bucket must be that account's own, at the moment of
use (a bucket can be deleted and re-created by another account between a
Create and the work). ``AccountObjects`` enforces that on every call, so the
code that moves data cannot forget it; ``check_s3_uri`` gives a Create the same
answer up front.

Host paths (``file://``) are refused in strict mode; in open mode they are
allowed only under the directories the operator listed (``--allow-local-path``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from ..server.errors import AWSError
from .base import parse_s3_uri
from .ownership import BucketOwners


def access_denied(bucket: str) -> AWSError:
    return AWSError("AccessDenied", f"Access Denied: the bucket {bucket} belongs to another account", 403)


class AccountObjects:
    """The object store as ``account_id`` may use it: every call that names a bucket checks it is the account's.

    A missing bucket is ``NoSuchBucket`` for anyone; a bucket of another account is ``AccessDenied``.
    Calls that name no bucket (``list_buckets``, ``close``) are not offered.
    """

    def __init__(self, objects, owners: BucketOwners, account_id: str):
        self._objects, self._owners, self.account_id = objects, owners, account_id

    @classmethod
    def of(cls, backends, account_id: str) -> AccountObjects:
        settings = backends.settings
        return cls(
            backends.objects, BucketOwners(backends.store, settings.default_account, settings.region), account_id
        )

    def authorize(self, bucket: str) -> None:
        if self._owners.of(bucket).account_id != self.account_id:
            self._objects.head_bucket(bucket)  # NoSuchBucket when it does not exist
            raise access_denied(bucket)

    def __getattr__(self, name: str):
        method = getattr(self._objects, name)
        if name in _BUCKETLESS or not callable(method):
            raise AttributeError(f"{name} is not offered on one account's view of the object store")

        def checked(bucket, *args, **kwargs):
            self.authorize(bucket)
            if name == "copy_object":  # copy_object(src_bucket, src_key, bucket, key, ...)
                self.authorize(args[1])
            return method(bucket, *args, **kwargs)

        return checked

    # The URI helpers of ObjectStore take a URI, not a bucket.
    def download_prefix(self, uri: str, local_dir):
        self.authorize(parse_s3_uri(uri)[0])
        return self._objects.download_prefix(uri, local_dir)

    def upload_directory(self, local_dir, uri: str):
        self.authorize(parse_s3_uri(uri)[0])
        return self._objects.upload_directory(local_dir, uri)


_BUCKETLESS = {"list_buckets", "close", "create_bucket", "delete_bucket"}


def check_s3_uri(backends, account_id: str, uri: str, what: str) -> None:
    """The ValidationException a Create gets for an ``s3://`` URI in a bucket ``account_id`` does not own."""
    try:
        bucket, _ = parse_s3_uri(uri)
    except AWSError as err:
        raise AWSError("ValidationException", f"{what}: {err.message}") from None
    try:
        AccountObjects.of(backends, account_id).authorize(bucket)
    except AWSError as err:
        if err.code == "NoSuchBucket":
            return  # AWS fails the work later, when it reaches the missing bucket
        raise AWSError(
            "ValidationException", f"{what} {uri!r} is in a bucket of another account: access denied."
        ) from None


def local_path(settings, uri_or_path: str, what: str) -> Path:
    """The host path a ``file://`` URI (or a plain path) names, once the operator has allowed it.

    Strict mode refuses every host path; open mode allows only paths under ``--allow-local-path``
    directories (resolved, so ``..`` and symlinks cannot climb out).
    """
    path = Path(unquote(urlparse(uri_or_path).path)) if uri_or_path.startswith("file://") else Path(uri_or_path)
    if settings.auth_mode == "strict":
        raise AWSError(
            "ValidationException",
            f"{what}: host paths (file://) are not accepted by a server in strict auth mode; use s3:// URIs.",
        )
    resolved = path.resolve()
    for allowed in settings.allow_local_paths:
        root = Path(allowed).resolve()
        if resolved == root or root in resolved.parents:
            return resolved
    raise AWSError(
        "ValidationException",
        f"{what}: host paths (file://) are accepted only under the directories "
        "the operator allows with --allow-local-path; none allows this one.",
    )
