"""What ``Steps.<Step>.<Path>`` may read, per step type, checked when a definition is parsed.

A job, model or package step's properties are the Describe output of what it
created, so a path must follow that botocore output shape (the SDK builds its
``Properties`` objects from the same shapes): members of structures by name,
list items by ``[index]`` or ``['name']``, map entries by ``['key']``. A
Condition step has ``Outcome``; a Callback step has its declared
``OutputParameters['<name>']``.
"""

from __future__ import annotations

from botocore.model import ListShape, MapShape, Shape, StructureShape

from ...server.models import service_model
from .paths import Token, parse_path

DESCRIBE_SHAPES: dict[str, tuple[str, ...]] = {  # a path reads the first shape that has its first member
    "Training": ("DescribeTrainingJobResponse",),
    "Processing": ("DescribeProcessingJobResponse",),
    "Transform": ("DescribeTransformJobResponse",),
    # A Tuning step's properties: the tuning job's Describe output and its best trials' TrainingJobSummaries.
    "Tuning": ("DescribeHyperParameterTuningJobResponse", "ListTrainingJobsForHyperParameterTuningJobResponse"),
    "Model": ("DescribeModelOutput",),
    "RegisterModel": ("DescribeModelPackageOutput",),
}


def check_property_path(step: dict, path: str) -> None:
    """ValueError when ``path`` names no property of ``step`` (a step object as written)."""
    kind, tokens = step["Type"], parse_path(path)
    if kind == "Condition":
        if path != "Outcome":
            raise ValueError(f"a Condition step's only property is Outcome, not {path!r}")
    elif kind == "Callback":
        _check_output_parameter(step, tokens, path)
    elif kind == "Fail":
        raise ValueError("a Fail step has no properties")
    else:
        shapes = [service_model("sagemaker").shape_for(n) for n in DESCRIBE_SHAPES[kind]]
        first = tokens[0].value if tokens else None
        shape = next((s for s in shapes if isinstance(s, StructureShape) and first in s.members), shapes[0])
        _check_against_shape(shape, tokens, kind)


def _check_output_parameter(step: dict, tokens: tuple[Token, ...], path: str) -> None:
    names = [p.get("OutputName") for p in step.get("OutputParameters") or [] if isinstance(p, dict)]
    if len(tokens) != 2 or tokens[0].value != "OutputParameters" or not tokens[1].bracketed:
        raise ValueError(f"a Callback step's properties are OutputParameters['<name>'], not {path!r}")
    name = tokens[1].value
    if isinstance(name, str) and name not in names:
        raise ValueError(
            f"the Callback step declares no output parameter {name!r}"
            f" (declared: {', '.join(map(str, names)) or 'none'})"
        )


def _check_against_shape(shape: Shape, tokens: tuple[Token, ...], kind: str) -> None:
    walked = ""
    for token in tokens:
        if isinstance(shape, StructureShape):
            if token.bracketed or token.value not in shape.members:
                raise ValueError(f"a {kind} step's properties ({shape.name}) have no {_described(token, walked)}")
            shape = shape.members[token.value]
        elif isinstance(shape, ListShape):
            if not token.bracketed:
                raise ValueError(f"{walked} is a list: read an item with [index] or ['name'], not .{token}")
            shape = shape.member
        elif isinstance(shape, MapShape):
            if not token.bracketed or not isinstance(token.value, str):
                raise ValueError(f"{walked} is a map: read an entry with ['key'], not {token}")
            shape = shape.value
        else:
            raise ValueError(f"{walked} is a {shape.type_name}: it has no {token}")
        walked += str(token) if token.bracketed else ("." if walked else "") + str(token)


def _described(token: Token, walked: str) -> str:
    where = f" in {walked}" if walked else ""
    return f"member {token.value!r}{where}" if not token.bracketed else f"item {token}{where}"
