"""Expressions of the definition language and their evaluation.

Three forms may stand anywhere in a step's arguments, a condition or a Fail
message (each a JSON object with a single member):

- ``{"Get": "Parameters.<Name>" | "Execution.<Var>" | "Steps.<Step>.<Path>"
  | "PipelineExperimentConfig.ExperimentName|TrialName"}``
- ``{"Std:Join": {"On": sep, "Values": [value or expression, ...]}}``
- ``{"Std:JsonGet": {"PropertyFile": {"Get": "Steps.<Step>.PropertyFiles.<Name>"}
  | "S3Uri": uri or expression, "Path": path}}``

Values are produced by a :class:`Scope`, which the execution engine implements.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .errors import EvaluationError, PropertyError
from .paths import lookup, parse_path

EXECUTION_VARIABLES = frozenset(
    {
        "PipelineExecutionId",
        "PipelineExecutionArn",
        "PipelineName",
        "PipelineArn",
        "StartDateTime",
        "CurrentDateTime",
        "TrainingJobName",
        "ProcessingJobName",
    }
)
EXPERIMENT_VARIABLES = frozenset({"ExperimentName", "TrialName"})
FUNCTIONS = ("Std:Join", "Std:JsonGet")


class Scope(Protocol):
    """What an execution provides to evaluate expressions."""

    def parameter(self, name: str): ...
    def execution(self, variable: str): ...
    def experiment(self, variable: str): ...
    def step_properties(self, step: str) -> dict: ...
    def property_file(self, step: str, name: str): ...
    def read_json(self, s3_uri: str): ...


@dataclass(frozen=True)
class Reference:
    """What a ``Get`` names. ``root`` is Parameters, Execution, PipelineExperimentConfig, Steps or PropertyFiles."""

    root: str
    name: str  # parameter, variable or step name
    path: str | None = None  # Steps: the property path; PropertyFiles: the property file's name

    @property
    def step(self) -> str | None:
        return self.name if self.root in ("Steps", "PropertyFiles") else None

    @property
    def property_path(self) -> str:
        """``path`` where the root has one (Steps, PropertyFiles): parse_get sets it for both."""
        if self.path is None:
            raise ValueError(f"a {self.root} reference names no property path")
        return self.path


def is_expression(value) -> bool:
    """A one-member object ``{"Get": ...}`` or ``{"Std:<Function>": ...}`` (unknown functions included, to refuse them)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = next(iter(value))
    return key == "Get" or (isinstance(key, str) and key.startswith("Std:"))


def parse_get(target) -> Reference:
    """Parse the target of a ``Get``; ValueError says what is wrong with it."""
    if not isinstance(target, str):
        raise ValueError(f"Get takes a string, not {target!r}")
    root, _, rest = target.partition(".")
    if root == "Parameters" and rest:
        return Reference("Parameters", rest)
    if root == "Execution":
        if rest not in EXECUTION_VARIABLES:
            raise ValueError(
                f"{target!r} names no execution variable (known: {', '.join(sorted(EXECUTION_VARIABLES))})"
            )
        return Reference("Execution", rest)
    if root == "PipelineExperimentConfig":
        if rest not in EXPERIMENT_VARIABLES:
            raise ValueError(f"{target!r}: PipelineExperimentConfig has only ExperimentName and TrialName")
        return Reference("PipelineExperimentConfig", rest)
    if root == "Steps":
        step, dot, path = rest.partition(".")
        if not step or not dot or not path:
            raise ValueError(f"{target!r} must name a step and a property: Steps.<Step>.<Property>")
        first, _, file_name = path.partition(".")
        if first == "PropertyFiles":
            if not file_name:
                raise ValueError(f"{target!r} must name a property file: Steps.<Step>.PropertyFiles.<Name>")
            return Reference("PropertyFiles", step, file_name)
        parse_path(path)
        return Reference("Steps", step, path)
    raise ValueError(
        f"{target!r} is not a reference: a Get reads Parameters.<Name>, Execution.<Variable>,"
        " Steps.<Step>.<Property> or PipelineExperimentConfig.<Variable>"
    )


def walk(value) -> Iterator[tuple[Reference, str]]:
    """Every reference inside ``value`` with the form that holds it.

    The holder is "Get" for a plain Get, "Std:Join" for a joined value, "Std:JsonGet"
    for the property file a JsonGet reads and "Std:JsonGet S3Uri" inside its S3Uri.

    ValueError when an expression is malformed.
    """
    if is_expression(value):
        yield from _expression_references(value)
    elif isinstance(value, dict):
        for member in value.values():
            yield from walk(member)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def _expression_references(expression: dict, holder: str = "Get") -> Iterator[tuple[Reference, str]]:
    ((form, body),) = expression.items()
    if form == "Get":
        yield parse_get(body), holder
    elif form not in FUNCTIONS:
        raise ValueError(f"unknown function {form} (known: {', '.join(FUNCTIONS)})")
    elif form == "Std:Join":
        _on, values = _join_parts(body)
        for value in values:
            if is_expression(value):
                yield from _expression_references(value, "Std:Join")
            elif isinstance(value, (dict, list)) or value is None:
                raise ValueError(f"Std:Join joins strings, numbers, booleans and expressions, not {value!r}")
    else:
        source, _path = _json_get_parts(body)
        if "PropertyFile" in source:
            reference = parse_get(source["PropertyFile"]["Get"])
            if reference.root != "PropertyFiles":
                raise ValueError('Std:JsonGet\'s PropertyFile must be {"Get": "Steps.<Step>.PropertyFiles.<Name>"}')
            yield reference, "Std:JsonGet"
        else:
            uri = source["S3Uri"]
            if is_expression(uri):
                yield from _expression_references(uri, "Std:JsonGet S3Uri")
            elif not isinstance(uri, str):
                raise ValueError(f"Std:JsonGet's S3Uri must be a string or an expression, not {uri!r}")


def _join_parts(body) -> tuple[str, list]:
    if not isinstance(body, dict) or set(body) - {"On", "Values"} or not isinstance(body.get("Values"), list):
        raise ValueError('Std:Join takes {"On": <separator>, "Values": [...]}')
    on = body.get("On", "")
    if not isinstance(on, str):
        raise ValueError(f"Std:Join's On must be a string, not {on!r}")
    return on, body["Values"]


def _json_get_parts(body) -> tuple[dict, str]:
    if not isinstance(body, dict) or set(body) - {"PropertyFile", "S3Uri", "Path"}:
        raise ValueError('Std:JsonGet takes {"PropertyFile" or "S3Uri", "Path"}')
    if ("PropertyFile" in body) == ("S3Uri" in body):
        raise ValueError("Std:JsonGet takes exactly one of PropertyFile and S3Uri")
    if "PropertyFile" in body and not (isinstance(body["PropertyFile"], dict) and set(body["PropertyFile"]) == {"Get"}):
        raise ValueError('Std:JsonGet\'s PropertyFile must be {"Get": "Steps.<Step>.PropertyFiles.<Name>"}')
    path = body.get("Path")
    if not isinstance(path, str):
        raise ValueError(f"Std:JsonGet's Path must be a string, not {path!r}")
    parse_path(path)
    return body, path


def references(value) -> set[str]:
    """Names of the steps whose properties or property files ``value`` reads."""
    return {reference.step for reference, _ in walk(value) if reference.step}


def evaluate(value, scope: Scope):
    """``value`` with every expression replaced by its value (dicts and lists are copied, not changed)."""
    if is_expression(value):
        return _evaluate_expression(value, scope)
    if isinstance(value, dict):
        return {key: evaluate(member, scope) for key, member in value.items()}
    if isinstance(value, list):
        return [evaluate(item, scope) for item in value]
    return value


def _evaluate_expression(expression: dict, scope: Scope):
    ((form, body),) = expression.items()
    try:  # the shape was validated at parse time; this guards expressions built elsewhere
        if form == "Get":
            reference = parse_get(body)
        elif form == "Std:Join":
            on, values = _join_parts(body)
        elif form == "Std:JsonGet":
            source, path = _json_get_parts(body)
            file_reference = parse_get(source["PropertyFile"]["Get"]) if "PropertyFile" in source else None
        else:
            raise ValueError(f"unknown function {form}")
    except ValueError as e:
        raise EvaluationError(f"Invalid expression {expression}: {e}") from None

    if form == "Get":
        return _get(reference, scope)
    if form == "Std:Join":
        return on.join(_text(evaluate(v, scope), v) for v in values)
    if file_reference is not None:
        document = scope.property_file(file_reference.name, file_reference.property_path)
        where = f"property file {file_reference.path} of step {file_reference.name}"
    else:
        uri = evaluate(source["S3Uri"], scope)
        if not isinstance(uri, str):
            raise EvaluationError(f"Std:JsonGet's S3Uri evaluated to {uri!r}, not a string")
        document = scope.read_json(uri)
        where = uri
    try:
        return lookup(document, path)
    except PropertyError as e:
        raise PropertyError(f"Std:JsonGet on {where}: path {path!r} does not resolve: {e.detail}", e.detail) from None


def _get(reference: Reference, scope: Scope):
    if reference.root == "Parameters":
        return scope.parameter(reference.name)
    if reference.root == "Execution":
        return scope.execution(reference.name)
    if reference.root == "PipelineExperimentConfig":
        return scope.experiment(reference.name)
    if reference.root == "PropertyFiles":
        raise EvaluationError(
            f"Steps.{reference.name}.PropertyFiles.{reference.path} can only be read with Std:JsonGet"
        )
    try:
        return lookup(scope.step_properties(reference.name), reference.property_path)
    except PropertyError as e:
        raise PropertyError(f"Steps.{reference.name}.{reference.path} does not resolve: {e.detail}", e.detail) from None


def _text(value, written) -> str:
    """A joined value as text, the way the SDK's local executor formats it (Python ``str``)."""
    if value is None or isinstance(value, (dict, list)):
        raise EvaluationError(f"Std:Join cannot join {written!r}: it evaluated to {value!r}")
    return value if isinstance(value, str) else str(value)
