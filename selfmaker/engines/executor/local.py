"""The local executor: each instance in a bubblewrap sandbox on this machine.

The sandbox sees only an allow-list of the host, read-only: the system
directories a Python program needs (/usr, /lib*, /bin, /sbin) and a few /etc
entries (dynamic linker, CA certificates, time zone, name service and pip
configuration; resolv.conf and hosts only with network), plus the directories
the spec mounts. /etc/passwd and /etc/group are generated: they name the
sandbox user. Everything else of the host (/root, /home, /var, /srv, /mnt, the
rest of /etc, the server's data directory and credentials) is simply absent.
It has a private /tmp, /proc and /dev, its own user, pid, IPC and UTS
namespaces (hostname ``algo-<i>``), and runs as uid/gid 1000, mapped to the
server's own uid outside (so what it writes in /opt/ml belongs to the server),
with no capabilities and no_new_privs. ``hidden`` host directories are covered
by empty tmpfs mounts in case a mount would show them. Without network, it also
gets its own empty network namespace.

Each instance is started detached (its own session) under a tiny ``sh``
supervisor that appends output to the log and writes the exit code to
``<state_dir>/exit``, so a server that was killed and restarted can still learn
how it ended. ``pid`` records the supervisor's pid and start time, so a reused
pid is never mistaken for the instance.

Stopping sends SIGTERM to every process inside the sandbox, then SIGKILL to the
whole group once the grace period has passed (SageMaker's contract: a job may
save a checkpoint when asked to stop). The deadline is kept in ``stopped``.

Limits: the CPU set through ``taskset`` (sched_setaffinity) and memory through
``prlimit --data`` (RLIMIT_DATA: heap and private anonymous mappings). cgroups
would be finer but are rarely delegated to an unprivileged service.
"""

from __future__ import annotations

import functools
import hashlib
import os
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import bwrap
from .base import Executor, ExecutorUnavailable, ExitStatus, InstanceSpec

# The supervisor: run the command, then record its exit code atomically.
SUPERVISOR = (
    'log=$1; state=$2; shift 2; "$@" >>"$log" 2>&1; echo $? >"$state/exit.tmp" && mv "$state/exit.tmp" "$state/exit"'
)

# Starts its arguments (setsid and a command) in the background and prints the pid: the shell exits at once, so
# what it started is no child of the caller; setsid(1) execs in place (a background job leads no process group
# here), so the pid is the command's, which leads its own session and group as the supervisor must.
ORPHAN = '"$@" </dev/null >/dev/null 2>&1 & echo $!'
# The sandbox user: not root, as the uid the Studio images use; mapped to the server's uid outside.
SANDBOX_UID = SANDBOX_GID = 1000
SANDBOX_USER = "sagemaker-user"
PASSWD = (
    f"root:x:0:0:root:/root:/usr/sbin/nologin\n{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_GID}::/tmp:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\n{SANDBOX_USER}:x:{SANDBOX_GID}:\nnogroup:x:65534:\n"

# Host top-level directories (or their symlinks, on merged-/usr systems) a Python runtime needs.
SYSTEM_DIRS = ("usr", "lib", "lib64", "lib32", "libx32", "bin", "sbin")
# The /etc allow-list, copied at each start into the instance's own /etc (one bind mount instead of one per
# entry: each mount costs start time): the dynamic linker's cache, CA configuration (Debian and Red Hat
# layouts), time zone, name service and pip configuration. Never shadow, ssl/private, the rest.
ETC_COPIED = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/openssl.cnf",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "pip.conf",
    "xdg/pip",
)
# ... the same, only for a sandbox with network.
ETC_NETWORK = ("resolv.conf", "hosts")
# CA certificate directories (hundreds of entries): bound, read-only, over the copy.
ETC_BOUND = ("ssl/certs", "pki/tls/certs", "pki/ca-trust/extracted")


@functools.cache
def _system_view() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(bwrap arguments, directories bound as they are) for the system directories and the CA certificate
    directories; computed once per server (what exists under / does not change while it runs)."""
    args: list[str] = []
    bound: list[str] = []
    for path in [f"/{name}" for name in SYSTEM_DIRS] + [f"/etc/{name}" for name in ETC_BOUND]:
        if os.path.islink(path) and path.count("/") == 1:  # /lib -> usr/lib
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
            bound.append(path)
    return tuple(args), tuple(bound)


def _etc(spec: InstanceSpec, bound: tuple[str, ...]) -> tuple[Path, tuple[str, ...]]:
    """The instance's /etc (a host directory, bound read-only) and the /etc paths it shows as on the host.

    It holds the generated passwd and group naming the sandbox user, a copy of the allow-list (a symlink
    into /usr stays a symlink: tools read /etc/localtime's target for the zone name) and empty mount points
    for what is bound over it. Staged once per content (metadata calls are slow on some file systems, and
    each would add to every start): the name is a digest of the sources' stat, so a changed resolv.conf or CA
    configuration gets a new copy at the next start, and a copy a running sandbox uses is never changed."""
    stamps = []
    for name in ETC_COPIED + (ETC_NETWORK if spec.network else ()):
        stamp = _stamp(f"/etc/{name}")
        if stamp is not None:
            stamps.append((name, stamp))
    shown = bound + tuple(f"/etc/{name}" for name, _ in stamps)
    points = {(path, True) for path in bound if path.startswith("/etc/")}
    points |= {
        (m.target, m.source.is_dir())
        for m in spec.mounts
        if m.target.startswith("/etc/") and (m.writable or not _covered(str(m.source), m.target, shown))
    }
    key = repr((stamps, sorted(points), PASSWD, GROUP))
    return _staged_etc(
        hashlib.sha256(key.encode()).hexdigest()[:16], tuple(n for n, _ in stamps), tuple(sorted(points))
    ), shown


def _stamp(path: str) -> tuple | None:
    """What identifies the current version of a host /etc entry (and a directory's entries); None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    stamp: tuple = (os.path.islink(path) and os.readlink(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if os.path.isdir(path):
        stamp += tuple(sorted((e.name, *inner) for e in os.scandir(path) if (inner := _stamp(e.path))))
    return stamp


@functools.lru_cache(maxsize=32)
def _staged_etc(digest: str, names: tuple[str, ...], points: tuple[tuple[str, bool], ...]) -> Path:
    home = _private_dir()
    etc = home / f"etc-{digest}"
    if etc.is_dir():
        return etc  # staged by an earlier server
    building = Path(tempfile.mkdtemp(prefix=f".etc-{digest}-", dir=home))
    os.chmod(building, 0o755)
    (building / "passwd").write_text(PASSWD)
    (building / "group").write_text(GROUP)
    for name in names:
        source, target = Path("/etc", name), building / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink() and os.path.realpath(source).startswith("/usr/"):
            target.symlink_to(os.readlink(source))
        elif source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copyfile(source, target)
    for path, directory in points:
        point = building / path[len("/etc/") :]
        if not os.path.lexists(point):
            point.parent.mkdir(parents=True, exist_ok=True)
            point.mkdir() if directory else point.touch()
    try:
        building.rename(etc)
    except OSError:  # another server staged the same content first
        shutil.rmtree(building, ignore_errors=True)
    return etc


def _private_dir() -> Path:
    """<tmp>/selfmaker-<uid> (as the model servers' sockets use), refused unless it is ours alone."""
    home = Path(tempfile.gettempdir()) / f"selfmaker-{os.getuid()}"
    home.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(home)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise ExecutorUnavailable(
            f"{home} must be a directory of the SelfMaker user that no one else may write to; remove it and start again"
        )
    return home


def _covered(source: str, target: str, shown: tuple[str, ...]) -> bool:
    """A host path at its own place inside, in (or equal to) one of the directories ``shown`` as they are."""
    return source == target and any(target == d or target.startswith(d + "/") for d in shown)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _gpu_devices(spec: InstanceSpec) -> list[str]:
    """The instance's GPUs in its private /dev: the NVIDIA devices CUDA_VISIBLE_DEVICES names (a Ray node's
    agent sets it to the GPUs Ray assigned), else the first ``limits.gpus``, and the driver's control devices.
    None without GPUs: the sandbox's /dev has no GPU otherwise."""
    count = spec.limits.gpus if spec.limits else 0
    if not count:
        return []
    named = spec.env.get("CUDA_VISIBLE_DEVICES", "")
    ids = [i for i in named.split(",") if i.isdigit()] if named else [str(i) for i in range(count)]
    devices = [f"/dev/nvidia{i}" for i in ids] + ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    return [arg for dev in devices if os.path.exists(dev) for arg in ("--dev-bind", dev, dev)]


class LocalExecutor(Executor):
    name = "local"

    def __init__(self):
        self._children: dict[Path, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def check(self) -> None:
        bwrap.find()  # the system bwrap, else the bundled one, proven able to sandbox (bwrap.py)

    # -- starting ------------------------------------------------------------------

    def command(self, spec: InstanceSpec) -> list[str]:
        """The full host command line for an instance (sandbox and limits included)."""
        args = [
            bwrap.find().path,
            "--die-with-parent",
            "--new-session",
            "--unshare-user",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_GID),
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--hostname",
            spec.hostname,
            "--cap-drop",
            "ALL",
        ]
        if not spec.network:
            args.append("--unshare-net")
        system, bound = _system_view()
        etc, shown = _etc(spec, bound)
        args += ["--ro-bind", str(etc), "/etc", *system]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        args += _gpu_devices(spec)
        args += _mounts(spec, shown)
        args += ["--remount-ro", "/", "--chdir", spec.workdir, "--"]
        limits = []
        if spec.limits:
            available = sorted(os.sched_getaffinity(0))
            cpus = available[: max(1, min(spec.limits.cpus, len(available)))]
            limits += [shutil.which("taskset") or "taskset", "-c", ",".join(map(str, cpus))]
            limits += [shutil.which("prlimit") or "prlimit", f"--data={spec.limits.memory_bytes}"]
        return limits + args + list(spec.command)

    def start(self, spec: InstanceSpec, orphaned: bool = False) -> None:
        """``orphaned``: the supervisor is started by a shell that exits at once, so it is no child of this
        process and outlives it even where a process's children are ended with it (a Ray worker's: ray_node.py).
        Fork and exec only, as always here: safe from a threaded process."""
        self.check()
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("exit", "exit.tmp", "pid", "stopped"):
            (spec.state_dir / stale).unlink(missing_ok=True)
        supervisor = ["/bin/sh", "-c", SUPERVISOR, "sh", str(spec.log_path), str(spec.state_dir), *self.command(spec)]
        if orphaned:
            (spec.state_dir / "pid").write_text(_start_orphan(supervisor, spec.env))
            return
        proc = subprocess.Popen(
            supervisor,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        (spec.state_dir / "pid").write_text(f"{proc.pid} {_start_time(proc.pid) or ''}")
        with self._lock:
            self._children[spec.state_dir] = proc

    # -- following -----------------------------------------------------------------

    def _live_pid(self, state_dir: Path) -> int | None:
        """The supervisor's pid if it is still running (and still the same process)."""
        try:
            pid_text, _, started = (state_dir / "pid").read_text().partition(" ")
        except FileNotFoundError:
            return None
        pid = int(pid_text)
        current = _start_time(pid)
        return pid if current is not None and current == started else None

    def poll(self, state_dir: Path) -> ExitStatus | None:
        with self._lock:
            child = self._children.get(state_dir)
        if child is not None and child.poll() is None:
            return None
        exit_file = state_dir / "exit"
        if exit_file.exists():
            if child is None and self._live_pid(state_dir) is not None:
                return None  # the supervisor has written the code and is exiting: ended once it is gone
            return ExitStatus(int(exit_file.read_text().strip() or 1))
        if child is None and self._live_pid(state_dir) is not None:
            return None
        if (state_dir / "stopped").exists():
            return ExitStatus(None, "stopped")
        return ExitStatus(
            None,
            "its processes ended without reporting an exit status (the machine may have "
            "restarted or they were killed outside SelfMaker)",
        )

    def watch(self, state_dir: Path, on_exit: Callable[[], None], driving: Callable[[], bool] | None = None) -> None:
        with self._lock:
            child = self._children.get(state_dir)

        def wait() -> None:
            if child is not None:
                child.wait()
                with self._lock:
                    self._children.pop(state_dir, None)
            elif (pid := self._live_pid(state_dir)) is not None:
                try:
                    fd = os.pidfd_open(pid)
                except ProcessLookupError:
                    fd = None
                if fd is not None:
                    try:
                        if self._live_pid(state_dir) is not None:
                            select.select([fd], [], [])
                    finally:
                        os.close(fd)
            on_exit()

        threading.Thread(target=wait, name=f"watch-{state_dir.name}", daemon=True).start()

    def stop(self, state_dir: Path, grace: float = 0.0) -> None:
        deadline, first = _stop_deadline(state_dir, grace)
        pid = self._live_pid(state_dir)
        if pid is None:
            return
        remaining = deadline - time.time()
        if remaining <= 0:
            _kill(pid)
            return
        if not first:
            return  # SIGTERM went out already; a timer (or, after a restart, a later call) brings SIGKILL
        for member in _sandboxed_descendants(pid):  # a trapped SIGTERM can save a checkpoint
            try:
                os.kill(member, signal.SIGTERM)
            except ProcessLookupError:
                pass
        timer = threading.Timer(remaining, self._kill_if_alive, (state_dir, pid))
        timer.daemon = True
        timer.start()

    def _kill_if_alive(self, state_dir: Path, pid: int) -> None:
        if self._live_pid(state_dir) == pid:
            _kill(pid)


def _start_orphan(args: list[str], env: dict[str, str]) -> str:
    """Start ``args`` through ORPHAN; what the ``pid`` file holds for it (its pid and start time)."""
    setsid = shutil.which("setsid")
    if setsid is None:
        raise ExecutorUnavailable("setsid (util-linux) is not installed on this machine")
    done = subprocess.run(
        ["/bin/sh", "-c", ORPHAN, "sh", setsid, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        close_fds=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise ExecutorUnavailable(f"could not start the sandbox: {done.stderr.strip() or done.returncode}")
    pid = int(done.stdout)
    return f"{pid} {_start_time(pid) or ''}"


def _mounts(spec: InstanceSpec, bound: tuple[str, ...]) -> list[str]:
    """bwrap arguments for the spec's mounts and the ``hidden`` directories something would show, parents
    before children (a hidden data directory is covered before the runtime inside it is bound)."""
    shown = bound + tuple(m.target for m in spec.mounts if str(m.source) == m.target)
    ops = [(path, ["--tmpfs", path]) for path in spec.hidden if _covered(path, path, shown) and os.path.isdir(path)]
    ops += [
        (m.target, ["--bind" if m.writable else "--ro-bind", str(m.source), m.target])
        for m in spec.mounts
        if m.writable or not _covered(str(m.source), m.target, bound)
    ]
    return [arg for _, op in sorted(ops, key=lambda op: op[0].count("/")) for arg in op]


def _stop_deadline(state_dir: Path, grace: float) -> tuple[float, bool]:
    """When the instance gets SIGKILL, and whether this is the first request (which fixes it, on disk, so
    a restarted server enforces the same deadline)."""
    marker = state_dir / "stopped"
    try:
        return float(marker.read_text() or 0), False
    except FileNotFoundError:
        deadline = time.time() + grace
        state_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(repr(deadline))
        return deadline, True
    except ValueError:
        return 0.0, False


def _kill(pid: int) -> None:
    try:
        # The supervisor leads its own process group; bwrap's sandboxed child dies with its parent
        # (--die-with-parent) and takes its whole pid namespace with it.
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _sandboxed_descendants(pid: int) -> list[int]:
    """The processes under the supervisor ``pid`` that run inside the sandbox (its own pid namespace).

    bwrap itself stays out: SIGTERM would end it at once and, through --die-with-parent, the sandbox
    with it, before the job could save anything. The sandbox's init ignores the signal (no handler).
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    ours = os.readlink("/proc/self/ns/pid")
    found, pending = [], list(children.get(pid, []))
    while pending:
        current = pending.pop()
        pending += children.get(current, [])
        try:
            if os.readlink(f"/proc/{current}/ns/pid") != ours:
                found.append(current)
        except OSError:
            continue
    return found
