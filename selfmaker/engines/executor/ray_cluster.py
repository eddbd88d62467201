"""The Ray executor: each job instance on a node of a Ray cluster, in the local executor's sandbox there.

An instance is a detached, named actor (ray_node.py) that asks Ray for the
instance type's CPUs and memory as resources, spread over the nodes. The
server never shares the node's file system: the instance's files go there as
one archive in Ray's object store, its runtime as a spec the node builds once
and caches, its log comes back while it runs (a follower thread per instance
appends it to ``log_path``, which the server ships to CloudWatch Logs as for
the local executor), and its writable files come back once it has ended,
before :meth:`poll` reports the exit.

What the server keeps, in the instance's state directory: ``actor`` (the
actor's name and where the log and writable files go), ``offset`` (how much
of the log it has), ``node`` (the Ray node it was placed on), ``stopped`` (the stop deadline,
as local.py) and ``exit``
(the status, once collected). A restarted server finds the actor again by
name: the instance ran on without it. A node that dies takes its actors with
it: the instance ends with that reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import Executor, ExecutorUnavailable, ExitStatus, InstanceSpec, Placement
from .local import _stop_deadline
from .ray_node import InstanceActor, pack, status_of, unpack

log = logging.getLogger("selfmaker.ray")

NAMESPACE = "selfmaker"
PACKAGE = Path(__file__).resolve().parents[2]  # the selfmaker package, shipped to the nodes by Ray
CALL_TIMEOUT = 5.0  # seconds a poll waits for the actor (longer: it is still waiting for a node)
TAIL_WAIT = 2.0  # seconds a log follower's call waits for new output
KILL_AFTER = 30.0  # seconds past the stop deadline after which an actor that did not end is killed


def actor_name(state_dir: Path) -> str:
    """The instance's actor: unique per server data directory and instance, stable across restarts."""
    import hashlib

    return "selfmaker-" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:32]


class RayExecutor(Executor):
    name = "ray"
    shares_files = False
    builds_runtimes = True

    def __init__(self, address: str, server_url: str | None = None, server_local_url: str | None = None):
        self.address = address
        self.server_url = server_url  # how the nodes reach this server (None: as the sandbox env says)
        self.server_local_url = server_local_url  # the URL the sandbox env names, replaced by server_url
        self._lock = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}
        self._actor_class: Any = None  # InstanceActor as a Ray actor class, once connected

    def place(self, key: str, count: int) -> Placement:
        # Ray may put a job's instances on different nodes, and nothing yet makes algo-<i> name another
        # node's sandbox: a job whose instances must reach each other is refused rather than half-run.
        if count > 1:
            raise ExecutorUnavailable(
                f"a job of {count} instances cannot run on the ray executor yet: instances on different nodes "
                "cannot reach each other by their algo-N names (docs/scale-out.md); use InstanceCount 1"
            )
        return super().place(key, count)

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
            if self._actor_class is None:
                self._actor_class = ray.remote(InstanceActor)
        return ray

    def check(self) -> None:
        ray = self._ray()
        if not any(node["Alive"] for node in ray.nodes()):
            raise ExecutorUnavailable(f"the Ray cluster at {self.address} has no live node")

    def _fits(self, ray, cpus: int, memory: int) -> bool:
        for node in ray.nodes():
            have = node.get("Resources", {})
            if node["Alive"] and have.get("CPU", 0) >= cpus and have.get("memory", 0) >= memory:
                return True
        return False

    def _actor(self, state_dir: Path):
        """The instance's actor, or None if it is gone (closed, killed or lost with its node)."""
        ray = self._ray()
        try:
            return ray.get_actor(actor_name(state_dir), namespace=NAMESPACE)
        except ValueError:
            return None

    def _state_lock(self, state_dir: Path) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(state_dir, threading.Lock())

    # -- starting ------------------------------------------------------------------

    def start(self, spec: InstanceSpec) -> None:
        ray = self._ray()
        if spec.runtime is None or spec.runtimes_dir is None:
            raise ExecutorUnavailable("the ray executor runs only instances given their runtime by spec")
        cpus = spec.limits.cpus if spec.limits else 1
        memory = spec.limits.memory_bytes if spec.limits else 0
        if not self._fits(ray, cpus, memory):
            raise ExecutorUnavailable(
                f"no live node of the Ray cluster has {cpus} CPUs and {memory / 2**30:.1f} GiB of memory "
                "for the instance type; add such a node or choose a smaller instance type"
            )
        state = spec.state_dir
        state.mkdir(parents=True, exist_ok=True)
        for stale in ("exit", "stopped", "offset", "actor", "node", "address"):
            (state / stale).unlink(missing_ok=True)
        if (earlier := self._actor(state)) is not None:  # an attempt a killed server had launched
            ray.kill(earlier)
        shipped = [m for m in spec.mounts if not m.provided]
        names = {f"m{i}": m for i, m in enumerate(shipped)}
        env = dict(spec.env)
        if self.server_url and self.server_local_url:
            env = {k: v.replace(self.server_local_url, self.server_url) for k, v in env.items()}
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
            "limits": {"cpus": cpus, "memory_bytes": memory} if spec.limits else None,
            "network": spec.network,
            "hostname": spec.hostname,
            "workdir": spec.workdir,
            "serves": spec.serves,  # a model server: it listens on TCP on the node's address (address())
        }
        archive = ray.put(pack({n: m.source for n, m in names.items()}))
        name = actor_name(state)
        actor = self._actor_class.options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            max_restarts=0,
            max_concurrency=8,  # tail and stop while a poll waits
            num_cpus=cpus,
            memory=memory or None,
            scheduling_strategy="SPREAD",
        ).remote(name)
        actor.start.remote(payload, archive)
        (state / "actor").write_text(
            json.dumps(
                {
                    "name": name,
                    "log": str(spec.log_path),
                    "writable": {n: str(m.source) for n, m in names.items() if m.writable},
                }
            )
        )

    # -- following -----------------------------------------------------------------

    def started(self, state_dir: Path) -> bool:
        return (state_dir / "actor").exists()

    def serving_address(self, state_dir: Path) -> str | None:
        """The model server's ``node-address:port``, asked of its actor once it listens, then kept in ``address``
        (a restarted server reads it there)."""
        known = state_dir / "address"
        if known.exists():
            return known.read_text() or None
        if not (state_dir / "actor").exists() or (state_dir / "exit").exists():
            return None
        ray = self._ray()
        actor = self._actor(state_dir)
        if actor is None:
            return None
        try:
            address = ray.get(actor.address.remote(), timeout=CALL_TIMEOUT)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            return None  # still being placed, or gone: poll() says which
        if address:
            known.with_suffix(".tmp").write_text(address)
            known.with_suffix(".tmp").rename(known)
        return address

    def poll(self, state_dir: Path) -> ExitStatus | None:
        exit_file = state_dir / "exit"
        if exit_file.exists():
            return status_of(exit_file.read_text())
        if not (state_dir / "actor").exists():
            return ExitStatus(None, "it was never started on the Ray cluster")
        ray = self._ray()
        actor = self._actor(state_dir)
        if actor is None:
            return self._record(state_dir, self._gone(state_dir, self._why_gone(state_dir)))
        try:
            self._remember_node(actor, state_dir)
            text = ray.get(actor.poll.remote(), timeout=CALL_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            return None  # still waiting for a node with room, or busy
        except ray.exceptions.ActorUnavailableError:
            return None
        except ray.exceptions.RayActorError as err:
            return self._record(state_dir, self._gone(state_dir, _lost(err)))
        if text is None:
            return None
        status = status_of(text)
        with self._state_lock(state_dir):
            if exit_file.exists():
                return status_of(exit_file.read_text())
            try:
                self._follow_log(actor, state_dir, final=True)
                meta = json.loads((state_dir / "actor").read_text())
                unpack(
                    ray.get(actor.collect.remote(), timeout=600),
                    {n: Path(p) for n, p in meta["writable"].items()},
                )
                ray.get(actor.close.remote(), timeout=60)
            except ray.exceptions.RayActorError as err:
                status = self._gone(state_dir, _lost(err) + " before its files were collected")
            ray.kill(actor)
            return self._record(state_dir, status)

    def _why_gone(self, state_dir: Path) -> str:
        """Why an instance's actor no longer exists: its node was lost, or it was ended outside SelfMaker."""
        node = (state_dir / "node").read_text() if (state_dir / "node").exists() else ""
        alive = {n["NodeID"] for n in self._ray().nodes() if n["Alive"]}
        if node and node not in alive:
            return f"the Ray node {node} running it was lost"
        return "its Ray actor is gone (its node was lost or it was ended outside SelfMaker)"

    def _remember_node(self, actor, state_dir: Path) -> None:
        """Note the node the actor was placed on (once), so that its loss can be named later."""
        if not (state_dir / "node").exists():
            (state_dir / "node").write_text(self._ray().get(actor.node.remote(), timeout=CALL_TIMEOUT))

    def _gone(self, state_dir: Path, reason: str) -> ExitStatus:
        return ExitStatus(None, "stopped") if (state_dir / "stopped").exists() else ExitStatus(None, reason)

    def _record(self, state_dir: Path, status: ExitStatus) -> ExitStatus:
        tmp = state_dir / "exit.tmp"
        tmp.write_text(json.dumps({"code": status.code, "reason": status.reason}))
        tmp.rename(state_dir / "exit")
        return status

    def _follow_log(self, actor, state_dir: Path, final: bool = False) -> bool:
        """Append what the instance logged since the last call to its log; True once it has ended and
        everything is here. ``final``: until then (the instance has ended)."""
        ray = self._ray()
        meta = json.loads((state_dir / "actor").read_text())
        offset_file = state_dir / "offset"
        while True:
            offset = int(offset_file.read_text() or 0) if offset_file.exists() else 0
            chunk, ended = ray.get(actor.tail.remote(offset, 0.0 if final else TAIL_WAIT), timeout=60)
            if chunk:
                with open(meta["log"], "ab") as f:
                    f.write(chunk)
                offset_file.write_text(str(offset + len(chunk)))
            if ended or not final:
                return bool(ended)

    def watch(self, state_dir: Path, on_exit: Callable[[], None]) -> None:
        def follow() -> None:
            ray = self._ray()
            while not (state_dir / "exit").exists():
                actor = self._actor(state_dir)
                if actor is None:
                    break
                try:
                    self._remember_node(actor, state_dir)
                    with self._state_lock(state_dir):
                        if (state_dir / "exit").exists() or self._follow_log(actor, state_dir):
                            break
                except ray.exceptions.GetTimeoutError:
                    continue  # the actor waits for a node
                except ray.exceptions.ActorUnavailableError:
                    time.sleep(1.0)
                except Exception:  # lost with its node, or the cluster unreachable: poll says which
                    break
            on_exit()

        threading.Thread(target=follow, name=f"ray-{state_dir.name}", daemon=True).start()

    def stop(self, state_dir: Path, grace: float = 0.0) -> None:
        deadline, _first = _stop_deadline(state_dir, grace)
        if (state_dir / "exit").exists() or not (state_dir / "actor").exists():
            return
        actor = self._actor(state_dir)
        if actor is None:
            return
        remaining = deadline - time.time()
        if remaining < -KILL_AFTER:  # the node did not end it: end the actor, and the sandbox with it
            self._ray().kill(actor)
            return
        actor.stop.remote(max(0.0, remaining))  # the node's local executor keeps the deadline itself


def _lost(err: Exception) -> str:
    text = str(err).strip().splitlines()
    detail = next((line for line in text if "node" in line.lower() or "died" in line.lower()), text[0] if text else "")
    return f"the Ray node running it was lost, or its actor died ({detail.strip()[:300]})"
