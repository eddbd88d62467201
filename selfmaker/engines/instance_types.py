"""Instance types -> the CPU and memory an instance gets (docs/instance-types.md), capped by the host."""

from __future__ import annotations

import os
import re

from .executor.base import Limits

GIB = 1 << 30

# (vCPUs, memory GiB) of the types SageMaker users name most; others follow the size rule below.
TABLE = {
    "ml.t3.medium": (2, 4),
    "ml.t3.large": (2, 8),
    "ml.t3.xlarge": (4, 16),
    "ml.t3.2xlarge": (8, 32),
    "ml.m4.xlarge": (4, 16),
    "ml.m4.2xlarge": (8, 32),
    "ml.m4.4xlarge": (16, 64),
    "ml.m5.large": (2, 8),
    "ml.m5.xlarge": (4, 16),
    "ml.m5.2xlarge": (8, 32),
    "ml.m5.4xlarge": (16, 64),
    "ml.m5.12xlarge": (48, 192),
    "ml.m5.24xlarge": (96, 384),
    "ml.c4.xlarge": (4, 7.5),
    "ml.c4.2xlarge": (8, 15),
    "ml.c5.large": (2, 4),
    "ml.c5.xlarge": (4, 8),
    "ml.c5.2xlarge": (8, 16),
    "ml.c5.4xlarge": (16, 32),
    "ml.c5.9xlarge": (36, 72),
    "ml.c5.18xlarge": (72, 144),
    "ml.r5.large": (2, 16),
    "ml.r5.xlarge": (4, 32),
    "ml.r5.2xlarge": (8, 64),
    "ml.g4dn.xlarge": (4, 16),
    "ml.g4dn.2xlarge": (8, 32),
    "ml.g5.xlarge": (4, 16),
    "ml.g5.2xlarge": (8, 32),
    "ml.p3.2xlarge": (8, 61),
    "ml.p3.8xlarge": (32, 244),
}
# Memory per vCPU by family letter, for types not in the table: c = compute, r = memory, others general.
_GIB_PER_CPU = {"c": 2, "r": 8, "x": 16}


def spec(instance_type: str) -> tuple[int, float]:
    """(vCPUs, memory GiB) of an instance type as AWS sells it."""
    if instance_type in TABLE:
        return TABLE[instance_type]
    match = re.fullmatch(r"ml\.([a-z]+)\d*[a-z]*\.(\d*)(x?large|medium|small|metal)", instance_type or "")
    if not match:
        return 2, 8
    family, multiple, size = match.groups()
    cpus = {"medium": 1, "small": 1, "large": 2}.get(size, 4 * int(multiple or 1))
    return cpus, cpus * _GIB_PER_CPU.get(family[0], 4)


def size(instance_type: str) -> Limits:
    """An instance of this type as it is, uncapped: what a cluster node must have room for (ray executor)."""
    cpus, memory_gib = spec(instance_type)
    return Limits(cpus=cpus, memory_bytes=int(memory_gib * GIB))


def limits(instance_type: str) -> Limits:
    """What an instance of this type gets here: its size, capped by this machine."""
    cpus, memory_gib = spec(instance_type)
    host_cpus = len(os.sched_getaffinity(0))
    host_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Limits(cpus=max(1, min(cpus, host_cpus)), memory_bytes=int(min(memory_gib * GIB, host_memory)))
