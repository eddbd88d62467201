"""Notebook-instance benchmark: how long until a notebook instance is InService, and until its kernel answers.

The JupyterLab runtime is built (or found built, with ``--runtimes-dir``) before the server starts and
before anything is timed; then ``--warmup`` instances go through the cycle below untimed (their numbers
are shown apart: the first launch reads the runtime from disk). Each of ``--runs`` timed runs, one after
another, on its own new instance (ml.t3.medium):

* CreateNotebookInstance -> InService: from just before the client sends Create to the first
  DescribeNotebookInstance answer that says InService;
* then StopNotebookInstance, waited for (untimed), and StartNotebookInstance -> InService, and
  StartNotebookInstance -> a kernel answering: after InService, what a browser does: a presigned URL
  opened (cookie, redirect to /lab, which sets Jupyter's _xsrf cookie), a kernel created through the
  proxy (POST api/kernels), ``1+1`` executed over its WebSocket channel, until the ``execute_result``
  "2" arrives;
* then Stop and Delete, waited for (untimed).

Describe is polled every ``--interval`` seconds (default 0.05), so an InService time is late by at most
that plus one Describe round trip. The server's own line in the instance's log, "JupyterLab answers, X s
after its start", splits the Create time into JupyterLab's own start-up and the rest. Goal (issue 16):
InService at most 5 s with a warm runtime.

    python benchmarks/notebooks.py [--runs 5] [--warmup 1] [--interval 0.05] [--runtimes-dir DIR]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, machine, selfmaker_server, table

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
INSTANCE_TYPE = "ml.t3.medium"
TIMEOUT = 180.0  # seconds any one wait may take before the benchmark fails


class Browser:
    """urllib with a cookie jar that follows redirects: what a browser does with the presigned URL."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def open(self, url: str, body: dict | None = None) -> tuple[int, bytes]:
        headers = {}
        if body is not None:  # Jupyter wants its _xsrf cookie echoed in a header on writes
            xsrf = next((c.value for c in self.jar if c.name == "_xsrf"), "")
            headers = {"Content-Type": "application/json", "X-XSRFToken": xsrf}
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def wait_status(sm, name: str, wanted: str, interval: float) -> float:
    """Poll Describe until ``wanted``; the monotonic time its answer arrived (raises on Failed or timeout)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        described = sm.describe_notebook_instance(NotebookInstanceName=name)
        arrived = time.monotonic()
        if described["NotebookInstanceStatus"] == wanted:
            return arrived
        if described["NotebookInstanceStatus"] == "Failed":
            raise RuntimeError(f"{name} Failed: {described.get('FailureReason')}")
        time.sleep(interval)
    raise RuntimeError(f"{name} was not {wanted} within {TIMEOUT:.0f} s")


def wait_gone(sm, name: str, interval: float) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if not sm.list_notebook_instances(NameContains=name)["NotebookInstances"]:
            return
        time.sleep(interval)
    raise RuntimeError(f"{name} was not deleted within {TIMEOUT:.0f} s")


def kernel_answers(sm, name: str) -> None:
    """Open the presigned URL, create a kernel through the proxy and execute ``1+1`` over its WebSocket."""
    url = sm.create_presigned_notebook_instance_url(NotebookInstanceName=name)["AuthorizedUrl"]
    browser = Browser()
    status, page = browser.open(url)
    if status != 200:
        raise RuntimeError(f"the presigned URL answered {status}: {page[:300]!r}")
    base = url.split("?", 1)[0]
    status, body = browser.open(f"{base}api/kernels", {"name": "python3"})
    if status != 201:
        raise RuntimeError(f"POST api/kernels answered {status}: {body[:300]!r}")
    kernel = json.loads(body)["id"]
    parts = urlsplit(base)
    ws_url = f"ws://{parts.netloc}{parts.path}api/kernels/{kernel}/channels"
    msg_id = uuid.uuid4().hex
    request = {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "bench",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": "",
        },
        "parent_header": {},
        "metadata": {},
        "content": {"code": "1+1", "silent": False, "store_history": False},
        "channel": "shell",
    }
    with connect(ws_url, additional_headers={"Cookie": browser.cookie_header()}, open_timeout=60) as ws:
        ws.send(json.dumps(request))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=TIMEOUT))
            if message.get("parent_header", {}).get("msg_id") == msg_id and message["msg_type"] == "execute_result":
                result = message["content"]["data"]["text/plain"]
                if result != "2":
                    raise RuntimeError(f"1+1 gave {result!r}")
                return
    raise RuntimeError(f"the kernel of {name} did not answer within {TIMEOUT:.0f} s")


def jupyter_startup(data_dir: Path, name: str) -> list[float]:
    """The server's "JupyterLab answers, X s after its start" figures for the instance, in order."""
    found = []
    for path in data_dir.glob(f"notebooks/*/*/{name}/instance.log"):
        found += [float(s) for s in re.findall(r"JupyterLab answers, ([0-9.]+) s after its start", path.read_text())]
    return found


def one_run(sm, data_dir: Path, name: str, interval: float) -> dict:
    started = time.monotonic()
    sm.create_notebook_instance(NotebookInstanceName=name, InstanceType=INSTANCE_TYPE, RoleArn=ROLE)
    in_service = wait_status(sm, name, "InService", interval) - started
    sm.stop_notebook_instance(NotebookInstanceName=name)
    wait_status(sm, name, "Stopped", interval)
    started = time.monotonic()
    sm.start_notebook_instance(NotebookInstanceName=name)
    restarted = wait_status(sm, name, "InService", interval) - started
    kernel_answers(sm, name)
    answered = time.monotonic() - started
    jupyter = jupyter_startup(data_dir, name) or [float("nan")] * 2  # read now: Delete removes the log
    sm.stop_notebook_instance(NotebookInstanceName=name)
    wait_status(sm, name, "Stopped", interval)
    sm.delete_notebook_instance(NotebookInstanceName=name)
    wait_gone(sm, name, interval)
    return {"create": in_service, "start": restarted, "kernel": answered, "jupyter": jupyter}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed instances first (shown apart)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between Describe polls")
    parser.add_argument("--runtimes-dir", help="reuse a runtimes directory (default: a fresh temporary one)")
    args = parser.parse_args()
    from selfmaker.engines import runtimes

    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-notebooks-") as tmp:
        runtimes_dir = Path(args.runtimes_dir or f"{tmp}/runtimes").resolve()
        built = time.monotonic()
        runtimes.ensure(runtimes.notebook(), runtimes_dir, log)  # not timed: the runtime is warm before any run
        log(f"notebook runtime ready in {time.monotonic() - built:.1f} s")
        data_dir = Path(tmp) / "data"
        server = selfmaker_server(data_dir, Path(tmp) / "server.log", "--runtimes-dir", str(runtimes_dir))
        options = dict(region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="x")
        results, warmups = [], []
        load_before = os.getloadavg()
        with server:
            sm = boto3.client("sagemaker", endpoint_url=server.url, **options)
            for i in range(args.warmup + args.runs):
                result = one_run(sm, data_dir, f"nb-bench-{uuid.uuid4().hex[:6]}-{i}", args.interval)
                (warmups if i < args.warmup else results).append(result)
                label = f"warm-up {i + 1}" if i < args.warmup else f"run {i + 1 - args.warmup}"
                log(
                    f"{label}: InService {result['create']:.2f} s after "
                    f"Create, {result['start']:.2f} s after Start, kernel answered {result['kernel']:.2f} s after "
                    f"Start (JupyterLab answered {', '.join(f'{s:.2f}' for s in result['jupyter'])} s after its "
                    f"launch)"
                )
    load_after = os.getloadavg()
    print(f"machine: {machine()}")
    before, after = (" / ".join(f"{v:.2f}" for v in load) for load in (load_before, load_after))
    print(f"load average (1 / 5 / 15 min): {before} before, {after} after")
    rows = []
    for label, key in (
        ("CreateNotebookInstance -> InService", "create"),
        ("  of which JupyterLab's own start-up (server log)", "jupyter-create"),
        ("StartNotebookInstance -> InService", "start"),
        ("StartNotebookInstance -> kernel answered 1+1", "kernel"),
    ):
        values = sorted(r["jupyter"][0] if key == "jupyter-create" else r[key] for r in results)
        warm = ", ".join(f"{(w['jupyter'][0] if key == 'jupyter-create' else w[key]):.2f}" for w in warmups)
        rows.append([label, statistics.median(values), values[0], values[-1], warm or None])
    print(
        table(
            ["notebook instance (s)", "median", "min", "max", "warm-up"],
            rows,
            title=f"{args.runs} runs one after another, {INSTANCE_TYPE}, Describe polled every "
            f"{args.interval * 1000:.0f} ms",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
