"""Object storage: the s3:// namespace that jobs, pipelines and users read and write.

``open_object_store(url)`` picks the backend (docs/design.md, principle 4); the
interface is :class:`ObjectStore` in :mod:`.base`. The S3 REST endpoint in
:mod:`.endpoint` serves whichever backend is configured.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from .base import (
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
    parse_s3_uri,
)
from .digests import Expected

__all__ = [
    "BucketInfo",
    "CompletedPart",
    "Condition",
    "Expected",
    "ListPage",
    "ObjectInfo",
    "ObjectMeta",
    "ObjectReader",
    "ObjectStore",
    "PartInfo",
    "PartsPage",
    "UploadInfo",
    "UploadsPage",
    "open_object_store",
    "parse_s3_uri",
]

_REMOTE_OPTIONS = {"endpoint_url", "region", "profile", "addressing_style", "staging_dir"}


def open_object_store(url: str) -> ObjectStore:
    """``file:///dir`` (the embedded store) or ``s3://[bucket-prefix]?endpoint_url=...&region=...``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from .local import LocalObjectStore

        return LocalObjectStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        from .remote import RemoteObjectStore

        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        unknown = set(options) - _REMOTE_OPTIONS
        if unknown:
            raise ValueError(f"unknown object store option(s) {sorted(unknown)}; known: {sorted(_REMOTE_OPTIONS)}")
        return RemoteObjectStore(parsed.netloc + parsed.path.strip("/"), **options)
    raise ValueError(f"object store URL must be file:///dir or s3://[bucket-prefix]?endpoint_url=..., not {url!r}")
