"""Digests computed while bytes stream past: the MD5 behind ETags and S3's flexible checksums.

S3 checksums travel base64-encoded (big-endian for the CRCs). Every hasher here
releases the GIL on large buffers, so hashing in a worker thread runs alongside
the event loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import google_crc32c

from ..server.errors import AWSError

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
CRC_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME")
_DIGEST_SIZES = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}


class _Crc32:
    def __init__(self):
        self.value = 0

    def update(self, data) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class _Crc32c:
    def __init__(self):
        self._checksum = google_crc32c.Checksum()

    def update(self, data) -> None:
        self._checksum.update(bytes(data) if isinstance(data, memoryview) else data)

    def digest(self) -> bytes:
        return self._checksum.digest()


class _Crc64Nvme:
    """CRC64/NVME, from the AWS common runtime when it is installed (it is the only fast implementation)."""

    def __init__(self):
        try:
            from awscrt import checksums
        except ImportError:
            raise AWSError(
                "InvalidRequest",
                "This server cannot compute CRC64NVME checksums: "
                "install the awscrt package next to SelfMaker, or use CRC32, CRC32C, SHA1 or SHA256.",
            ) from None
        self._crc64nvme = checksums.crc64nvme
        self.value = 0

    def update(self, data) -> None:
        self.value = self._crc64nvme(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(8, "big")


class Hasher(Protocol):
    """What hashlib's objects and the CRCs above share."""

    def update(self, data, /) -> None: ...
    def digest(self) -> bytes: ...


_FACTORIES: dict[str, Callable[[], Hasher]] = {
    "CRC32": _Crc32,
    "CRC32C": _Crc32c,
    "CRC64NVME": _Crc64Nvme,
    "SHA1": hashlib.sha1,
    "SHA256": hashlib.sha256,
}


def normalise_algorithm(name: str | None) -> str | None:
    """``crc32`` -> ``CRC32``; InvalidRequest for an algorithm S3 does not know."""
    if not name:
        return None
    upper = name.upper()
    if upper not in _FACTORIES:
        raise AWSError(
            "InvalidRequest", f"Checksum algorithm {name!r} is not supported; use one of {', '.join(ALGORITHMS)}."
        )
    return upper


def new_hasher(algorithm: str) -> Hasher:
    return _FACTORIES[algorithm]()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def checksum_of(algorithm: str, data: bytes) -> str:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return b64(hasher.digest())


def check_checksum_value(algorithm: str, value: str, origin: str) -> str:
    """A client-sent checksum must be base64 of the algorithm's digest size; InvalidRequest otherwise."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _DIGEST_SIZES[algorithm]:
        raise AWSError("InvalidRequest", f"Value for {origin} is invalid.")
    return value


def decode_content_md5(value: str) -> str:
    """Content-MD5 (base64) as hex; InvalidDigest when it is not an MD5."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise AWSError("InvalidDigest", "The Content-MD5 you specified was invalid.")
    return raw.hex()


@dataclass
class Expected:
    """What the client claims about a body; checked once the body has been read in full.

    Checked only at the end so that values sent as aws-chunked trailers, which
    arrive after the data, can still be filled in while the body streams.
    """

    md5_hex: str | None = None  # from Content-MD5
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64, from x-amz-checksum-*
    sha256_hex: str | None = None  # x-amz-content-sha256, when it is a real payload hash
    size: int | None = None  # x-amz-decoded-content-length for aws-chunked bodies


class _NoDigest:
    """Stands in for MD5 where the ETag comes from elsewhere (joined multipart parts)."""

    def update(self, data) -> None:
        pass

    def hexdigest(self) -> str:
        return ""

    def digest(self) -> bytes:
        return b""


class Digester:
    """Feeds every chunk to MD5 and to the checksums asked for; says what the body's digests were."""

    def __init__(self, algorithms=(), sha256: bool = False, md5: bool = True):
        self.size = 0
        self._md5 = hashlib.md5() if md5 else _NoDigest()
        self._hashers = {a: new_hasher(a) for a in algorithms}
        self._sha256 = hashlib.sha256() if sha256 and "SHA256" not in self._hashers else None

    def update(self, chunk) -> None:
        self.size += len(chunk)
        self._md5.update(chunk)
        for hasher in self._hashers.values():
            hasher.update(chunk)
        if self._sha256 is not None:
            self._sha256.update(chunk)

    @property
    def md5_hex(self) -> str:
        return self._md5.hexdigest()

    @property
    def md5_digest(self) -> bytes:
        return self._md5.digest()

    def checksums(self) -> dict[str, str]:
        return {a: b64(h.digest()) for a, h in self._hashers.items()}

    def sha256_hex(self) -> str | None:
        if "SHA256" in self._hashers:
            return self._hashers["SHA256"].digest().hex()
        return self._sha256.hexdigest() if self._sha256 is not None else None

    def verify(self, expected: Expected | None) -> dict[str, str]:
        """Raise the error S3 sends when a claim does not hold; return the computed checksums."""
        checksums = self.checksums()
        if expected is None:
            return checksums
        if expected.size is not None and expected.size != self.size:
            raise AWSError(
                "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header."
            )
        if expected.sha256_hex is not None and expected.sha256_hex != self.sha256_hex():
            raise AWSError(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ClientComputedContentSHA256=expected.sha256_hex,
                S3ComputedContentSHA256=self.sha256_hex(),
            )
        if expected.md5_hex is not None and expected.md5_hex != self.md5_hex:
            raise AWSError("BadDigest", "The Content-MD5 you specified did not match what we received.")
        for algorithm, value in expected.checksums.items():
            if checksums.get(algorithm) != value:
                raise AWSError("BadDigest", f"The {algorithm} you specified did not match the calculated checksum.")
        return checksums


def multipart_etag(part_md5_hexes: list[str]) -> str:
    """S3's multipart ETag: the MD5 of the parts' binary MD5s, then '-' and the part count."""
    joined = b"".join(bytes.fromhex(h) for h in part_md5_hexes)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_md5_hexes)}"


def composite_checksum(algorithm: str, part_checksums: list[str]) -> str:
    """S3's COMPOSITE multipart checksum: the checksum of the parts' raw checksums, '-' and the count."""
    hasher = new_hasher(algorithm)
    for value in part_checksums:
        hasher.update(base64.b64decode(value))
    return f"{b64(hasher.digest())}-{len(part_checksums)}"
