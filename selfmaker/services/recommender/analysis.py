"""The pure part of a benchmark: the users over time, the stopping conditions, the numbers reported.

Definitions (docs/recommender.md):

- A *window* is one measurement interval of the load generator (WINDOW_SECONDS, cut
  short where the number of users changes). Its rate is its successful invocations
  scaled to a minute.
- A *level* is a run of windows with the same number of users. Its rate is the rate
  over its windows (requests / seconds x 60), its latency percentiles those of all
  its requests.
- *Flat* (FlatInvocations): perf_analyzer's stability rule applied to the levels: the
  last FLAT_LEVELS levels' rates lie within FLAT_TOLERANCE of each other (max/min),
  i.e. adding users no longer raises the invocations. The level where the flat run
  begins is where "the Invocations graph first begins to level out".
- *MaxInvocations*: the rate of that level; without a plateau, the best level's.
  *ModelLatency*: the P95 latency of the same level, in microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WINDOW_SECONDS = 2.0
FLAT_LEVELS = 3
FLAT_TOLERANCE = 0.10
# The traffic of a Default job (and of an Advanced job without a TrafficPattern): users added quickly
# enough that a small model's invocations level out within a minute or two on one machine.
DEFAULT_PHASES = ({"InitialNumberOfUsers": 1, "SpawnRate": 6, "DurationInSeconds": 120},)


def schedule(pattern: dict | None) -> tuple[list[tuple[float, int]], float]:
    """([(seconds from start, users), ...], total seconds) for a TrafficPattern."""
    pattern = pattern or {"TrafficType": "PHASES", "Phases": list(DEFAULT_PHASES)}
    changes: list[tuple[float, int]] = []
    t = 0.0
    if (pattern.get("TrafficType") or "PHASES") == "STAIRS":
        stairs = pattern["Stairs"]
        step = stairs["DurationInSeconds"] / stairs["NumberOfSteps"]
        for i in range(stairs["NumberOfSteps"]):
            changes.append((round(i * step, 3), (i + 1) * stairs["UsersPerStep"]))
        return changes, float(stairs["DurationInSeconds"])
    for phase in pattern["Phases"]:
        users, rate = phase.get("InitialNumberOfUsers", 1), phase.get("SpawnRate", 0)
        duration = phase.get("DurationInSeconds", 120)
        changes.append((t, users))
        if rate > 0:
            every = 60.0 / rate
            k = 1
            while k * every < duration - 1e-9:
                changes.append((round(t + k * every, 3), users + k))
                k += 1
        t += duration
    return changes, t


def final_users(phase: dict) -> int:
    """Users at the end of a phase: its initial users plus one per spawn interval that started in it."""
    rate, duration = phase.get("SpawnRate", 0), phase.get("DurationInSeconds", 120)
    spawned = math.ceil(duration * rate / 60.0) - 1 if rate > 0 else 0
    return phase.get("InitialNumberOfUsers", 1) + max(spawned, 0)


def percentile(values: list[int], q: float) -> float:
    """Nearest-rank percentile (0 when there are none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * q / 100))
    return float(ordered[rank - 1])


@dataclass
class Level:
    users: int
    seconds: float = 0.0
    ok: int = 0
    errors: int = 0
    latencies_us: list[int] = field(default_factory=list)

    @property
    def rate_per_minute(self) -> float:
        return self.ok / self.seconds * 60.0 if self.seconds > 0 else 0.0


@dataclass
class Progress:
    """What the windows so far say, and whether a stopping condition is met."""

    max_invocations: int | None = None  # StoppingConditions.MaxInvocations (per minute)
    latency_threshold: tuple[float, float] | None = None  # (percentile, ms)
    stop_when_flat: bool = True
    levels: list[Level] = field(default_factory=list)
    windows: int = 0
    requests: int = 0
    errors: int = 0
    stopped_by: str | None = None

    def add(self, window: dict) -> None:
        seconds = max(window["end"] - window["start"], 1e-6)
        if not self.levels or self.levels[-1].users != window["users"]:
            self.levels.append(Level(window["users"]))
        level = self.levels[-1]
        level.seconds += seconds
        level.ok += window["ok"]
        level.errors += window["errors"]
        level.latencies_us.extend(window["latencies_us"])
        self.windows += 1
        self.requests += window["ok"] + window["errors"]
        self.errors += window["errors"]
        if self.stopped_by:
            return
        rate = window["ok"] / seconds * 60.0
        if self.max_invocations is not None and window["ok"] and rate >= self.max_invocations:
            self.stopped_by = f"MaxInvocations: {rate:.0f} invocations per minute reached {self.max_invocations}"
        elif self.latency_threshold is not None and window["latencies_us"]:
            q, limit_ms = self.latency_threshold
            observed = percentile(window["latencies_us"], q) / 1000.0
            if observed > limit_ms:
                self.stopped_by = f"ModelLatencyThresholds: P{q:g} latency {observed:.1f} ms exceeded {limit_ms:g} ms"
        if not self.stopped_by and self.stop_when_flat and self.flat_from() is not None:
            self.stopped_by = f"FlatInvocations: invocations stayed within {FLAT_TOLERANCE:.0%} over the last {FLAT_LEVELS} user levels"

    def _complete_levels(self) -> list[Level]:
        """Levels measured for at least one whole window (a level just begun says nothing yet)."""
        return [lv for lv in self.levels if lv.seconds >= WINDOW_SECONDS * 0.5 and lv.ok]

    def flat_from(self) -> Level | None:
        """The first level of a plateau of FLAT_LEVELS levels within FLAT_TOLERANCE, if there is one."""
        levels = self._complete_levels()
        for i in range(len(levels) - FLAT_LEVELS + 1):
            rates = [lv.rate_per_minute for lv in levels[i : i + FLAT_LEVELS]]
            if min(rates) > 0 and max(rates) / min(rates) <= 1 + FLAT_TOLERANCE:
                return levels[i]
        return None

    def chosen(self) -> Level | None:
        """The level whose numbers are reported: where invocations level out, else the best one."""
        levels = self._complete_levels() or [lv for lv in self.levels if lv.ok]
        if not levels:
            return None
        return self.flat_from() or max(levels, key=lambda lv: lv.rate_per_minute)

    def metrics(self) -> dict | None:
        """{MaxInvocations (per minute), ModelLatency (µs, P95), p50_us, p99_us, users} of the chosen level."""
        level = self.chosen()
        if level is None:
            return None
        return {
            "MaxInvocations": round(level.rate_per_minute),
            "ModelLatency": round(percentile(level.latencies_us, 95)),
            "p50_us": percentile(level.latencies_us, 50),
            "p99_us": percentile(level.latencies_us, 99),
            "users": level.users,
            "requests": level.ok,
        }
