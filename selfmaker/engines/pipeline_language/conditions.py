"""Conditions of a Condition step: comparisons, In, Not and Or; a list of them is an implicit AND.

Comparisons are typed: numbers compare as numbers (an int equals the same
float, and a numeric string read from a JSON file compares with a number),
strings as strings, booleans only for equality. Anything else is a
ConditionError, which fails the step rather than quietly choosing a branch.
"""

from __future__ import annotations

import math

from .errors import ConditionError
from .expressions import Scope, evaluate

COMPARISONS = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}
MEMBERS = {
    **{op: {"LeftValue", "RightValue"} for op in COMPARISONS},
    "In": {"QueryValue", "Values"},
    "Not": {"Condition"},
    "Or": {"Conditions"},
}


def check_conditions(conditions, where: str) -> None:
    """Validate the shape of a condition list; ValueError names the condition at fault."""
    if not isinstance(conditions, list):
        raise ValueError(f"{where} must be a list of conditions")
    for index, condition in enumerate(conditions):
        _check(condition, f"{where}[{index}]")


def _check(condition, where: str) -> None:
    kind = condition.get("Type") if isinstance(condition, dict) else None
    if not isinstance(kind, str) or kind not in MEMBERS:
        raise ValueError(f"{where}: Type must be one of {', '.join(MEMBERS)}, not {kind!r}")
    members = set(condition) - {"Type"}
    if members != MEMBERS[kind]:
        raise ValueError(
            f"{where}: a {kind} condition has exactly {', '.join(sorted(MEMBERS[kind]))}"
            f" (found {', '.join(sorted(members)) or 'nothing'})"
        )
    if kind == "In" and not isinstance(condition["Values"], list):
        raise ValueError(f"{where}: Values must be a list")
    if kind == "Not":
        _check(condition["Condition"], f"{where}.Condition")
    if kind == "Or":
        check_conditions(condition["Conditions"], f"{where}.Conditions")


def condition_holds(conditions: list, scope: Scope) -> bool:
    """Whether every condition holds (operands are evaluated in ``scope``)."""
    return all(_holds(condition, scope) for condition in conditions)


def _holds(condition: dict, scope: Scope) -> bool:
    kind = condition["Type"]
    if kind == "Not":
        return not _holds(condition["Condition"], scope)
    if kind == "Or":
        return any(_holds(c, scope) for c in condition["Conditions"])
    if kind == "In":
        query = evaluate(condition["QueryValue"], scope)
        return any(_equal(query, evaluate(v, scope)) for v in condition["Values"])
    left, right = evaluate(condition["LeftValue"], scope), evaluate(condition["RightValue"], scope)
    a, b = _comparable(kind, left, right)
    return COMPARISONS[kind](a, b)


def _comparable(kind: str, left, right) -> tuple:
    """The operands as values of one type, or ConditionError."""
    if _is_number(left) and _is_number(right):
        return left, right
    if (_is_number(left) and isinstance(right, str)) or (isinstance(left, str) and _is_number(right)):
        numbers = _as_number(left), _as_number(right)
        if None not in numbers:
            return numbers
    elif (isinstance(left, str) and isinstance(right, str)) or (
        isinstance(left, bool) and isinstance(right, bool) and kind == "Equals"
    ):
        return left, right
    raise ConditionError(f"{kind} cannot compare {_describe(left)} with {_describe(right)}")


def _equal(a, b) -> bool:
    try:
        return COMPARISONS["Equals"](*_comparable("Equals", a, b))
    except ConditionError:
        return False


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(value):
    if _is_number(value):
        return value
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _describe(value) -> str:
    kind = (
        "boolean"
        if isinstance(value, bool)
        else "number"
        if _is_number(value)
        else "string"
        if isinstance(value, str)
        else "null"
        if value is None
        else type(value).__name__
    )
    return f"{kind} {value!r}"
