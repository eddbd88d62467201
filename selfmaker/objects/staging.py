"""Bodies on their way in: streamed to a temporary file and digested in one pass, then verified."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .base import CHUNK_SIZE, Body
from .digests import Digester, Expected


def iter_body(body: Body, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes | memoryview]:
    """Any accepted body as a stream of chunks."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        view = memoryview(body)
        for start in range(0, len(view), chunk_size):
            yield view[start : start + chunk_size]
    elif hasattr(body, "read"):
        while chunk := body.read(chunk_size):
            yield chunk
    else:
        for chunk in body:
            if chunk:
                yield chunk


@dataclass
class Staged:
    """A verified body in a temporary file that the caller moves into place or removes."""

    path: Path
    size: int
    md5_hex: str
    md5_digest: bytes
    checksums: dict[str, str]  # algorithm -> base64

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def stage(
    body: Body, directory: Path, algorithms=(), expected: Expected | None = None, durable: bool = True, md5: bool = True
) -> Staged:
    """Write ``body`` to a new file in ``directory`` while digesting it; verify ``expected`` at the end.

    ``algorithms`` must include every algorithm whose value ``expected`` will hold (trailing
    checksums are filled in only once the body has been read). On any failure the file is gone.
    """
    wanted = set(algorithms) | set(expected.checksums if expected else ())
    digester = Digester(sorted(wanted), sha256=bool(expected and expected.sha256_hex), md5=md5)
    fd, name = tempfile.mkstemp(dir=directory, prefix="stage-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter_body(body):
                digester.update(chunk)
                out.write(chunk)
            if durable:  # the object must survive a power cut once we have said it is stored
                out.flush()
                os.fsync(out.fileno())
        checksums = digester.verify(expected)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Staged(path, digester.size, digester.md5_hex, digester.md5_digest, checksums)
