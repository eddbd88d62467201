"""Pipeline parameters: their declarations, and the typed values of one execution.

StartPipelineExecution carries every value as a string (the SDK sends
``str(value)``: ``"6"``, ``"6.0"``, ``"True"``); each is cast to its declared
type, and parameters not given take their defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DefinitionError, ParameterError

TYPES = ("String", "Integer", "Float", "Boolean")
NAME = re.compile(r"[A-Za-z0-9\-_]{1,256}")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # String, Integer, Float or Boolean
    default: object | None  # typed (int, float, bool or str); None when the parameter must be given
    enum: tuple | None  # allowed values (String parameters)


def parse_parameters(declarations) -> dict[str, Parameter]:
    """The ``Parameters`` list of a definition, validated; DefinitionError says which parameter is wrong."""
    if declarations is None:
        return {}
    if not isinstance(declarations, list):
        raise DefinitionError("Parameters must be a list")
    parameters: dict[str, Parameter] = {}
    for index, declaration in enumerate(declarations):
        parameter = _parse_declaration(declaration, index)
        if parameter.name in parameters:
            raise DefinitionError(f"Parameter '{parameter.name}' is declared twice")
        parameters[parameter.name] = parameter
    return parameters


def _parse_declaration(declaration, index: int) -> Parameter:
    if not isinstance(declaration, dict):
        raise DefinitionError(f"Parameters[{index}] must be an object with Name and Type")
    name = declaration.get("Name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DefinitionError(f"Parameters[{index}]: Name must be 1 to 256 letters, digits, '-' or '_', not {name!r}")
    where = f"Parameter '{name}'"
    unknown = set(declaration) - {"Name", "Type", "DefaultValue", "EnumValues"}
    if unknown:
        raise DefinitionError(f"{where}: unknown member {', '.join(sorted(unknown))}")
    kind = declaration.get("Type")
    if kind not in TYPES:
        raise DefinitionError(f"{where}: Type must be one of {', '.join(TYPES)}, not {kind!r}")
    enum = declaration.get("EnumValues")
    if enum is not None:
        if not isinstance(enum, list) or not enum:
            raise DefinitionError(f"{where}: EnumValues must be a non-empty list")
        for value in enum:
            if not _fits(kind, value):
                raise DefinitionError(f"{where}: EnumValues holds {value!r}, which is not a {kind}")
        enum = tuple(_normalized(kind, v) for v in enum)
    default = declaration.get("DefaultValue")
    if default is not None:
        if not _fits(kind, default):
            raise DefinitionError(f"{where}: DefaultValue {default!r} is not a {kind}")
        default = _normalized(kind, default)
        if enum is not None and default not in enum:
            raise DefinitionError(f"{where}: DefaultValue {default!r} is not one of EnumValues {list(enum)}")
    return Parameter(name, kind, default, enum)


def _fits(kind: str, value) -> bool:
    """Whether a JSON value is of a declared type (an integral number is also a Float)."""
    if isinstance(value, bool):
        return kind == "Boolean"
    if kind == "Integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "Float":
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, {"String": str, "Boolean": bool}[kind])


def _normalized(kind: str, value):
    return {"Integer": int, "Float": float}.get(kind, lambda v: v)(value)


def cast_parameters(definition, given) -> dict[str, object]:
    """Typed values of every parameter for one execution, from StartPipelineExecution's ``[{"Name", "Value"}]``."""
    declared: dict[str, Parameter] = definition.parameters
    values: dict[str, object] = {}
    for item in given or []:
        name, text = item.get("Name"), item.get("Value")
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise ParameterError(f"Parameter '{name}' is not declared by the pipeline (declared: {known})")
        if name in values:
            raise ParameterError(f"Parameter '{name}' is given twice")
        values[name] = cast(declared[name], text)
    for name, parameter in declared.items():
        if name not in values:
            if parameter.default is None:
                raise ParameterError(f"Parameter '{name}' has no default value and must be given")
            values[name] = parameter.default
    return values


def cast(parameter: Parameter, text) -> object:
    """One value given as a string, as its declared type; ParameterError when it does not fit."""
    if not isinstance(text, str):
        raise ParameterError(f"Parameter '{parameter.name}': the value must be a string")
    try:
        value = _CASTS[parameter.type](text.strip() if parameter.type != "String" else text)
    except ValueError:
        raise ParameterError(f"Parameter '{parameter.name}' is of type {parameter.type}: {text!r} is not") from None
    if parameter.enum is not None and value not in parameter.enum:
        raise ParameterError(f"Parameter '{parameter.name}': {text!r} is not one of {list(parameter.enum)}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "6.0", as str() of an integral float sends it
        if not number.is_integer():
            raise
        return int(number)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


_CASTS: dict[str, Callable[[str], object]] = {"String": str, "Integer": _integer, "Float": _float, "Boolean": _boolean}
