"""Serving a Model's container: what batch transform and endpoints share.

A Model (CreateModel) names an image, model data and an environment. To serve
it, SelfMaker fills an instance's /opt/ml (model data unpacked in
/opt/ml/model, a ``sagemaker_submit_directory`` archive in /opt/ml/code) and
runs :mod:`selfmaker.container.inference_server` in the image's runtime,
inside the sandbox, listening on a Unix socket. A Unix socket reaches the
sandbox whether or not it has a network (EnableNetworkIsolation), costs less
than TCP, and is private to the host.

Model data and code are read through one account's view of the object store
(:class:`selfmaker.objects.access.AccountObjects`) given by the caller: the
Model's owner, so a bucket that changed hands since CreateModel is refused.

Socket paths are limited to 107 bytes, and data directories can be deep, so
each instance's socket lives in a short per-user directory under the system
temporary directory, named by a digest of the instance's own directory.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..objects import transfer
from ..objects.access import AccountObjects
from ..objects.base import parse_s3_uri
from ..server.errors import AWSError
from .executor import Mount

SOCKET_INSIDE = "/opt/selfmaker/run/server.sock"
COMMAND = ["python", "-m", "selfmaker.container.inference_server"]


class ModelDataError(Exception):
    """The model's data or code cannot be read or unpacked; the message is the user's to act on."""


def container_of(model: dict) -> dict:
    """The one container a Model serves (its PrimaryContainer, or a single entry of Containers)."""
    if model.get("PrimaryContainer"):
        return model["PrimaryContainer"]
    containers = model.get("Containers") or []
    if len(containers) == 1:
        return containers[0]
    raise ModelDataError(
        f"the model {model.get('ModelName')} has {len(containers)} containers: SelfMaker serves "
        "models with one container (inference pipelines of several are not supported yet)"
    )


def socket_dir(instance_root: Path) -> Path:
    """The short host directory holding an instance's socket (bound at /opt/selfmaker/run inside)."""
    digest = hashlib.sha256(str(instance_root.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"selfmaker-{os.getuid()}" / digest


def socket_path(instance_root: Path) -> Path:
    return socket_dir(instance_root) / "server.sock"


def socket_mount(instance_root: Path) -> Mount:
    directory = socket_dir(instance_root)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Mount(directory, str(Path(SOCKET_INSIDE).parent), writable=True)


def environment(container: dict) -> dict[str, str]:
    """The model server's environment: the container's own, then where to listen and find the code."""
    env = dict(container.get("Environment") or {})
    if env.get("SAGEMAKER_SUBMIT_DIRECTORY", "").startswith("s3://"):
        env["SAGEMAKER_SUBMIT_DIRECTORY"] = "/opt/ml/code"  # unpacked there by prepare()
    env["SELFMAKER_BIND_TO_SOCKET"] = SOCKET_INSIDE
    return env


def prepare(objects: AccountObjects, container: dict, ml: Path) -> None:
    """Fill ``ml`` (the instance's /opt/ml): the model data in model/, an S3 code archive in code/.

    ``objects`` is the Model's account's view of the object store, never the whole store.
    """
    if not isinstance(objects, AccountObjects):
        raise TypeError("model data is read through one account's view (AccountObjects), not the whole store")
    model_dir = ml / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    source = (container.get("ModelDataSource") or {}).get("S3DataSource")
    if container.get("ModelDataUrl"):
        _unpack(objects, container["ModelDataUrl"], model_dir)
    elif source:
        if source.get("CompressionType") == "Gzip":
            _unpack(objects, source["S3Uri"], model_dir)
        else:
            _copy_prefix(objects, source["S3Uri"], model_dir, single=source.get("S3DataType") == "S3Object")
    submit = (container.get("Environment") or {}).get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submit.startswith("s3://"):
        _unpack(objects, submit, ml / "code")


@contextmanager
def _reading(uri: str):
    """The ModelDataError (the user's to act on, never naming a host path) for a failure reading ``uri``."""
    try:
        yield
    except AWSError as err:
        raise ModelDataError(f"cannot read {uri}: {err.code}: {err.message}") from None
    except transfer.OutsideDirectory as err:
        raise ModelDataError(f"the model data key {err.key!r} would land outside /opt/ml/model") from None
    except transfer.NotAnArchive as err:
        raise ModelDataError(f"{uri} is not a tar.gz archive: {err.detail}") from None
    except transfer.RefusedMember as err:
        raise ModelDataError(f"{uri} holds a member SelfMaker will not unpack: {err.detail}") from None
    except transfer.ArchiveError as err:
        raise ModelDataError(f"cannot unpack {uri}: {err.detail}") from None
    except OSError as err:  # never str(err): it names host paths
        raise ModelDataError(f"cannot copy {uri}: {err.strerror or type(err).__name__}") from None


def _unpack(objects: AccountObjects, uri: str, dest: Path) -> None:
    with _reading(uri):
        transfer.extract_object(objects, *parse_s3_uri(uri), dest)


def _copy_prefix(objects: AccountObjects, uri: str, dest: Path, single: bool) -> None:
    with _reading(uri):
        bucket, prefix = parse_s3_uri(uri)
        if not single:
            transfer.download_prefix(objects, bucket, prefix, dest)
            return
        target = transfer.confined(dest, Path(prefix).name)
        if target is None:
            raise transfer.OutsideDirectory(prefix)
        transfer.download(objects, bucket, prefix, target)


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 (keep-alive) to a model server's Unix socket."""

    def __init__(self, path: Path | str, timeout: float | None = None):
        super().__init__("localhost", timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def connection_to(address: Path | str, timeout: float | None = None) -> http.client.HTTPConnection:
    """HTTP/1.1 to a model server at ``address``: a Unix socket path, or ``host:port`` (on a Ray node)."""
    address = str(address)
    if address.startswith("/"):
        return UnixConnection(address, timeout=timeout)
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)


def ping(address: Path | str | None, timeout: float = 2.0) -> bool:
    """Whether the model server at ``address`` (a socket path or host:port) answers GET /ping with 200."""
    if not address or (str(address).startswith("/") and not os.path.exists(address)):
        return False
    connection = connection_to(address, timeout=timeout)
    try:
        connection.request("GET", "/ping")
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()
