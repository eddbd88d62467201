"""A Ray cluster on this machine for the ray executor's tests (tests/test_ray.py, tests/test_ray_endpoints.py):
a head with no CPUs and two worker nodes, and a SelfMaker server driving it with ``--executor ray``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.pipelines import runtimes_config
from support.server import Server

NODE_LINE = re.compile(r"SelfMaker: on Ray node ([0-9a-f]+)")  # what an instance's log says of its node
# The worker nodes: an ml.m5.large (2 CPUs, 8 GiB) each twice over; a small object store each.
NODE = {"num_cpus": 4, "memory": 16 << 30, "object_store_memory": 100 << 20}
# A worker node declaring one GPU (Ray takes the count as given: no real GPU needed), room for an ml.g4dn.xlarge.
GPU_NODE = {**NODE, "num_gpus": 1}


@contextmanager
def two_worker_cluster() -> Iterator[tuple]:
    """(the cluster, its two worker nodes), shut down at the end."""
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")  # the machine is shared: no OOM killing
    made = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": 100 << 20},
    )
    workers = [made.add_node(**NODE) for _ in range(2)]
    made.wait_for_nodes()
    try:
        yield made, workers
    finally:
        made.shutdown()
        for worker in workers:  # what still ran there (an endpoint being deleted, say) outlives the nodes here
            end_sandboxes_of(worker.node_id)


@contextmanager
def ray_server(address: str, tmp: Path, *extra: str, database: str | None = None) -> Iterator[Server]:
    """A server whose jobs (and endpoint instances) run on the cluster at ``address`` (its state in ``database``,
    else its own SQLite)."""
    tmp.mkdir(parents=True, exist_ok=True)
    srv = Server(
        tmp / "data",
        database,
        extra_args=["--executor", "ray", "--ray-address", address, "--runtimes-config", runtimes_config(tmp), *extra],
    ).start()
    try:
        yield srv
    finally:
        srv.stop()


@contextmanager
def two_ray_servers(address: str, postgres: str, tmp: Path, database: str) -> Iterator[tuple[Server, Server]]:
    """Two ray-executor servers on one fresh PostgreSQL database (``database``) and one object store, as
    behind a load balancer."""
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}"')
    url = postgres.rsplit("/", 1)[0] + "/" + database
    objects = ("--object-store-url", (tmp / "objects").as_uri())
    with (
        ray_server(address, tmp / "a", *objects, database=url) as a,
        ray_server(address, tmp / "b", *objects, database=url) as b,
    ):
        yield a, b


def end_sandboxes_of(node_id: str) -> None:
    """End the sandboxes a removed node's agent started, as losing its machine would: on one machine the node's
    processes go, but the sandboxes (detached from their agent by design) would run on."""
    import signal

    from selfmaker.engines.executor.ray_node import node_dir

    for pid_file in node_dir().glob(f"*-{node_id[:16]}/*/state/pid"):
        try:
            os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)  # the supervisor leads its group
        except (ProcessLookupError, ValueError):
            pass
