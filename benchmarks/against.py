"""Run one benchmark against this checkout's server and another commit's, alternating, in one run.

The other commit is checked out into a temporary git worktree; its server is started with that
checkout first on PYTHONPATH (``SELFMAKER_BENCH_SERVER_CODE``, read by ``_common.ServerProcess``),
while the benchmark script, its clients and its checks are this checkout's, so both servers are
measured by the same code. Runs alternate (base, head, base, head, ...) so a busy moment of the
machine weighs on both alike. Each run's full output is printed under a heading.

    python benchmarks/against.py e8bf0b1 --runs 2 -- control_plane.py --quick --servers selfmaker
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the commit to compare this checkout with (e.g. main~5, a hash)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each side, alternating (default 2)")
    parser.epilog = "After --: the benchmark script (a file in benchmarks/) and its arguments."
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, command = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not command or not (HERE / command[0]).is_file():
        parser.error("name a benchmark script after --, e.g. -- control_plane.py --quick")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    with tempfile.TemporaryDirectory(prefix="selfmaker-against-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
        try:
            status = 0
            for run in range(1, args.runs + 1):
                for label, code in ((f"base {args.base}", str(base)), (f"head {head.stdout.strip()}", "")):
                    print(f"\n===== run {run}: {label}: {' '.join(command)}", flush=True)
                    env = {**os.environ, "SELFMAKER_BENCH_SERVER_CODE": code}
                    status |= subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], env=env).returncode
            return status
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)


if __name__ == "__main__":
    sys.exit(main())
