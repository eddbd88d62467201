"""QueryLineage cost: it should follow the size of the answer, not the size of the graph.

Two SelfMaker servers get a lineage graph each, built through the API: a large
one (10,000 entities and 30,000 associations by default) and one ten times
smaller. Both hold the same "probe" components, each a root with ten layers
below it (root -> all of layer 1, then every vertex to three in the next
layer), so a Descendants query from a probe root at depth 10 answers exactly
that component: 1 + 10w vertices and about 28w edges for width w. The rest of
each graph is filler of the same shape that no probe reaches.

QueryLineage (Descendants, MaxDepth 10, IncludeEdges, no MaxResults: the whole
answer in one response) is then replayed from each probe root, one client at a
time, and timed, in rounds that alternate between the two servers so that a
change in the machine's load weighs on both alike. Time per query should grow
with the answer, and be the same in both graphs for the same probe.

    python benchmarks/lineage.py            # 10,000 entities / 30,000 associations vs 1,000 / 3,000
    python benchmarks/lineage.py --quick    # 2,000 / 6,000 vs 200 / 600, shorter measurements

Every request (the graph's creates and the measured queries) is signed once by
botocore and replayed over keep-alive sockets (see _common.py). The answers are
checked before timing; exits non-zero if any request did not answer 200.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import itertools

from _common import (
    RunResult,
    ServerProcess,
    fetch,
    log,
    machine,
    replay,
    selfmaker_server,
    sign_requests,
    table,
)

from selfmaker.services.lineage import artifact_id

ACCOUNT, REGION = "123456789012", "us-east-1"  # the open-mode default account
LAYERS = 10  # below each root: a depth-10 query from the root reaches the last layer exactly
FANOUT = 3
PROBE_WIDTHS = (1, 5, 10, 50, 200)
# Each layer is one entity kind, so answers mix artifacts, actions and contexts.
LAYER_KINDS = ("Artifact", "Action", "Context")


@dataclass
class Graph:
    """Entities and associations as API calls, built component by component."""

    tag: str
    creates: list[tuple[str, dict]] = field(default_factory=list)
    associations: list[tuple[str, str]] = field(default_factory=list)
    roots: dict[int, str] = field(default_factory=dict)  # probe width -> root ARN

    def entity(self, kind: str, name: str) -> str:
        if kind == "Artifact":
            source = {"SourceUri": f"s3://lineage-bench/{self.tag}/{name}"}
            self.creates.append(("CreateArtifact", {"Source": source, "ArtifactType": "DataSet"}))
            return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:artifact/{artifact_id(source)}"
        member = {
            "Action": ("ActionName", "ActionType", "Training"),
            "Context": ("ContextName", "ContextType", "Endpoint"),
        }[kind]
        self.creates.append((f"Create{kind}", {member[0]: name, "Source": {"SourceUri": name}, member[1]: member[2]}))
        return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind.lower()}/{name}"

    def component(self, name: str, width: int, fanout: int = FANOUT) -> tuple[str, list[list[str]]]:
        """A root over LAYERS layers of ``width``: root -> all of layer 1; vertex j -> j..j+fanout-1 below."""
        root = self.entity("Context", f"{name}-root")
        layers = [
            [self.entity(LAYER_KINDS[depth % 3], f"{name}-l{depth}-{j}") for j in range(width)]
            for depth in range(1, LAYERS + 1)
        ]
        self.associations += [(root, v) for v in layers[0]]
        for upper, lower in itertools.pairwise(layers):
            for j, v in enumerate(upper):
                self.associations += [(v, lower[(j + k) % width]) for k in range(min(fanout, width))]
        return root, layers

    @property
    def size(self) -> tuple[int, int]:
        return len(self.creates), len(self.associations)


def answer_size(width: int) -> tuple[int, int]:
    """(vertices, edges) a Descendants depth-10 query from a probe root returns."""
    return 1 + LAYERS * width, width + (LAYERS - 1) * width * min(FANOUT, width)


def build(tag: str, entities: int, associations: int, probes: list[int]) -> Graph:
    graph = Graph(tag)
    for width in probes:
        graph.roots[width], _ = graph.component(f"{tag}-probe{width}", width)
    # Filler: components no probe reaches, then extra edges inside them up to the association budget.
    filler_layers = []
    while graph.size[0] < entities:
        width = min(100, (entities - graph.size[0] - 1) // LAYERS)
        if width < 1:  # too few entities left for a component: plain unconnected artifacts
            graph.entity("Artifact", f"{tag}-loose-{graph.size[0]}")
            continue
        _, layers = graph.component(f"{tag}-fill{len(filler_layers)}", width)
        filler_layers.append(layers)
    existing = set(graph.associations)
    shift = FANOUT
    while graph.size[1] < associations and shift < 100:
        for layers in filler_layers:
            for upper, lower in itertools.pairwise(layers):
                for j, v in enumerate(upper):
                    edge = (v, lower[(j + shift) % len(lower)])
                    if graph.size[1] < associations and edge not in existing:
                        existing.add(edge)
                        graph.associations.append(edge)
        shift += 1
    return graph


def start_server(name: str, workdir: Path) -> ServerProcess:
    server = selfmaker_server(workdir / name, workdir / f"{name}.log", name=name).start()
    log(f"{name} is up on {server.url} (log: {server.log_path})")
    return server


def fill(server: ServerProcess, graph: Graph, concurrency: int) -> float:
    """Send the graph's creates, then its associations, each once; the seconds it took."""
    started = time.perf_counter()
    calls = [
        *graph.creates,
        *(
            ("AddAssociation", {"SourceArn": s, "DestinationArn": d, "AssociationType": "ContributedTo"})
            for s, d in graph.associations
        ),
    ]
    prepared = sign_requests(server.url, "sagemaker", calls)
    split = len(graph.creates)
    for label, batch in (("creates", prepared[:split]), ("associations", prepared[split:])):
        result = replay(server, batch, label=label, concurrency=concurrency)
        if not result.ok:
            raise RuntimeError(f"building {server.name}'s graph: {dict(result.statuses)} {result.errors[:1]}")
        log(f"  {server.name}: {result.count:,} {label} at {result.throughput:,.0f}/s")
    return time.perf_counter() - started


def query_request(server: ServerProcess, root: str):
    [request] = sign_requests(
        server.url,
        "sagemaker",
        [("QueryLineage", {"StartArns": [root], "Direction": "Descendants", "MaxDepth": LAYERS, "IncludeEdges": True})],
    )
    return request


def checked_query(server: ServerProcess, root: str, width: int):
    """The signed QueryLineage request from a probe root, once its answer has been checked."""
    request = query_request(server, root)
    status, body = fetch(server, request)
    got = (len(body.get("Vertices", [])), len(body.get("Edges", [])))
    if status != 200 or got != answer_size(width):
        raise RuntimeError(
            f"{server.name}: probe {width} answered HTTP {status} with {got} "
            f"(vertices, edges), expected {answer_size(width)}"
        )
    return request


def merge(results: list[RunResult]) -> RunResult:
    latencies = array("q", sorted(x for r in results for x in r.latencies_ns))
    return RunResult(
        label=results[0].label,
        concurrency=1,
        latencies_ns=latencies,
        wall_seconds=sum(r.wall_seconds for r in results),
        client_cpu_seconds=sum(r.client_cpu_seconds for r in results),
        server_cpu_seconds=sum(r.server_cpu_seconds for r in results),
        statuses=sum((r.statuses for r in results), Counter()),
        errors=[e for r in results for e in r.errors][:3],
    )


def measure(
    servers: dict[str, ServerProcess], graphs: dict[str, Graph], duration: float, rounds: int
) -> dict[str, dict[int, RunResult]]:
    """Replay each probe's query for ``duration`` seconds in all, one client.

    The time is split into rounds that alternate between the graphs, so a change in
    the machine's load during the run weighs on both graphs alike.
    """
    requests = {
        name: {width: checked_query(servers[name], root, width) for width, root in graph.roots.items()}
        for name, graph in graphs.items()
    }
    runs: dict[str, dict[int, list[RunResult]]] = {name: defaultdict(list) for name in graphs}
    for _ in range(rounds):
        for name, by_width in requests.items():
            for width, request in by_width.items():
                result = replay(
                    servers[name],
                    [request],
                    label=f"probe {width}",
                    concurrency=1,
                    duration=duration / rounds,
                    warmup=2,
                )
                if not result.ok:
                    raise RuntimeError(f"{name}: probe {width}: {dict(result.statuses)} {result.errors[:1]}")
                runs[name][width].append(result)
    results = {name: {width: merge(parts) for width, parts in by_width.items()} for name, by_width in runs.items()}
    for name, by_width in results.items():
        for width, result in by_width.items():
            log(
                f"  {name}: probe width {width:4} ({sum(answer_size(width)):6,} items): "
                f"p50 {result.percentile_ms(50):8.2f} ms over {result.count:,} queries"
            )
    return results


def report(args, graphs: dict[str, Graph], results: dict[str, dict[int, RunResult]], build_s: dict) -> str:
    out = []
    rows = [[name, *graph.size, f"{build_s[name]:.0f} s"] for name, graph in graphs.items()]
    out.append(table(["graph", "entities", "associations", "built in"], rows, title="Graphs (built through the API)"))

    large, small = graphs["large"], graphs["small"]
    rows = []
    for width in large.roots:
        vertices, edges = answer_size(width)
        r = results["large"][width]
        rows.append(
            [
                width,
                vertices,
                edges,
                r.count,
                r.percentile_ms(50),
                r.percentile_ms(99),
                r.percentile_ms(50) * 1000 / (vertices + edges),
            ]
        )
    out.append(
        table(
            ["probe width", "vertices", "edges", "queries", "p50 ms", "p99 ms", "us per vertex+edge"],
            rows,
            title=f"QueryLineage (Descendants, depth {LAYERS}, IncludeEdges) on the large graph: "
            f"time follows the answer",
        )
    )

    rows = []
    for width in small.roots:
        a, b = results["small"][width], results["large"][width]
        rows.append(
            [
                width,
                sum(answer_size(width)),
                a.percentile_ms(50),
                b.percentile_ms(50),
                f"{b.percentile_ms(50) / a.percentile_ms(50):.2f}",
            ]
        )
    out.append(
        table(
            [
                "probe width",
                "answer items",
                f"p50 ms, {small.size[0]:,} entities",
                f"p50 ms, {large.size[0]:,} entities",
                "large / small",
            ],
            rows,
            title="The same answers in a graph ten times smaller: time does not follow the graph",
        )
    )
    return "\n\n".join(out)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 entities vs 200, 1 s per probe and graph")
    parser.add_argument("--entities", type=int, help="entities in the large graph (default 10,000)")
    parser.add_argument("--ratio", type=int, default=10, help="how many times smaller the small graph is (10)")
    parser.add_argument("--duration", type=float, help="seconds of queries per probe and graph (default 6)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds alternating between the graphs (6)")
    parser.add_argument("--concurrency", type=int, default=4, help="client processes building the graphs (4)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    args.entities = args.entities or (2_000 if args.quick else 10_000)
    args.duration = args.duration or (1.0 if args.quick else 6.0)
    return args


def probes_within(entities: int) -> list[int]:
    """The probe widths whose components, together, fill at most 70% of ``entities``."""
    chosen, used = [], 0
    for width in PROBE_WIDTHS:
        if used + answer_size(width)[0] <= entities * 0.7:
            chosen.append(width)
            used += answer_size(width)[0]
    return chosen


def main(argv=None) -> int:
    args = parse_args(argv)
    small_entities = args.entities // args.ratio
    small_probes = probes_within(small_entities)
    graphs = {
        "large": build("large", args.entities, 3 * args.entities, probes_within(args.entities)),
        "small": build("small", small_entities, 3 * small_entities, small_probes),
    }
    workdir = Path(tempfile.mkdtemp(prefix="selfmaker-bench-lineage-"))
    started = time.perf_counter()
    build_s, servers = {}, {}
    try:
        for name, graph in graphs.items():
            servers[name] = start_server(name, workdir)
            log(f"building the {name} graph: {graph.size[0]:,} entities, {graph.size[1]:,} associations")
            build_s[name] = fill(servers[name], graph, args.concurrency)
        results = measure(servers, graphs, args.duration, args.rounds)
    finally:
        for server in servers.values():
            server.stop()
    info = machine()
    print(
        f"lineage: {' '.join(sys.argv[1:]) or '(defaults)'}; {info['nproc']} CPUs ({info['cpu']}), "
        f"Python {info['python']}, {info['date']}; {time.perf_counter() - started:.0f} s\n"
    )
    print(report(args, graphs, results, build_s))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "graphs": {name: dict(zip(("entities", "associations"), g.size)) for name, g in graphs.items()},
                    "results": [
                        {"graph": name, "probe_width": width, "answer": answer_size(width), **r.as_dict()}
                        for name, by_width in results.items()
                        for width, r in by_width.items()
                    ],
                },
                indent=2,
            )
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
