"""Data in and out of a job: S3 (or file://) inputs materialized in an instance's directory, outputs uploaded.

Inputs honour S3DataType (S3Prefix: every key under the prefix; ManifestFile:
the keys a manifest lists) and S3DataDistributionType (FullyReplicated: every
instance gets all objects; ShardedByS3Key: instance i of n gets every n-th
object in key order).

Everything goes through the job's :class:`JobStorage`: its account's view of
the object store (every bucket checked at use, so a bucket that changed owner
since the Create fails the job with AccessDenied) and the host paths the
operator allows (``file://``: refused in strict mode, only under
``--allow-local-path`` in open mode). Host directories are read through
:class:`ConfinedDir`, so a link inside an allowed directory cannot lead out of it.

For an executor whose instances run elsewhere (``fetches`` given), the server
still lists, shards and checks every input here, but an S3 object is only
noted as a :class:`~selfmaker.engines.executor.Fetch` (bucket, key, where it
lands, confined here): the node copies it itself (ray_node.py). Host files
(``file://``) are the server's, so they are still copied here and shipped.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...engines.executor import Fetch
from ...objects import transfer
from ...objects.access import AccountObjects, local_path
from ...objects.base import parse_s3_uri
from ...server.errors import AWSError
from .confined import ConfinedDir, Skipped


class InputError(Exception):
    """An input that cannot be materialized; the message becomes the job's FailureReason."""


@dataclass(frozen=True)
class JobStorage:
    """What one job may read and write: its account's buckets, and the host paths the operator allows."""

    objects: AccountObjects
    settings: object

    @classmethod
    def of(cls, backends, account_id: str) -> JobStorage:
        return cls(AccountObjects.of(backends, account_id), backends.settings)

    def host_path(self, uri: str, what: str) -> Path:
        """The host path of a ``file://`` URI the operator allows (InputError, the job's reason, if not)."""
        try:
            return local_path(self.settings, uri, what)
        except AWSError as err:
            raise InputError(f"ClientError: {err.message}") from None


@dataclass(frozen=True)
class Source:
    """One object to copy: from S3 (bucket, key) or a host file (``relative`` under the directory ``host_root``);
    ``relative`` is also where it lands."""

    relative: str
    bucket: str = ""
    key: str = ""
    host_root: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.bucket else f"file://{self.host_root}/{self.relative}"


Say = Callable[[str], None]


def _host_sources(storage: JobStorage, uri: str, say: Say | None) -> list[Source]:
    """The plain files a ``file://`` input names (links inside it are skipped, never followed)."""
    path = storage.host_path(uri, f"the input {uri}")
    if path.is_dir():
        return [Source(e.relative, host_root=str(path)) for e in ConfinedDir(path, uri, say).files()]
    if path.is_file():
        return [Source(path.name, host_root=str(path.parent))]
    raise InputError(f"ClientError: the input {uri} does not exist on the SelfMaker host")


def _list(storage: JobStorage, uri: str, say: Say | None) -> list[Source]:
    """Every object (or host file) under a prefix, in key order, with its path relative to the prefix."""
    if uri.startswith("file://"):
        return _host_sources(storage, uri, say)
    bucket, prefix = parse_s3_uri(uri)
    found = []
    for info in storage.objects.iter_objects(bucket, prefix):
        if info.key.endswith("/"):
            continue
        relative = info.key[len(prefix) :].lstrip("/") or info.key.rsplit("/", 1)[-1]
        found.append(Source(relative, bucket=bucket, key=info.key))
    return found


def _manifest(storage: JobStorage, uri: str, say: Say | None) -> list[Source]:
    """The objects a manifest file lists: ``[{"prefix": "s3://b/p/"}, "relative/key", ...]``."""
    if uri.startswith("file://"):
        listed = _host_sources(storage, uri, say)
        if len(listed) != 1:
            raise InputError(f"ClientError: the manifest {uri} is not a file")
        raw = _read(storage, listed[0])
    else:
        raw = _read(storage, Source("manifest", *parse_s3_uri(uri)))
    try:
        entries = json.loads(raw)
        prefix = entries[0]["prefix"]
        keys = [str(e) for e in entries[1:]]
    except (ValueError, KeyError, IndexError, TypeError):
        raise InputError(
            f'ClientError: the manifest {uri} is not a JSON list starting with {{"prefix": "s3://..."}}'
        ) from None
    bucket, key_prefix = parse_s3_uri(prefix)  # s3:// only: a manifest cannot name host files
    return [Source(k, bucket=bucket, key=key_prefix + k) for k in keys]


def _open_host(source: Source):
    try:
        return ConfinedDir(Path(source.host_root), f"file://{source.host_root}").open(source.relative)
    except (FileNotFoundError, Skipped):
        raise InputError(f"ClientError: cannot read {source.uri}: it is no longer a plain file") from None


def _read(storage: JobStorage, source: Source) -> bytes:
    if source.host_root:
        with _open_host(source) as f:
            return f.read()
    return storage.objects.get_object(source.bucket, source.key)


def sources(
    storage: JobStorage, uri: str, data_type: str = "S3Prefix", index: int = 0, count: int = 1, say: Say | None = None
) -> list[Source]:
    """The objects of an input (instance ``index`` of ``count`` gets every count-th one, in key order)."""
    try:
        found = _manifest(storage, uri, say) if data_type == "ManifestFile" else _list(storage, uri, say)
    except AWSError as err:
        raise InputError(f"ClientError: cannot read the input {uri}: {err.code}: {err.message}") from None
    return found[index::count]


def read(storage: JobStorage, source: Source) -> bytes:
    try:
        return _read(storage, source)
    except AWSError as err:
        raise InputError(f"ClientError: cannot read {source.uri}: {err.code}: {err.message}") from None
    except OSError as err:
        raise InputError(f"ClientError: cannot read {source.uri}: {err.strerror}") from None


def materialize(
    storage: JobStorage,
    uri: str,
    dest: Path,
    *,
    data_type: str = "S3Prefix",
    distribution: str = "FullyReplicated",
    index: int = 0,
    count: int = 1,
    say: Say | None = None,
    fetches: list[Fetch] | None = None,
) -> int:
    """Copy an input into ``dest`` for instance ``index`` of ``count``; return how many files it got (with
    ``fetches``: its S3 objects are added there for the instance's node to copy, not copied).

    ``dest`` is in an instance's /opt/ml before the job starts: the server made it, nothing of the job is there."""
    try:
        sharded = distribution == "ShardedByS3Key"
        selected = sources(storage, uri, data_type, index if sharded else 0, count if sharded else 1, say)
        dest.mkdir(parents=True, exist_ok=True)
        if fetches is not None:  # the node's reads are checked again (its key is the job's); fail here first
            for bucket in sorted({s.bucket for s in selected if s.bucket}):
                storage.objects.authorize(bucket)
        for source in selected:
            target = transfer.confined(dest, source.relative)
            if target is None:
                raise InputError(
                    f"ClientError: the input key {source.key or source.relative!r} would land outside its directory"
                )
            if source.host_root:
                target.parent.mkdir(parents=True, exist_ok=True)
                with _open_host(source) as reader, open(target, "wb") as out:
                    shutil.copyfileobj(reader, out)
            elif fetches is not None:
                fetches.append(Fetch(source.bucket, source.key, target))
            else:
                transfer.download(storage.objects, source.bucket, source.key, target)
        return len(selected)
    except AWSError as err:
        raise InputError(f"ClientError: cannot read the input {uri}: {err.code}: {err.message}") from None
    except OSError as err:  # never str(err): it names host paths
        raise InputError(f"ClientError: cannot copy the input {uri}: {err.strerror}") from None


def extract_code(
    storage: JobStorage, uri: str, dest: Path, say: Say | None = None, fetches: list[Fetch] | None = None
) -> None:
    """Unpack a v2 ``sagemaker_submit_directory`` (a sourcedir.tar.gz, or an allowed host directory) into ``dest``
    (with ``fetches``: an S3 archive is added there for the instance's node to fetch and unpack, once the server
    has checked the job's account may read it)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if fetches is not None and not uri.startswith("file://"):
            bucket, key = parse_s3_uri(uri)
            storage.objects.head_object(bucket, key)
            fetches.append(Fetch(bucket, key, dest, unpack=True))
            return
        if uri.startswith("file://"):
            path = storage.host_path(uri, f"HyperParameters.sagemaker_submit_directory {uri}")
            if path.is_dir():
                _copy_host_code(ConfinedDir(path, uri, say), dest)
                return
            blob = _read(storage, Source(path.name, host_root=str(path.parent)))
            transfer.extract_tar(io.BytesIO(blob), dest)
        else:
            transfer.extract_object(storage.objects, *parse_s3_uri(uri), dest)
    except AWSError as err:
        raise InputError(f"ClientError: cannot read the code {uri}: {err.code}: {err.message}") from None
    except transfer.ArchiveError as err:
        raise InputError(transfer.code_failure(uri, err)) from None
    except OSError as err:  # never str(err): it names host paths
        raise InputError(f"ClientError: cannot read the code {uri}: {err.strerror}") from None


def _copy_host_code(code: ConfinedDir, dest: Path) -> None:
    """Copy an allowed host code directory's plain files (links inside it are skipped, never followed)."""
    for entry in code.files():
        target = dest / entry.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with code.open(entry.relative) as reader, open(target, "wb") as out:
                shutil.copyfileobj(reader, out)
        except (FileNotFoundError, Skipped):
            continue


# -- outputs ---------------------------------------------------------------------------


def upload_bytes(storage: JobStorage, uri: str, body: bytes) -> None:
    if uri.startswith("file://"):
        target = storage.host_path(uri, f"the output {uri}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(body)
        os.replace(partial, target)
        return
    bucket, key = parse_s3_uri(uri)
    storage.objects.put_object(bucket, key, body)


def upload_files(storage: JobStorage, job_files: ConfinedDir, sub: str, uri: str, relatives) -> int:
    """Upload the job's files ``sub``/<relative> to ``uri``/<relative>; links and special files are skipped."""
    count = 0
    for relative in relatives:
        try:
            with job_files.open(job_files.join(sub, relative)) as f:
                body = f.read()
        except (FileNotFoundError, Skipped):
            continue
        upload_bytes(storage, join_uri(uri, relative), body)
        count += 1
    return count


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def output_error(uri: str, err: Exception) -> str:
    if isinstance(err, InputError):
        return str(err)
    if isinstance(err, AWSError):
        return f"ClientError: cannot write the output {uri}: {err.code}: {err.message}"
    if isinstance(err, OSError):  # never str(err): it names host paths
        return f"ClientError: cannot write the output {uri}: {err.strerror or type(err).__name__}"
    return f"ClientError: cannot write the output {uri}: {err}"
