"""The signature of an edge package: HMAC-SHA256 of its manifest under the account's signing key.

Each account has its own key, derived from one random server secret (kept in the
store for the life of the database) and the account id, so a package one account
signs never verifies under another's key. Operators hand the key to their devices
(``selfmaker edge-signing-key --account ID`` prints it; the agent takes it with
``--signing-key-file``). The scheme, byte for byte, is in docs/edge.md; the agent's
check is :mod:`selfmaker.edge_agent.package`, which must agree with this module.
"""

from __future__ import annotations

import hashlib
import hmac
import json

SCHEME = "HMAC-SHA256"
MANIFEST = "edge-manifest.json"  # the archive's signed list of files
SIGNATURE = "edge-manifest.sig"  # "HMAC-SHA256:<hex>" of the manifest's exact bytes


def account_key(store, account_id: str) -> bytes:
    secret = store.secret("edge-package-signing")
    return hmac.new(secret, f"selfmaker-edge/{account_id}".encode(), hashlib.sha256).digest()


def manifest_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def sign(key: bytes, manifest: bytes) -> str:
    return f"{SCHEME}:{hmac.new(key, manifest, hashlib.sha256).hexdigest()}"
