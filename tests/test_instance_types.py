"""Instance types' GPUs (engines/instance_types.py): the table covers every GPU type the SageMaker model names,
and this machine (no GPU) gives an instance none."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from selfmaker.engines import instance_types

MODEL = Path(instance_types.__file__).parents[1] / "server/service_models/sagemaker/2017-07-24/service-2.json.gz"


def model_instance_types() -> set[str]:
    shapes = json.loads(gzip.open(MODEL).read())["shapes"].values()
    return {v for shape in shapes for v in shape.get("enum", []) if re.fullmatch(r"ml\.[a-z0-9-]+\.[a-z0-9]+", v)}


def test_every_gpu_family_type_the_model_names_has_its_count_in_the_table():
    named = model_instance_types()
    gpu_types = {t for t in named if t.split(".")[1] in instance_types.GPU_FAMILIES}
    assert gpu_types and gpu_types <= set(instance_types.GPUS)
    for t in named:
        instance_types.gpus(t)  # never raises for a type the API accepts


@pytest.mark.parametrize(
    "instance_type, count",
    [
        ("ml.p3.2xlarge", 1),
        ("ml.p3.8xlarge", 4),
        ("ml.p3.16xlarge", 8),
        ("ml.p4d.24xlarge", 8),
        ("ml.p5.48xlarge", 8),
        ("ml.g4dn.xlarge", 1),
        ("ml.g4dn.12xlarge", 4),
        ("ml.g5.48xlarge", 8),
        ("ml.g6e.24xlarge", 4),
        ("ml.p2.16xlarge", 16),
        ("ml.inf2.xlarge", 0),  # Neuron devices, no GPUs
        ("ml.trn1.32xlarge", 0),
        ("ml.m5.large", 0),
    ],
)
def test_gpu_counts_as_aws_lists_them(instance_type, count):
    assert instance_types.gpus(instance_type) == count
    assert instance_types.size(instance_type).gpus == count


def test_an_unknown_type_of_a_gpu_family_is_refused_not_guessed():
    with pytest.raises(ValueError, match=r"does not know how many GPUs an ml\.g5\.96xlarge has"):
        instance_types.gpus("ml.g5.96xlarge")


def test_this_machine_gives_an_instance_only_the_gpus_it_has():
    assert instance_types.limits("ml.p3.8xlarge").gpus == min(4, instance_types.host_gpus())
