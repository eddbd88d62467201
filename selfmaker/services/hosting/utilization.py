"""CPU and memory utilization of endpoint instances, read from /proc, published as AWS does.

An instance is a process tree (the executor's supervisor, bubblewrap, the model server
and its workers). Its CPU time is the sum of the tree's user + system time, its memory
the sum of the tree's resident set sizes. Utilization is relative to the instance
type's caps (engines/instance_types.py, the CPUs and memory the instance really gets):

- ``CPUUtilization``: AWS's definition, the sum over the instance's CPUs, so 0 to
  100 x its vCPUs (an ml.m5.large at full load reads 200 %);
- ``MemoryUtilization``: resident memory over the instance's memory cap, 0 to 100 %.

A :class:`Utilization` Periodic samples every instance of every group every
SAMPLE_SECONDS and records both metrics in the ``/aws/sagemaker/Endpoints`` namespace
with the dimensions EndpointName and VariantName (one value per instance, so the
series' Average is the variant's mean, its Maximum the busiest instance).
Consumers that need their own window (Inference Recommender's benchmarks, shadow
tests) read :func:`usage` and take differences.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ...aws.cloudwatch import metric_store
from ...backends import background_worker
from ...engines import instance_types
from ...engines.periodic import Periodic
from .fleet import fleet
from .instances import Instance

NAMESPACE = "/aws/sagemaker/Endpoints"
SAMPLE_SECONDS = 10.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    """What a set of instances had used by ``at`` (monotonic seconds): cumulative CPU, current memory."""

    at: float
    cpu_seconds: float
    rss_bytes: int
    cpus: int  # the instances' CPU capacity (vCPUs each gets here, summed)
    memory_bytes: int  # their memory capacity, summed
    instances: int

    def cpu_percent_since(self, earlier: Usage) -> float:
        """CPUUtilization between two readings, AWS-style: per instance, summed over its CPUs."""
        elapsed = self.at - earlier.at
        if elapsed <= 0 or not self.instances:
            return 0.0
        return 100.0 * (self.cpu_seconds - earlier.cpu_seconds) / elapsed / self.instances

    @property
    def memory_percent(self) -> float:
        return 100.0 * self.rss_bytes / self.memory_bytes if self.memory_bytes else 0.0


def _process_table() -> dict[int, tuple[int, float, int]]:
    """pid -> (parent pid, CPU seconds, resident bytes) of every process we can read."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # after the command: state ppid ... utime(11) stime(12) ... rss(21), counted from "state" = 0
        table[int(entry.name)] = (
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / _CLK_TCK,
            int(fields[21]) * _PAGE,
        )
    return table


def _tree(table: dict[int, tuple[int, float, int]], root: int) -> tuple[float, int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    cpu, rss, pending = 0.0, 0, [root]
    while pending:
        pid = pending.pop()
        if pid in table:
            cpu += table[pid][1]
            rss += table[pid][2]
        pending += children.get(pid, [])
    return cpu, rss


def _pid(instance: Instance) -> int | None:
    try:
        return int((instance.state / "pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def instance_usage(members: list[Instance], instance_type: str, table=None) -> Usage:
    """The summed usage of these instances (all of one instance type) now."""
    table = _process_table() if table is None else table
    limits = instance_types.limits(instance_type)
    cpu, rss, count = 0.0, 0, 0
    for instance in members:
        pid = _pid(instance)
        if pid is None or pid not in table:
            continue
        c, r = _tree(table, pid)
        cpu, rss, count = cpu + c, rss + r, count + 1
    return Usage(time.monotonic(), cpu, rss, limits.cpus * count, limits.memory_bytes * count, count)


def usage(backends, endpoint_name: str, account_id: str, region: str) -> Usage | None:
    """The usage of one endpoint's instances (all its groups), None if it has none running here."""
    found = [
        (g, members)
        for g, members in fleet(backends).groups()
        if g.endpoint_name == endpoint_name and g.account_id == account_id and g.region == region
    ]
    if not found:
        return None
    table = _process_table()
    parts = [instance_usage(members, g.instance_type, table) for g, members in found]
    return Usage(
        time.monotonic(),
        sum(p.cpu_seconds for p in parts),
        sum(p.rss_bytes for p in parts),
        sum(p.cpus for p in parts),
        sum(p.memory_bytes for p in parts),
        sum(p.instances for p in parts),
    )


class Utilization(Periodic):
    """Publishes CPUUtilization and MemoryUtilization per endpoint variant, every SAMPLE_SECONDS."""

    def __init__(self, backends):
        super().__init__("selfmaker-utilization", SAMPLE_SECONDS, final_run=False)
        self.backends = backends
        self._last: dict[str, tuple[float, float]] = {}  # instance id -> (monotonic time, CPU seconds)

    def run(self) -> None:
        groups = fleet(self.backends).groups() if "fleet" in self.backends.services else []
        if not groups:
            self._last.clear()
            return
        table = _process_table()
        seen = set()
        for group, members in groups:
            limits = instance_types.limits(group.instance_type)
            dimensions = {"EndpointName": group.endpoint_name, "VariantName": group.variant_name}
            for instance in members:
                pid = _pid(instance)
                if pid is None or pid not in table:
                    continue
                cpu, rss = _tree(table, pid)
                now = time.monotonic()
                seen.add(instance.id)
                before = self._last.get(instance.id)
                self._last[instance.id] = (now, cpu)
                self._record(group, dimensions, "MemoryUtilization", 100.0 * rss / limits.memory_bytes)
                if before is not None and now > before[0]:
                    self._record(group, dimensions, "CPUUtilization", 100.0 * (cpu - before[1]) / (now - before[0]))
        for gone in set(self._last) - seen:
            del self._last[gone]

    def _record(self, group, dimensions: dict, name: str, value: float) -> None:
        metric_store.record(
            self.backends, group.account_id, group.region, NAMESPACE, name, dimensions, max(value, 0.0), "Percent"
        )


@background_worker
def utilization(backends) -> Utilization:
    return backends.shared("hosting.utilization", lambda: Utilization(backends))
