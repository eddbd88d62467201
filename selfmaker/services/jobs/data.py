"""Data in and out of a job: S3 (or file://) inputs materialized in an instance's directory, outputs uploaded.

Inputs honour S3DataType (S3Prefix: every key under the prefix; ManifestFile:
the keys a manifest lists) and S3DataDistributionType (FullyReplicated: every
instance gets all objects; ShardedByS3Key: instance i of n gets every n-th
object in key order). ``file://`` URIs name paths on the SelfMaker host.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ...objects.base import parse_s3_uri
from ...server.errors import AWSError, validation


class InputError(Exception):
    """An input that cannot be materialized; the message becomes the job's FailureReason."""


@dataclass(frozen=True)
class Source:
    """One object to copy: from S3 (bucket, key) or a host file (path); ``relative`` is where it lands."""

    relative: str
    bucket: str = ""
    key: str = ""
    path: str = ""


def check_uri(uri: str, what: str, allow_file: bool = True) -> None:
    """Raise the 400 a Create gets for an input or output URI SelfMaker cannot read or write."""
    scheme = urlparse(uri).scheme
    if scheme == "s3" or (allow_file and scheme == "file"):
        return
    allowed = "s3:// or file://" if allow_file else "s3://"
    raise validation(f"{what} {uri!r} is not supported: SelfMaker reads {allowed} URIs.")


def _file_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _list(objects, uri: str) -> list[Source]:
    """Every object (or host file) under a prefix, in key order, with its path relative to the prefix."""
    if uri.startswith("file://"):
        root = _file_path(uri)
        if root.is_file():
            return [Source(root.name, path=str(root))]
        if not root.is_dir():
            raise InputError(f"ClientError: the input {uri} does not exist on the SelfMaker host")
        return [Source(p.relative_to(root).as_posix(), path=str(p))
                for p in sorted(root.rglob("*")) if p.is_file()]
    bucket, prefix = parse_s3_uri(uri)
    found = []
    for info in objects.iter_objects(bucket, prefix):
        if info.key.endswith("/"):
            continue
        relative = info.key[len(prefix):].lstrip("/") or info.key.rsplit("/", 1)[-1]
        found.append(Source(relative, bucket=bucket, key=info.key))
    return found


def _manifest(objects, uri: str) -> list[Source]:
    """The objects a manifest file lists: ``[{"prefix": "s3://b/p/"}, "relative/key", ...]``."""
    raw = _read(objects, Source("manifest", *parse_s3_uri(uri)) if uri.startswith("s3://")
                else Source("manifest", path=str(_file_path(uri))))
    try:
        entries = json.loads(raw)
        prefix = entries[0]["prefix"]
        keys = [str(e) for e in entries[1:]]
    except (ValueError, KeyError, IndexError, TypeError):
        raise InputError(f"ClientError: the manifest {uri} is not a JSON list starting with "
                         '{"prefix": "s3://..."}') from None
    bucket, key_prefix = parse_s3_uri(prefix)
    return [Source(k, bucket=bucket, key=key_prefix + k) for k in keys]


def _read(objects, source: Source) -> bytes:
    if source.path:
        return Path(source.path).read_bytes()
    return objects.get_object(source.bucket, source.key)


def sources(objects, uri: str, data_type: str = "S3Prefix", index: int = 0, count: int = 1) -> list[Source]:
    """The objects of an input (instance ``index`` of ``count`` gets every count-th one, in key order)."""
    try:
        found = _manifest(objects, uri) if data_type == "ManifestFile" else _list(objects, uri)
    except AWSError as err:
        raise InputError(f"ClientError: cannot read the input {uri}: {err.code}: {err.message}") from None
    return found[index::count]


def read(objects, source: Source) -> bytes:
    try:
        return _read(objects, source)
    except AWSError as err:
        raise InputError(f"ClientError: cannot read s3://{source.bucket}/{source.key}: {err.code}: "
                         f"{err.message}") from None


def materialize(objects, uri: str, dest: Path, *, data_type: str = "S3Prefix", distribution: str = "FullyReplicated",
                index: int = 0, count: int = 1) -> int:
    """Copy an input into ``dest`` for instance ``index`` of ``count``; return how many files it got."""
    try:
        sharded = distribution == "ShardedByS3Key"
        selected = sources(objects, uri, data_type, index if sharded else 0, count if sharded else 1)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        for source in selected:
            target = (root / source.relative).resolve()
            if root not in target.parents:
                raise InputError(f"ClientError: the input key {source.key!r} would land outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.path:
                shutil.copyfile(source.path, target)
            else:
                with objects.open_object(source.bucket, source.key) as reader, open(target, "wb") as out:
                    for chunk in reader.chunks():
                        out.write(chunk)
        return len(selected)
    except AWSError as err:
        raise InputError(f"ClientError: cannot read the input {uri}: {err.code}: {err.message}") from None


def extract_code(objects, uri: str, dest: Path) -> None:
    """Unpack a v2 ``sagemaker_submit_directory`` (a sourcedir.tar.gz, or a host directory) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if uri.startswith("file://") and _file_path(uri).is_dir():
            shutil.copytree(_file_path(uri), dest, dirs_exist_ok=True)
            return
        if uri.startswith("file://"):
            blob = _file_path(uri).read_bytes()
        else:
            blob = objects.get_object(*parse_s3_uri(uri))
    except AWSError as err:
        raise InputError(f"ClientError: cannot read the code {uri}: {err.code}: {err.message}") from None
    except OSError as err:
        raise InputError(f"ClientError: cannot read the code {uri}: {err}") from None
    try:
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(dest, filter="data")
    except tarfile.TarError as err:
        raise InputError(f"ClientError: the code {uri} is not a tar archive: {err}") from None


# -- outputs ---------------------------------------------------------------------------


def tar_directory(directory: Path) -> bytes:
    """A .tar.gz of a directory's contents (members relative to it), as SageMaker packs /opt/ml/model."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                tar.add(path, arcname=path.name)
    return buffer.getvalue()


def upload_bytes(objects, uri: str, body: bytes) -> None:
    if uri.startswith("file://"):
        target = _file_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(body)
        os.replace(partial, target)
        return
    bucket, key = parse_s3_uri(uri)
    objects.put_object(bucket, key, body)


def upload_tree(objects, directory: Path, uri: str, only: set[Path] | None = None) -> int:
    """Upload every file under ``directory`` to ``uri``/<relative path> (``only``: just these files)."""
    count = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if only is not None and path not in only:
            continue
        upload_bytes(objects, uri.rstrip("/") + "/" + path.relative_to(directory).as_posix(), path.read_bytes())
        count += 1
    return count


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def output_error(uri: str, err: Exception) -> str:
    if isinstance(err, AWSError):
        return f"ClientError: cannot write the output {uri}: {err.code}: {err.message}"
    return f"ClientError: cannot write the output {uri}: {err}"
