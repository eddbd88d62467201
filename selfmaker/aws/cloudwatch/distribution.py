"""A metric's values in one period, kept compactly enough to answer percentiles (p50, p99.9...).

CloudWatch answers percentiles from the values it was sent, not from statistic sets. We keep, next to each
statistic set, a map from a log-scaled bucket to how many values fell in it (as DDSketch does): a value's
bucket is ``ceil(log_GAMMA(|v| / SMALLEST))``, so every bucket spans 2 % of its value and the percentile
it answers is within 1 % of the true one (and clamped to the period's exact minimum and maximum). Buckets
are integers ordered as their values are: positive values above zero, negative ones below it (their
buckets mirrored), zero and magnitudes under SMALLEST at 0. Maps merge by adding counts, so seconds roll up
into minutes and hours like the statistic sets do. A metric whose values were never seen (only a statistic
set of several values was sent) has no distribution, and so no percentiles, as in CloudWatch.
"""

from __future__ import annotations

import math

GAMMA = 1.02
_LOG_GAMMA = math.log(GAMMA)
SMALLEST = 1e-9
# Magnitudes above this share the top bucket, whose representative (SMALLEST * GAMMA**index) must stay a float;
# a percentile there is clamped to the period's exact maximum anyway.
LARGEST = 1e290
# A map never grows past this many buckets: beyond it, the lowest buckets are folded into one (only the
# far low tail loses precision). Latencies from 1 µs to an hour span under 1,100 buckets.
MAX_BUCKETS = 2000

Distribution = dict[int, float]


def bucket(value: float) -> int:
    magnitude = min(abs(value), LARGEST)
    if magnitude < SMALLEST:
        return 0
    index = max(math.ceil(math.log(magnitude / SMALLEST) / _LOG_GAMMA), 0) + 1
    return index if value > 0 else -index


def representative(key: int) -> float:
    """The value a bucket stands for: the middle of its span, relatively (error at most (GAMMA-1)/(GAMMA+1))."""
    if key == 0:
        return 0.0
    index = abs(key) - 1
    value = SMALLEST * GAMMA**index * 2 / (1 + GAMMA)
    return value if key > 0 else -value


def of_values(values, counts=None) -> Distribution:
    found: Distribution = {}
    for value, count in zip(values, counts or [1.0] * len(values), strict=True):
        key = bucket(value)
        found[key] = found.get(key, 0.0) + count
    return _capped(found)


def merge(into: Distribution, other: Distribution) -> Distribution:
    for key, count in other.items():
        into[key] = into.get(key, 0.0) + count
    return _capped(into)


def _capped(found: Distribution) -> Distribution:
    if len(found) <= MAX_BUCKETS:
        return found
    keys = sorted(found)
    excess = keys[: len(keys) - MAX_BUCKETS + 1]
    folded = sum(found.pop(key) for key in excess)
    found[excess[-1]] = folded
    return found


def percentile(found: Distribution, p: float, low: float, high: float) -> float:
    """The nearest-rank ``p``-th percentile (0 to 100) of the values, clamped to [low, high]."""
    total = sum(found.values())
    if p <= 0:
        return low
    if p >= 100:
        return high
    rank = p / 100 * total
    seen = 0.0
    for key in sorted(found):
        seen += found[key]
        if seen >= rank - 1e-9 * total:
            return min(max(representative(key), low), high)
    return high


def to_json(found: Distribution | None) -> dict[str, float] | None:
    return None if found is None else {str(k): v for k, v in found.items()}


def from_json(stored: dict | None) -> Distribution | None:
    return None if stored is None else {int(k): float(v) for k, v in stored.items()}
