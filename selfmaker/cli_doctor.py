"""`selfmaker doctor`: is this machine ready to run SelfMaker, and is the server answering?

Each check says pass, warn or fail, and what to do about a warning or a failure; the exit status is 1 when
any check failed. The machine's checks read the same settings as `selfmaker serve` (flags and SELFMAKER_*
variables: data directory, database and object store URLs), so run it where the server runs, with its
settings. The server's checks ask the server the clients would reach (as `ps` and `logs` do); ``--local``
leaves them out, for a machine whose server is not started yet.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

from . import __version__
from .cli_client import Connection, add_connection_arguments, add_output_argument, explain, print_json, run
from .config import Settings

GIB = 1024**3
# A runtime (one image's Python environment) takes about 0.7 GB; jobs and endpoints also unpack data and models.
DISK_FAIL_BYTES = 1 * GIB
DISK_WARN_BYTES = 5 * GIB
PASS, WARN, FAIL, INFO = "pass", "warn", "fail", "info"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


# -- this machine -----------------------------------------------------------------------------------------------


def versions() -> list[Check]:
    def installed(distribution: str) -> str:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    found = [
        ("selfmaker", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("boto3", installed("boto3")),
        ("botocore", installed("botocore")),
        ("sagemaker SDK", installed("sagemaker")),
    ]
    return [Check(f"version: {name}", INFO, version) for name, version in found]


def sandbox() -> list[Check]:
    """The bubblewrap jobs run in (probed by starting a real sandbox), and why not when it cannot."""
    if not sys.platform.startswith("linux"):
        return [
            Check(
                "sandbox",
                FAIL,
                f"jobs run in bubblewrap sandboxes, which need Linux (this is {sys.platform})",
                "run the server on Linux (a VM or WSL2 works); every other API is served here",
            )
        ]
    from .engines.executor import ExecutorUnavailable, bwrap

    userns = _user_namespaces()
    try:
        found = bwrap.find()
    except ExecutorUnavailable as err:
        why, _, fix = str(err).partition("; ")
        return [Check("sandbox", FAIL, why, fix), userns]
    return [Check("sandbox", PASS, found.describe()), userns]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _user_namespaces() -> Check:
    limit = _read("/proc/sys/user/max_user_namespaces")
    if limit == "0":
        return Check(
            "user namespaces", FAIL, "disabled (user.max_user_namespaces = 0)", "sysctl user.max_user_namespaces=15000"
        )
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return Check(
            "user namespaces",
            FAIL,
            "unprivileged ones are disabled (kernel.unprivileged_userns_clone = 0)",
            "sysctl kernel.unprivileged_userns_clone=1, or a setuid bwrap named by SELFMAKER_BWRAP",
        )
    if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return Check(
            "user namespaces",
            WARN,
            "AppArmor restricts unprivileged ones (kernel.apparmor_restrict_unprivileged_userns = 1): "
            "only a bwrap with an AppArmor profile may create them",
            "use the distribution's bwrap (it has a profile), or sysctl kernel.apparmor_restrict_unprivileged_userns=0",
        )
    return Check("user namespaces", PASS, f"available (up to {limit} per user)" if limit else "available")


def disk(settings: Settings) -> list[Check]:
    checks = []
    places = [("data directory", settings.data_dir)]
    if settings.runtimes_dir and not Path(settings.runtimes_dir).is_relative_to(settings.data_dir):
        places.append(("runtimes directory", Path(settings.runtimes_dir)))
    for label, place in places:
        existing = next(p for p in [place, *place.parents] if p.exists())
        if existing == place and not os.access(place, os.W_OK | os.X_OK):
            checks.append(Check(f"disk: {label}", FAIL, f"{place} is not writable", "choose another with --data-dir"))
            continue
        free = shutil.disk_usage(existing).free
        detail = f"{place}: {free / GIB:.1f} GiB free" + ("" if existing == place else " (not created yet)")
        fix = "free some space, or choose a directory on a larger disk (--data-dir, --runtimes-dir)"
        status = FAIL if free < DISK_FAIL_BYTES else WARN if free < DISK_WARN_BYTES else PASS
        checks.append(Check(f"disk: {label}", status, detail, fix if status != PASS else ""))
    return checks


def database(settings: Settings) -> Check:
    from sqlalchemy.engine import make_url

    from .store.db import MIGRATIONS, normalise_url

    url = str(settings.database_url)
    shown = make_url(normalise_url(url)).render_as_string(hide_password=True)
    try:
        revision = _sqlite_revision(url) if url.startswith("sqlite") else _postgres_revision(url)
    except Exception as err:  # any driver's error: the message is what the user needs
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return Check("database", FAIL, f"{shown}: {first}", "check the URL (--database-url) and that the database runs")
    if revision is False:
        return Check("database", PASS, f"{shown}: not created yet (`selfmaker serve` creates it)")
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    if revision is None:
        return Check("database", PASS, f"{shown}: reachable, empty (`selfmaker serve` creates the tables)")
    if revision != head:
        return Check(
            "database",
            WARN,
            f"{shown}: schema at revision {revision}, this SelfMaker's is {head}",
            "the next `selfmaker serve` of this version migrates it (an older version cannot read a newer schema)",
        )
    return Check("database", PASS, f"{shown}: reachable, schema current ({head})")


def _sqlite_revision(url: str) -> str | bool | None:
    """The schema revision (None: no tables yet; False: no file yet), read-only: the doctor creates nothing."""
    path = url.split("///", 1)[-1]
    if not Path(path).exists():
        return False
    conn = sqlite3.connect(f"{Path(path).as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone():
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def _postgres_revision(url: str) -> str | None:
    from sqlalchemy import create_engine, text

    from .store.db import normalise_url

    engine = create_engine(normalise_url(url), connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None:
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def object_store(settings: Settings) -> Check:
    url = str(settings.object_store_url)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        root = Path(parsed.path)
        existing = next(p for p in [root, *root.parents] if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            return Check("object store", FAIL, f"{root} is not writable", "choose another with --object-store-url")
        note = "" if existing == root else " (not created yet)"
        return Check("object store", PASS, f"{root}: local directory{note}")
    from .objects import open_object_store

    try:
        buckets = open_object_store(url).list_buckets()
    except Exception as err:  # the remote store's own error, as it said it
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return Check(
            "object store",
            FAIL,
            f"{url.split('?', 1)[0]}: {first}",
            "check --object-store-url (endpoint_url, region, profile) and the store's credentials",
        )
    return Check("object store", PASS, f"{url.split('?', 1)[0]}: reachable ({len(buckets)} buckets)")


# -- the server -------------------------------------------------------------------------------------------------


def server(connection: Connection) -> list[Check]:
    url = connection.endpoint_url
    try:
        with urllib.request.urlopen(f"{url}/_selfmaker/health", timeout=5) as response:
            health = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return [
            Check(
                "server",
                FAIL,
                f"no SelfMaker answers at {url} ({reason})",
                "start it with `selfmaker serve`, or point at it with --endpoint-url / AWS_ENDPOINT_URL "
                "(--local checks this machine only)",
            )
        ]
    detail = f"SelfMaker {health.get('version')} at {url} (auth {health.get('auth')}, {health.get('database')})"
    checks = [
        Check("server", PASS, detail)
        if health.get("version") == __version__
        else Check("server", WARN, detail + f"; this command is {__version__}", "run the same version on both sides")
    ]
    try:
        identity = connection.client("sts").get_caller_identity()
    except Exception as err:  # botocore's errors become the one line explain() makes
        line = explain(err, url, connection.access_key)
        if line is None:
            raise
        fix = "use a key of the server's credentials file (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --profile)"
        checks.append(Check("credentials", FAIL, line.removeprefix("selfmaker: "), fix))
        return checks
    checks.append(Check("credentials", PASS, f"access key {connection.access_key} is account {identity['Account']}"))
    return checks


# -- the command ------------------------------------------------------------------------------------------------


def settings_from(args) -> Settings:
    given = dict(
        data_dir=args.data_dir,
        database_url=args.database_url,
        object_store_url=args.object_store_url,
        runtimes_dir=args.runtimes_dir,
    )
    # Only where things are: the doctor checks them, not whether the server's other settings are valid.
    return Settings(**{k: v for k, v in given.items() if v is not None}, auth_mode="open")


def main(connection: Connection | None, args) -> int:
    settings = settings_from(args)
    checks = [*versions(), *sandbox(), *disk(settings), database(settings), object_store(settings)]
    if connection is not None:
        checks += server(connection)
    if args.json:
        print_json([asdict(c) for c in checks])
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{c.status.upper():4}  {c.name.ljust(width)}  {c.detail}")
            if c.fix:
                print(f"{'':4}  {'':{width}}  fix: {c.fix}")
    failed = [c for c in checks if c.status == FAIL]
    if not args.json:
        warned = sum(c.status == WARN for c in checks)
        print(f"\n{len(failed)} failed, {warned} warnings" if failed or warned else "\nall checks passed")
    return 1 if failed else 0


def add_parser(sub) -> None:
    doctor = sub.add_parser(
        "doctor", help="check this machine (sandbox, disk, database, object store) and the server; exit 1 on failure"
    )
    doctor.add_argument("--local", action="store_true", help="check this machine only, not the server")
    doctor.add_argument(
        "--data-dir", type=Path, help="the server's data dir (default ~/.selfmaker; env SELFMAKER_DATA_DIR)"
    )
    doctor.add_argument("--database-url", help="the server's database URL (default: SQLite in the data dir)")
    doctor.add_argument("--object-store-url", help="the server's object store URL (default: objects/ in the data dir)")
    doctor.add_argument("--runtimes-dir", type=Path, help="the server's runtimes dir (default <data-dir>/runtimes)")
    add_output_argument(doctor)
    add_connection_arguments(doctor)
    doctor.set_defaults(func=lambda args: run(lambda connection: main(None if args.local else connection, args), args))
