"""Checking an edge package before it is loaded: SHA-1 of the archive, each file's SHA-256, the signature.

The scheme is the server's (selfmaker/services/edge/signing.py, docs/edge.md): the
archive holds ``edge-manifest.json`` (canonical JSON, sorted keys, no spaces) and
``edge-manifest.sig`` = ``HMAC-SHA256:<hex HMAC of the manifest's bytes under the account key>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tarfile
from pathlib import Path

MANIFEST = "edge-manifest.json"
SIGNATURE = "edge-manifest.sig"


class PackageError(Exception):
    """Why a package was refused (the DeploymentResult's StatusReason)."""


def check_sha1(archive: Path, expected: str) -> None:
    digest = hashlib.sha1(archive.read_bytes()).hexdigest()
    if digest != expected:
        raise PackageError(f"checksum mismatch: the archive's SHA1 is {digest}, the deployment says {expected}")


def unpack(archive: Path, dest: Path, key: bytes | None) -> dict:
    """Unpack ``archive`` into ``dest`` and return its manifest, once every check has passed."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PackageError(f"not a readable package: {type(err).__name__}") from None
    try:
        body = (dest / MANIFEST).read_bytes()
        signature = (dest / SIGNATURE).read_text().strip()
        manifest = json.loads(body)
    except (OSError, ValueError):
        raise PackageError("the package has no readable edge-manifest.json / edge-manifest.sig") from None
    if key is not None:
        expected = "HMAC-SHA256:" + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise PackageError("the package's signature does not verify under this account's signing key")
    for relative, digest in manifest.get("Files", {}).items():
        path = dest / relative
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise PackageError(f"the package's file {relative} does not match its manifest")
    return manifest
