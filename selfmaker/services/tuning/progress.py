"""A trial's objective metric as it goes: every value its training job has logged so far.

Early stopping and Hyperband decide from the objective's intermediate values (AWS: "all metrics that
correspond to an objective metric are used"): the n-th value the objective's MetricDefinition regex
matches in the log of the job's first instance is step n (its n-th epoch). The log file is the
source of truth, so nothing here must survive a restart: a cache keeps how far each log was read
(complete lines only), and a new server reads the logs again from the start.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from ..jobs.training import metric_series

MAX_CACHED = 4096  # logs followed at once (an LRU: a forgotten log is read again from its start)

_cache: OrderedDict[tuple[Path, str], tuple[int, list[float]]] = OrderedDict()
_lock = threading.Lock()


def objective_values(log: Path, regex: str) -> list[float]:
    """The values ``regex`` captured in ``log``'s complete lines, in order (a copy)."""
    key = (log, regex)
    with _lock:
        offset, values = _cache.get(key, (0, []))
    try:
        with open(log, "rb") as f:
            size = f.seek(0, 2)
            if size < offset:  # the file was replaced (the job started over): read it again
                offset, values = 0, []
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return list(values)
    end = chunk.rfind(b"\n") + 1
    if end > 0:
        values = values + metric_series(chunk[:end].decode("utf-8", "replace"), regex)
        offset += end
    with _lock:
        _cache[key] = (offset, values)
        _cache.move_to_end(key)
        while len(_cache) > MAX_CACHED:
            _cache.popitem(last=False)
    return list(values)
