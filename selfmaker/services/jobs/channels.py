"""Checks shared by the Create*Job requests: what SelfMaker's File-mode data path can serve."""

from __future__ import annotations

from ...server.errors import validation
from .data import check_uri

UNSUPPORTED_MODES = {"Pipe": "Pipe", "FastFile": "FastFile"}


def check_input_mode(mode: str | None, where: str) -> None:
    if mode in UNSUPPORTED_MODES:
        raise validation(f"{where}: the {mode} input mode is not supported by SelfMaker; use File "
                         "(the data is copied into the container before the job starts).")


def check_compression(compression: str | None, where: str) -> None:
    if compression and compression != "None":
        raise validation(f"{where}: {compression} compression is only allowed with Pipe input mode, "
                         "which SelfMaker does not support; decompress the data or leave the compression None.")


def check_s3_source(source: dict, where: str) -> None:
    if source.get("S3DataType", "S3Prefix") not in ("S3Prefix", "ManifestFile"):
        raise validation(f"{where}: S3DataType {source['S3DataType']} is not supported by SelfMaker "
                         "(it serves S3Prefix and ManifestFile).")
    check_uri(source["S3Uri"], f"{where}: S3Uri")
