"""The local executor: each instance in a bubblewrap sandbox on this machine.

The sandbox sees the host's root read-only, a private /tmp, /proc and /dev,
its own pid, IPC and UTS namespaces (hostname ``algo-<i>``), no capabilities,
and only the directories the spec mounts; ``hidden`` host directories (the
data directory, where other jobs live) are covered by empty tmpfs mounts.
Without network, it also gets its own empty network namespace.

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

import os
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from . import bwrap
from .base import Executor, ExitStatus, InstanceSpec

# The supervisor: run the command, then record its exit code atomically.
SUPERVISOR = ('log=$1; state=$2; shift 2; "$@" >>"$log" 2>&1; '
              'echo $? >"$state/exit.tmp" && mv "$state/exit.tmp" "$state/exit"')

# Top-level host entries the sandbox gets its own version of.
_PRIVATE_TOP = {"proc", "dev", "tmp", "opt", "lost+found"}


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]


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
        args = [bwrap.find().path, "--die-with-parent", "--new-session", "--unshare-pid",
                "--unshare-ipc", "--unshare-uts", "--hostname", spec.hostname, "--cap-drop", "ALL"]
        if not spec.network:
            args.append("--unshare-net")
        for entry in sorted(os.scandir("/"), key=lambda e: e.name):
            if entry.name in _PRIVATE_TOP:
                continue
            if entry.is_symlink():
                args += ["--symlink", os.readlink(entry.path), entry.path]
            else:
                args += ["--ro-bind", entry.path, entry.path]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/opt"]
        mounted_in_opt = {m.target.split("/")[2] for m in spec.mounts if m.target.startswith("/opt/")}
        if os.path.isdir("/opt"):
            for entry in sorted(os.scandir("/opt"), key=lambda e: e.name):
                if entry.name not in mounted_in_opt:
                    args += ["--ro-bind", entry.path, entry.path]
        for path in spec.hidden:
            if os.path.isdir(path) and not (path == "/tmp" or path.startswith("/tmp/")):
                args += ["--tmpfs", path]
        for mount in spec.mounts:
            args += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
        args += ["--chdir", spec.workdir, "--"]
        limits = []
        if spec.limits:
            available = sorted(os.sched_getaffinity(0))
            cpus = available[:max(1, min(spec.limits.cpus, len(available)))]
            limits += [shutil.which("taskset") or "taskset", "-c", ",".join(map(str, cpus))]
            limits += [shutil.which("prlimit") or "prlimit", f"--data={spec.limits.memory_bytes}"]
        return limits + args + list(spec.command)

    def start(self, spec: InstanceSpec) -> None:
        self.check()
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("exit", "exit.tmp", "pid", "stopped"):
            (spec.state_dir / stale).unlink(missing_ok=True)
        proc = subprocess.Popen(
            ["/bin/sh", "-c", SUPERVISOR, "sh", str(spec.log_path), str(spec.state_dir), *self.command(spec)],
            env=spec.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)
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
            return ExitStatus(int(exit_file.read_text().strip() or 1))
        if child is None and self._live_pid(state_dir) is not None:
            return None
        if (state_dir / "stopped").exists():
            return ExitStatus(None, "stopped")
        return ExitStatus(None, "its processes ended without reporting an exit status (the machine may have "
                                "restarted or they were killed outside SelfMaker)")

    def watch(self, state_dir: Path, on_exit: Callable[[], None]) -> None:
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
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
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
