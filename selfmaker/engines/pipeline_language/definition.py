"""Parse and validate a pipeline definition (schema version 2020-12-01).

:func:`parse` turns the JSON text into a :class:`Definition`: typed parameters,
and every step, condition children included, with the names of the steps it
depends on (its DependsOn plus every step its expressions read: the SDK lists
data dependencies nowhere else). Whatever would only fail later, during an
execution, is refused here with a DefinitionError that says what and where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .conditions import check_conditions
from .errors import DefinitionError, NotAJsonObject
from .expressions import Reference, is_expression, walk
from .parameters import Parameter, parse_parameters
from .policies import check_cache_config, check_retry_policies
from .properties import check_property_path

VERSION = "2020-12-01"
STEP_TYPES = (
    "Training",
    "Processing",
    "Transform",
    "Tuning",
    "Model",
    "RegisterModel",
    "Condition",
    "Fail",
    "Callback",
)
# Step types the SDKs emit that SelfMaker does not run yet: refused at CreatePipeline, never half-run.
UNSUPPORTED_STEP_TYPES = (
    "Lambda",
    "QualityCheck",
    "ClarifyCheck",
    "EMR",
    "EMRServerless",
    "AutoML",
    "EndpointConfig",
    "Endpoint",
    "InferenceComponent",
    "Lineage",
    "BedrockCustomModel",
    "BedrockCustomModelDeployment",
    "BedrockModelImport",
    "BedrockProvisionedModelThroughput",
    "Job",
    "Cleanup",
    "ForEach",
)
TOP_LEVEL_MEMBERS = {"Version", "Metadata", "Parameters", "PipelineExperimentConfig", "MlflowConfig", "Steps"}
STEP_MEMBERS = {"Name", "Type", "Arguments", "DependsOn", "DisplayName", "Description", "CacheConfig", "RetryPolicies"}
TYPE_MEMBERS = {"Processing": {"PropertyFiles"}, "Callback": {"SqsQueueUrl", "OutputParameters"}}
CONDITION_ARGUMENTS = {"Conditions", "IfSteps", "ElseSteps"}
OUTPUT_TYPES = ("String", "Integer", "Boolean", "Float")
STEP_NAME = re.compile(r"[A-Za-z0-9\-_]{1,64}")


@dataclass(frozen=True)
class Step:
    name: str
    type: str
    arguments: dict  # as written, with expressions
    depends_on: frozenset[str]  # DependsOn plus every step the arguments (or a condition's Conditions) read
    branch: tuple[str, bool] | None  # (condition step, True for IfSteps / False for ElseSteps) for condition children
    display_name: str | None
    description: str | None
    cache: dict | None  # CacheConfig
    retry_policies: tuple[dict, ...]
    property_files: tuple[dict, ...]  # [{"PropertyFileName", "OutputName", "FilePath"}]
    raw: dict  # the step object as written


@dataclass(frozen=True)
class Definition:
    version: str
    parameters: dict[str, Parameter]
    steps: dict[str, Step]  # every step, condition children included, in definition order
    experiment_config: dict | None  # PipelineExperimentConfig (with expressions); None when null
    raw: dict


def parse(text) -> Definition:
    """Parse and validate a definition; DefinitionError says what is wrong and where."""
    try:
        return _parse(text)
    except RecursionError:
        raise DefinitionError("PipelineDefinition is nested too deeply") from None


def _parse(text) -> Definition:
    if not isinstance(text, str) or not text.lstrip().startswith("{"):
        raise NotAJsonObject()
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except (TypeError, ValueError) as e:
        raise DefinitionError(f"PipelineDefinition is not valid JSON: {e}") from None
    unknown = set(document) - TOP_LEVEL_MEMBERS
    if unknown:
        raise DefinitionError(f"PipelineDefinition: unknown member {', '.join(sorted(unknown))}")
    if document.get("Version") != VERSION:
        raise DefinitionError(f"PipelineDefinition: Version must be {VERSION!r}, not {document.get('Version')!r}")
    parameters = parse_parameters(document.get("Parameters"))
    experiment_config = _experiment_config(document.get("PipelineExperimentConfig"), parameters)
    if not isinstance(document.get("Steps"), list):
        raise DefinitionError("PipelineDefinition: Steps must be a list")

    raw_steps: dict[str, tuple[dict, tuple[str, bool] | None]] = {}
    _collect(document["Steps"], "Steps", None, raw_steps)
    context = _Context(parameters, raw_steps, experiment_config is not None)
    steps = {name: _step(raw, branch, context) for name, (raw, branch) in raw_steps.items()}
    _refuse_cycles(steps)
    return Definition(VERSION, parameters, steps, experiment_config, document)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _collect(items, where: str, branch, found: dict) -> None:
    """Gather every step object, condition children included, checking names, types and shapes."""
    if not isinstance(items, list):
        raise DefinitionError(f"{where} must be a list of steps")
    for index, raw in enumerate(items):
        name = raw.get("Name") if isinstance(raw, dict) else None
        if not isinstance(name, str) or not STEP_NAME.fullmatch(name):
            raise DefinitionError(f"{where}[{index}]: Name must be 1 to 64 letters, digits, '-' or '_', not {name!r}")
        if name in found:
            raise DefinitionError(f"Step name '{name}' is used by more than one step")
        kind = raw.get("Type")
        if not isinstance(kind, str):
            raise DefinitionError(f"Step '{name}': Type must be a string, not {kind!r}")
        if kind in UNSUPPORTED_STEP_TYPES:
            raise DefinitionError(f"Step '{name}': step type {kind} is not supported by SelfMaker yet")
        if kind not in STEP_TYPES:
            raise DefinitionError(f"Step '{name}': unknown step type {kind!r} (known: {', '.join(STEP_TYPES)})")
        unknown = set(raw) - STEP_MEMBERS - TYPE_MEMBERS.get(kind, set())
        if unknown:
            raise DefinitionError(f"Step '{name}': unknown member {', '.join(sorted(unknown))} for a {kind} step")
        if not isinstance(raw.get("Arguments"), dict):
            raise DefinitionError(f"Step '{name}': Arguments must be an object")
        found[name] = (raw, branch)
        if kind == "Condition":
            arguments = raw["Arguments"]
            if set(arguments) - CONDITION_ARGUMENTS or "Conditions" not in arguments:
                raise DefinitionError(
                    f"Step '{name}': a Condition step's Arguments are Conditions, IfSteps and ElseSteps"
                )
            _collect(arguments.get("IfSteps", []), f"Step '{name}': IfSteps", (name, True), found)
            _collect(arguments.get("ElseSteps", []), f"Step '{name}': ElseSteps", (name, False), found)


@dataclass(frozen=True)
class _Context:
    parameters: dict[str, Parameter]
    raw_steps: dict[str, tuple[dict, tuple[str, bool] | None]]
    has_experiment_config: bool

    def property_files(self, step: str) -> set[str]:
        files = self.raw_steps[step][0].get("PropertyFiles")
        return (
            {f["PropertyFileName"] for f in files if isinstance(f, dict) and isinstance(f.get("PropertyFileName"), str)}
            if isinstance(files, list)
            else set()
        )


def _step(raw: dict, branch, context: _Context) -> Step:
    name, kind, arguments = raw["Name"], raw["Type"], raw["Arguments"]
    where = f"Step '{name}'"
    try:
        _check_members(raw, kind)
    except ValueError as e:
        raise DefinitionError(f"{where}: {e}") from None

    read = arguments
    if kind == "Condition":
        read = {"Conditions": arguments["Conditions"]}  # the children are steps of their own
    elif kind == "Fail":
        if set(arguments) - {"ErrorMessage"}:
            raise DefinitionError(f"{where}: a Fail step's only argument is ErrorMessage")
        message = arguments.get("ErrorMessage")
        if not (message is None or isinstance(message, str) or is_expression(message)):
            raise DefinitionError(f"{where}: ErrorMessage must be a string or an expression")
    referenced: set[str] = set()
    for reference, holder, location in _references(read, "Arguments", where):
        _check_reference(reference, holder, f"{where} ({location})", name, context)
        if reference.step:
            referenced.add(reference.step)

    depends_on = raw.get("DependsOn") or []
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise DefinitionError(f"{where}: DependsOn must be a list of step names")
    for other in depends_on:
        if other not in context.raw_steps:
            raise DefinitionError(f"{where}: DependsOn names unknown step '{other}'")
    for member in ("DisplayName", "Description"):
        if raw.get(member) is not None and not isinstance(raw[member], str):
            raise DefinitionError(f"{where}: {member} must be a string")
    return Step(
        name=name,
        type=kind,
        arguments=arguments,
        depends_on=frozenset(depends_on) | frozenset(referenced),
        branch=branch,
        display_name=raw.get("DisplayName"),
        description=raw.get("Description"),
        cache=raw.get("CacheConfig"),
        retry_policies=tuple(raw.get("RetryPolicies") or ()),
        property_files=tuple(raw.get("PropertyFiles") or ()),
        raw=raw,
    )


def _check_members(raw: dict, kind: str) -> None:
    """Per-type members: ValueError says which is wrong."""
    if raw.get("CacheConfig") is not None:
        check_cache_config(raw["CacheConfig"])
    if raw.get("RetryPolicies") is not None:
        check_retry_policies(raw["RetryPolicies"])
    if kind == "Condition":
        check_conditions(raw["Arguments"]["Conditions"], "Conditions")
    if kind == "Processing" and raw.get("PropertyFiles") is not None:
        _check_property_files(raw["PropertyFiles"], raw["Arguments"])
    if kind == "Callback":
        if not isinstance(raw.get("SqsQueueUrl"), str) or not raw["SqsQueueUrl"]:
            raise ValueError("a Callback step needs SqsQueueUrl, the URL of the queue that receives its message")
        _check_output_parameters(raw.get("OutputParameters") or [])


def _check_property_files(files, arguments: dict) -> None:
    if not isinstance(files, list):
        raise ValueError("PropertyFiles must be a list")
    config = arguments.get("ProcessingOutputConfig")
    outputs = config.get("Outputs") if isinstance(config, dict) else None
    output_names = (
        {o["OutputName"] for o in outputs if isinstance(o, dict) and isinstance(o.get("OutputName"), str)}
        if isinstance(outputs, list)
        else set()
    )
    seen = set()
    for index, entry in enumerate(files):
        members = {"PropertyFileName", "OutputName", "FilePath"}
        if (
            not isinstance(entry, dict)
            or set(entry) != members
            or not all(isinstance(v, str) and v for v in entry.values())
        ):
            raise ValueError(
                f"PropertyFiles[{index}] must have exactly PropertyFileName, OutputName and FilePath (strings)"
            )
        if entry["PropertyFileName"] in seen:
            raise ValueError(f"property file '{entry['PropertyFileName']}' is declared twice")
        seen.add(entry["PropertyFileName"])
        if entry["OutputName"] not in output_names:
            raise ValueError(
                f"property file '{entry['PropertyFileName']}' reads output '{entry['OutputName']}',"
                f" which is not among the step's outputs ({', '.join(sorted(map(str, output_names))) or 'none'})"
            )


def _check_output_parameters(parameters) -> None:
    if not isinstance(parameters, list):
        raise ValueError("OutputParameters must be a list")
    seen = set()
    for index, entry in enumerate(parameters):
        if (
            not isinstance(entry, dict)
            or set(entry) - {"OutputName", "OutputType"}
            or not isinstance(entry.get("OutputName"), str)
            or not entry["OutputName"]
        ):
            raise ValueError(f'OutputParameters[{index}] must be {{"OutputName", "OutputType"}}')
        if entry.get("OutputType", "String") not in OUTPUT_TYPES:
            raise ValueError(f"OutputParameters[{index}].OutputType must be one of {', '.join(OUTPUT_TYPES)}")
        if entry["OutputName"] in seen:
            raise ValueError(f"output parameter '{entry['OutputName']}' is declared twice")
        seen.add(entry["OutputName"])


def _references(value, location: str, where: str) -> Iterator[tuple[Reference, str, str]]:
    """Every reference in ``value`` with its holding form and its location (``Arguments.A[0].B``)."""
    if is_expression(value):
        try:
            for reference, holder in walk(value):
                yield reference, holder, location
        except ValueError as e:
            raise DefinitionError(f"{where} ({location}): {e}") from None
    elif isinstance(value, dict):
        for key, member in value.items():
            yield from _references(member, f"{location}.{key}", where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _references(item, f"{location}[{index}]", where)


def _check_reference(reference: Reference, holder: str, where: str, own_step: str | None, context: _Context) -> None:
    if reference.root == "Parameters":
        if reference.name not in context.parameters:
            raise DefinitionError(
                f"{where}: references undeclared parameter '{reference.name}'"
                f" (declared: {', '.join(context.parameters) or 'none'})"
            )
    elif reference.root == "PipelineExperimentConfig":
        if not context.has_experiment_config:
            raise DefinitionError(
                f"{where}: reads PipelineExperimentConfig.{reference.name}, but PipelineExperimentConfig is null"
            )
    elif reference.step is not None:
        step = reference.step
        if step not in context.raw_steps:
            raise DefinitionError(f"{where}: references unknown step '{step}'")
        if step == own_step:
            raise DefinitionError(f"{where}: a step cannot read its own properties")
        kind = context.raw_steps[step][0]["Type"]
        if reference.root == "PropertyFiles":
            if holder != "Std:JsonGet":
                raise DefinitionError(
                    f"{where}: Steps.{step}.PropertyFiles.{reference.path} can only be read with Std:JsonGet"
                )
            if reference.path not in context.property_files(step):
                raise DefinitionError(f"{where}: step '{step}' has no property file '{reference.path}'")
        elif kind == "Fail":
            raise DefinitionError(f"{where}: step '{step}' is a Fail step, which has no properties")
        else:
            try:
                check_property_path(context.raw_steps[step][0], reference.property_path)
            except ValueError as e:
                raise DefinitionError(f"{where}: Steps.{step}.{reference.path}: {e}") from None


def _experiment_config(config, parameters: dict[str, Parameter]) -> dict | None:
    if config is None:
        return None
    if not isinstance(config, dict) or set(config) - {"ExperimentName", "TrialName"}:
        raise DefinitionError("PipelineExperimentConfig must be null or an object with ExperimentName and TrialName")
    context = _Context(parameters, {}, True)
    for reference, holder, location in _references(config, "PipelineExperimentConfig", "PipelineExperimentConfig"):
        if reference.step is not None or reference.root == "PipelineExperimentConfig":
            raise DefinitionError(f"{location}: may read only parameters and execution variables")
        _check_reference(reference, holder, location, None, context)
    return config


def _refuse_cycles(steps: dict[str, Step]) -> None:
    """Refuse a definition whose dependencies loop; the message names the steps on the loop."""
    edges = {
        name: sorted(step.depends_on | ({step.branch[0]} if step.branch else set())) for name, step in steps.items()
    }
    done: set[str] = set()
    for start in steps:
        if start in done:
            continue
        path, on_path, pending = [start], {start}, [iter(edges[start])]
        while pending:  # depth-first, without recursion: definitions may be long chains
            before = next(pending[-1], None)
            if before is None:
                done.add(path[-1])
                on_path.discard(path.pop())
                pending.pop()
            elif before == path[-1]:
                raise DefinitionError(f"Step '{before}' depends on itself")
            elif before in on_path:
                loop = path[path.index(before) :] + [before]
                raise DefinitionError(
                    f"Steps {' -> '.join(repr(s) for s in loop)} form a dependency cycle (each depends on the next)"
                )
            elif before not in done:
                path.append(before)
                on_path.add(before)
                pending.append(iter(edges[before]))
