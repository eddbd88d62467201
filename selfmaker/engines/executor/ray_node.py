"""What runs on a Ray node: one long-lived agent actor per node (and server) around the local executor.

The agent starts and follows the sandboxes of many job instances, so an
instance costs no Ray worker process of its own; each instance's CPUs and
memory are still reserved through Ray, by a placement group per instance that
the server holds for the instance's life (ray_cluster.py), and the agent is
placed on the node that group landed on.

The server hands an instance over by reference or by value, never by a path of
its own file system: the instance's files (its /opt/ml as the job prepared it,
less its S3 data; its pip overlay, its /etc/hosts) as one archive, its S3 inputs
and code as a list of objects the agent fetches itself before the instance
starts, its outputs as the URIs the agent uploads them to once it has ended
well (node_transfer.py: through the server's S3 API, as the job's own key),
and the runtime as its spec
(engines/runtimes.py), which the node builds once into its own runtimes
directory and reuses (a file lock makes concurrent instances build it once).
The agent then starts the instance in the same bubblewrap sandbox as the local
executor (local.py), with the node's own runtime, support package and pip
configuration in place of the server's.

A model server (an endpoint instance) listens on TCP on the node's address,
on a port it picks and writes to ``run/port``; the server asks :meth:`NodeAgent.address`
for ``host:port`` and reaches it there (no socket file crosses machines).

Everything the agent knows of an instance is on the node's disk, under
``node_dir()/<server>-<node>/<instance name>``: ``accepted`` (it has the files), ``failure``
(why it could not start; ``failure.job``: the job's reason as is, an input it could not fetch),
``writable.json``, ``transfers.json`` (what to fetch and upload), ``outputs`` (what it
uploaded, once done), the log, ``run/port`` and the local executor's state (pid, exit). So the agent is restart-safe: a new agent
on the node (Ray restarts it, or the server makes it again) answers for the
instances an earlier one started, whose sandboxes ran on without it: each is
started through a short-lived shell (fork and exec, never a bare fork of the
threaded Ray worker), so it is no child of the agent's worker process, which
Ray ends with its children.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from .. import runtimes, sandbox
from . import node_transfer
from .base import ExitStatus, InstanceSpec, Limits, Mount
from .local import LocalExecutor

TAIL_LIMIT = 1 << 20  # bytes of log per tail call
TAIL_STEP = 0.05  # seconds between looks at a log that has nothing new
SERVER_WAIT = 120.0  # seconds uploads wait for a server to answer (a dead one's job taken over: redirect())
UPLOADS_LOGGED = 10  # uploaded objects named one by one in the instance's log; the rest are counted
RUN_INSIDE = "/opt/selfmaker/run"  # a model server's port file, as model_server.py's socket directory


def node_dir() -> Path:
    """Where this node keeps its instances' files: SELFMAKER_RAY_NODE_DIR, else <tmp>/selfmaker-ray-<uid>."""
    base = os.environ.get("SELFMAKER_RAY_NODE_DIR") or os.path.join(
        tempfile.gettempdir(), f"selfmaker-ray-{os.getuid()}"
    )
    path = Path(base)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def pack(paths: dict[str, Path], skip: frozenset[str] = frozenset()) -> bytes:
    """A tar archive of ``paths`` (archive name -> file or directory): regular files and directories only, so a
    link the job made (to /etc/shadow, say) is never followed nor carried to the other side. ``skip``: archive
    names left out with all they hold (data that went to or came from the object store directly)."""
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
                dirs[:] = [d for d in dirs if f"{name}/{Path(root, d).relative_to(path)}" not in skip]
                for entry in dirs + files:
                    full = Path(root, entry)
                    if full.is_symlink() or not (full.is_dir() or full.is_file()):
                        continue
                    if (archived := f"{name}/{full.relative_to(path)}") in skip:
                        continue
                    tar.add(full, archived, recursive=False)
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


class NodeAgent:
    """The instances of one server on this node (registered with Ray as a detached, named actor by
    ray_cluster.py). Every method names the instance; the state is on disk, so any agent can answer."""

    def __init__(self, home: str):
        import ray

        self.executor = LocalExecutor()
        self.lock = threading.Lock()
        self._uploading: set[str] = set()  # instances whose outputs a thread of this agent is uploading
        self._address: str | None = None  # the node's address, once asked of Ray
        # This server's instances on this node; kept apart from other servers' and (when several nodes share
        # a machine, as in tests) other nodes'.
        self.home = node_dir() / f"{home}-{ray.get_runtime_context().get_node_id()[:16]}"
        self.home.mkdir(exist_ok=True)
        alive = {n["NodeID"][:16] for n in ray.nodes() if n["Alive"]}
        for gone in node_dir().glob(f"{home}-*"):  # what a dead node of this machine (its raylet) left running
            if gone.name.rsplit("-", 1)[1] not in alive:
                for root in gone.iterdir():
                    if (root / "state").exists():
                        self.executor.stop(root / "state", 0.0)
                shutil.rmtree(gone, ignore_errors=True)
        for root in self.home.iterdir():  # instances an earlier agent was still starting cannot start now
            if (root / "accepted").exists() and not (root / "started").exists() and not (root / "failure").exists():
                self._fail(root, "the node's SelfMaker agent restarted while it was starting")

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def start(self, name: str, payload: dict, archive: bytes) -> None:
        """Take the instance's files, then fetch its inputs, build its runtime (once per node) and start it in
        the sandbox in the background: these may take minutes. Idempotent: a second call for an instance it has
        accepted (a server restarted before it had noted the first) changes nothing."""
        root = self.home / name
        with self.lock:
            if (root / "accepted").exists():
                return
            shutil.rmtree(root, ignore_errors=True)
            (root / "files").mkdir(parents=True)
            (root / "output.log").touch()
            mounts, destinations = [], {}
            for entry in payload["mounts"]:
                local = root / "files" / entry["name"]
                destinations[entry["name"]] = local
                mounts.append(Mount(local, entry["target"], entry["writable"]))
            unpack(archive, destinations)
            for local in destinations.values():
                if not local.exists():  # an empty directory the archive did not carry
                    local.mkdir(parents=True)
            writable = {e["name"]: str(destinations[e["name"]]) for e in payload["mounts"] if e["writable"]}
            (root / "writable.json").write_text(json.dumps(writable))
            transfers = {k: payload.get(k) or [] for k in ("fetches", "uploads")} | {"store": payload.get("store")}
            (root / "transfers.json").write_text(json.dumps(transfers))  # under node_dir(): 0700, as the key
            (root / "accepted").touch()
        threading.Thread(target=self._launch, args=(root, payload, mounts), daemon=True).start()

    def _launch(self, root: Path, payload: dict, mounts: list[Mount]) -> None:
        log = root / "output.log"
        try:
            self.executor.check()
            runtime = runtimes.Runtime(**{**payload["runtime"], "packages": tuple(payload["runtime"]["packages"])})
            runtimes_dir = Path(payload["runtimes_dir"])
            _say(log, f"SelfMaker: on Ray node {self.node()}")
            if payload.get("fetches"):
                self._fetch(root, payload["fetches"])
            runtimes.ensure(runtime, runtimes_dir, lambda line: _say(log, line))
            env = dict(payload["env"])
            env["PATH"] = env["PATH"].replace(payload["server_bin"], str(runtime.bin_dir(runtimes_dir)), 1)
            if payload.get("serves"):  # a model server: on TCP on the node's address (address())
                mounts.append(self._listen_on_tcp(root, env))
            limits = Limits(**payload["limits"]) if payload["limits"] else None
            spec = InstanceSpec(
                command=payload["command"],
                env=env,
                state_dir=root / "state",
                log_path=log,
                mounts=[*sandbox.provided_mounts(runtime, runtimes_dir), *mounts],
                limits=limits,
                network=payload["network"],
                hostname=payload["hostname"],
                workdir=payload["workdir"],
                hidden=[],
            )
            if (root / "stopping").exists():  # stopped while its runtime was being built
                raise RuntimeError("it was stopped before it started")
            self.executor.start(spec, orphaned=True)  # it outlives this agent (ray_node's docstring)
            (root / "started").touch()
        except node_transfer.TransferFailed as err:  # the job's own reason, as the server would give it
            (root / "failure.job").write_text(str(err))
            self._fail(root, f"it could not fetch its inputs on the Ray node: {err}")
        except Exception as err:  # reported through poll(): the job fails with it
            self._fail(root, f"it could not start on the Ray node: {err}")

    def _roots(self, root: Path) -> dict[str, Path]:
        return {p.name: p for p in (root / "files").iterdir()}

    def _fetch(self, root: Path, fetches: list[dict]) -> None:
        """Copy the instance's S3 inputs and code into its files, as the job (node_transfer.py)."""
        log = root / "output.log"
        _say(log, f"SelfMaker: fetching {len(fetches)} object(s) from the object store on this node")
        started = time.monotonic()
        s3 = node_transfer.client(json.loads((root / "transfers.json").read_text())["store"])
        count, size = node_transfer.fetch_all(s3, fetches, self._roots(root), root)
        _say(log, f"SelfMaker: fetched {count} object(s), {size} bytes in {time.monotonic() - started:.1f} s")

    def _upload(self, root: Path, ended_well: bool) -> None:
        """Upload the instance's outputs (once it ended well: exit 0, or stopped), then note what went where in
        ``outputs``, which poll() reports; a failed upload is the job's reason."""
        result: dict = {"uploaded": []}
        try:
            listed = root / "transfers.json"  # absent: handed over by an earlier SelfMaker (nothing to upload)
            transfers = json.loads(listed.read_text()) if listed.exists() else {"uploads": []}
            if ended_well and transfers["uploads"]:
                say = lambda line: _say(root / "output.log", line)  # noqa: E731
                result["uploaded"] = self._upload_all(root, transfers, say)
                uploaded = result["uploaded"]
                for uri in uploaded[:UPLOADS_LOGGED]:
                    say(f"SelfMaker: uploaded {uri} from this node")
                if len(uploaded) > UPLOADS_LOGGED:
                    say(f"SelfMaker: and {len(uploaded) - UPLOADS_LOGGED} more object(s) from this node")
        except node_transfer.TransferFailed as err:
            result["failure"] = str(err)
        except Exception as err:
            result["failure"] = f"ClientError: cannot write the outputs of the job: {type(err).__name__}: {err}"
        tmp = root / "outputs.tmp"
        tmp.write_text(json.dumps(result))
        tmp.rename(root / "outputs")
        with self.lock:
            self._uploading.discard(root.name)

    def _upload_all(self, root: Path, transfers: dict, say) -> list[str]:
        """Upload through the server named in ``transfers``. One that does not answer at all has died: the
        server taking its job over redirects the instance to itself (redirect()), so wait up to SERVER_WAIT
        for that, reading the endpoint again before each try."""
        deadline = time.monotonic() + SERVER_WAIT
        while True:
            s3 = node_transfer.client(transfers["store"])
            try:
                return node_transfer.upload_all(s3, transfers["uploads"], self._roots(root), root, say)
            except node_transfer.ServerUnreachable:
                if time.monotonic() > deadline:
                    raise
                say(f"SelfMaker: the server at {transfers['store']['endpoint']} does not answer; uploads wait")
                time.sleep(2.0)
                with self.lock:
                    transfers = json.loads((root / "transfers.json").read_text())

    def redirect(self, name: str, endpoint: str) -> None:
        """Send the instance's uploads through the server at ``endpoint`` (it took the job over)."""
        listed = self.home / name / "transfers.json"
        with self.lock:
            if not listed.exists():
                return
            transfers = json.loads(listed.read_text())
            if transfers.get("store"):
                transfers["store"]["endpoint"] = endpoint
                tmp = listed.with_suffix(".tmp")
                tmp.write_text(json.dumps(transfers))
                tmp.rename(listed)

    def _listen_on_tcp(self, root: Path, env: dict[str, str]) -> Mount:
        """A model server here listens on the node's address on a port the kernel picks, and writes the port
        where :meth:`address` reads it (the server reaches it over TCP: no socket file crosses machines)."""
        run = root / "run"
        run.mkdir(exist_ok=True)
        env.pop("SELFMAKER_BIND_TO_SOCKET", None)
        env.update(
            SELFMAKER_BIND_TO_HOST=self.node_address(),
            SAGEMAKER_BIND_TO_PORT="0",
            SELFMAKER_PORT_FILE=f"{RUN_INSIDE}/port",
        )
        return Mount(run, RUN_INSIDE, writable=True)

    def node_address(self) -> str:
        """This node's address on the cluster's network (Ray's NodeManagerAddress)."""
        if self._address is None:
            import ray

            me = self.node()
            self._address = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == me)
        return self._address

    def address(self, name: str) -> str | None:
        """``node-address:port`` of the instance's model server once it listens; None before (or if it is none)."""
        port_file = self.home / name / "run" / "port"
        port = port_file.read_text().strip() if port_file.exists() else ""
        if not port:
            return None
        host = self.node_address()
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _fail(self, root: Path, reason: str) -> None:
        _say(root / "output.log", f"SelfMaker: {reason}")
        (root / "failure").write_text(reason)

    def _status(self, root: Path) -> str | None:
        if (failure := root / "failure").exists():
            job = root / "failure.job"
            return json.dumps(
                {"code": None, "reason": failure.read_text(), "failure": job.read_text() if job.exists() else ""}
            )
        if not (root / "accepted").exists():
            return json.dumps({"code": None, "reason": "its files on the Ray node are gone"})
        if not (root / "started").exists():
            return None  # its inputs are being fetched, or its runtime built
        status = self.executor.poll(root / "state")
        if status is None:
            return None
        if not (outputs := root / "outputs").exists():  # its outputs go up first (again, after an agent restart)
            with self.lock:
                if root.name in self._uploading:
                    return None
                self._uploading.add(root.name)
            well = status.code == 0 or (root / "stopping").exists()
            threading.Thread(target=self._upload, args=(root, well), daemon=True).start()
            return None
        done = json.loads(outputs.read_text())
        return json.dumps({"code": status.code, "reason": status.reason, **done})

    def poll(self, name: str) -> str | None:
        """None while the instance runs (or is starting); its exit status (JSON: code, reason) once it has ended."""
        return self._status(self.home / name)

    def tail(self, name: str, offset: int, wait: float) -> tuple[bytes, bool]:
        """The log from ``offset`` (up to TAIL_LIMIT bytes), waiting up to ``wait`` seconds for something new;
        and whether the instance has ended (then everything it wrote is in this or earlier answers)."""
        root = self.home / name
        log = root / "output.log"
        deadline = time.monotonic() + wait
        while True:
            ended = self._status(root) is not None  # before the size: what it wrote before ending is counted
            size = log.stat().st_size if log.exists() else 0
            if size > offset or ended or time.monotonic() >= deadline:
                break
            time.sleep(TAIL_STEP)
        if size <= offset:
            return b"", ended
        with open(log, "rb") as f:
            f.seek(offset)
            chunk = f.read(TAIL_LIMIT)
        return chunk, ended and offset + len(chunk) >= size

    def stop(self, name: str, grace: float) -> None:
        root = self.home / name
        if root.exists():
            (root / "stopping").touch()
        if (root / "state").exists():
            self.executor.stop(root / "state", grace)

    def collect(self, name: str) -> bytes:
        """The instance's writable files (its /opt/ml, its pip overlay) once it has ended, less what came from
        the object store or went to it from here (its inputs, its uploaded outputs)."""
        root = self.home / name
        writable = json.loads((root / "writable.json").read_text()) if (root / "writable.json").exists() else {}
        skip: set[str] = set()
        if (root / "transfers.json").exists():
            transfers = json.loads((root / "transfers.json").read_text())
            skip |= {f"{u['mount']}/{u['relative']}" for u in transfers["uploads"]}
            skip |= {f"{f['mount']}/{f['relative']}" for f in transfers["fetches"]}
        return pack({n: Path(p) for n, p in writable.items()}, frozenset(skip))

    def close(self, name: str) -> None:
        """Forget the instance: end it if it still runs (a discarded attempt), then remove its files."""
        root = self.home / name
        if (root / "state").exists() and self.executor.poll(root / "state") is None:
            self.executor.stop(root / "state", 0.0)
        shutil.rmtree(root, ignore_errors=True)

    def idle(self) -> bool:
        """Whether no instance of its server is left here (the server taking over a stopped server's instances
        then ends this agent: ray_cluster.py)."""
        return not any(self.home.iterdir())


def _say(log: Path, line: str) -> None:
    with open(log, "a") as f:
        f.write(line.rstrip("\n") + "\n")


def status_of(text: str) -> ExitStatus:
    fields = json.loads(text)
    return ExitStatus(fields["code"], fields["reason"], fields.get("failure", ""))
