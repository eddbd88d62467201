"""What runs on a Ray node for one job instance: a detached actor around the local executor.

The server hands the actor everything by reference or by value, never by a path
of its own file system: the instance's files (its /opt/ml as the job prepared
it, its pip overlay, its /etc/hosts) as one archive in Ray's object store, and
the runtime as its spec (engines/runtimes.py), which the node builds once into
its own runtimes directory and reuses (a file lock makes concurrent instances
build it once). The actor then starts the instance in the same bubblewrap
sandbox as the local executor (local.py), with the node's own runtime, support
package and pip configuration in place of the server's.

The actor is named after the instance and detached, so it outlives the server
that created it: a restarted server finds it by name and asks it again
(:meth:`poll`, :meth:`tail`). It lives until the server has collected the
instance's writable files (:meth:`collect`) and closes it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path

from .. import runtimes, sandbox
from .base import ExitStatus, InstanceSpec, Limits, Mount
from .local import LocalExecutor

TAIL_LIMIT = 1 << 20  # bytes of log per tail call
RUN_INSIDE = "/opt/selfmaker/run"  # a model server's port file, as model_server.py's socket directory


def node_dir() -> Path:
    """Where this node keeps its instances' files: SELFMAKER_RAY_NODE_DIR, else <tmp>/selfmaker-ray-<uid>."""
    base = os.environ.get("SELFMAKER_RAY_NODE_DIR") or os.path.join(
        tempfile.gettempdir(), f"selfmaker-ray-{os.getuid()}"
    )
    path = Path(base)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def pack(paths: dict[str, Path]) -> bytes:
    """A tar archive of ``paths`` (archive name -> file or directory): regular files and directories only, so a
    link the job made (to /etc/shadow, say) is never followed nor carried to the other side."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in paths.items():
            if not path.exists() or path.is_symlink():
                continue
            if path.is_file():
                tar.add(path, name, recursive=False)
                continue
            tar.add(path, name, recursive=False)
            for root, dirs, files in os.walk(path):  # os.walk never descends into a linked directory
                for entry in dirs + files:
                    full = Path(root, entry)
                    if full.is_symlink() or not (full.is_dir() or full.is_file()):
                        continue
                    tar.add(full, f"{name}/{full.relative_to(path)}", recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, destinations: dict[str, Path]) -> None:
    """Extract an archive made by :func:`pack`: each top-level name into its destination (emptied first).
    The ``data`` filter refuses absolute names, links and names that climb out."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        members = tar.getmembers()
        for name, target in destinations.items():
            picked = [m for m in members if m.name == name or m.name.startswith(name + "/")]
            if not picked:
                continue
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
            try:
                tar.extractall(staging, members=picked, filter="data")
                (staging / name).rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)


class InstanceActor:
    """One job instance on this node (registered with Ray as a detached actor by ray_cluster.py)."""

    def __init__(self, name: str):
        self.root = node_dir() / name
        self.executor = LocalExecutor()
        self.ended = threading.Event()
        self.failure: str | None = None  # why the instance could not start here
        self.launched = False  # start() has returned: until then poll() (a concurrent call) says "running"
        self.writable: dict[str, Path] = {}
        self.lock = threading.Lock()

    @property
    def log(self) -> Path:
        return self.root / "output.log"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def start(self, payload: dict, archive: bytes) -> None:
        """Unpack the instance's files, build its runtime here (once per node), start it in the sandbox."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.log.touch()
        try:
            self.executor.check()
            mounts = []
            destinations = {}
            for entry in payload["mounts"]:
                local = self.root / "files" / entry["name"]
                destinations[entry["name"]] = local
                mounts.append(Mount(local, entry["target"], entry["writable"]))
                if entry["writable"]:
                    self.writable[entry["name"]] = local
            unpack(archive, destinations)
            for local in destinations.values():
                if not local.exists():  # an empty directory the archive did not carry
                    local.mkdir(parents=True)
            runtime = runtimes.Runtime(**{**payload["runtime"], "packages": tuple(payload["runtime"]["packages"])})
            runtimes_dir = Path(payload["runtimes_dir"])
            self._say(f"SelfMaker: on Ray node {self.node()}")
            runtimes.ensure(runtime, runtimes_dir, self._say)
            env = dict(payload["env"])
            env["PATH"] = env["PATH"].replace(payload["server_bin"], str(runtime.bin_dir(runtimes_dir)), 1)
            if payload.get("serves"):
                mounts.append(self._listen_on_tcp(env))
            limits = Limits(**payload["limits"]) if payload["limits"] else None
            spec = InstanceSpec(
                command=payload["command"],
                env=env,
                state_dir=self.state,
                log_path=self.log,
                mounts=[*sandbox.provided_mounts(runtime, runtimes_dir), *mounts],
                limits=limits,
                network=payload["network"],
                hostname=payload["hostname"],
                workdir=payload["workdir"],
                hidden=[],
            )
            self.executor.start(spec)
        except Exception as err:  # reported through poll(): the job fails with it
            self.failure = f"it could not start on the Ray node: {err}"
            self._say(f"SelfMaker: {self.failure}")
            self.ended.set()
            return
        self.launched = True
        self.executor.watch(self.state, self.ended.set)

    def _listen_on_tcp(self, env: dict[str, str]) -> Mount:
        """A model server here listens on the node's address on a port the kernel picks, and writes the port
        where :meth:`address` reads it (the server reaches it over TCP: no socket file crosses machines)."""
        run = self.root / "run"
        run.mkdir()
        env.pop("SELFMAKER_BIND_TO_SOCKET", None)
        env.update(
            SELFMAKER_BIND_TO_HOST=self.node_address(),
            SAGEMAKER_BIND_TO_PORT="0",
            SELFMAKER_PORT_FILE=f"{RUN_INSIDE}/port",
        )
        return Mount(run, RUN_INSIDE, writable=True)

    def node_address(self) -> str:
        import ray

        me = self.node()
        return next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == me)

    def address(self) -> str | None:
        """``node-address:port`` of the model server once it listens; None before (or if it is no server)."""
        port_file = self.root / "run" / "port"
        if not port_file.exists():
            return None
        host = self.node_address()
        return f"[{host}]:{port_file.read_text()}" if ":" in host else f"{host}:{port_file.read_text()}"

    def _say(self, line: str) -> None:
        with open(self.log, "a") as f:
            f.write(line.rstrip("\n") + "\n")

    def poll(self) -> str | None:
        """None while the instance runs; its exit status (JSON: code, reason) once it has ended."""
        if self.failure is not None:
            return json.dumps({"code": None, "reason": self.failure})
        if not self.launched:  # the actor runs calls concurrently: a poll while start() unpacks or builds
            return None
        status = self.executor.poll(self.state) if self.state.exists() else None
        return None if status is None else json.dumps({"code": status.code, "reason": status.reason})

    def tail(self, offset: int, wait: float) -> tuple[bytes, bool]:
        """The log from ``offset`` (up to TAIL_LIMIT bytes), waiting up to ``wait`` seconds for something new;
        and whether the instance has ended (then everything it wrote is in this or earlier answers)."""
        ended = self.ended.is_set()
        size = self.log.stat().st_size if self.log.exists() else 0
        if size <= offset and not ended:
            ended = self.ended.wait(wait)
            size = self.log.stat().st_size if self.log.exists() else 0
        if size <= offset:
            return b"", ended
        with open(self.log, "rb") as f:
            f.seek(offset)
            chunk = f.read(TAIL_LIMIT)
        return chunk, ended and offset + len(chunk) >= size

    def stop(self, grace: float) -> None:
        if self.state.exists():
            self.executor.stop(self.state, grace)

    def collect(self) -> bytes:
        """The instance's writable files (its /opt/ml, its pip overlay) once it has ended."""
        return pack(self.writable)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def status_of(text: str) -> ExitStatus:
    fields = json.loads(text)
    return ExitStatus(fields["code"], fields["reason"])
