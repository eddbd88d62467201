"""One settings object: where state lives and which backends serve it.

Every setting has a command-line flag and a SELFMAKER_* environment variable;
the flag wins. Backends are chosen by URL (docs/design.md, principle 4).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload
from urllib.parse import urlparse

DEFAULT_PORT = 7600
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
CALLBACK_TIMEOUT_SECONDS = 7 * 24 * 3600
RUNTIME_INSTALLERS = ("auto", "uv", "pip")


def is_wheelhouse(package_index: str) -> bool:
    """A --package-index that is a path (not a URL) names a local wheelhouse directory; else an index URL."""
    return urlparse(package_index).scheme == ""


@overload
def _env(name: str) -> str | None: ...
@overload
def _env(name: str, default: str) -> str: ...
def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"SELFMAKER_{name}", default)


@dataclass
class Settings:
    host: str = field(default_factory=lambda: _env("HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("PORT", str(DEFAULT_PORT))))
    data_dir: Path = field(default_factory=lambda: Path(_env("DATA_DIR", str(Path.home() / ".selfmaker"))).expanduser())
    # sqlite:///path (default: <data_dir>/metadata.db) or postgresql://user:pass@host/db
    database_url: str | None = field(default_factory=lambda: _env("DATABASE_URL"))
    # file:///path (default: <data_dir>/objects) or s3://bucket-prefix?endpoint_url=...
    object_store_url: str | None = field(default_factory=lambda: _env("OBJECT_STORE_URL"))
    # "open": any access key works, unverified; keys listed in credentials_file (if any) map to their
    # accounts, all others to DEFAULT_ACCOUNT.
    # "strict": keys come from credentials_file and every signature is verified (docs/auth.md).
    auth_mode: str = field(default_factory=lambda: _env("AUTH", "open"))
    credentials_file: Path | None = field(default_factory=lambda: Path(p) if (p := _env("CREDENTIALS_FILE")) else None)
    region: str = field(default_factory=lambda: _env("REGION", DEFAULT_REGION))
    # The feature store's online store: "embedded" (default: SQLite in the data dir) or redis://host:port/db
    online_store_url: str | None = field(default_factory=lambda: _env("ONLINE_STORE_URL"))
    # Jobs: where image runtimes (Python environments) are cached (default <data_dir>/runtimes), the file
    # mapping other image URIs to runtimes (docs/jobs.md), and the executor ("local": bubblewrap).
    runtimes_dir: Path | None = field(default_factory=lambda: Path(p) if (p := _env("RUNTIMES_DIR")) else None)
    runtimes_config: Path | None = field(default_factory=lambda: Path(p) if (p := _env("RUNTIMES_CONFIG")) else None)
    executor: str = field(default_factory=lambda: _env("EXECUTOR", "local"))
    # Where runtime builds take packages from: an index URL, or a local wheelhouse directory (then nothing
    # else is asked: a machine without internet builds from it). None: the installer's own configuration.
    package_index: str | None = field(default_factory=lambda: _env("PACKAGE_INDEX"))
    # What builds runtimes: "auto" (uv when installed, else pip), "uv" or "pip" (engines/runtime_builds.py).
    runtime_installer: str = field(default_factory=lambda: _env("RUNTIME_INSTALLER", "auto"))
    # The ray executor (docs/scale-out.md): the cluster's address (HOST:PORT of its head), and the URL its nodes
    # reach this server at (None: http://127.0.0.1:<port>, right only when the nodes run on this machine).
    ray_address: str | None = field(default_factory=lambda: _env("RAY_ADDRESS"))
    ray_server_url: str | None = field(default_factory=lambda: _env("RAY_SERVER_URL"))
    # Seconds a stopped job (StopXJob, MaxRuntimeInSeconds) has between SIGTERM and SIGKILL to save its work.
    stop_grace_seconds: float = field(default_factory=lambda: float(_env("STOP_GRACE_SECONDS", "10")))
    # Host directories under which user-supplied file:// URIs and paths are allowed, in open mode only
    # (strict mode refuses every host path). None by default: see docs/security.md.
    allow_local_paths: list[Path] = field(
        default_factory=lambda: [Path(p) for p in (_env("ALLOW_LOCAL_PATH") or "").split(os.pathsep) if p]
    )
    # The bearer token Prometheus must send to GET /metrics on a strict-mode server (open mode: no token).
    metrics_token: str | None = field(default_factory=lambda: _env("METRICS_TOKEN"))
    # Inference Recommender's CostPerHour table (None: selfmaker/services/recommender/prices.json).
    price_table: Path | None = field(default_factory=lambda: Path(p) if (p := _env("PRICE_TABLE")) else None)
    # Edge Manager: the CacheTTL (seconds) GetDeviceRegistration hands agents; a device whose last heartbeat is
    # older than this counts as disconnected (docs/edge.md).
    edge_cache_ttl: int = field(default_factory=lambda: int(_env("EDGE_CACHE_TTL", "60")))
    # The web console (/console): how long a signed-in session lasts without use, in seconds (docs/console.md).
    console_session_seconds: int = field(default_factory=lambda: int(_env("CONSOLE_SESSION_SECONDS", "28800")))
    # The console's pipeline graphs are laid out by this Graphviz `dot` program (looked up on PATH); "" lets the
    # browser lay them out with dagre instead (docs/console.md).
    graphviz_dot: str = field(default_factory=lambda: _env("GRAPHVIZ_DOT", "dot"))
    # Several servers on one PostgreSQL (docs/scale-out.md): a server that stops renewing its heartbeat for this
    # many seconds loses its leases, and another server takes its work over within about 1.2 times this.
    lease_seconds: float = field(default_factory=lambda: float(_env("LEASE_SECONDS", "10")))
    # Pipelines: seconds a Callback step waits for SendPipelineExecutionStepSuccess/Failure before it fails
    # (default 7 days, AWS's; the definition language gives a Callback step no timeout of its own).
    callback_timeout_seconds: float = field(
        default_factory=lambda: float(_env("CALLBACK_TIMEOUT_SECONDS", str(CALLBACK_TIMEOUT_SECONDS)))
    )
    default_account: str = DEFAULT_ACCOUNT

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'metadata.db'}"
        if not self.object_store_url:
            self.object_store_url = (self.data_dir / "objects").as_uri()
        self.runtimes_dir = Path(self.runtimes_dir or self.data_dir / "runtimes").expanduser().resolve()
        if self.runtime_installer not in RUNTIME_INSTALLERS:
            raise ValueError(f"the runtime installer must be one of {', '.join(RUNTIME_INSTALLERS)}")
        if self.package_index and is_wheelhouse(self.package_index):
            self.package_index = str(Path(self.package_index).expanduser().resolve())
            if not Path(self.package_index).is_dir():
                raise ValueError(f"--package-index {self.package_index}: no such directory (a wheelhouse)")
        elif self.package_index and urlparse(self.package_index).scheme not in ("http", "https", "file"):
            raise ValueError(f"--package-index {self.package_index}: an index URL is http://, https:// or file://")
        if self.callback_timeout_seconds <= 0:
            raise ValueError("the callback timeout must be a positive number of seconds")
        if self.auth_mode not in ("open", "strict"):
            raise ValueError(f"auth mode must be 'open' or 'strict', not {self.auth_mode!r}")
        if self.auth_mode == "strict" and not self.credentials_file:
            raise ValueError("strict auth needs a credentials file (--credentials-file)")
        if self.console_session_seconds < 1:
            raise ValueError("the console's session lifetime must be at least 1 second")

    @property
    def endpoint_url(self) -> str:
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"
