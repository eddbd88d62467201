"""The executor interface: start an instance of a job, follow it, stop it, find it again after a restart.

An instance is handed over by reference, so it can run on another machine
(ray_cluster.py): its runtime as a spec, its files as the spec's mounts. The
``provided`` mounts are the running machine's own business; the others are the
job's, and an executor that does not share the server's file system carries
them there and brings the writable ones back before :meth:`Executor.poll`
reports the exit (``shares_files`` False). Such an executor is also handed the
job's data by reference: the objects its node copies in before the instance
starts (``fetches``, each already chosen and checked by the server: listing,
sharding, the account's access) and where the node uploads its outputs once it
has ended (``uploads``), through the server's S3 API signed with the job's own
key (``store``), so the data never passes through the server's disk and a node
can read nothing the job's account cannot. Its log reaches ``log_path`` while it
runs.

An instance is described by an :class:`InstanceSpec` and identified by its
state directory, which the executor fills with what it needs to follow the
instance later (a pid file, the exit status). Nothing is kept only in memory:
a restarted server passes the same directory to :meth:`Executor.poll` and
:meth:`Executor.watch` and carries on.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runtimes import Runtime


class ExecutorUnavailable(Exception):
    """The executor cannot run anything here (e.g. bubblewrap is missing); the message says how to fix it."""


@dataclass(frozen=True)
class Mount:
    source: Path  # on the host
    target: str  # inside the instance
    writable: bool = False
    # Provided by the machine the instance runs on (its runtime, our support package), not by the job: an
    # executor on another machine puts that machine's own there instead of carrying the server's.
    provided: bool = False


@dataclass(frozen=True)
class Fetch:
    """An object the node copies into the instance's files before it starts: ``path`` is where it lands on the
    server's side (under a mount's source), ``unpack`` a tar archive unpacked into the directory ``path``."""

    bucket: str
    key: str
    path: Path
    unpack: bool = False


@dataclass(frozen=True)
class Upload:
    """What the node uploads once the instance ended well (exit 0, or stopped): the directory ``path`` (under a
    writable mount's source) as one .tar.gz at ``uri`` (``archive``), else each plain file at ``uri``/<relative>.
    Nothing when it is empty, unless ``always`` (an empty model.tar.gz, as SageMaker uploads)."""

    path: Path
    uri: str
    archive: bool = False
    always: bool = False


@dataclass(frozen=True)
class StoreAccess:
    """How a node reaches the object store for the job: the S3 API of this server, as the job's own key."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str


@dataclass(frozen=True)
class Limits:
    cpus: int  # processors the instance may use
    memory_bytes: int  # its memory
    gpus: int = 0  # NVIDIA GPUs (engines/instance_types.py): reserved on a Ray cluster, counted in SM_NUM_GPUS


@dataclass
class InstanceSpec:
    command: list[str]
    env: dict[str, str]
    state_dir: Path  # the executor's own files for this instance (host side, never visible inside)
    log_path: Path  # stdout and stderr, interleaved, appended
    mounts: list[Mount] = field(default_factory=list)
    limits: Limits | None = None
    network: bool = True  # False: no network at all (EnableNetworkIsolation)
    hostname: str = "algo-1"
    workdir: str = "/"
    hidden: list[str] = field(default_factory=list)  # host directories the instance must not see
    # The runtime by reference: its spec, and where this server keeps built runtimes (the paths in ``env`` and
    # the provided mounts are under it). An executor on another machine builds the spec there.
    runtime: Runtime | None = None
    runtimes_dir: Path | None = None
    # A model server (an endpoint instance). On this machine it listens on the Unix socket its env names; an
    # executor running it elsewhere has it listen on TCP on that machine's address and reports the address (serving_address).
    serves: bool = False
    # What the executor reserved for the job's instances in place() (Placement.reservation), if anything.
    reservation: str = ""
    # The job's data by reference, for an executor that does not share files (the module's docstring).
    fetches: list[Fetch] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    store: StoreAccess | None = None


@dataclass(frozen=True)
class Placement:
    """How a job's instances reach each other: one address per instance (``algo-<i>`` resolves to the i-th
    from inside every instance's sandbox) and the network interface they share (resourceconfig.json's
    ``network_interface_name``)."""

    addresses: tuple[str, ...]
    interface: str
    # The executor's own name for what it reserved for the instances (a Ray placement group, say), handed
    # back to it in each InstanceSpec; "" when each instance is placed as it starts.
    reservation: str = ""


@dataclass(frozen=True)
class ExitStatus:
    code: int | None  # the command's exit code; None when it ended without reporting one
    reason: str = ""  # why there is no code (killed, vanished)
    # The job's FailureReason as is: its node could not fetch an input or upload an output (a ClientError).
    failure: str = ""

    @property
    def succeeded(self) -> bool:
        return self.code == 0


class Executor(ABC):
    name: str
    # True: the instance writes the server's own directories as it runs (continuous uploads see its files).
    # False: its writable mounts are copied back once it ends, before poll() reports the exit.
    shares_files: bool = True
    # True: it builds each instance's runtime where the instance runs, from InstanceSpec.runtime.
    builds_runtimes: bool = False
    # True: another server can follow its instances (identity() and adopt()): they run out of this machine.
    adoptable: bool = False

    def place(self, key: str, count: int, limits: Limits | None = None) -> Placement:
        """Addresses for ``count`` instances of the job ``key`` (its ARN), each of ``limits``' size, decided
        before any starts.

        Here: all on this machine, which shares its network with the sandboxes, each instance on its own
        loopback address 127.B.C.<i> (Linux answers the whole of 127.0.0.0/8 on ``lo``), B.C a digest of the
        job. A server or framework that binds its own ``algo-<i>`` address (XGBoost's tracker, a c10d store
        on MASTER_ADDR) then never collides with another instance's or another job's on the same port.
        An executor that spreads instances over machines answers their machines' addresses instead.
        """
        if count > 254:
            raise ValueError(f"at most 254 instances per job on one machine, not {count}")
        digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:2], "big")
        block = f"127.{1 + digest % 254}.{digest >> 8}"  # never 127.0.x: the server and others use 127.0.0.1
        return Placement(tuple(f"{block}.{i}" for i in range(1, count + 1)), "lo")

    def release(self, reservation: str) -> None:
        """Give back what :meth:`place` reserved (Placement.reservation) when the job's instances will not start
        (an input refused). Nothing here: place() reserves nothing on this machine."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`ExecutorUnavailable` if instances cannot run here."""

    @abstractmethod
    def start(self, spec: InstanceSpec) -> None:
        """Start the instance, detached: it outlives the server, which can follow it again later."""

    def started(self, state_dir: Path) -> bool:
        """Whether :meth:`start` went through for this instance (a server may have stopped just before)."""
        return (state_dir / "pid").exists()

    def serving_address(self, state_dir: Path) -> str | None:
        """``host:port`` of a serving instance (``InstanceSpec.serves``) that runs on another machine, once it
        listens; None while it does not yet. Here instances are reached by their Unix sockets instead."""
        return None

    def uploaded(self, state_dir: Path) -> list[str]:
        """The URIs the instance's node uploaded its outputs to (InstanceSpec.uploads), once :meth:`poll` reported
        its exit; none here (the server uploads what it shares)."""
        return []

    @abstractmethod
    def poll(self, state_dir: Path) -> ExitStatus | None:
        """None while the instance runs; its exit status once it has ended (or vanished)."""

    @abstractmethod
    def watch(self, state_dir: Path, on_exit: Callable[[], None], driving: Callable[[], bool] | None = None) -> None:
        """Call ``on_exit()`` once, from another thread, when the instance ends (at once if it has).
        ``driving``: whether this server still drives the instance; an executor whose instances other servers
        can reach (:meth:`identity`) stops following once it is false (another server follows it then)."""

    # -- another server taking an instance over (docs/scale-out.md, "Several servers") ----------------

    def identity(self, state_dir: Path) -> dict | None:
        """What another server needs to find and follow the instance (JSON), or None: it runs where only this
        server reaches it (the local executor: its processes are on this machine)."""
        return None

    def adopt(self, state_dir: Path, identity: dict, log_path: Path) -> None:
        """Follow, from this server, an instance another server started (its :meth:`identity`): recreate
        ``state_dir`` from it, its log continuing in ``log_path``."""
        raise NotImplementedError(f"the {self.name} executor's instances cannot be taken over")

    def shipped(self, state_dir: Path, local_offset: int) -> int | None:
        """How much of the instance's own log the first ``local_offset`` bytes of ``log_path`` hold (what a
        taking-over server resumes from once those are shipped); None where instances are not adoptable."""
        return None

    @abstractmethod
    def stop(self, state_dir: Path, grace: float = 0.0) -> None:
        """End the instance's whole process tree: SIGTERM now, SIGKILL ``grace`` seconds after the first request.

        Idempotent and quick (it never waits for the grace period): a later call once the deadline has
        passed kills at once, so a restarted server calling again still enforces it.
        """
