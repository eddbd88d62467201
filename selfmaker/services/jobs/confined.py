"""Reading a directory a job wrote (or a host directory it named) without ever leaving it.

A job owns everything under its /opt/ml: it can leave a symbolic link where the
server will later read (``/opt/ml/model/x -> <data dir>/metadata.db``,
``/opt/ml/output/failure -> /etc/shadow``, a whole output directory linked to
``/``), or a FIFO that would block the server's read forever. The server runs
as the host's user, outside the sandbox, so following such a link would upload
host files into the caller's bucket or show them in a FailureReason.

So every read of such a directory goes through :class:`ConfinedDir`: each path
is opened component by component from the directory's own descriptor with
``O_NOFOLLOW`` (a link swapped in mid-walk fails the open instead of being
followed), walks use ``os.scandir`` on descriptors without following links, and
only regular files are read (``O_NONBLOCK``, then ``fstat``). A link, or
anything else that is not a plain file or directory, is skipped with a line in
the job's log: the job's own output is what it left, minus what is not its own.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Skipped(Exception):
    """The path is a link or not a regular file (already reported in the log)."""


@dataclass(frozen=True)
class Entry:
    relative: str  # to the directory walked, with "/" separators
    is_dir: bool
    size: int
    mtime_ns: int


class ConfinedDir:
    """A directory read without following links: ``root`` on the host, shown as ``shown`` (``/opt/ml``).

    ``say`` writes a line to the job's log (why a path was skipped); messages name only ``shown`` paths,
    never the host's.
    """

    def __init__(self, root: Path, shown: str, say: Callable[[str], None] | None = None):
        self.root, self.shown, self._say = Path(root), shown.rstrip("/") or "/", say
        self._reported: set[str] = set()

    def shown_path(self, relative: str) -> str:
        return f"{self.shown}/{relative}" if relative else self.shown

    def _skip(self, relative: str, why: str) -> None:
        if self._say and relative not in self._reported:
            self._reported.add(relative)
            self._say(
                f"SelfMaker: skipped {self.shown_path(relative)}: {why} (the server reads only the job's "
                "plain files and directories; it never follows a link)"
            )

    # -- descriptors --------------------------------------------------------------------------------------------

    @staticmethod
    def _parts(relative: str) -> list[str]:
        parts = [p for p in relative.strip("/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"{relative!r} climbs out of its directory")
        return parts

    def _why(self, parent_fd: int, name: str) -> str:
        try:
            mode = os.lstat(name, dir_fd=parent_fd).st_mode
        except OSError:
            return "it changed while being read"
        return "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file or directory"

    def _open_dir(self, parts: list[str]) -> int:
        """A descriptor of root/parts (FileNotFoundError if absent; Skipped if a link or not a directory)."""
        fd = os.open(self.root, _DIR_FLAGS)
        for depth, part in enumerate(parts):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.close(fd)
                raise
            except OSError:  # ELOOP (a link) or ENOTDIR
                why = self._why(fd, part)
                os.close(fd)
                self._skip("/".join(parts[: depth + 1]), why)
                raise Skipped() from None
            os.close(fd)
            fd = child
        return fd

    def open(self, relative: str) -> BinaryIO:
        """The regular file at ``relative`` (FileNotFoundError if absent; Skipped if a link or special file)."""
        parts = self._parts(relative)
        if not parts:
            raise Skipped()
        parent = self._open_dir(parts[:-1])
        try:
            try:
                fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                raise
            except OSError:
                self._skip("/".join(parts), self._why(parent, parts[-1]))
                raise Skipped() from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                self._skip("/".join(parts), self._why(parent, parts[-1]))
                raise Skipped()
        finally:
            os.close(parent)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    # -- what callers use ---------------------------------------------------------------------------------------

    def read(self, relative: str, limit: int | None = None) -> bytes | None:
        """The first ``limit`` bytes (all without one) of a regular file; None if it is absent or skipped."""
        try:
            with self.open(relative) as f:
                return f.read(limit) if limit is not None else f.read()
        except (FileNotFoundError, Skipped):
            return None

    def read_text(self, relative: str, max_chars: int) -> str:
        """At most ``max_chars`` characters of a regular file (only their bytes are read: a job's 1 GB file
        costs the server 4 KiB); "" if it is absent or skipped."""
        raw = self.read(relative, limit=4 * max_chars)  # a UTF-8 character is at most 4 bytes
        return raw.decode("utf-8", "replace")[:max_chars] if raw else ""

    def walk(self, sub: str = "") -> Iterator[Entry]:
        """Every plain directory and regular file under ``sub``, in name order, relative to ``sub``."""
        try:
            fd = self._open_dir(self._parts(sub))
        except (FileNotFoundError, Skipped):
            return
        base = "/".join(self._parts(sub))
        try:
            yield from self._walk(fd, base, "")
        finally:
            os.close(fd)

    def _walk(self, fd: int, base: str, prefix: str) -> Iterator[Entry]:
        with os.scandir(fd) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            relative = prefix + entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            full = f"{base}/{relative}" if base else relative
            if stat.S_ISDIR(info.st_mode):
                try:
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError:
                    self._skip(full, self._why(fd, entry.name))
                    continue
                try:
                    yield Entry(relative, True, 0, info.st_mtime_ns)
                    yield from self._walk(child, base, relative + "/")
                finally:
                    os.close(child)
            elif stat.S_ISREG(info.st_mode):
                yield Entry(relative, False, info.st_size, info.st_mtime_ns)
            else:
                self._skip(full, "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file or directory")

    def files(self, sub: str = "") -> list[Entry]:
        return [e for e in self.walk(sub) if not e.is_dir]

    def join(self, sub: str, relative: str) -> str:
        return f"{sub.strip('/')}/{relative}" if sub.strip("/") else relative

    def tar_gz(self, sub: str = "") -> bytes:
        """A .tar.gz of ``sub``'s plain contents (members relative to it), as SageMaker packs /opt/ml/model."""
        buffer = io.BytesIO()
        self.write_tar_gz(sub, buffer)
        return buffer.getvalue()

    def write_tar_gz(self, sub: str, out: BinaryIO) -> None:
        """:meth:`tar_gz` written to ``out`` as it goes (a Ray node packs a large model to a file, not memory)."""
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for entry in self.walk(sub):
                info = tarfile.TarInfo(entry.relative)
                info.mtime = entry.mtime_ns // 1_000_000_000
                if entry.is_dir:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    continue
                try:
                    f = self.open(self.join(sub, entry.relative))
                except (FileNotFoundError, Skipped):
                    continue
                with f:  # the job has ended: the size it has now is the size it keeps
                    opened = os.fstat(f.fileno())
                    info.size, info.mode = opened.st_size, stat.S_IMODE(opened.st_mode)
                    tar.addfile(info, f)
