"""Moving objects onto the host for work: an object or a prefix into a directory, a tar archive unpacked.

What a job's inputs and code, and a served Model's data and code, share
(selfmaker/services/jobs/data.py, selfmaker/engines/model_server.py). Every
read goes through one account's view of the object store
(:class:`~selfmaker.objects.access.AccountObjects`), which the callers pass:
the bucket is checked at use. Objects are copied in chunks, never whole in
memory. Nothing lands outside the directory it is meant for: keys are confined
and archives are unpacked with tarfile's "data" filter.

Errors raised here say what went wrong without naming a host path (the
messages become a job's FailureReason or an endpoint's, which the user reads);
callers add the URI and their own wording. ``AWSError`` from the store passes
through unchanged.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import IO

from .access import AccountObjects

# An archive up to this size is unpacked from memory; a larger one spills to a temporary file.
SPOOL_BYTES = 64 * 1024 * 1024


class OutsideDirectory(Exception):
    """A key whose path would land outside the directory it is copied into ('..', an absolute path)."""

    def __init__(self, key: str):
        super().__init__(f"the key {key!r} would land outside its directory")
        self.key = key


class ArchiveError(Exception):
    """A tar archive that cannot be unpacked; ``detail`` never names a host path."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotAnArchive(ArchiveError):
    """The bytes are not a (possibly compressed) tar archive."""


class RefusedMember(ArchiveError):
    """A member the "data" filter refuses (absolute path, '..', a link leading out, a device file)."""

    def __init__(self, member: str, kind: str):
        super().__init__(f"{member!r} ({kind})")
        self.member, self.kind = member, kind


def code_failure(uri: str, err: ArchiveError) -> str:
    """A job's reason for code at ``uri`` that cannot be unpacked (the same wherever it is unpacked)."""
    if isinstance(err, RefusedMember):
        return f"ClientError: the code {uri} holds a member SelfMaker will not unpack: {err.detail}"
    if isinstance(err, NotAnArchive):
        return f"ClientError: the code {uri} is not a tar archive: {err.detail}"
    return f"ClientError: cannot unpack the code {uri}: {err.detail}"


def confined(root: Path, relative: str) -> Path | None:
    """``root``/``relative`` resolved, or None when it is not strictly inside ``root``."""
    root = root.resolve()
    target = (root / relative).resolve()
    return target if root in target.parents else None


def fetch(objects: AccountObjects, bucket: str, key: str, out: IO[bytes]) -> None:
    """Write one object to an open file, chunk by chunk."""
    with objects.open_object(bucket, key) as reader:
        for chunk in reader.chunks():
            out.write(chunk)


def download(objects: AccountObjects, bucket: str, key: str, target: Path) -> None:
    """Copy one object to the host file ``target`` (its directory is made).

    The object is opened first, so a refused or missing one leaves no file behind."""
    with objects.open_object(bucket, key) as reader:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for chunk in reader.chunks():
                out.write(chunk)


def download_prefix(objects: AccountObjects, bucket: str, prefix: str, dest: Path) -> int:
    """Copy every object under ``prefix`` to ``dest``/<key less the prefix>; return how many.

    Folder markers (keys ending in '/') are skipped. A key that would land outside ``dest``
    (or on ``dest`` itself) raises :class:`OutsideDirectory` before it is written.
    """
    count = 0
    for info in objects.iter_objects(bucket, prefix):
        if info.key.endswith("/"):
            continue
        target = confined(dest, info.key[len(prefix) :].lstrip("/"))
        if target is None:
            raise OutsideDirectory(info.key)
        download(objects, bucket, info.key, target)
        count += 1
    return count


def extract_tar(archive: IO[bytes], dest: Path) -> None:
    """Unpack a tar archive (any compression tarfile reads) into ``dest`` with the "data" filter."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as err:  # str(err) names the host directory
        raise RefusedMember(err.tarinfo.name, type(err).__name__) from None
    except tarfile.TarError as err:
        raise NotAnArchive(str(err)) from None
    except OSError as err:  # never str(err): it names host paths
        raise ArchiveError(err.strerror or type(err).__name__) from None
    except EOFError:  # a truncated compressed stream
        raise NotAnArchive("the archive is truncated") from None


def extract_object(objects: AccountObjects, bucket: str, key: str, dest: Path) -> None:
    """Unpack the tar archive stored at ``bucket``/``key`` into ``dest``."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        fetch(objects, bucket, key, spool)
        spool.seek(0)
        extract_tar(spool, dest)
