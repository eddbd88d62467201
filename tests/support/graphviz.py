"""Graphviz's ``dot`` (Debian's ``graphviz``), which lays the console's pipeline graphs out on the server.

Without it the server falls back to dagre in the browser, so a test of the server's layout is skipped locally
and fails in CI (CI set): .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_dot() -> None:
    if shutil.which("dot"):
        return
    if os.environ.get("CI"):
        pytest.fail("Graphviz's dot is not installed; .ci/run must install it")
    pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")


def overlapping(positions: dict, sizes: dict) -> list[tuple[str, str]]:
    """The pairs of steps whose boxes (centred at their positions, ``sizes`` wide and high) overlap."""
    steps = sorted(positions)
    found = []
    for i, a in enumerate(steps):
        for b in steps[i + 1 :]:
            (ax, ay), (bx, by) = positions[a], positions[b]
            (aw, ah), (bw, bh) = sizes[a], sizes[b]
            if abs(ax - bx) < (aw + bw) / 2 and abs(ay - by) < (ah + bh) / 2:
                found.append((a, b))
    return found
