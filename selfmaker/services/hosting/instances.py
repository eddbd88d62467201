"""One endpoint instance on disk: a model server's directory, its id, its log and what it has done.

Everything the fleet knows about an instance lives in its directory, so a
restarted server learns it again by reading the directory:

    <group dir>/<instance id>/
        ml/            /opt/ml inside (model/, code/)
        site/          the instance's own pip installs (requirements.txt of the model's code)
        state/         the executor's files (pid, exit status)
        output.log     the model server's output and SelfMaker's lines about it (shipped to CloudWatch Logs)
        instance.json  when it started, which instance it replaced
        answered       present once it has answered /ping
        shutdown       present when a clean server shutdown stopped it (it starts again, same id)
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from pathlib import Path

from ...engines import model_server

PREFIX = "i-"


def new_id() -> str:
    """An id shaped like an EC2 instance id (i- and 17 hex digits)."""
    return PREFIX + secrets.token_hex(9)[1:]


class Instance:
    def __init__(self, root: Path):
        self.root = root

    @property
    def id(self) -> str:
        return self.root.name

    @property
    def ml(self) -> Path:
        return self.root / "ml"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def log_path(self) -> Path:
        return self.root / "output.log"

    @property
    def socket(self) -> str:
        return str(model_server.socket_path(self.root))

    # -- what it has done -------------------------------------------------------------

    @property
    def started(self) -> float:
        try:
            return json.loads((self.root / "instance.json").read_text())["started"]
        except (OSError, ValueError, KeyError):
            return 0.0

    def mark_started(self, replaces: str | None) -> None:
        (self.root / "answered").unlink(missing_ok=True)
        (self.root / "shutdown").unlink(missing_ok=True)
        (self.root / "instance.json").write_text(json.dumps({"started": time.time(), "replaces": replaces}))

    @property
    def answered(self) -> bool:
        return (self.root / "answered").exists()

    def mark_answered(self) -> None:
        (self.root / "answered").touch()

    @property
    def shut_down(self) -> bool:
        return (self.root / "shutdown").exists()

    def mark_shut_down(self) -> None:
        (self.root / "shutdown").touch()

    def say(self, message: str) -> None:
        """A SelfMaker line in the instance's log stream (starts, readiness, deaths, replacements)."""
        self.append(f"SelfMaker: {message}")

    def append(self, line: str) -> None:
        """A line in the instance's log (nothing if the instance was removed meanwhile)."""
        try:
            with open(self.log_path, "a") as f:
                f.write(line.rstrip("\n") + "\n")
        except FileNotFoundError:
            pass

    def last_output(self, limit: int = 300) -> str:
        """The model server's last line of output (not SelfMaker's), e.g. the error it exited with."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 8192))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        own = [line.strip() for line in lines if line.strip() and not line.startswith("SelfMaker: ")]
        return own[-1][:limit] if own else ""

    def remove(self) -> None:
        shutil.rmtree(model_server.socket_dir(self.root), ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


def on_disk(group_dir: Path) -> list[Instance]:
    """The group's instances found in its directory, oldest first."""
    if not group_dir.is_dir():
        return []
    found = [Instance(p) for p in group_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda i: (i.started, i.id))
