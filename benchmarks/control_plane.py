"""Control-plane speed: SelfMaker and moto's server side by side, in one run.

Measures CreateExperiment, DescribeExperiment and ListExperiments (a page of
MaxResults=100) on both servers: throughput, p50 and p99 latency at each
client concurrency, and the ratios. Then it asks whether a page costs the
same over 10,000 experiments as over 100, for the first page and for the
last one (reached through NextToken).

Experiments are the resource both servers implement with real pagination
(moto's ListModels ignores MaxResults and returns everything). The 100 live
in one region and the 10,000 in another, so both lists exist at once and
their measurements can be interleaved.

    python benchmarks/control_plane.py            # the full run (a few minutes)
    python benchmarks/control_plane.py --quick    # a smoke run (well under a minute)

Requests are signed once by botocore and replayed over keep-alive sockets
from worker processes (see _common.py). Read measurements run in rounds that
alternate between servers and measurements, so a noisy neighbour on the
machine weighs on all of them alike. Exits non-zero if any measured request
of either server did not answer 200.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    PreparedRequest,
    RunResult,
    ServerProcess,
    fetch,
    free_port,
    log,
    machine,
    merge,
    replay,
    selfmaker_server,
    sign_requests,
    table,
)

PAGE = 100  # MaxResults of every measured list page
WARMUP = 3  # requests per client before each timed round: connected, and the server's caches warm
LIST_MEMBER = "ExperimentSummaries"
BIG_REGION, SMALL_REGION = "us-east-1", "us-west-2"

CREATE, DESCRIBE, FIRST, LAST, SMALL = "Create", "Describe", "List first page", "List last page", "List small"


def start_servers(names: list[str], workdir: Path) -> dict[str, ServerProcess]:
    servers = {}
    for name in names:
        if name == "selfmaker":
            server = selfmaker_server(workdir / "selfmaker-data", workdir / f"{name}.log")
        else:
            port = free_port()
            argv = [sys.executable, "-m", "moto.server", "-p", str(port)]
            server = ServerProcess(name, argv, port, "/moto-api/", workdir / f"{name}.log")
        servers[name] = server.start()
        log(f"{name} is up on {server.url} (log: {server.log_path})")
    return servers


def last_page_token(server: ServerProcess, total: int) -> str | None:
    """The NextToken of the last page of ``total`` experiments, found by walking the pages with boto3."""
    client = boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name=BIG_REGION,
        aws_access_key_id="AKIDBENCHMARK",
        aws_secret_access_key="benchmark-secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    token, seen = None, 0
    while seen + PAGE < total:
        page = client.list_experiments(MaxResults=PAGE, **({"NextToken": token} if token else {}))
        seen += len(page[LIST_MEMBER])
        token = page.get("NextToken")
        if not token or not page[LIST_MEMBER]:
            raise RuntimeError(f"{server.name}: the list ended after {seen} of {total} experiments")
    return token


def check_page(server: ServerProcess, request: PreparedRequest, expected: int, what: str) -> None:
    status, body = fetch(server, request)
    got = len(body.get(LIST_MEMBER, []))
    if status != 200 or got != expected:
        raise RuntimeError(f"{server.name}: {what} answered HTTP {status} with {got} entries, expected {expected}")


class Benchmark:
    def __init__(self, args, servers: dict[str, ServerProcess]):
        self.args = args
        self.servers = servers
        self.results: list[tuple[str, str, RunResult]] = []  # (measurement, server, result)

    def record(self, measurement: str, server: str, result: RunResult) -> RunResult:
        self.results.append((measurement, server, result))
        log(
            f"  {server:9} {measurement:16} c={result.concurrency}: {result.throughput:8,.0f} req/s  "
            f"p50 {result.percentile_ms(50):7.2f} ms  p99 {result.percentile_ms(99):7.2f} ms"
            + ("" if result.ok else f"  ERRORS {dict(result.statuses)} {result.errors[:1]}")
        )
        return result

    def sign(self, server: ServerProcess, calls, region: str = BIG_REGION) -> list[PreparedRequest]:
        return sign_requests(server.url, "sagemaker", calls, region=region)

    def fill(self, name: str, creates: list[PreparedRequest], what: str) -> None:
        result = replay(self.servers[name], creates, label=what, concurrency=max(self.args.concurrency))
        if not result.ok:
            raise RuntimeError(f"filling {what} on {name}: {dict(result.statuses)} {result.errors[:1]}")
        log(f"  {name:9} {what}: {result.count:,} at {result.throughput:,.0f} creates/s")

    def run(self) -> None:
        args, n = self.args, self.args.resources
        creates = {}
        for name, server in self.servers.items():
            started = time.perf_counter()
            small = self.sign(
                server,
                [("CreateExperiment", {"ExperimentName": f"small-{i:06d}"}) for i in range(args.small)],
                SMALL_REGION,
            )
            creates[name] = self.sign(
                server, [("CreateExperiment", {"ExperimentName": f"bench-{i:06d}"}) for i in range(n)]
            )
            log(
                f"signed {args.small + n:,} CreateExperiment requests for {name} in "
                f"{time.perf_counter() - started:.1f} s"
            )
            self.fill(name, small, f"{args.small} experiments in {SMALL_REGION}")

        # Creates are measured by count: each request is sent once, to a list that grows.
        done = 0
        for concurrency in args.concurrency:
            for name, server in self.servers.items():
                batch = creates[name][done : done + args.creates]
                self.record(CREATE, name, replay(server, batch, label=CREATE, concurrency=concurrency))
            done += args.creates
        for name in self.servers:
            self.fill(name, creates[name][done:], f"the rest of {n:,} experiments in {BIG_REGION}")

        rng = random.Random(7)
        sample = rng.sample(range(n), min(n, 2000))
        reads = {}  # measurement -> server -> prepared requests
        for name, server in self.servers.items():
            prepared = {
                DESCRIBE: self.sign(
                    server, [("DescribeExperiment", {"ExperimentName": f"bench-{i:06d}"}) for i in sample]
                ),
                FIRST: self.sign(server, [("ListExperiments", {"MaxResults": PAGE})]),
                LAST: self.sign(
                    server, [("ListExperiments", {"MaxResults": PAGE, "NextToken": last_page_token(server, n)})]
                ),
                SMALL: self.sign(server, [("ListExperiments", {"MaxResults": PAGE})], SMALL_REGION),
            }
            check_page(server, prepared[FIRST][0], PAGE, FIRST)
            check_page(server, prepared[LAST][0], n - (n - 1) // PAGE * PAGE, LAST)
            check_page(server, prepared[SMALL][0], min(PAGE, args.small), SMALL)
            for measurement, requests in prepared.items():
                reads.setdefault(measurement, {})[name] = requests

        # Reads are measured by time, in rounds that alternate servers and measurements.
        for concurrency in args.concurrency:
            rounds: dict[tuple[str, str], list[RunResult]] = {}
            for _ in range(args.rounds):
                for measurement, by_server in reads.items():
                    for name, requests in by_server.items():
                        rounds.setdefault((measurement, name), []).append(
                            replay(
                                self.servers[name],
                                requests,
                                label=measurement,
                                concurrency=concurrency,
                                duration=args.duration / args.rounds,
                                warmup=WARMUP,
                            )
                        )
            for (measurement, name), results in rounds.items():
                self.record(measurement, name, merge(results))

    # -- reporting -------------------------------------------------------------

    def result(self, measurement: str, server: str, concurrency: int) -> RunResult | None:
        for m, s, r in self.results:
            if m == measurement and s == server and r.concurrency == concurrency:
                return r
        return None

    def report(self) -> str:
        args, n, names = self.args, self.args.resources, list(self.servers)
        pair = len(names) == 2
        rows = []
        for measurement, label in (
            (CREATE, "CreateExperiment"),
            (DESCRIBE, "DescribeExperiment"),
            (FIRST, f"ListExperiments, first {PAGE}"),
        ):
            for c in args.concurrency:
                got = [self.result(measurement, s, c) for s in names]
                row = [label, c]
                for r in got:
                    row += [r.throughput, r.percentile_ms(50), r.percentile_ms(99)]
                if pair:
                    row += [
                        f"{got[0].throughput / got[1].throughput:.1f}x",
                        f"{got[1].percentile_ms(50) / got[0].percentile_ms(50):.1f}x",
                    ]
                rows.append(row)
        headers = ["operation", "clients"]
        for s in names:
            headers += [f"{s} req/s", "p50 ms", "p99 ms"]
        if pair:
            headers += ["req/s ratio", "p50 ratio"]
        out = [
            table(
                headers,
                rows,
                title=f"Throughput and latency with {n:,} experiments stored"
                + (f" (ratios: {names[0]} / {names[1]}; p50 ratio: how many times lower)" if pair else ""),
            )
        ]

        rows = []
        for measurement, label in (
            (SMALL, f"first page of {args.small:,}"),
            (FIRST, f"first page of {n:,}"),
            (LAST, f"last page of {n:,} (NextToken)"),
        ):
            for c in args.concurrency:
                row = [label, c]
                for s in names:
                    r, base = self.result(measurement, s, c), self.result(SMALL, s, c)
                    row += [r.throughput, r.percentile_ms(50), r.throughput / base.throughput]
                rows.append(row)
        headers = [f"ListExperiments, {PAGE} per page", "clients"]
        for s in names:
            headers += [f"{s} req/s", "p50 ms", f"vs {args.small:,}"]
        out.append(table(headers, rows, title=f"A page as the list grows from {args.small:,} to {n:,}"))

        rows = [
            [
                m,
                s,
                r.concurrency,
                r.count,
                r.client_cpu_seconds / r.count * 1e6,
                r.server_cpu_seconds / r.count * 1e6,
                r.client_cpu_seconds / r.wall_seconds,
                r.server_cpu_seconds / r.wall_seconds,
            ]
            for m, s, r in self.results
            if r.count
        ]
        out.append(
            table(
                [
                    "measurement",
                    "server",
                    "clients",
                    "requests",
                    "client CPU us/req",
                    "server CPU us/req",
                    "client cores",
                    "server cores",
                ],
                rows,
                title="CPU per request (the load generator's share shows it is not the bottleneck)",
            )
        )
        out.append(self.goals())
        return "\n\n".join(o for o in out if o)

    def goals(self) -> str:
        if "selfmaker" not in self.servers:
            return ""
        lines = [
            "Goals (from the foundation issue)"
            + (": --quick rounds are too short to judge page depth" if self.args.quick else "")
        ]
        for c in self.args.concurrency:
            if "moto" in self.servers:
                for measurement in (DESCRIBE, FIRST):
                    ratio = (
                        self.result(measurement, "selfmaker", c).throughput
                        / self.result(measurement, "moto", c).throughput
                    )
                    lines.append(
                        f"  {measurement:16} >= 3x moto, {c} client(s): {ratio:4.1f}x  "
                        f"{'met' if ratio >= 3 else 'NOT MET'}"
                    )
            base = self.result(SMALL, "selfmaker", c).throughput
            for measurement in (FIRST, LAST):
                ratio = self.result(measurement, "selfmaker", c).throughput / base
                lines.append(
                    f"  {measurement:16} over {self.args.resources:,} as fast as over {self.args.small:,}, "
                    f"{c} client(s): {ratio:.2f}  {'met' if ratio >= 0.9 else 'NOT MET'} (>= 0.90)"
                )
        return "\n".join(lines)

    def failures(self) -> list[str]:
        return [f"{s} {m} c={r.concurrency}: {dict(r.statuses)} {r.errors}" for m, s, r in self.results if not r.ok]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1,000 experiments, 200 creates and 1 s per read measurement"
    )
    parser.add_argument("--resources", type=int, help="experiments stored for Describe and List (default 10,000)")
    parser.add_argument("--small", type=int, default=100, help="the small list to compare pages with (default 100)")
    parser.add_argument("--creates", type=int, help="CreateExperiment calls measured per concurrency (default 1,000)")
    parser.add_argument("--duration", type=float, help="seconds per read measurement (default 6)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per read measurement (default 6; quick 2)")
    parser.add_argument("--concurrency", default="1,8", help="client processes, comma-separated (default 1,8)")
    parser.add_argument("--servers", default="selfmaker,moto", help="which servers to run (default selfmaker,moto)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    args.resources = args.resources or (1_000 if args.quick else 10_000)
    args.creates = args.creates or (200 if args.quick else 1_000)
    args.duration = args.duration or (1.0 if args.quick else 6.0)
    args.rounds = args.rounds or (2 if args.quick else 6)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.servers = [s.strip() for s in args.servers.split(",")]
    if not args.servers or not set(args.servers) <= {"selfmaker", "moto"}:
        parser.error("--servers takes selfmaker and/or moto")
    if min(args.concurrency) < 1 or args.rounds < 1 or args.small < 1:
        parser.error("--concurrency, --rounds and --small must be at least 1")
    if args.resources < args.creates * len(args.concurrency) + PAGE:
        parser.error("--resources must exceed --creates times the number of concurrency levels, plus a page")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="selfmaker-bench-"))
    started = time.perf_counter()
    servers: dict[str, ServerProcess] = {}
    try:
        servers = start_servers(args.servers, workdir)
        bench = Benchmark(args, servers)
        bench.run()
    except BaseException:
        log(f"the servers' logs and data are kept in {workdir}")
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        for server in servers.values():
            server.stop()
    info = machine()
    print(f"benchmarks/control_plane.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, {info['date']}; "
        f"took {time.perf_counter() - started:.0f} s\n"
    )
    print(bench.report())
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "results": [{"measurement": m, "server": s, **r.as_dict()} for m, s, r in bench.results],
                },
                indent=2,
            )
        )
    failures = bench.failures()
    if failures:
        print("\nFAILED: requests that did not answer 200:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
