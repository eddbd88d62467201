"""Checks shared by the Create*Job requests: what SelfMaker's File-mode data path can serve, and whose data it is."""

from __future__ import annotations

from urllib.parse import urlparse

from ...objects.access import check_s3_uri, local_path
from ...server.errors import validation

UNSUPPORTED_MODES = {"Pipe": "Pipe", "FastFile": "FastFile"}


def check_input_mode(mode: str | None, where: str) -> None:
    if mode in UNSUPPORTED_MODES:
        raise validation(
            f"{where}: the {mode} input mode is not supported by SelfMaker; use File "
            "(the data is copied into the container before the job starts)."
        )


def check_compression(compression: str | None, where: str) -> None:
    if compression and compression != "None":
        raise validation(
            f"{where}: {compression} compression is only allowed with Pipe input mode, "
            "which SelfMaker does not support; decompress the data or leave the compression None."
        )


def check_uri(ctx, uri: str, what: str) -> None:
    """The 400 a Create gets for a URI the job could not use: not s3:// or file://, a bucket of another account,
    or a host path the operator does not allow (strict mode: none; open mode: under --allow-local-path only)."""
    scheme = urlparse(uri).scheme
    if scheme == "s3":
        check_s3_uri(ctx.backends, ctx.account_id, uri, what)
    elif scheme == "file":
        local_path(ctx.backends.settings, uri, f"{what} {uri!r}")
    else:
        raise validation(f"{what} {uri!r} is not supported: SelfMaker reads s3:// (or allowed file://) URIs.")


def check_s3_source(ctx, source: dict, where: str) -> None:
    if source.get("S3DataType", "S3Prefix") not in ("S3Prefix", "ManifestFile"):
        raise validation(
            f"{where}: S3DataType {source['S3DataType']} is not supported by SelfMaker "
            "(it serves S3Prefix and ManifestFile)."
        )
    check_uri(ctx, source["S3Uri"], f"{where}: S3Uri")
