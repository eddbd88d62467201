"""Console benchmark: list pages over 10,000 experiments and 10,000 training jobs, and a 200-step pipeline graph.

Goals (issue 19): every list page answers in at most 300 ms of server time; a 200-step pipeline's graph is
drawn in at most 1 s in a browser.

Data:

* experiments: ``--experiments`` CreateExperiment calls through the API (boto3, a few threads);
* training jobs: one real training job runs through the API (a script on the host's Python, through a
  runtimes config), then the server is stopped and ``--jobs`` - 1 copies of its record are written through
  the store layer (``ResourceStore.create``, as CreateTrainingJob writes them: same data, new name, ARN,
  status and creation time) and the server started again. Running 10,000 real jobs would take hours on
  this machine; a list page reads only the records, so copies of a real one are what it would read;
* a pipeline of 200 Processing steps (20 layers of 10, each step depending on two of the layer before),
  made with CreatePipeline.

Measures:

* list pages: each page ``--requests`` times, one after another over one keep-alive connection, after a
  warm-up, as the open-mode console's session; the time from sending the request to the end of the answer
  on loopback is the server's time (plus well under a millisecond of loopback). p50, p95 and max;
* the pipeline page in headless Chromium (Selenium, Debian's chromium and chromedriver): from the start of
  the navigation to the frame after Cytoscape has laid out and drawn the graph (``data-drawn-at`` that
  console-graph.js sets, in the page's performance clock), three kinds of load taking turns ``--renders``
  times: a first view of a graph (another 200-step pipeline each time) laid out by Graphviz on the server;
  a first view on a second server started with ``--graphviz-dot ''`` (its own data), laid out by dagre in
  the browser, as every first view was before; and a later view of one graph (its layout kept by the
  server, placed as is). Each load is split by the page's own clocks: the server's answer (request to the
  end of the HTML), the scripts until console-graph.js starts, Cytoscape's construction (with dagre's
  layout where it runs), and the first draw (to the second frame after).

    python benchmarks/console.py                       # 10,000 + 10,000 (about 2 minutes)
    python benchmarks/console.py --experiments 1000 --jobs 1000 --requests 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

# This checkout's selfmaker (its store layer writes the jobs), not the one installed in the environment.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HOST, ServerProcess, free_port, log, machine, percentile, table
from pipelines import processing_step

REPO = Path(__file__).resolve().parent.parent
IMAGE = "selfmaker.bench/python:3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ACCOUNT, REGION = "123456789012", "us-east-1"
BUCKET = "console-bench"
LAYERS, WIDTH = 20, 10
GOAL_LIST_MS, GOAL_GRAPH_MS = 300, 1000


def server(data_dir: Path, log_path: Path, runtimes: Path, graphviz_dot: str | None = None) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "selfmaker.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    if graphviz_dot is not None:
        argv += ["--graphviz-dot", graphviz_dot]
    env = {"SELFMAKER_RUNTIMES_CONFIG": str(runtimes)}
    return ServerProcess("selfmaker", argv, port, "/_selfmaker/health", log_path, env=env, selfmaker=True)


def client(url: str, service: str = "sagemaker"):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="x",
        config=Config(max_pool_connections=16, retries={"max_attempts": 0}),
    )


# -- data --------------------------------------------------------------------------------------------------------


def make_experiments(url: str, count: int) -> None:
    sm = client(url)

    def create(index: int) -> None:
        sm.create_experiment(ExperimentName=f"bench-exp-{index:05d}", Description=f"experiment {index}")

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
    log(f"{count} experiments in {time.monotonic() - started:.1f} s")


def run_one_training_job(url: str) -> str:
    sm, s3 = client(url), client(url, "s3")
    s3.create_bucket(Bucket=BUCKET)
    name = "bench-job-00000"
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["python3", "-c", "print('loss=0.25', flush=True)"],
            "MetricDefinitions": [{"Name": "train:loss", "Regex": r"loss=([0-9.]+)"}],
        },
        HyperParameters={"epochs": "3", "learning_rate": "0.1"},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 120},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
        if status in ("Completed", "Failed", "Stopped"):
            if status != "Completed":
                raise SystemExit(f"the template training job ended {status}")
            return name
        time.sleep(0.5)
    raise SystemExit("the template training job did not end in 300 s")


def copy_training_jobs(data_dir: Path, template: str, count: int) -> None:
    """``count`` copies of the template job's record, through the store layer (the server is stopped)."""
    from selfmaker.config import Settings
    from selfmaker.store.db import Store
    from selfmaker.store.resources import ResourceStore

    settings = Settings(data_dir=data_dir)
    resources = ResourceStore(Store(settings.database_url))
    original = resources.get(ACCOUNT, REGION, "TrainingJob", name=template)
    if original is None:
        raise SystemExit(f"no record of {template}")
    statuses = ("Completed", "Completed", "Completed", "Failed", "Stopped")
    base = time.time() - count * 60
    started = time.monotonic()
    batch = 1000
    for first in range(1, count, batch):
        with resources.store.write() as conn:
            for index in range(first, min(first + batch, count)):
                name = f"bench-job-{index:05d}"
                arn = original.arn.rsplit("/", 1)[0] + "/" + name
                status = statuses[index % len(statuses)]
                created = base + index * 60
                data = json.loads(json.dumps(original.data).replace(template, name))
                data.update(TrainingJobStatus=status, CreationTime=created, LastModifiedTime=created + 30)
                resources.create(
                    account_id=ACCOUNT,
                    region=REGION,
                    kind="TrainingJob",
                    name=name,
                    arn=arn,
                    data=data,
                    status=status,
                    created=created,
                    conn=conn,
                )
    log(f"{count - 1} training job records copied in {time.monotonic() - started:.1f} s")


def make_pipeline(url: str, tag: str = "") -> str:
    """A 200-step pipeline; another ``tag`` names its steps apart, so it is a graph the console has not laid out."""
    steps = []
    for layer in range(LAYERS):
        for column in range(WIDTH):
            before = [f"{tag}L{layer - 1:02d}S{(column + k) % WIDTH:02d}" for k in (0, 1)] if layer else []
            steps.append(processing_step(f"{tag}L{layer:02d}S{column:02d}", before))
    name = f"bench-pipeline-200{tag}"
    client(url).create_pipeline(
        PipelineName=name,
        RoleArn=ROLE,
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": steps}),
    )
    return name


# -- measuring ---------------------------------------------------------------------------------------------------


class Page:
    """GETs of console pages over one keep-alive connection, with the session cookie the first one got."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection(HOST, port, timeout=30)
        self.cookie = ""

    def get(self, path: str) -> tuple[int, float, str]:
        headers = {"Accept": "text/html", **({"Cookie": self.cookie} if self.cookie else {})}
        started = time.perf_counter()
        self.connection.request("GET", path, headers=headers)
        response = self.connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response.status, elapsed, body.decode()


def next_link(body: str) -> str:
    marker = body.split('rel="next"', 1)[0].rsplit('href="', 1)[-1].split('"', 1)[0]
    return marker.replace("&amp;", "&")


def measure_lists(port: int, requests: int) -> list[list]:
    page = Page(port)
    status, _, first_experiments = page.get("/console/experiments")
    status, _, first_jobs = page.get("/console/jobs/training")
    # (label, path, what the page must show: a page that answers quickly with the wrong rows proves nothing)
    pages = [
        ("Experiments, newest first", "/console/experiments", "bench-exp-"),
        ("Experiments by name", "/console/experiments?sort=Name&order=Ascending", "bench-exp-00000"),
        ("Experiments, second page", next_link(first_experiments), "bench-exp-"),
        ("Training jobs, newest first", "/console/jobs/training", "bench-job-"),
        ("Training jobs, status Completed", "/console/jobs/training?status=Completed", "bench-job-"),
        ("Training jobs, name contains 0042", "/console/jobs/training?name=0042", "bench-job-00042"),
        ("Training jobs by name", "/console/jobs/training?sort=Name&order=Ascending", "bench-job-00000"),
        ("Training jobs by status", "/console/jobs/training?sort=Status&order=Descending", "bench-job-"),
        ("Training jobs, second page", next_link(first_jobs), "bench-job-"),
        ("Overview", "/console/", "bench-"),
        ("Pipeline (200 steps) page", "/console/pipelines/bench-pipeline-200", "L19S09"),
    ]
    rows = []
    for label, path, expected in pages:
        for _ in range(3):  # warm-up
            status, _, body = page.get(path)
            if status != 200 or expected not in body:
                raise SystemExit(f"{path} answered {status} without {expected!r}: {body[:300]}")
        times = sorted(page.get(path)[1] for _ in range(requests))
        p95 = percentile(times, 95)
        rows.append(
            [
                label,
                f"{statistics.median(times):.1f}",
                f"{p95:.1f}",
                f"{times[-1]:.1f}",
                "yes" if p95 <= GOAL_LIST_MS else "NO",
            ]
        )
        log(f"{label}: p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms")
    return rows


# Each load's phases, in the page's performance clock (milliseconds from the start of the navigation).
PHASES = """
const n = performance.getEntriesByType("navigation")[0];
const mark = (name) => performance.getEntriesByName(name)[0].startTime;
const drawn = Number(document.getElementById("graph").dataset.drawnAt);
return {
  total: drawn, answer: n.responseEnd - n.requestStart, scripts: mark("graph-start") - n.responseEnd,
  construction: mark("graph-laid-out") - mark("graph-start"), draw: drawn - mark("graph-laid-out"),
};
"""
PHASE_NAMES = ("answer", "scripts", "construction", "draw")


FIRST_BY_SERVER, FIRST_BY_DAGRE, LATER = (
    "first view (laid out by the server)",
    "first view (dagre in the browser)",
    "later views (kept layout)",
)


def measure_graph(url: str, dagre_url: str, pipeline: str, renders: int) -> dict[str, list[dict]]:
    """Each load's phases of a 200-step graph, by kind of load: a first view of a graph (each is another
    pipeline: a graph not laid out before) laid out by the server (Graphviz, at ``url``), a first view laid
    out by dagre in the browser (at ``dagre_url``, a server without Graphviz), and a later view of one graph
    (placed where the kept layout says). The kinds take turns, so all see the same load on the machine."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.browser import chromium

    fresh = [(make_pipeline(url, tag=f"v{i}"), make_pipeline(dagre_url, tag=f"d{i}")) for i in range(renders)]
    warm = make_pipeline(dagre_url, tag="warm")
    driver = chromium(width=1280, height=900)

    def drawn_in(base: str, name: str, laid_out: bool) -> dict:
        driver.get(f"{base}/console/pipelines/{name}")
        deadline = time.monotonic() + 30
        drawn = None
        while drawn is None and time.monotonic() < deadline:
            drawn = driver.execute_script("return document.getElementById('graph').dataset.drawnAt || null")
            time.sleep(0.05)
        if drawn is None:
            raise SystemExit("the graph was not drawn within 30 s")
        nodes = driver.execute_script("return window.consoleGraph.nodes().length")
        if nodes != LAYERS * WIDTH:
            raise SystemExit(f"the graph has {nodes} nodes")
        placed = driver.execute_script("return Boolean(Console.jsonData('graph-data').positions)")
        dagre = driver.execute_script("return typeof cytoscapeDagre !== 'undefined'")
        if (placed, dagre) != (laid_out, not laid_out):
            raise SystemExit(f"{name}: positions sent {placed}, dagre loaded {dagre}; expected {laid_out}")
        return driver.execute_script(PHASES)

    try:
        # The first loads fill the browser's cache of the vendored scripts, and the server's layout of `pipeline`.
        drawn_in(dagre_url, warm, laid_out=False)
        drawn_in(url, pipeline, laid_out=True)
        loads: dict[str, list[dict]] = {FIRST_BY_SERVER: [], FIRST_BY_DAGRE: [], LATER: []}
        for by_server, by_dagre in fresh:
            loads[FIRST_BY_SERVER].append(drawn_in(url, by_server, laid_out=True))
            loads[FIRST_BY_DAGRE].append(drawn_in(dagre_url, by_dagre, laid_out=False))
            loads[LATER].append(drawn_in(url, pipeline, laid_out=True))
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            raise SystemExit(f"browser console errors: {errors}")
        driver.save_screenshot(str(Path(tempfile.gettempdir()) / "console-bench-pipeline-200.png"))
        return loads
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per list page")
    parser.add_argument(
        "--renders", type=int, default=5, help="timed first views, and as many later views, of a 200-step graph"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="selfmaker-console-bench-"))
    data_dir, log_path = work / "data", work / "server.log"
    runtimes = work / "runtimes.json"
    runtimes.write_text(json.dumps({"images": {IMAGE: {"python": sys.executable}}}))
    log(f"data in {work}")

    with server(data_dir, log_path, runtimes) as first:
        template = run_one_training_job(first.url)
        make_experiments(first.url, args.experiments)
        pipeline = make_pipeline(first.url)
    copy_training_jobs(data_dir, template, args.jobs)

    # Beside it, a server without Graphviz (its own data), whose first views dagre lays out in the browser.
    without_graphviz = server(work / "data-dagre", work / "server-dagre.log", runtimes, graphviz_dot="")
    with server(data_dir, log_path, runtimes) as second, without_graphviz as dagre:
        listed = client(second.url).list_training_jobs(MaxResults=1, NameContains="bench-job-09999")
        if args.jobs >= 10_000 and not listed["TrainingJobSummaries"]:
            raise SystemExit("the copied jobs are not listed")
        rows = measure_lists(second.port, args.requests)
        graph_loads = measure_graph(second.url, dagre.url, pipeline, args.renders)

    print()
    # The load average says how much of the two cores others' work took meanwhile (shared machines).
    print(json.dumps({**machine(), "load average (1, 5, 15 min)": [round(x, 1) for x in os.getloadavg()]}))
    print(
        table(
            ["page", "p50 ms", "p95 ms", "max ms", f"p95 <= {GOAL_LIST_MS} ms"],
            rows,
            title=f"Console pages, {args.experiments:,} experiments and {args.jobs:,} training jobs, "
            f"{args.requests} requests each",
        )
    )
    print(
        table(
            [
                "graph, navigation to drawn",
                "loads",
                "p50 ms",
                "max ms",
                f"<= {GOAL_GRAPH_MS} ms",
                *(f"{phase} p50" for phase in PHASE_NAMES),
            ],
            [
                [
                    f"{LAYERS * WIDTH}-step pipeline, {what}",
                    str(len(loads)),
                    f"{statistics.median(load['total'] for load in loads):.0f}",
                    f"{max(load['total'] for load in loads):.0f}",
                    "yes" if max(load["total"] for load in loads) <= GOAL_GRAPH_MS else "NO",
                    *(f"{statistics.median(load[phase] for load in loads):.0f}" for phase in PHASE_NAMES),
                ]
                for what, loads in graph_loads.items()
            ],
        )
    )


if __name__ == "__main__":
    main()
