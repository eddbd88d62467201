"""A real SelfMaker server for tests: `selfmaker serve` in a subprocess on a free port, on its own data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.waiting import wait_for

ACCOUNT = "123456789012"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `selfmaker serve` process; start, kill and restart it on the same data."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str | None = None,
        extra_args: list[str] | None = None,
        env: dict | None = None,
    ):
        self.data_dir = data_dir
        self.port = free_port()
        self.database_url = database_url
        self.extra_args = extra_args or []
        self.env = env or {}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        args = [
            sys.executable,
            "-m",
            "selfmaker.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        log = open(self.data_dir.parent / f"{self.data_dir.name}-server.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})

        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"selfmaker exited with {self.proc.returncode}; see {log.name}")
            with urllib.request.urlopen(f"{self.url}/_selfmaker/health", timeout=1) as r:
                return r.status == 200

        wait_for(healthy, timeout=30, interval=0.05, ignore=(OSError,), what=f"selfmaker on {self.url} to be healthy")
        return self

    def stop(self, sig=signal.SIGTERM) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    @property
    def log_text(self) -> str:
        return (self.data_dir.parent / f"{self.data_dir.name}-server.log").read_text()

    def stopped_cleanly(self) -> bool:
        """SIGTERM ends with a graceful shutdown (uvicorn then re-raises the signal, as servers do)."""
        return self.stop() in (0, -signal.SIGTERM) and self.log_text.rstrip().endswith("SelfMaker stopped cleanly.")

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
