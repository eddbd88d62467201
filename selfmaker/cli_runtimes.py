"""`selfmaker runtimes list|build IMAGE|prune`: the job runtimes on this machine.

It works on the runtimes directory itself, not through the server: runtimes
are per machine (each server of a scale-out has its own), and the command
takes the same per-runtime locks the servers take (engines/runtime_builds.py),
so with a server running it never removes a runtime being built or being
taken into use, and a build it starts is the one a job waiting for it uses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import RUNTIME_INSTALLERS, Settings
from .engines import runtime_builds, runtimes

DEFAULT_UNUSED_DAYS = 30.0


def add_parser(sub) -> None:
    parser = sub.add_parser("runtimes", help="list, prebuild or prune the job runtimes of this machine")
    parser.set_defaults(func=main)
    actions = parser.add_subparsers(dest="action", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--data-dir", type=Path, help="the server's data dir (default ~/.selfmaker; env SELFMAKER_DATA_DIR)"
    )
    where.add_argument("--runtimes-dir", type=Path, help="default <data-dir>/runtimes (env SELFMAKER_RUNTIMES_DIR)")
    listing = actions.add_parser("list", parents=[where], help="the built runtimes, their size and last use")
    listing.add_argument("--json", action="store_true", help="one JSON document for scripts")
    build = actions.add_parser("build", parents=[where], help="build the runtime of an image now (before a job)")
    build.add_argument(
        "image", help="the image URI, e.g. 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    )
    build.add_argument(
        "--runtimes-config", type=Path, help="the server's image mappings (env SELFMAKER_RUNTIMES_CONFIG)"
    )
    build.add_argument("--package-index", help="an index URL or a wheelhouse directory (env SELFMAKER_PACKAGE_INDEX)")
    build.add_argument("--runtime-installer", choices=RUNTIME_INSTALLERS, help="default auto: uv if installed")
    prune = actions.add_parser("prune", parents=[where], help="remove runtimes not used lately, and unfinished builds")
    prune.add_argument(
        "--unused-days",
        type=float,
        default=DEFAULT_UNUSED_DAYS,
        help=f"remove runtimes no job, endpoint or notebook took into use for this long (default {DEFAULT_UNUSED_DAYS:g})",
    )
    prune.add_argument("--all", action="store_true", help="remove every runtime not being built or taken into use")
    prune.add_argument("--cache", action="store_true", help="also empty the package cache (rebuilds download again)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed")


def main(args) -> int:
    settings = Settings(
        **{
            k: v
            for k, v in dict(
                data_dir=args.data_dir,
                runtimes_dir=args.runtimes_dir,
                runtimes_config=getattr(args, "runtimes_config", None),
                package_index=getattr(args, "package_index", None),
                runtime_installer=getattr(args, "runtime_installer", None),
            ).items()
            if v is not None
        }
    )
    runtimes_dir = Path(settings.runtimes_dir or settings.data_dir / "runtimes")  # set by Settings
    return {"list": _list, "build": _build, "prune": _prune}[args.action](args, settings, runtimes_dir)


def _list(args, settings: Settings, runtimes_dir: Path) -> int:
    found = runtime_builds.on_disk(runtimes_dir)
    if args.json:
        rows = [
            {
                "Runtime": r.name,
                "Key": r.key,
                "Status": _status(r),
                "SizeBytes": r.size,
                "LastUsed": r.last_used,
                "Installer": r.installer,
                "Packages": r.packages,
            }
            for r in found
        ]
        print(json.dumps({"RuntimesDir": str(runtimes_dir), "Runtimes": rows}, indent=2))
        return 0
    if not found:
        print(f"no runtimes in {runtimes_dir}")
        return 0
    table = [("RUNTIME", "STATUS", "SIZE", "LAST USED", "KEY")]
    table += [(r.name or "-", _status(r), _bytes(r.size), _ago(r.last_used), r.key) for r in found]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _build(args, settings: Settings, runtimes_dir: Path) -> int:
    try:
        runtime = runtimes.resolve(args.image, runtimes.load_config(settings.runtimes_config))
        bin_dir = runtimes.ensure(runtime, runtimes_dir, print, **runtimes.options(settings))
    except (runtimes.UnknownImage, runtimes.RuntimeBuildError) as err:
        print(f"selfmaker runtimes build: {err}", file=sys.stderr)
        return 1
    print(f"{runtime.name}: ready in {bin_dir.parent}")
    return 0


def _prune(args, settings: Settings, runtimes_dir: Path) -> int:
    if args.unused_days < 0:
        print("selfmaker runtimes prune: --unused-days must not be negative", file=sys.stderr)
        return 2
    since = None if args.all else time.time() - args.unused_days * 86400
    freed = 0
    for r in runtime_builds.on_disk(runtimes_dir):
        if r.building or (since is not None and r.ready and r.last_used is not None and r.last_used >= since):
            continue
        what = f"{r.name or r.key} ({_bytes(r.size)}, {'unfinished build' if not r.ready else 'last used ' + _ago(r.last_used)})"
        if args.dry_run:
            print(f"would remove {what}")
        elif runtime_builds.remove(runtimes_dir, r.key, since if r.ready else None):
            print(f"removed {what}")
            freed += r.size
        else:
            print(f"kept {r.name or r.key}: taken into use meanwhile")
    if args.cache:
        cache = runtimes_dir / runtime_builds.CACHE
        print(f"{'would empty' if args.dry_run else 'emptied'} the package cache {cache}")
        if not args.dry_run:
            runtime_builds.empty_cache(runtimes_dir)
    if not args.dry_run:
        print(f"freed {_bytes(freed)} of runtimes")
    return 0


def _status(r: runtime_builds.OnDisk) -> str:
    return "building" if r.building else "ready" if r.ready else "unfinished"


def _bytes(size: int) -> str:
    n = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{size} B"


def _ago(when: float | None) -> str:
    if when is None:
        return "never"
    seconds = max(0, time.time() - when)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
