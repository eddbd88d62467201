"""The intrinsic functions and conditions, resolved against one stack's parameters and resources.

Pure: what a resource's Ref or GetAtt returns comes from the ``Scope`` (the engine fills it from the stack's
stored resources). ``Ref: AWS::NoValue`` removes the property or list item it stands for, as on AWS.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ...server.errors import AWSError
from .templates import SUB_VARIABLE, getatt_target, template_error

NO_VALUE = object()  # what Ref AWS::NoValue resolves to: dropped by the container it is in


@dataclass
class Scope:
    parameters: dict  # name -> value (a string, or a list of strings for list types)
    pseudo: dict  # AWS::Region... -> value
    conditions: dict  # name -> bool, evaluated once
    mappings: dict = field(default_factory=dict)
    ref: Callable[[str], object] = lambda logical: (_ for _ in ()).throw(KeyError(logical))
    getatt: Callable[[str, str], object] = lambda logical, attribute: (_ for _ in ()).throw(KeyError(logical))
    azs: Callable[[str], list] = lambda region: [f"{region}{z}" for z in "abc"]


def resolve(value, scope: Scope):
    """``value`` with every intrinsic function replaced by what it stands for."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                return _function(key, arg, scope)
        out = {}
        for key, item in value.items():
            resolved = resolve(item, scope)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out
    if isinstance(value, list):
        return [r for r in (resolve(item, scope) for item in value) if r is not NO_VALUE]
    return value


def _string(value, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise template_error(f"{where} expects a string, got {type(value).__name__}")


def _list(value, where: str) -> list:
    if not isinstance(value, list):
        raise template_error(f"{where} expects a list")
    return value


def _function(name: str, arg, scope: Scope):
    if name == "Ref":
        return _ref(arg, scope)
    if name == "Fn::GetAtt":
        target = getatt_target(resolve(arg, scope))
        if target is None:
            raise template_error("every Fn::GetAtt object requires two non-empty parameters.")
        return scope.getatt(*target)
    if name == "Fn::Join":
        parts = _list(arg, "Fn::Join")
        if len(parts) != 2:
            raise template_error("Fn::Join requires a delimiter and a list of values")
        delimiter = _string(resolve(parts[0], scope), "Fn::Join")
        values = _list(resolve(parts[1], scope), "Fn::Join")
        return delimiter.join(_string(v, "Fn::Join") for v in values)
    if name == "Fn::Sub":
        return _sub(arg, scope)
    if name == "Fn::If":
        parts = _list(arg, "Fn::If")
        if len(parts) != 3 or parts[0] not in scope.conditions:
            raise template_error("Fn::If requires a condition name and two values")
        return resolve(parts[1] if scope.conditions[parts[0]] else parts[2], scope)
    if name == "Fn::Select":
        parts = _list(arg, "Fn::Select")
        if len(parts) != 2:
            raise template_error("Fn::Select requires an index and a list")
        index, values = resolve(parts[0], scope), _list(resolve(parts[1], scope), "Fn::Select")
        position = int(index) if isinstance(index, int | str) and str(index).isdigit() else -1
        if not 0 <= position < len(values):
            raise template_error(f"Fn::Select cannot select nonexistent value at index {index}")
        return values[position]
    if name == "Fn::Split":
        parts = _list(arg, "Fn::Split")
        if len(parts) != 2:
            raise template_error("Fn::Split requires a delimiter and a string")
        delimiter = _string(resolve(parts[0], scope), "Fn::Split")
        if not delimiter:
            raise template_error("Fn::Split requires a non-empty delimiter")
        return _string(resolve(parts[1], scope), "Fn::Split").split(delimiter)
    if name == "Fn::GetAZs":
        region = _string(resolve(arg, scope), "Fn::GetAZs") or scope.pseudo["AWS::Region"]
        return scope.azs(region)
    if name == "Fn::Base64":
        return base64.b64encode(_string(resolve(arg, scope), "Fn::Base64").encode()).decode()
    if name == "Fn::FindInMap":
        parts = [resolve(p, scope) for p in _list(arg, "Fn::FindInMap")]
        if len(parts) != 3:
            raise template_error("Fn::FindInMap requires a map name, a top-level key and a second-level key")
        try:
            return scope.mappings[parts[0]][parts[1]][parts[2]]
        except (KeyError, TypeError):
            raise template_error(f"Unable to get mapping for {'::'.join(map(str, parts))}") from None
    if name == "Fn::Length":
        return len(_list(resolve(arg, scope), "Fn::Length"))
    if name == "Fn::ToJsonString":
        return json.dumps(resolve(arg, scope), separators=(",", ":"))
    if name in ("Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not"):
        raise template_error(f"{name} is a condition function: use it in Conditions or in Fn::If's condition")
    raise AWSError(
        "ValidationError",
        f"Template error: {name} is not supported by SelfMaker's CloudFormation (see docs/cloudformation.md)",
    )


def _ref(arg, scope: Scope):
    if not isinstance(arg, str):
        raise template_error("Ref takes a parameter or resource name")
    if arg == "AWS::NoValue":
        return NO_VALUE
    if arg in scope.pseudo:
        return scope.pseudo[arg]
    if arg in scope.parameters:
        return scope.parameters[arg]
    return scope.ref(arg)


def _sub(arg, scope: Scope) -> str:
    if isinstance(arg, list):
        if len(arg) != 2 or not isinstance(arg[1], dict):
            raise template_error("Fn::Sub takes a string, or a string and a map of variables")
        text, variables = arg[0], {k: resolve(v, scope) for k, v in arg[1].items()}
    else:
        text, variables = arg, {}
    if not isinstance(text, str):
        raise template_error("Fn::Sub takes a string")

    def value(match) -> str:
        name = match.group(1).strip()
        if name in variables:
            return _string(variables[name], "Fn::Sub")
        if "." in name and name.split(".", 1)[0] not in scope.parameters:
            logical, attribute = name.split(".", 1)
            return _string(scope.getatt(logical, attribute), "Fn::Sub")
        resolved = _ref(name, scope)
        if isinstance(resolved, list):
            raise template_error(f"Fn::Sub variable {name} is a list")
        return _string(resolved, "Fn::Sub")

    # ${!Literal} writes ${Literal}
    return SUB_VARIABLE.sub(value, text).replace("${!", "${")


def evaluate_conditions(conditions: dict, scope: Scope) -> dict:
    """Every condition's truth, each evaluated once (a condition may name another)."""
    results: dict[str, bool] = {}
    visiting: set[str] = set()

    def condition(name: str) -> bool:
        if name in results:
            return results[name]
        if name not in conditions:
            raise template_error(f"unresolved condition dependency {name}")
        if name in visiting:
            raise AWSError("ValidationError", f"Template error: circular condition dependency on {name}")
        visiting.add(name)
        results[name] = truth(conditions[name])
        visiting.discard(name)
        return results[name]

    def truth(value) -> bool:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Condition":
                return condition(arg)
            if key == "Fn::Equals":
                parts = _list(arg, "Fn::Equals")
                if len(parts) != 2:
                    raise template_error("Fn::Equals requires two values")
                left, right = (resolve(p, scope) for p in parts)
                return _comparable(left) == _comparable(right)
            if key == "Fn::Not":
                parts = _list(arg, "Fn::Not")
                if len(parts) != 1:
                    raise template_error("Fn::Not requires one condition")
                return not truth(parts[0])
            if key in ("Fn::And", "Fn::Or"):
                parts = _list(arg, key)
                if not 2 <= len(parts) <= 10:
                    raise template_error(f"{key} takes between 2 and 10 conditions")
                values = [truth(p) for p in parts]
                return all(values) if key == "Fn::And" else any(values)
        raise template_error("a condition must be Fn::Equals, Fn::And, Fn::Or, Fn::Not or Condition")

    scope.conditions = results
    try:
        for name in conditions:
            condition(name)
    except RecursionError:
        raise template_error("conditions refer to each other too deeply") from None
    return results


def _comparable(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else _string(value, "Fn::Equals")
