"""Executors run job instances (docs/design.md, principle 4): ``local`` (bubblewrap on this machine) and
``ray`` (the same sandbox on the nodes of a Ray cluster, docs/scale-out.md); ``docker`` later."""

from __future__ import annotations

from .base import (  # noqa: F401
    Executor,
    ExecutorUnavailable,
    ExitStatus,
    Fetch,
    InstanceSpec,
    Limits,
    Mount,
    Placement,
    StoreAccess,
    Upload,
)


def open_executor(
    url: str, ray_address: str | None = None, server_url: str | None = None, local_url: str = "", home: str = ""
) -> Executor:
    """The executor a setting names: ``local`` (the default) or ``ray`` (at ``ray_address``; its nodes reach
    this server at ``server_url`` instead of ``local_url``; ``home``, the server's data directory, names its
    agents on the nodes)."""
    if url in ("", "local"):
        from .local import LocalExecutor

        return LocalExecutor()
    if url == "ray":
        if not ray_address:
            raise ValueError("the ray executor needs the cluster's address: --ray-address HOST:PORT")
        from .ray_cluster import RayExecutor

        return RayExecutor(ray_address, server_url, local_url, home)
    if url.split(":", 1)[0] == "docker":
        raise ValueError("the docker executor is not available in this version of SelfMaker; use 'local' or 'ray'")
    raise ValueError(f"unknown executor {url!r}: use 'local' or 'ray'")
