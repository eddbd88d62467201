"""A pipeline graph laid out on the server by Graphviz's ``dot`` (Debian's ``graphviz``), for its first view.

A first view of a graph used to run dagre in the browser: about a third of a 200-step graph's time to appear,
and the most variable part (benchmarks/console.py). ``dot`` lays out the same graph in tens of milliseconds,
in its own process: it is killed at a timeout, holds no lock of the server's, and at most ``CONCURRENT`` run
at once, from threads of their own (a burst of first views never takes the threads API requests run on).
It was chosen over grandalf (pure Python, in the server's process) by measurement: as fast on the
benchmark's graph, three to four times faster on graphs with long edges (docs/benchmarks.md#console).

Only positions come back, in Cytoscape's pixels (y down), for the steps' centres. Steps are named ``n0``,
``n1``... in the DOT text, never by their names: a step name is the caller's text and never reaches ``dot``.
Whatever goes wrong (no ``dot``, a timeout, an answer that does not place every step) gives None, and the
page falls back to dagre in the browser.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("selfmaker.console")

TIMEOUT_SECONDS = 10.0  # one dot run
WAIT_SECONDS = 15.0  # a page's wait for its layout, queued behind others included; then the browser lays it out
CONCURRENT = 2  # dot runs at once
POINTS_PER_INCH = 72  # DOT sizes are inches; at Cytoscape's zoom 1 a pixel is a point
# Each kind of step's size and the spacing, as console-graph.js draws them (pixels).
STEP_SIZE = (150, 44)
SIZES = {"Condition": (110, 60)}
NODE_SEPARATION, RANK_SEPARATION = 30, 60

_runs = ThreadPoolExecutor(CONCURRENT, thread_name_prefix="console-graphviz")

Positions = dict[str, tuple[float, float]]


def dot_source(graph: dict) -> str:
    """The graph in DOT, left to right, each step a box of its drawn size, named by its index."""
    index = {node["id"]: i for i, node in enumerate(graph["nodes"])}
    lines = [
        "digraph pipeline {",
        f"graph [rankdir=LR, splines=false, nodesep={NODE_SEPARATION / POINTS_PER_INCH:.4f},"
        f" ranksep={RANK_SEPARATION / POINTS_PER_INCH:.4f}];",
        'node [shape=box, fixedsize=true, label=""];',
    ]
    for i, node in enumerate(graph["nodes"]):
        width, height = SIZES.get(node["type"], STEP_SIZE)
        lines.append(f"n{i} [width={width / POINTS_PER_INCH:.4f}, height={height / POINTS_PER_INCH:.4f}];")
    lines.extend(
        f"n{index[e['source']]} -> n{index[e['target']]};"
        for e in graph["edges"]
        if e["source"] in index and e["target"] in index
    )
    lines.append("}")
    return "\n".join(lines) + "\n"


def parse_plain(text: str, ids: list[str]) -> Positions | None:
    """Positions from ``dot -Tplain`` (``graph SCALE W H``, ``node NAME X Y ...`` in inches, y up); None unless
    every step is placed once at finite coordinates."""
    height = None
    placed: Positions = {}
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["graph"] and len(fields) >= 4:
            height = float(fields[3])
        elif fields[:1] == ["node"] and len(fields) >= 4 and height is not None:
            name = fields[1]
            if not (name.startswith("n") and name[1:].isdigit() and int(name[1:]) < len(ids)):
                return None
            x, y = float(fields[2]), float(fields[3])
            if not (math.isfinite(x) and math.isfinite(y)):
                return None
            placed[ids[int(name[1:])]] = (round(x * POINTS_PER_INCH, 1), round((height - y) * POINTS_PER_INCH, 1))
    return placed if len(placed) == len(ids) else None


async def layout(graph: dict, program: str) -> Positions | None:
    """The steps' positions as ``program`` (dot) lays the graph out, or None (see the module's docstring)."""
    found = _installed(program) if program else None
    if found is None or not graph["nodes"]:
        return None
    run = asyncio.get_running_loop().run_in_executor(_runs, run_dot, graph, found)
    try:
        return await asyncio.wait_for(run, WAIT_SECONDS)  # a run not started yet is cancelled
    except TimeoutError:
        log.warning("console graph layout: no dot run within %.0f s; the browser lays it out", WAIT_SECONDS)
        return None


@functools.lru_cache(maxsize=8)
def _installed(program: str) -> str | None:
    """Where ``program`` is (on PATH unless a path), looked up and, when missing, said once."""
    found = shutil.which(program)
    if found is None:
        log.warning("console graph layout: %s is not installed (Debian: graphviz); browsers lay graphs out", program)
    return found


def run_dot(graph: dict, program: str) -> Positions | None:
    """``layout``'s work, in one of its threads: dot, killed after TIMEOUT_SECONDS."""
    try:
        done = subprocess.run(
            [program, "-Tplain"],
            input=dot_source(graph).encode(),
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as err:  # not installed, not runnable, timed out
        log.warning("console graph layout: %s failed (%s); the browser lays it out", program, err)
        return None
    if done.returncode != 0:
        log.warning("console graph layout: %s exited %d: %s", program, done.returncode, done.stderr[:300])
        return None
    try:
        positions = parse_plain(done.stdout.decode(), [node["id"] for node in graph["nodes"]])
    except (UnicodeDecodeError, ValueError):
        positions = None
    if positions is None:
        log.warning("console graph layout: %s's answer does not place every step", program)
    return positions
