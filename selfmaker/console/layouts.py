"""Pipeline graph layouts, kept once made, so a graph is laid out once per definition and account.

A layout depends only on the graph: the steps, their types (their sizes) and the edges (``digest``). The
server makes it with Graphviz (:mod:`.graphviz`) the first time a page shows the graph and keeps it
(``keep``); the page gets the positions with its data and Cytoscape places the steps there (a "preset"
layout, no dagre), on the pipeline's page and on each execution of the same definition. Only where the
server cannot (no ``dot``, or it failed) does the browser run dagre and post the positions back
(``POST /console/pipelines/layout``, CSRF-checked like every action, ``put``), for every later view.

What a browser posts is checked against what the server sent it: only a graph the server offered to this
account (``expect``) is accepted, with exactly its steps, each at a finite position; anything else is
refused and changes nothing. Both tables are bounded (least recently used out) and live in the server's
memory: a restart only costs one more dagre run per graph.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict

MAX_GRAPHS = 512
MAX_COORDINATE = 1e7

Positions = dict[str, tuple[float, float]]


def digest(graph: dict) -> str:
    """What dagre's layout depends on: each step's id and type, and the edges."""
    shape = [[(n["id"], n["type"]) for n in graph["nodes"]], [(e["source"], e["target"]) for e in graph["edges"]]]
    return hashlib.sha256(json.dumps(shape, separators=(",", ":")).encode()).hexdigest()


class LayoutCache:
    def __init__(self, capacity: int = MAX_GRAPHS) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self._laid_out: OrderedDict[tuple[str, str], Positions] = OrderedDict()
        self._offered: OrderedDict[tuple[str, str], frozenset[str]] = OrderedDict()

    def get(self, account_id: str, key: str) -> Positions | None:
        with self._lock:
            found = self._laid_out.get((account_id, key))
            if found is not None:
                self._laid_out.move_to_end((account_id, key))
            return found

    def expect(self, account_id: str, key: str, step_ids) -> None:
        """Remember that this account was sent this graph to lay out: its positions may come back."""
        with self._lock:
            self._offered[(account_id, key)] = frozenset(step_ids)
            self._offered.move_to_end((account_id, key))
            while len(self._offered) > self._capacity:
                self._offered.popitem(last=False)

    def put(self, account_id: str, key: str, positions: object) -> str | None:
        """Keep a layout the browser made; the reason when it is refused (and nothing is kept)."""
        with self._lock:
            steps = self._offered.get((account_id, key))
        if steps is None:
            return "No layout of this graph was asked for."
        if not isinstance(positions, dict) or set(positions) != steps:
            return "The layout must place exactly the graph's steps."
        checked: Positions = {}
        for step, point in positions.items():
            if not (isinstance(point, list) and len(point) == 2 and all(_coordinate(v) for v in point)):
                return f"The position of {step!r} must be two finite numbers."
            checked[step] = (float(point[0]), float(point[1]))
        self.keep(account_id, key, checked)
        return None

    def keep(self, account_id: str, key: str, positions: Positions) -> None:
        """Keep a layout the server made (or a browser's, once checked)."""
        with self._lock:
            self._offered.pop((account_id, key), None)
            self._laid_out[(account_id, key)] = positions
            self._laid_out.move_to_end((account_id, key))
            while len(self._laid_out) > self._capacity:
                self._laid_out.popitem(last=False)


def _coordinate(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= MAX_COORDINATE
    )


def cache(backends) -> LayoutCache:
    return backends.shared("console.layouts", LayoutCache)
