"""Instance types -> the CPU, memory and GPUs an instance gets (docs/instance-types.md), capped by the host."""

from __future__ import annotations

import os
import re
from pathlib import Path

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
# NVIDIA GPUs per instance, as AWS's accelerated-computing instance pages list them, for every GPU type the
# SageMaker model names (tests/test_instance_types.py checks the model's types against it). Neuron (inf*, trn*)
# and Gaudi (dl1) accelerators are no GPUs: those types count 0, as CPU types do.
_ONE_TO_16X = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")
GPUS = {
    **{f"ml.p2.{s}": n for s, n in (("xlarge", 1), ("8xlarge", 8), ("16xlarge", 16))},  # K80
    **{f"ml.p3.{s}": n for s, n in (("2xlarge", 1), ("8xlarge", 4), ("16xlarge", 8))},  # V100
    "ml.p3dn.24xlarge": 8,
    "ml.p4d.24xlarge": 8,  # A100
    "ml.p4de.24xlarge": 8,
    "ml.p5.4xlarge": 1,  # H100
    "ml.p5.48xlarge": 8,
    "ml.p5e.48xlarge": 8,  # H200
    "ml.p5en.48xlarge": 8,
    "ml.p6-b200.48xlarge": 8,  # B200
    "ml.p6-b300.48xlarge": 8,
    "ml.p6e-gb200.36xlarge": 4,  # 4 Blackwell GPUs per instance of the UltraServer
    **{f"ml.g4dn.{s}": 1 for s in _ONE_TO_16X},  # T4
    "ml.g4dn.12xlarge": 4,
    "ml.g4dn.metal": 8,
    **{f"ml.{family}.{s}": 1 for family in ("g5", "g6", "g6e") for s in _ONE_TO_16X},  # A10G, L4, L40S
    **{f"ml.{family}.{s}": n for family in ("g5", "g6", "g6e") for s, n in (("12xlarge", 4), ("24xlarge", 4))},
    **{f"ml.{family}.48xlarge": 8 for family in ("g5", "g6", "g6e")},
    "ml.gr6.4xlarge": 1,  # L4
    "ml.gr6.8xlarge": 1,
    **{f"ml.g7.{s}": n for s, n in (("2xlarge", 1), ("4xlarge", 1), ("8xlarge", 2), ("12xlarge", 4))},
    **{f"ml.g7.{s}": n for s, n in (("24xlarge", 4), ("48xlarge", 8))},  # RTX PRO 4500
    **{f"ml.g7e.{s}": n for s, n in (("2xlarge", 1), ("4xlarge", 1), ("8xlarge", 1), ("12xlarge", 2))},
    **{f"ml.g7e.{s}": n for s, n in (("24xlarge", 4), ("48xlarge", 8))},  # RTX PRO 6000
}
# Families whose every type has GPUs: a type of one that the table lacks is refused rather than guessed.
GPU_FAMILIES = {name.split(".")[1] for name in GPUS}

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


def gpus(instance_type: str) -> int:
    """The NVIDIA GPUs of an instance of this type as AWS sells it (0 for CPU, Neuron and Gaudi types). A type of
    a GPU family missing from the table raises ValueError: its count is unknown, never guessed."""
    if instance_type in GPUS:
        return GPUS[instance_type]
    family = (instance_type or "").split(".")[1:2]
    if family and family[0] in GPU_FAMILIES:
        raise ValueError(f"SelfMaker does not know how many GPUs an {instance_type} has; choose another instance type")
    return 0


def host_gpus() -> int:
    """The NVIDIA GPUs this machine shows (its /dev/nvidia<N> devices)."""
    return sum(1 for dev in Path("/dev").glob("nvidia*") if dev.name[len("nvidia") :].isdigit())


def size(instance_type: str) -> Limits:
    """An instance of this type as it is, uncapped: what a cluster node must have room for (ray executor)."""
    cpus, memory_gib = spec(instance_type)
    return Limits(cpus=cpus, memory_bytes=int(memory_gib * GIB), gpus=gpus(instance_type))


def limits(instance_type: str) -> Limits:
    """What an instance of this type gets here: its size, capped by this machine."""
    cpus, memory_gib = spec(instance_type)
    host_cpus = len(os.sched_getaffinity(0))
    host_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Limits(
        cpus=max(1, min(cpus, host_cpus)),
        memory_bytes=int(min(memory_gib * GIB, host_memory)),
        gpus=min(gpus(instance_type), host_gpus()),
    )
