"""The Ray executor: each job instance on a node of a Ray cluster, in the local executor's sandbox there.

Each instance reserves its instance type's CPUs, memory and GPUs through Ray: a
detached placement group of one bundle, named after the instance, which Ray
places on a node with room (or queues until one has), preferring the node
that runs the fewest of this server's instances (so an endpoint's instances
land on different nodes, as SPREAD would). The instance then runs
under that node's **agent** (ray_node.py), a long-lived detached actor, one per
node and server, started once and reused by every instance placed there: an
instance costs a placement group and a few calls, not a Ray worker process.
The group is held for the instance's life and removed once its exit is
recorded, so Ray's view of what is in use stays true.

The server never shares the node's file system: the instance's files go there
as one archive (its config and anything from the server's own disk), its S3
inputs and code as a list of objects the node's agent fetches itself, and its
outputs (the model tarball, output data, processing outputs) as the URIs the
agent uploads them to from the node, both through this server's S3 API signed
with the job's own key (node_transfer.py), so no job data passes through the
server's disk; its runtime as a spec the node builds once and caches, its log
comes back while it runs (a follower thread per instance appends it to
``log_path``, which the server ships to CloudWatch Logs as for the local
executor), and its writable files (less its data) come back once it has ended,
before :meth:`poll` reports the exit, with what the node uploaded where
(``uploaded.json``, :meth:`RayExecutor.uploaded`).

An instance type with GPUs (engines/instance_types.py) reserves that many
``GPU`` in its bundle when the cluster has GPU nodes; the instance is then
handed the ids Ray assigned to its bundle (CUDA_VISIBLE_DEVICES, asked of a
short task run in the bundle) and SM_NUM_GPUS, and its sandbox shows only those
devices. A cluster with no GPU at all runs it on CPUs (SM_NUM_GPUS=0, one log
line says so); one whose largest node has fewer GPUs than the type refuses it.

A job of several instances is placed up front (:meth:`RayExecutor.place`): one
placement group of a bundle per instance spread over the nodes, so each
``algo-<i>`` resolves to its node's address before any instance starts.

An endpoint instance's model server listens on TCP on its node's address; the
agent reports ``host:port`` (:meth:`RayExecutor.serving_address`), which the
server keeps in ``address`` and the router and health checks connect to.

What the server keeps, in the instance's state directory: ``instance`` (its
name, the agent's home, where the log and writable files go), ``pending.json``
and ``pending.tar`` (what the agent is handed once the group is placed),
``node`` (the node it was placed on, once handed over), ``offset`` (how much
of the log it has), ``address`` (a model server's), ``stopped`` (the stop deadline, as local.py) and ``exit``
(the status, once collected). A restarted server finds the group and the agent
again by name: the instance ran on without it. A node that dies takes its
agent and sandboxes with it: the instance ends with that reason.

Another server can follow the instance too (several servers on one database, the
one driving it dead): :meth:`RayExecutor.identity` is what it needs (the name,
the *home* of the agent running it, the node, a model server's address, where
its writable files go relative to its directory), which the job's record keeps;
:meth:`RayExecutor.adopt` makes the state directory again from it, and the
instance is then followed through the dead server's agent (detached: it outlives
its server), found by name. ``offset`` also maps the log (ray_log.py): where each piece of the
node's log went in ``log_path`` (the server writes lines of its own there), so
:meth:`RayExecutor.shipped` turns what the server shipped of ``log_path`` into
an offset of the node's log, at which a server taking over resumes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import node_transfer, ray_log
from .base import Executor, ExecutorUnavailable, ExitStatus, InstanceSpec, Limits, Placement
from .local import _stop_deadline
from .ray_log import write_atomically
from .ray_node import NodeAgent, pack, status_of, unpack

log = logging.getLogger("selfmaker.ray")

NAMESPACE = "selfmaker"
PACKAGE = Path(__file__).resolve().parents[2]  # the selfmaker package, shipped to the nodes by Ray
CALL_TIMEOUT = 5.0  # seconds a poll waits for the actor (longer: it is still waiting for a node)
PLACE_WAIT = 120.0  # seconds a multi-instance job waits for room for all its instances at once
NODES_TTL = 2.0  # seconds a look at the cluster's nodes serves the checks of starting jobs
TAIL_WAIT = 2.0  # seconds a log follower's call waits for new output


def actor_name(state_dir: Path) -> str:
    """The instance's name (its placement group's, its directory's on the node): unique per server data
    directory and instance, stable across restarts."""
    return "selfmaker-" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:32]


def agent_name(home: str, node: str) -> str:
    return f"selfmaker-agent-{home}-{node}"


class RayExecutor(Executor):
    name = "ray"
    shares_files = False
    builds_runtimes = True
    adoptable = True

    def __init__(
        self, address: str, server_url: str | None = None, server_local_url: str | None = None, home: str = ""
    ):
        self.address = address
        self.server_url = server_url  # how the nodes reach this server (None: as the sandbox env says)
        self.server_local_url = server_local_url  # the URL the sandbox env names, replaced by server_url
        # This server, for its agents' names: its host and data directory (another server has its own agents,
        # which run the SelfMaker version that server shipped).
        self.home = hashlib.sha256(f"{socket.gethostname()}:{home}".encode()).hexdigest()[:12]
        self._lock = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}
        self._agent_class: Any = None  # NodeAgent as a Ray actor class, once connected
        self._agents: dict[tuple[str, str], Any] = {}  # (home, node id) -> that agent's handle
        self._nodes_seen: list[dict] = []
        self._on_node: dict[Path, str] = {}  # state directory -> the node of each running instance (or its hint)
        self._nodes_at = -NODES_TTL

    def place(self, key: str, count: int, limits: Limits | None = None) -> Placement:
        """One instance: placed as it starts (its own group). Several: all placed now, in one placement group
        of a bundle per instance spread over the nodes (``SPREAD``: different nodes where there are enough),
        so every instance's /etc/hosts can name every other's node before any starts. More instances than the
        live nodes could ever hold at once are refused at once; fewer wait up to PLACE_WAIT for room."""
        if count == 1:
            return super().place(key, count)
        ray = self._ray()
        from ray.util import placement_group, placement_group_table, remove_placement_group

        cpus = limits.cpus if limits else 1
        memory = limits.memory_bytes if limits else 0
        gpus = self._gpus_to_reserve(limits.gpus if limits else 0)
        self._check_fits(ray, cpus, memory, gpus)
        if count > (most := self._capacity(cpus, memory, gpus)):
            raise ExecutorUnavailable(
                f"a job of {count} instances of {cpus} CPUs{f', {gpus} GPUs' if gpus else ''} and "
                f"{memory / 2**30:.1f} GiB cannot be placed: the live "
                f"nodes of the Ray cluster hold at most {most} at once; use InstanceCount {most} or add nodes"
            )
        name = "selfmaker-job-" + hashlib.sha256(f"{self.home}:{key}".encode()).hexdigest()[:32]
        if (earlier := self._group(name)) is not None:  # an attempt a killed server had placed
            remove_placement_group(earlier)
        bundle = _bundle(cpus, memory, gpus)
        group = placement_group([bundle] * count, strategy="SPREAD", name=name, lifetime="detached")
        if not group.wait(PLACE_WAIT):
            remove_placement_group(group)
            raise ExecutorUnavailable(
                f"the Ray cluster had no room for {count} instances of {cpus} CPUs and {memory / 2**30:.1f} GiB "
                f"at once within {PLACE_WAIT:.0f} seconds; start the job again when it has, or add nodes"
            )
        nodes = placement_group_table(group)["bundles_to_node_id"]
        where = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        addresses = [where[nodes[i]] for i in range(count)]
        if len(set(addresses)) == 1:
            # Every instance on one machine (Ray nodes sharing a host, as in tests, or one node): each gets its
            # own loopback address as on the local executor, so instances binding one port never collide.
            return Placement(super().place(key, count).addresses, "lo", name)
        return Placement(tuple(addresses), "eth0", name)

    # -- the cluster ---------------------------------------------------------------

    def _ray(self):
        try:
            import ray
        except ImportError:
            raise ExecutorUnavailable(
                "the ray executor needs Ray on the server: pip install 'selfmaker[ray]'"
            ) from None
        with self._lock:
            if not ray.is_initialized():
                try:
                    ray.init(
                        address=self.address,
                        namespace=NAMESPACE,
                        runtime_env={"py_modules": [str(PACKAGE)]},
                        log_to_driver=False,
                        logging_level=logging.WARNING,
                    )
                except Exception as err:
                    raise ExecutorUnavailable(f"cannot reach the Ray cluster at {self.address}: {err}") from None
            if self._agent_class is None:
                self._agent_class = ray.remote(NodeAgent)
                # Every live node's agent now, in the background: the first instance placed there need not
                # wait for its worker process to start.
                threading.Thread(target=self._start_agents, name="ray-agents", daemon=True).start()
        return ray

    def _start_agents(self) -> None:
        try:
            for node in self._ray().nodes():
                if node["Alive"] and node.get("Resources", {}).get("CPU", 0) > 0:  # a node instances can land on
                    self._agent(node["NodeID"])
        except Exception:
            log.warning("could not start the Ray nodes' agents ahead of time", exc_info=True)

    def _alive(self) -> set[str]:
        return {n["NodeID"] for n in self._ray().nodes() if n["Alive"]}

    def _nodes(self, fresh: bool = False) -> list[dict]:
        """The cluster's nodes as seen at most NODES_TTL seconds ago (``fresh``: now): enough to check a job can
        fit (every job start asks), never used to judge a node lost."""
        with self._lock:
            if not fresh and time.monotonic() - self._nodes_at < NODES_TTL:
                return self._nodes_seen
        nodes = self._ray().nodes()
        with self._lock:
            self._nodes_seen, self._nodes_at = nodes, time.monotonic()
        return nodes

    def check(self) -> None:
        self._ray()
        if not any(node["Alive"] for node in self._nodes()):
            raise ExecutorUnavailable(f"the Ray cluster at {self.address} has no live node")

    def _gpus_to_reserve(self, wanted: int) -> int:
        """The GPUs an instance of a type with ``wanted`` GPUs reserves here: all of them; none on a cluster
        with no GPU at all (it runs on CPUs, as a platform team testing GPU code on CPU nodes expects); and a
        clear error when no node has that many (it could never be placed)."""
        if not wanted:
            return 0

        def most_on_a_node(nodes: list[dict]) -> float:
            return max((n.get("Resources", {}).get("GPU", 0) for n in nodes if n["Alive"]), default=0)

        most = most_on_a_node(self._nodes())
        if most < wanted:  # a decision against the job's GPUs is taken on a look of now (a node may just have come)
            most = most_on_a_node(self._nodes(fresh=True))
        if not most:
            return 0
        if most < wanted:
            raise ExecutorUnavailable(
                f"no live node of the Ray cluster has {wanted} GPUs for the instance type (the most on one node is "
                f"{int(most)}); add such a node or choose an instance type with fewer GPUs"
            )
        return wanted

    def _check_fits(self, ray, cpus: int, memory: int, gpus: int = 0) -> list[str]:
        """The live nodes that could hold an instance of this size (empty: a clear error)."""
        fitting = []
        for node in self._nodes():
            have = node.get("Resources", {})
            if (
                node["Alive"]
                and have.get("CPU", 0) >= cpus
                and have.get("memory", 0) >= memory
                and have.get("GPU", 0) >= gpus
            ):
                fitting.append(node["NodeID"])
        if fitting:
            return fitting
        raise ExecutorUnavailable(
            f"no live node of the Ray cluster has {cpus} CPUs{f', {gpus} GPUs' if gpus else ''} and "
            f"{memory / 2**30:.1f} GiB of memory for the instance type; add such a node or choose a smaller "
            "instance type"
        )

    def _capacity(self, cpus: int, memory: int, gpus: int = 0) -> int:
        """How many instances of this size the live nodes hold at once, with nothing else running."""
        most = 0
        for node in self._nodes():
            have = node.get("Resources", {})
            if node["Alive"]:
                by_memory = int(have.get("memory", 0) // memory) if memory else 1 << 30
                by_gpus = int(have.get("GPU", 0) // gpus) if gpus else 1 << 30
                most += min(int(have.get("CPU", 0) // max(cpus, 1)), by_memory, by_gpus)
        return most

    def _agent(self, node: str, home: str | None = None):
        """The node's agent of ``home`` (this server's unless named: a dead server's, for the instances taken
        over from it): the running one, or a new one (the first on the node, or after it died)."""
        home = home or self.home
        with self._lock:
            if (agent := self._agents.get((home, node))) is not None:
                return agent
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        agent = self._agent_class.options(
            name=agent_name(home, node),
            namespace=NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            max_restarts=-1,  # its state is on the node's disk: a restarted agent carries on
            max_task_retries=-1,  # every method is idempotent: a call cut short by a restart is made again
            max_concurrency=1000,  # a log tail per running instance waits in it, with polls and stops
            num_cpus=0,  # the instances' resources are reserved by their placement groups
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(home)
        with self._lock:
            return self._agents.setdefault((home, node), agent)

    def _agent_of(self, state_dir: Path):
        """The agent following the instance: its node's, of the server that started it."""
        return self._agent((state_dir / "node").read_text(), _meta(state_dir).get("home"))

    def _forget_agent(self, node: str, state_dir: Path | None = None) -> None:
        home = (_meta(state_dir).get("home") if state_dir else None) or self.home
        with self._lock:
            self._agents.pop((home, node), None)

    def _reserved_gpus(self, group_name: str) -> int:
        """The GPUs each bundle of the job's placement group holds (place() decided)."""
        from ray.util import placement_group_table

        group = self._group(group_name)
        bundles: dict = placement_group_table(group)["bundles"] if group is not None else {}
        return int(max((b.get("GPU", 0) for b in bundles.values()), default=0))

    def _assigned_gpus(self, group, bundle: int, gpus: int) -> str:
        """The ids of the GPUs Ray assigned to the instance's bundle, as CUDA_VISIBLE_DEVICES names them: a
        bundle's GPUs are fixed devices of its node, so a short task holding them all in the bundle reads them."""
        ray = self._ray()
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        where = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=bundle)
        probe = ray.remote(_gpu_ids).options(num_cpus=0, num_gpus=gpus, scheduling_strategy=where)
        return ",".join(str(i) for i in ray.get(probe.remote(), timeout=300))

    def _group(self, name: str):
        """The instance's placement group, or None if it is gone."""
        from ray.util import get_placement_group

        self._ray()
        try:
            return get_placement_group(name)
        except ValueError:
            return None

    def _state_lock(self, state_dir: Path) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(state_dir, threading.Lock())

    # -- starting ------------------------------------------------------------------

    def start(self, spec: InstanceSpec) -> None:
        ray = self._ray()
        from ray.util import placement_group

        if spec.runtime is None or spec.runtimes_dir is None:
            raise ExecutorUnavailable("the ray executor runs only instances given their runtime by spec")
        cpus = spec.limits.cpus if spec.limits else 1
        memory = spec.limits.memory_bytes if spec.limits else 0
        wanted = spec.limits.gpus if spec.limits else 0
        if spec.reservation:  # the job's group decided it (place()): its bundles' GPUs
            gpus = self._reserved_gpus(spec.reservation) if wanted else 0
            fitting = []
        else:
            gpus = self._gpus_to_reserve(wanted)
            fitting = self._check_fits(ray, cpus, memory, gpus)
        state = spec.state_dir
        state.mkdir(parents=True, exist_ok=True)
        name = actor_name(state)
        self._discard(state, name)  # an attempt a killed server had launched
        stale_files = ("exit", "stopped", "offset", "instance", "node", "address", "uploaded.json")
        for stale in (*stale_files, "pending.json", "pending.tar"):
            (state / stale).unlink(missing_ok=True)
        shipped = [m for m in spec.mounts if not m.provided]
        names = {f"m{i}": m for i, m in enumerate(shipped)}
        env = dict(spec.env)
        if self.server_url and self.server_local_url:
            env = {k: v.replace(self.server_local_url, self.server_url) for k, v in env.items()}
        if spec.store is None and (spec.fetches or spec.uploads):
            raise ExecutorUnavailable("the ray executor moves a job's data only with its object store access")
        endpoint = spec.store.endpoint if spec.store else ""
        if self.server_url and self.server_local_url:  # the store as the nodes reach it
            endpoint = endpoint.replace(self.server_local_url, self.server_url)
        transfers = node_transfer.lists(spec, names, endpoint)
        if wanted:  # what it really has (the node's agent adds CUDA_VISIBLE_DEVICES once Ray assigned them)
            env["SM_NUM_GPUS"] = str(gpus)
            if not gpus:
                _say(
                    spec.log_path,
                    f"SelfMaker: the Ray cluster has no GPU: its type's {wanted} GPU(s) are not "
                    "reserved and it runs on CPUs (SM_NUM_GPUS=0)",
                )
        runtime = spec.runtime
        payload = {
            "mounts": [{"name": n, "target": m.target, "writable": m.writable} for n, m in names.items()],
            "runtime": {
                "key": runtime.key,
                "packages": list(runtime.packages),
                "python": runtime.python,
                "command": list(runtime.command),
                "algorithm": runtime.algorithm,
                "description": runtime.description,
            },
            # The node builds runtimes in the same directory on its own disk.
            "runtimes_dir": str(spec.runtimes_dir),
            "server_bin": str(runtime.bin_dir(spec.runtimes_dir)),
            "env": env,
            "command": list(spec.command),
            "limits": {"cpus": cpus, "memory_bytes": memory, "gpus": gpus} if spec.limits else None,
            "network": spec.network,
            "hostname": spec.hostname,
            "workdir": spec.workdir,
            "serves": spec.serves,  # a model server: it listens on TCP on the node's address (serving_address)
            **transfers,  # fetches, uploads, store: the job's data by reference (node_transfer.py)
        }
        # Kept on disk until the agent has them: a server restarted before the group was placed hands them over.
        (state / "pending.tar").write_bytes(pack({n: m.source for n, m in names.items()}))
        (state / "pending.json").write_text(json.dumps(payload))
        meta: dict[str, Any] = {
            "name": name,
            "log": str(spec.log_path),
            "writable": {n: str(m.source) for n, m in names.items() if m.writable},
        }
        if spec.reservation:  # the job's group, placed by place(): this instance's bundle in it
            meta |= {"group": spec.reservation, "bundle": int(spec.hostname.rsplit("-", 1)[1]) - 1}
        else:
            with self._lock:
                running = Counter(self._on_node.values())
                target = min(fitting, key=lambda node: running[node])
                self._on_node[state] = target
            bundle = _bundle(cpus, memory, gpus)
            # The least used node is a hint: without room there, Ray places the group where there is.
            placement_group(
                [bundle], strategy="STRICT_PACK", name=name, lifetime="detached", _soft_target_node_id=target
            )
        (state / "instance").write_text(json.dumps(meta))

    def uploaded(self, state_dir: Path) -> list[str]:
        known = state_dir / "uploaded.json"
        return json.loads(known.read_text()) if known.exists() else []

    def _discard(self, state: Path, name: str, wait: bool = True) -> None:
        """Remove what an attempt of this instance left on the cluster: its group, its files on the node.
        ``wait``: until the node has removed them (a new attempt of the same instance starts next)."""
        from ray.util import remove_placement_group

        if (group := self._group(name)) is not None:
            remove_placement_group(group)
        node = (state / "node").read_text() if (state / "node").exists() else ""
        if not node:
            return
        if not wait:  # not waited for; and never an agent made for a node known lost
            if any(n["NodeID"] == node and n["Alive"] for n in self._nodes()):
                self._agent_of(state).close.remote(name)
            return
        if node in self._alive():
            try:
                self._ray().get(self._agent_of(state).close.remote(name), timeout=60)
            except Exception:
                log.warning("could not remove an earlier attempt of %s from node %s", name, node, exc_info=True)

    def _launch(self, state_dir: Path, wait: float) -> bool:
        """Hand the instance to its node's agent once its group is placed (waiting up to ``wait`` seconds);
        True once handed over. Under the instance's lock."""
        if (state_dir / "node").exists():
            return True
        ray = self._ray()
        from ray.util import placement_group_table

        meta = json.loads((state_dir / "instance").read_text())
        name = meta["name"]
        group = self._group(meta.get("group", name))
        if group is None:
            raise LookupError("its Ray placement group is gone (removed outside SelfMaker)")
        if not group.wait(wait):
            return False
        node = placement_group_table(group)["bundles_to_node_id"][meta.get("bundle", 0)]
        payload = json.loads((state_dir / "pending.json").read_text())
        if gpus := (payload["limits"] or {}).get("gpus"):
            payload["env"]["CUDA_VISIBLE_DEVICES"] = self._assigned_gpus(group, meta.get("bundle", 0), gpus)
        archive = (state_dir / "pending.tar").read_bytes()
        ray.get(self._agent(node).start.remote(name, payload, archive), timeout=600)
        (state_dir / "node").write_text(node)
        with self._lock:
            self._on_node[state_dir] = node
        (state_dir / "pending.json").unlink(missing_ok=True)
        (state_dir / "pending.tar").unlink(missing_ok=True)
        return True

    # -- following -----------------------------------------------------------------

    def started(self, state_dir: Path) -> bool:
        return (state_dir / "instance").exists()

    def serving_address(self, state_dir: Path) -> str | None:
        """The model server's ``node-address:port``, asked of its node's agent once it listens, then kept in
        ``address`` (a restarted server reads it there)."""
        known = state_dir / "address"
        if known.exists():
            return known.read_text() or None
        if not (state_dir / "node").exists() or (state_dir / "exit").exists():
            return None  # not on a node yet (its group waits for room), or ended
        node = (state_dir / "node").read_text()
        if not any(n["NodeID"] == node and n["Alive"] for n in self._nodes()):
            return None  # lost with its node: poll says so (and no agent is made for a dead node)
        ray = self._ray()
        name = json.loads((state_dir / "instance").read_text())["name"]
        try:
            address = ray.get(self._agent_of(state_dir).address.remote(name), timeout=CALL_TIMEOUT)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            return None  # its agent is busy or restarting, or gone: poll says which
        if address:
            known.with_suffix(".tmp").write_text(address)
            known.with_suffix(".tmp").rename(known)
        return address

    def poll(self, state_dir: Path) -> ExitStatus | None:
        exit_file = state_dir / "exit"
        if exit_file.exists():
            return status_of(exit_file.read_text())
        if not (state_dir / "instance").exists():
            return ExitStatus(None, "it was never started on the Ray cluster")
        ray = self._ray()
        name = json.loads((state_dir / "instance").read_text())["name"]
        with self._state_lock(state_dir):
            if exit_file.exists():
                return status_of(exit_file.read_text())
            if not (state_dir / "node").exists():
                if (state_dir / "stopped").exists():  # stopped while it waited for a node: nothing ran
                    return self._record(state_dir, name, ExitStatus(None, "stopped"))
                try:
                    if not self._launch(state_dir, 0.0):
                        return None  # waiting for a node with room
                except LookupError as err:
                    return self._record(state_dir, name, ExitStatus(None, str(err)))
                except (ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError):
                    return None
                except ray.exceptions.RayError as err:  # its node died before the agent had it
                    return self._record(state_dir, name, self._gone(state_dir, _lost(err)))
            node = (state_dir / "node").read_text()
            with self._lock:
                self._on_node.setdefault(state_dir, node)  # after a restart: what runs where, for the hints
            try:
                text = ray.get(self._agent_of(state_dir).poll.remote(name), timeout=CALL_TIMEOUT)
            except (ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError):
                return None if node in self._alive() else self._lost_node(state_dir, name, node)
            except ray.exceptions.RayError as err:  # the agent died, or cannot be placed on a node now gone
                self._forget_agent(node, state_dir)
                if node not in self._alive():
                    return self._lost_node(state_dir, name, node)
                return self._record(state_dir, name, self._gone(state_dir, _lost(err)))
            if text is None:
                return None
            status = status_of(text)
            if uploaded := json.loads(text).get("uploaded"):  # what the node put where: the job's outputs
                (state_dir / "uploaded.json").write_text(json.dumps(uploaded))
            agent = self._agent_of(state_dir)
            try:
                self._follow_log(agent, state_dir, final=True)
                meta = json.loads((state_dir / "instance").read_text())
                unpack(
                    ray.get(agent.collect.remote(name), timeout=600),
                    {n: Path(p) for n, p in meta["writable"].items()},
                )
            except ray.exceptions.RayError as err:
                status = self._gone(state_dir, _lost(err) + " before its files were collected")
            return self._record(state_dir, name, status)

    def _lost_node(self, state_dir: Path, name: str, node: str) -> ExitStatus:
        self._forget_agent(node, state_dir)
        return self._record(state_dir, name, self._gone(state_dir, f"the Ray node {node} running it was lost"))

    def _gone(self, state_dir: Path, reason: str) -> ExitStatus:
        return ExitStatus(None, "stopped") if (state_dir / "stopped").exists() else ExitStatus(None, reason)

    def _record(self, state_dir: Path, name: str, status: ExitStatus) -> ExitStatus:
        """Note the exit, then give back what the instance held: its files on the node, its reservation."""
        tmp = state_dir / "exit.tmp"
        tmp.write_text(json.dumps({"code": status.code, "reason": status.reason, "failure": status.failure}))
        tmp.rename(state_dir / "exit")
        with self._lock:
            self._on_node.pop(state_dir, None)
        try:
            self._discard(state_dir, name, wait=False)
            self._retire_agent(state_dir, name)
        except Exception:
            log.warning("could not release %s on the Ray cluster", name, exc_info=True)
        for done in ("pending.json", "pending.tar"):
            (state_dir / done).unlink(missing_ok=True)
        self._release_job_group(state_dir)
        return status

    def release(self, reservation: str) -> None:
        if (held := self._group(reservation)) is not None:
            from ray.util import remove_placement_group

            remove_placement_group(held)

    def _release_job_group(self, state_dir: Path) -> None:
        """Remove the job's placement group once every instance placed in it has ended. Its instances' state
        directories are siblings (``<job>/algo-<i>/state``), each naming the group."""
        group = json.loads((state_dir / "instance").read_text()).get("group")
        if not group:
            return
        for sibling in state_dir.parent.parent.glob("*/state"):
            try:
                named = json.loads((sibling / "instance").read_text()).get("group")
            except (FileNotFoundError, ValueError):
                continue
            if named == group and not (sibling / "exit").exists():
                return  # another instance still holds its bundle
        if (held := self._group(group)) is not None:
            from ray.util import remove_placement_group

            try:
                remove_placement_group(held)
            except Exception:
                log.warning("could not remove the placement group %s", group, exc_info=True)

    def _follow_log(self, agent, state_dir: Path, final: bool = False) -> bool:
        """Append what the instance logged since the last call to its log; True once it has ended and
        everything is here. ``final``: until then (the instance has ended)."""
        ray = self._ray()
        meta = json.loads((state_dir / "instance").read_text())
        while True:
            offset = ray_log.copied(state_dir)
            chunk, ended = ray.get(agent.tail.remote(meta["name"], offset, 0.0 if final else TAIL_WAIT), timeout=60)
            if chunk:
                with open(meta["log"], "ab") as f:
                    at = f.seek(0, 2)
                    f.write(chunk)
                with self._lock:  # shipped() reads and prunes the same map from the log shipper's thread
                    ray_log.appended(state_dir, at, offset, len(chunk))
            if ended or not final:
                return bool(ended)

    # -- another server taking the instance over -----------------------------------

    def identity(self, state_dir: Path) -> dict | None:
        """The instance as any server of the cluster finds it: its name (its placement group's, or its job's
        group and bundle), the home of the agent that runs it, its node once handed over, a model server's
        address, and where its writable files go (relative to its directory: each server has its own)."""
        if not (state_dir / "instance").exists():
            return None
        meta = _meta(state_dir)
        root = state_dir.parent
        if not all(Path(p).is_relative_to(root) for p in meta["writable"].values()):
            return None  # its files come back to a place of this server's own: no other can take it over
        found = {
            "name": meta["name"],
            "home": meta.get("home") or self.home,
            "writable": {n: str(Path(p).relative_to(root)) for n, p in meta["writable"].items()},
        }
        found |= {k: meta[k] for k in ("group", "bundle") if k in meta}
        for known in ("node", "address"):
            if (state_dir / known).exists():
                found[known] = (state_dir / known).read_text()
        return found

    def adopt(self, state_dir: Path, identity: dict, log_path: Path) -> None:
        """Follow from here an instance a server that stopped started: its state directory made again from its
        identity, its log resumed at ``identity["offset"]`` (what that server had shipped) through the agent
        that runs it (detached: it outlived its server). One that server had not handed to a node yet cannot
        be: its files were on that server's disk."""
        for stale in ("exit", "stopped", "offset", "instance", "node", "address", "pending.json", "pending.tar"):
            (state_dir / stale).unlink(missing_ok=True)
        state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._locks.pop(state_dir, None)
        name = identity["name"]
        meta = {
            "name": name,
            "home": identity["home"],
            "log": str(log_path),
            "writable": {n: str(state_dir.parent / rel) for n, rel in identity["writable"].items()},
        } | {k: identity[k] for k in ("group", "bundle") if k in identity}
        ray_log.start_at(state_dir, int(identity.get("offset") or 0))
        if identity.get("address"):
            write_atomically(state_dir / "address", identity["address"])
        node = identity.get("node") or self._placed_on(meta)
        if node:
            write_atomically(state_dir / "node", node)
        write_atomically(state_dir / "instance", json.dumps(meta))
        if node and (endpoint := self.server_url or self.server_local_url):
            # Its uploads go through this server now: the one that started it answers no more.
            try:
                self._ray().get(self._agent_of(state_dir).redirect.remote(name, endpoint), timeout=CALL_TIMEOUT)
            except Exception:  # its node or agent is gone, or busy: poll() says which; uploads wait SERVER_WAIT
                log.warning("could not redirect the uploads of %s to this server", name, exc_info=True)
        if not node:
            self._record(
                state_dir,
                name,
                ExitStatus(None, "the SelfMaker server that started it stopped before it ran on a node"),
            )

    def _placed_on(self, meta: dict) -> str | None:
        """The node the instance's bundle is on (its group placed), else None."""
        from ray.util import placement_group_table

        group = self._group(meta.get("group", meta["name"]))
        if group is None:
            return None
        return placement_group_table(group)["bundles_to_node_id"].get(meta.get("bundle", 0))

    def shipped(self, state_dir: Path, local_offset: int) -> int | None:
        """How much of the instance's own log (on its node) the first ``local_offset`` bytes of ``log_path``
        hold (ray_log.py)."""
        if not (state_dir / "instance").exists():
            return None
        with self._lock:
            return ray_log.shipped(state_dir, local_offset)

    def _retire_agent(self, state_dir: Path, name: str) -> None:
        """A stopped server's agents end once none of its instances is left on their nodes (the server that
        took them over followed them through those agents; no one else will): none outlives its work."""
        home = _meta(state_dir).get("home")
        if not home or home == self.home:
            return
        ray = self._ray()
        if (state_dir / "node").exists() and (node := (state_dir / "node").read_text()) in self._alive():
            ray.get(self._agent(node, home).close.remote(name), timeout=60)  # before asking it if it is idle
        for node in self._alive():
            try:
                agent = ray.get_actor(agent_name(home, node), namespace=NAMESPACE)
            except ValueError:
                continue  # none there (it ended, or the node never had one)
            if ray.get(agent.idle.remote(), timeout=60):
                ray.kill(agent, no_restart=True)
                with self._lock:
                    self._agents.pop((home, node), None)
                log.info("ended %s: no instance of its stopped server is left on its node", agent_name(home, node))

    def watch(self, state_dir: Path, on_exit: Callable[[], None], driving: Callable[[], bool] | None = None) -> None:
        def follow() -> None:
            ray = self._ray()
            while not (state_dir / "exit").exists():
                if driving is not None and not driving():
                    return  # another server drives it now (this one was paused past its lease): it follows it
                try:
                    with self._state_lock(state_dir):
                        if (state_dir / "exit").exists() or (
                            (state_dir / "stopped").exists() and not (state_dir / "node").exists()
                        ):
                            break
                        if not self._launch(state_dir, TAIL_WAIT):
                            continue  # its group waits for a node with room
                        if self._follow_log(self._agent_of(state_dir), state_dir):
                            break
                except ray.exceptions.GetTimeoutError:
                    continue
                except ray.exceptions.ActorUnavailableError:
                    time.sleep(1.0)
                except ray.exceptions.RayActorError:
                    node = (state_dir / "node").read_text() if (state_dir / "node").exists() else ""
                    self._forget_agent(node, state_dir)
                    if node not in self._alive():
                        break  # lost with its node: poll says so
                    time.sleep(1.0)  # its agent died and Ray starts another (or it is made again)
                except Exception:  # the cluster unreachable: poll says what became of it
                    break
            on_exit()

        threading.Thread(target=follow, name=f"ray-{state_dir.name}", daemon=True).start()

    def stop(self, state_dir: Path, grace: float = 0.0) -> None:
        deadline, _first = _stop_deadline(state_dir, grace)
        if (state_dir / "exit").exists() or not (state_dir / "node").exists():
            return  # not handed over yet: poll records it stopped
        meta = json.loads((state_dir / "instance").read_text())
        remaining = deadline - time.time()
        # The node's local executor keeps the deadline itself; a call long past it kills at once.
        self._agent_of(state_dir).stop.remote(meta["name"], max(0.0, remaining))


def _meta(state_dir: Path) -> dict:
    return json.loads((state_dir / "instance").read_text())


def _lost(err: Exception) -> str:
    text = str(err).strip().splitlines()
    detail = next((line for line in text if "node" in line.lower() or "died" in line.lower()), text[0] if text else "")
    return f"the Ray node running it was lost, or its agent died ({detail.strip()[:300]})"


def _gpu_ids() -> list:
    """Run in an instance's bundle (RayExecutor._assigned_gpus): the GPUs Ray gave it."""
    import ray

    return ray.get_gpu_ids()


def _bundle(cpus: int, memory: int, gpus: int) -> dict:
    return {"CPU": cpus, **({"memory": memory} if memory else {}), **({"GPU": gpus} if gpus else {})}


def _say(log_path: Path, line: str) -> None:
    with open(log_path, "a") as f:
        f.write(line + "\n")
