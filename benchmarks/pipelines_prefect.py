"""Prefect running benchmarks/pipelines.py's 20-step fan-out/fan-in, for the side-by-side table.

Local and without external services, as Prefect's own docs set it up: ``prefect
server start`` (its SQLite database, the UI off), a ``process`` work pool with
``prefect worker start`` polling it, a deployment of the flow from a local
directory, runs started with ``run_deployment``. The flow submits its 20 tasks
to the default task runner (a thread pool) with ``wait_for`` giving the graph;
each task runs ``python -c pass`` as a subprocess, as SelfMaker's no-op
processing steps do.

Times come from Prefect's own records of each run, as SelfMaker's come from its
own: a task run's end_time (its Completed state) to the start_time (its
Running state) of each task that waits for it is the hand-off; the flow run's
start_time to its end_time is the wall time (how long the worker took to pick
the run up is reported apart: it is the worker's poll, not the engine); each
task's own time is start to end, and the critical path is First + the slowest
middle task + Last.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HOST, ServerProcess, free_port, installed_version, peer_venv

PACKAGES = ["prefect==3.9.1"]
MIDDLE = 18

FLOW = f"""
import subprocess, sys
from prefect import flow, task

@task
def step(name: str) -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)

@flow
def fan() -> None:
    first = step.with_options(task_run_name="First").submit("First")
    middle = [
        step.with_options(task_run_name=f"Middle{{i:02d}}").submit(f"Middle{{i:02d}}", wait_for=[first])
        for i in range({MIDDLE})
    ]
    last = step.with_options(task_run_name="Last").submit("Last", wait_for=middle)
    last.result()
"""

DRIVER = """
import asyncio, json, sys
from pathlib import Path
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment

source = sys.argv[1]
flow.from_source(source=source, entrypoint="flow.py:fan").deploy(name="fan", work_pool_name="bench", print_next_steps=False)


async def measure(run_id):
    async with get_client() as client:
        for _ in range(300):  # task runs report their states as events: wait until all 20 have ended
            run = await client.read_flow_run(run_id)
            flt = FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            tasks = await client.read_task_runs(flow_run_filter=flt)
            if len(tasks) == 20 and all(t.end_time for t in tasks) and run.end_time:
                break
            await asyncio.sleep(0.1)
    times = {t.name: (t.start_time.timestamp(), t.end_time.timestamp()) for t in tasks}
    middle = [n for n in times if n.startswith("Middle")]
    last_middle_end = max(times[n][1] for n in middle)
    own = {n: end - start for n, (start, end) in times.items()}
    return {
        "state": run.state_type.value,
        "tasks": len(times),
        "handoffs": [times[n][0] - times["First"][1] for n in middle] + [times["Last"][0] - last_middle_end],
        "wall": run.end_time.timestamp() - run.start_time.timestamp(),
        "pickup": run.start_time.timestamp() - run.created.timestamp(),
        "sum": sum(own.values()),
        "critical": own["First"] + max(own[n] for n in middle) + own["Last"],
    }


print("ready", flush=True)
for line in sys.stdin:  # one run per line, so the benchmark can interleave them with SelfMaker's
    run = run_deployment("fan/fan", timeout=600)
    print(json.dumps(asyncio.run(measure(run.id))), flush=True)
"""


class Prefect:
    """A local Prefect server, a process worker, and a driver that runs the deployment on request."""

    def __init__(self, venvs: Path, tmp: Path):
        self.bin_dir = peer_venv("prefect", PACKAGES, venvs)
        self.version = installed_version(self.bin_dir, "prefect")
        self.work = tmp / "prefect"
        (self.work / "flow").mkdir(parents=True)
        (self.work / "flow" / "flow.py").write_text(FLOW)
        port = free_port()
        self.env = {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "HOME": str(self.work),
            "PREFECT_HOME": str(self.work / "home"),
            "PREFECT_API_URL": f"http://{HOST}:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        argv = [str(self.bin_dir / "prefect"), "server", "start", "--host", HOST, "--port", str(port)]
        self.server = ServerProcess("prefect", argv, port, "/api/health", self.work / "server.log", env=self.env)
        self.processes: list[subprocess.Popen] = []

    def _spawn(self, argv: list[str], log_name: str, **options) -> subprocess.Popen:
        with open(self.work / log_name, "ab") as log_file:
            process = subprocess.Popen(argv, env=self.env, stderr=log_file, **options)
        self.processes.append(process)
        return process

    def __enter__(self) -> Prefect:
        self.server.start(timeout=240)
        try:
            prefect = str(self.bin_dir / "prefect")
            subprocess.run(
                [prefect, "work-pool", "create", "bench", "--type", "process"],
                check=True,
                env=self.env,
                capture_output=True,
            )
            self._spawn(
                [prefect, "worker", "start", "--pool", "bench", "--type", "process"],
                "worker.log",
                stdout=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            self.driver = self._spawn(
                [str(self.bin_dir / "python"), "-c", DRIVER, str(self.work / "flow")],
                "driver.log",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            while (line := self.driver.stdout.readline()).strip() != "ready":  # deploy() prints a table first
                if not line:
                    raise RuntimeError(f"the Prefect driver did not start; see {self.work / 'driver.log'}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def run(self) -> dict:
        """One run of the deployment, measured from Prefect's records."""
        self.driver.stdin.write("run\n")
        self.driver.stdin.flush()
        while not (line := self.driver.stdout.readline()).startswith("{"):
            if not line:
                raise RuntimeError(f"the Prefect driver ended; see {self.work / 'driver.log'}")
        result = json.loads(line)
        if result["state"] != "COMPLETED" or result["tasks"] != MIDDLE + 2:
            raise RuntimeError(f"a Prefect run did not complete its {MIDDLE + 2} tasks: {result}")
        return result

    def __exit__(self, *exc) -> None:
        processes, self.processes = self.processes, []  # stopping twice is harmless
        for process in reversed(processes):
            if process.stdin:
                process.stdin.close()
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.server.stop()
