"""Runtimes on disk: building one (uv, or pip without it), the package index, the shared cache, the build lock.

A runtime is a virtual environment under the runtimes directory. It is built
with ``uv`` when the ``uv`` program is there (the ``uv`` wheel is a SelfMaker
dependency), else with ``python -m venv`` + pip. uv's package cache lives in
``<runtimes dir>/.cache/uv``, on the same file system as the runtimes, so a
package that any runtime ever installed is hard-linked into the next one,
not downloaded and unpacked again.

Where packages come from: ``--package-index`` (an index URL, or a local
wheelhouse directory, then nothing else is asked) or, without it, the
installer's own configuration; uv is also given pip's site-wide
configuration (index-url, extra-index-url, find-links, constraint) unless uv
has index settings of its own, so a machine set up for pip builds the same
runtimes with uv.

One build at a time per runtime: ``.<key>.lock`` (flock) is held while a
runtime builds, by any server sharing the directory and by the ``selfmaker
runtimes`` command, which takes it too before removing a runtime.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import RUNTIME_INSTALLERS, is_wheelhouse

READY = ".selfmaker-ready"  # written last: a runtime without it is a build that did not finish
USED = ".selfmaker-used"  # touched at every use: its mtime is the runtime's last use
CACHE = ".cache"  # the installers' package cache, beside the runtimes it fills

# pip's site-wide configuration files (the per-user ones are not read: HOME is /tmp inside sandboxes).
PIP_CONFIG_FILES = ("/etc/pip.conf", "/etc/xdg/pip/pip.conf")
# uv settings that choose where packages come from: when one is set, uv's own configuration rules.
UV_INDEX_ENV = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_NO_INDEX")


class BuildFailed(Exception):
    """The installer failed; the message ends with the last lines of its output."""


class BuildCancelled(BuildFailed):
    """The build was cancelled (no job waits for it any more): its installer was killed."""


class Cancellation:
    """Lets another thread end a build: :meth:`cancel` kills the installer running now (its whole process
    group: uv's build backends too) and every later step of the build refuses to start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cancelled = False
        self._running: set[subprocess.Popen] = set()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            running = list(self._running)
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def track(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.add(proc)
            cancelled = self.cancelled
        if cancelled:  # cancelled while it started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def untrack(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(proc)


def pip_configuration() -> list[tuple[str, str]]:
    """(setting, value) pairs of pip's site-wide configuration files and PIP_* environment, in that order."""
    values: list[tuple[str, str]] = []
    for name in PIP_CONFIG_FILES:
        config = configparser.ConfigParser(interpolation=None)
        try:
            config.read(name)
        except configparser.Error:
            continue
        for section in ("global", "install"):
            if config.has_section(section):
                values += [(key, value) for key, value in config.items(section)]
    values += [
        (key[4:].lower().replace("_", "-"), value) for key, value in os.environ.items() if key.startswith("PIP_")
    ]
    return values


def _source_options(package_index: str | None, tool: str) -> list[str]:
    """Where the installer takes packages from: --package-index alone, or (uv) pip's configuration."""
    if package_index:
        if is_wheelhouse(package_index):
            return ["--no-index", "--find-links", str(Path(package_index).resolve())]
        return ["--index-url", package_index]
    if tool == "pip" or any(os.environ.get(name) for name in UV_INDEX_ENV):
        return []
    options: list[str] = []
    for key, value in pip_configuration():
        flag = {
            "index-url": "--index-url",
            "extra-index-url": "--extra-index-url",
            "find-links": "--find-links",
            "constraint": "--constraint",
        }.get(key)
        if flag:
            options += [part for item in value.split() for part in (flag, item)]
        elif key == "no-index" and value.lower() in ("1", "true", "yes", "on"):
            options.append("--no-index")
    if any(flag in options for flag in ("--extra-index-url", "--find-links")):
        options += ["--index-strategy", "unsafe-best-match"]  # pip's way: the best version over every index
    return options


def pip_in_sandbox(package_index: str | None) -> tuple[dict[str, str], tuple[Path, ...]]:
    """(environment, host directories to show read-only) that make a job's own ``pip install`` (its
    requirements.txt) take packages from --package-index too; ({}, ()) without one."""
    if not package_index:
        return {}, ()
    if is_wheelhouse(package_index):
        path = Path(package_index).resolve()
        return {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(path)}, (path,)
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": package_index}, ()


def _environment(package_index: str | None, runtimes_dir: Path) -> dict[str, str]:
    env = {**os.environ, "UV_CACHE_DIR": str(runtimes_dir / CACHE / "uv"), "UV_PYTHON_DOWNLOADS": "never"}
    if package_index:  # the one source: no configuration file or variable adds another
        env = {k: v for k, v in env.items() if not k.startswith("PIP_") and k not in UV_INDEX_ENV}
        env.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1")
    return env


def uv_program() -> str | None:
    """The uv executable: the uv wheel's, else one on PATH."""
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def installer(preference: str = "auto") -> str:
    """'uv' or 'pip': what builds runtimes with this preference (auto: uv when there is one)."""
    if preference not in RUNTIME_INSTALLERS:
        raise ValueError(f"the runtime installer must be one of {', '.join(RUNTIME_INSTALLERS)}, not {preference!r}")
    if preference == "pip" or (preference == "auto" and not uv_program()):
        return "pip"
    if not uv_program():
        raise ValueError("the runtime installer uv was asked for, but there is no uv (pip install uv)")
    return "uv"


def _bundled_pip() -> list[str]:
    """The pip wheel Python ships (ensurepip), so a uv-built runtime has pip, as a venv's has, even offline:
    jobs install their requirements.txt with it."""
    import ensurepip

    wheels = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    return [str(wheels[-1])] if wheels else ["pip"]


@contextlib.contextmanager
def locked(
    runtimes_dir: Path,
    key: str,
    *,
    wait: bool = True,
    shared: bool = False,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[bool]:
    """Hold the runtime's lock: exclusive to build or remove it, shared to take it into use. Yields False at
    once if ``wait`` is False and another holds it in a conflicting way; else ``on_wait()`` is called before
    waiting for it, if it has to wait."""
    runtimes_dir.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(runtimes_dir / f".{key}.lock", "w") as lock:
        try:
            fcntl.flock(lock, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if on_wait:
                on_wait()
            fcntl.flock(lock, mode)
        yield True


def use_if_built(runtimes_dir: Path, key: str) -> bool:
    """True, and the runtime's last use recorded, if it is built. Under the shared lock, so a prune (which
    re-reads the last use under the exclusive lock) never removes a runtime a job has just taken."""
    root = runtimes_dir / key
    if not (root / READY).exists():
        return False
    with locked(runtimes_dir, key, shared=True):
        if not (root / READY).exists():
            return False
        touch_used(root)
        return True


def build(
    root: Path,
    packages: tuple[str, ...],
    log: Callable[[str], None],
    *,
    tool: str,
    package_index: str | None,
    name: str = "",
    cancellation: Cancellation | None = None,
) -> float:
    """Build the environment ``root`` with ``packages`` (the caller holds its lock); the seconds it took.
    A build cancelled through ``cancellation`` raises BuildCancelled and leaves no half-built runtime."""
    started = time.monotonic()
    runtimes_dir = root.parent
    env = _environment(package_index, runtimes_dir)
    sources = _source_options(package_index, tool)
    shutil.rmtree(root, ignore_errors=True)  # a build that was interrupted

    def run(command: list[str]) -> None:
        _run(command, log, env, cancellation)

    try:
        if tool == "uv":
            uv = uv_program() or "uv"
            run([uv, "venv", "--quiet", "--python", sys.executable, str(root)])
            python = str(root / "bin" / "python")
            run([uv, "pip", "install", "--python", python, *sources, *_bundled_pip(), *packages])
            _compile(python, run, log)
        else:
            run([sys.executable, "-m", "venv", str(root)])
            pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
            run([*pip, "--progress-bar", "off", *sources, *packages])
    except BuildCancelled:
        shutil.rmtree(root, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    (root / READY).write_text(
        json.dumps({"name": name, "packages": list(packages), "installer": tool, "seconds": round(seconds, 1)})
    )
    touch_used(root)
    return seconds


# Test suites shipped inside packages (pandas/tests, scipy/*/tests: about half the files of the XGBoost runtime):
# no job imports them, so they are not compiled.
NOT_COMPILED = r"[/\\]tests?[/\\]"


def _compile(python: str, run: Callable[[list[str]], None], log: Callable[[str], None]) -> None:
    """Bytecode for the runtime's packages now: the sandbox mounts the runtime read-only, so a job could never
    cache it, and would compile every module it imports at every start."""
    log("SelfMaker: compiling bytecode (test suites left out)")
    script = (
        "import compileall, re, site, sys; "
        f"ok = all([compileall.compile_dir(d, quiet=1, workers=0, rx=re.compile({NOT_COMPILED!r})) "
        "for d in site.getsitepackages()]); "
        "ok or print('some files do not compile (as pip, the build goes on): they are compiled when imported')"
    )
    run([python, "-c", script])


def touch_used(root: Path) -> None:
    with contextlib.suppress(OSError):
        (root / USED).touch()


def _run(
    command: list[str], log: Callable[[str], None], env: dict[str, str], cancellation: Cancellation | None = None
) -> None:
    if cancellation is not None and cancellation.cancelled:
        raise BuildCancelled("the runtime build was cancelled")
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        # A build that can be cancelled gets a process group of its own, so that one signal ends the
        # installer and whatever it started (uv's build backends).
        start_new_session=cancellation is not None,
    )
    if proc.stdout is None:  # stdout=PIPE always gives one
        raise RuntimeError(f"{command[0]} started without an output pipe")
    if cancellation is not None:
        cancellation.track(proc)
    tail: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            log(line)
            tail = (tail + [line])[-5:]
        proc.wait()
    finally:
        if cancellation is not None:
            cancellation.untrack(proc)
    if cancellation is not None and cancellation.cancelled:
        raise BuildCancelled("the runtime build was cancelled")
    if proc.returncode != 0:
        name = " ".join(Path(part).name if i == 0 else part for i, part in enumerate(command[:3]))
        raise BuildFailed(f"{name} ... failed (exit {proc.returncode}): " + " | ".join(tail))


# -- what is on disk (selfmaker runtimes list|prune) -----------------------------------------------------------


@dataclass
class OnDisk:
    key: str
    path: Path
    ready: bool  # False: a build in progress, or one that was interrupted
    building: bool  # its lock is held now
    size: int  # bytes, files hard-linked from the cache counted in full
    last_used: float | None  # epoch seconds
    name: str  # sagemaker-xgboost-1.7-1
    packages: list[str]
    installer: str | None


def _size(path: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, name)).st_size
    return total


def on_disk(runtimes_dir: Path) -> list[OnDisk]:
    """Every runtime (and unfinished build) in the runtimes directory, by key."""
    found: list[OnDisk] = []
    if not runtimes_dir.is_dir():
        return found
    for path in sorted(runtimes_dir.iterdir()):
        if not path.is_dir() or path.name.startswith(".") or not (path / "pyvenv.cfg").exists():
            continue
        ready = path / READY
        meta: dict = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads(ready.read_text())
        with locked(runtimes_dir, path.name, wait=False) as free:
            building = not free
        found.append(
            OnDisk(
                key=path.name,
                path=path,
                ready=ready.exists(),
                building=building,
                size=_size(path),
                last_used=_last_used(path),
                name=meta.get("name", ""),
                packages=meta.get("packages", []),
                installer=meta.get("installer"),
            )
        )
    return found


def remove(runtimes_dir: Path, key: str, unused_since: float | None = None) -> bool:
    """Remove a runtime unless it is being built or taken into use now, or (``unused_since``) it was used at or
    after that time, as read under its exclusive lock. False if it was kept."""
    root = runtimes_dir / key
    with locked(runtimes_dir, key, wait=False) as free:
        if not free:
            return False
        last = _last_used(root)
        if unused_since is not None and last is not None and last >= unused_since:
            return False
        # The marker first: a job checking for it never takes a half-removed runtime for a built one.
        with contextlib.suppress(OSError):
            (root / READY).unlink()
        shutil.rmtree(root, ignore_errors=True)
    return True  # the lock file stays: a build waiting on it must lock the same file as the next one


def _last_used(root: Path) -> float | None:
    for marker in (USED, READY):
        with contextlib.suppress(OSError):
            return (root / marker).stat().st_mtime
    return None


def empty_cache(runtimes_dir: Path) -> None:
    """Empty uv's package cache through uv, which waits for the builds using it; built runtimes keep working
    (their files are hard links, not references into the cache)."""
    cache = runtimes_dir / CACHE / "uv"
    uv = uv_program()
    if not cache.exists():
        return
    if uv:
        subprocess.run([uv, "cache", "clean", "--quiet", "--cache-dir", str(cache)], check=True, timeout=600)
    else:
        shutil.rmtree(cache, ignore_errors=True)
