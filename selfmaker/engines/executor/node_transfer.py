"""A Ray node's own copies of a job's data: its inputs in before the instance starts, its outputs out after.

The server decides what (ray_cluster.py hands the agent, as :func:`lists` makes it, a list of objects, each
with the mount and the path it lands at, and where the outputs go); the node only
copies, through the S3 API of the SelfMaker server it reaches, signed with the
job's own access key (services/jobs/credentials.py). So the server's bucket
checks hold on the node as on the server: a node reads nothing the job's
account cannot, and never holds the server's own backend credentials.

Objects stream through in chunks (a large model is packed to a file on the
node's disk and uploaded in parts), and a path is confined to its mount with
the same check the server uses (objects/transfer.py): a key like ``../../x``
lands nowhere. Errors come back as the job's FailureReason, in the words the
server would use (a ClientError naming the URI, never a node's path).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from ...objects import transfer

CHUNK = 1 << 20  # bytes read at a time from a download
PART = 32 << 20  # bytes per part of a multipart upload; smaller files go in one PUT
ATTEMPTS = 3  # tries of a download whose stream broke (botocore retries the requests themselves)


def lists(spec, mounts: dict, endpoint: str) -> dict:
    """An InstanceSpec's fetches and uploads as a node's agent takes them (``{}`` when it has none): each path as
    (mount name in ``mounts``, path relative to the mount's source), and the store at ``endpoint`` as the job."""

    def where(path: Path) -> tuple[str, str]:
        path = path.resolve()
        for name, mount in mounts.items():
            if (source := mount.source.resolve()) in path.parents:
                return name, str(path.relative_to(source))
        raise ValueError(f"{path} is in none of the instance's mounts")

    if not (spec.fetches or spec.uploads):
        return {}
    fetches: list[dict[str, Any]] = []
    for fetch in spec.fetches:
        mount, relative = where(fetch.path)
        fetches.append({"bucket": fetch.bucket, "key": fetch.key, "mount": mount, "relative": relative})
        fetches[-1] |= {"unpack": True} if fetch.unpack else {}
    uploads: list[dict[str, Any]] = []
    for upload in spec.uploads:
        mount, relative = where(upload.path)
        uploads.append(
            {"mount": mount, "relative": relative, "uri": upload.uri, "archive": upload.archive}
            | ({"always": True} if upload.always else {})
        )
    store = spec.store
    access = {"endpoint": endpoint, "region": store.region, "access_key": store.access_key}
    return {"fetches": fetches, "uploads": uploads, "store": access | {"secret_key": store.secret_key}}


class TransferFailed(Exception):
    """The job's FailureReason (a ClientError naming the URI)."""


class ServerUnreachable(TransferFailed):
    """The server's S3 API did not answer at all (a dead server, before another takes its job over)."""


def _unreachable(err: Exception) -> bool:
    from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError

    return isinstance(err, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError))


_session: Any = None  # one botocore session per agent: a fresh one loads the S3 model again (~90 ms a client)
_session_lock = threading.Lock()  # a session is not thread-safe; the clients it makes are


def client(store: dict) -> Any:
    """A botocore S3 client of the server's S3 API, as the job (path-style: bucket names need no DNS)."""
    global _session
    import botocore.session
    from botocore.config import Config

    with _session_lock:
        if _session is None:
            _session = botocore.session.Session()
        return _session.create_client(
            "s3",
            endpoint_url=store["endpoint"],
            region_name=store["region"],
            aws_access_key_id=store["access_key"],
            aws_secret_access_key=store["secret_key"],
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": "path"},
                connect_timeout=10,
                read_timeout=120,
            ),
        )


def _client_error(err: Exception) -> tuple[str, str] | None:
    from botocore.exceptions import ClientError

    if isinstance(err, ClientError):
        detail = err.response.get("Error", {})
        return str(detail.get("Code") or "Error"), str(detail.get("Message") or "")
    return None


def _reason(action: str, uri: str, err: Exception) -> str:
    if (pair := _client_error(err)) is not None:
        return f"ClientError: {action} {uri}: {pair[0]}: {pair[1]}"
    if isinstance(err, OSError) and not type(err).__module__.startswith("botocore"):  # never str(err): paths
        return f"ClientError: {action} {uri}: {err.strerror or type(err).__name__}"
    return f"ClientError: {action} {uri}: {type(err).__name__}: {err}"[:1024]


def _download(s3, bucket: str, key: str, out: IO[bytes]) -> int:
    """Stream one object into ``out``; return its size. A stream broken midway starts over (ATTEMPTS)."""
    from botocore.exceptions import ClientError

    for attempt in range(ATTEMPTS):
        out.seek(0)
        out.truncate()
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            size = 0
            while chunk := body.read(CHUNK):
                out.write(chunk)
                size += len(chunk)
            return size
        except ClientError:
            raise
        except Exception:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def fetch_all(s3, fetches: list[dict], roots: dict[str, Path], scratch: Path) -> tuple[int, int]:
    """Copy every fetch (mount name, path relative to it, bucket, key, unpack) into its mount's directory in
    ``roots``; return (objects, bytes). Raise :class:`TransferFailed` with the job's reason."""
    count = total = 0
    for item in fetches:
        uri = f"s3://{item['bucket']}/{item['key']}"
        target = transfer.confined(roots[item["mount"]], item["relative"])
        if target is None:  # the server confined it already; a node trusts no path it is handed
            raise TransferFailed(f"ClientError: the input key {item['key']!r} would land outside its directory")
        try:
            if item.get("unpack"):
                with tempfile.TemporaryFile(dir=scratch) as spool:
                    total += _download(s3, item["bucket"], item["key"], spool)
                    spool.seek(0)
                    transfer.extract_tar(spool, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.part")
                try:
                    with open(partial, "wb") as out:
                        total += _download(s3, item["bucket"], item["key"], out)
                    partial.rename(target)
                finally:  # a refused or broken read leaves nothing behind
                    partial.unlink(missing_ok=True)
        except transfer.ArchiveError as err:
            raise TransferFailed(transfer.code_failure(uri, err)) from None
        except Exception as err:
            raise TransferFailed(_reason("cannot read", uri, err)) from None
        count += 1
    return count, total


def _put(s3, path_or_file: IO[bytes], uri: str, size: int) -> None:
    """Upload an open file to ``uri``: one PUT, or parts of PART bytes when larger (never whole in memory)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if size <= PART:
        s3.put_object(Bucket=bucket, Key=key, Body=path_or_file)
        return
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        for number in range(1, (size + PART - 1) // PART + 1):
            body = path_or_file.read(PART)
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        except Exception:
            pass
        raise


def upload_all(s3, uploads: list[dict], roots: dict[str, Path], scratch: Path, say) -> list[str]:
    """Upload each output (mount name, directory relative to it, uri, archive, always); return the URIs
    written. The job wrote these files: read through ConfinedDir, so no link it made is followed."""
    # The server's reader of a job's files (late: services sit above engines).
    from ...services.jobs.confined import ConfinedDir, Skipped

    written = []
    for item in uploads:
        where = transfer.confined(roots[item["mount"]], item["relative"])
        if where is None:
            raise TransferFailed(f"ClientError: cannot write the output {item['uri']}: its directory is outside")
        files = ConfinedDir(where, "/opt/ml/" + item["relative"], say)
        try:
            entries = files.files() if where.is_dir() else []
            if item["archive"]:
                if not entries and not item.get("always"):
                    continue
                with tempfile.TemporaryFile(dir=scratch) as packed:
                    files.write_tar_gz("", packed)
                    size = packed.tell()
                    packed.seek(0)
                    _put(s3, packed, item["uri"], size)
                written.append(item["uri"])
                continue
            for entry in entries:
                uri = item["uri"].rstrip("/") + "/" + entry.relative
                try:
                    f = files.open(entry.relative)
                except (FileNotFoundError, Skipped):
                    continue
                with f:
                    _put(s3, f, uri, entry.size)
                written.append(uri)
        except TransferFailed:
            raise
        except Exception as err:
            failure = ServerUnreachable if _unreachable(err) else TransferFailed
            raise failure(_reason("cannot write the output", item["uri"], err)) from None
    return written
