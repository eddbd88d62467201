"""EventBridge event patterns: parsed and checked once (:func:`compile_pattern`), then matched (:func:`matches`).

The language is AWS's content filtering: a pattern is a JSON object mirroring the event; every field
it names must match (AND); a field's value is an array of matchers of which one must match (OR); an
event field holding an array matches when any of its elements does. Matchers: exact values (string,
number, true, false, null), ``prefix``, ``suffix``, ``equals-ignore-case``, ``wildcard``,
``anything-but`` (a value, a list, or a ``prefix`` / ``suffix`` / ``equals-ignore-case`` / ``wildcard``),
``numeric`` ranges, ``exists`` and ``cidr``; ``$or`` takes alternative sub-patterns at any level.
A pattern that breaks the grammar is an InvalidEventPatternException naming why; nothing is stored.
"""

from __future__ import annotations

import ipaddress
import json
import math

from ...errors import AWSError

_MISSING = object()
_NUMERIC_OPERATORS = {"<", "<=", "=", ">", ">="}
_STRING_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard")
MAX_DEPTH = 32  # nesting; the pattern text is at most 4096 characters (the model) anyway


def invalid_pattern(reason: str) -> AWSError:
    return AWSError("InvalidEventPatternException", f"Event pattern is not valid. Reason: {reason}")


def compile_pattern(text: str) -> dict:
    """The pattern in ``text``, checked against the grammar (InvalidEventPatternException otherwise)."""
    try:
        pattern = json.loads(text, parse_constant=_no_constant)
    except ValueError as err:
        raise invalid_pattern(f"Filter is not valid JSON: {err}") from None
    if not isinstance(pattern, dict):
        raise invalid_pattern("Filter is not an object")
    _check_object(pattern, "", 0)
    return pattern


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _check_object(pattern: dict, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise invalid_pattern(f"Filter is nested deeper than {MAX_DEPTH} levels")
    if not pattern:
        raise invalid_pattern(f"Empty objects are not allowed{_at(path)}")
    for key, rule in pattern.items():
        where = f"{path}.{key}" if path else key
        if key == "$or":
            if not isinstance(rule, list) or len(rule) < 2 or not all(isinstance(r, dict) for r in rule):
                raise invalid_pattern("$or must be an array of at least two objects")
            for alternative in rule:
                _check_object(alternative, path, depth + 1)
        elif isinstance(rule, dict):
            _check_object(rule, where, depth + 1)
        elif isinstance(rule, list):
            if not rule:
                raise invalid_pattern(f"Empty arrays are not allowed{_at(where)}")
            for matcher in rule:
                _check_matcher(matcher, where)
        else:
            raise invalid_pattern(f'"{where}" must be an object or an array')


def _at(path: str) -> str:
    return f' in "{path}"' if path else ""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_matcher(matcher, where: str) -> None:
    if matcher is None or isinstance(matcher, (str, bool)) or _is_number(matcher):
        return
    if isinstance(matcher, list):
        raise invalid_pattern(f'Match value in "{where}" must be a string, number, true, false, null or an object')
    if len(matcher) != 1:
        raise invalid_pattern(f'A match object in "{where}" must have exactly one key')
    ((kind, value),) = matcher.items()
    if kind in ("prefix", "suffix"):
        if isinstance(value, dict) and set(value) == {"equals-ignore-case"}:
            value = value["equals-ignore-case"]
        if not isinstance(value, str):
            raise invalid_pattern(f'{kind} match pattern in "{where}" must be a string')
    elif kind == "equals-ignore-case":
        if not isinstance(value, str):
            raise invalid_pattern(f'equals-ignore-case match pattern in "{where}" must be a string')
    elif kind == "wildcard":
        _check_wildcard(value, where)
    elif kind == "exists":
        if not isinstance(value, bool):
            raise invalid_pattern(f'exists match pattern in "{where}" must be true or false')
    elif kind == "numeric":
        _numeric_bounds(value, where)
    elif kind == "cidr":
        _network(value, where)
    elif kind == "anything-but":
        _check_anything_but(value, where)
    else:
        raise invalid_pattern(f'Unrecognized match type {kind} in "{where}"')


def _check_wildcard(value, where: str) -> None:
    if not isinstance(value, str):
        raise invalid_pattern(f'wildcard match pattern in "{where}" must be a string')
    if "**" in value:
        raise invalid_pattern(f'Consecutive wildcard characters at pos {value.index("**") + 1} in "{where}"')


def _check_anything_but(value, where: str) -> None:
    if isinstance(value, dict):
        if len(value) != 1:
            raise invalid_pattern(
                f'anything-but in "{where}" takes one of prefix, suffix, equals-ignore-case, wildcard'
            )
        ((kind, inner),) = value.items()
        values = inner if isinstance(inner, list) and kind in ("equals-ignore-case", "wildcard") else [inner]
        if kind not in _STRING_OPERATORS or not values or not all(isinstance(v, str) for v in values):
            raise invalid_pattern(f'anything-but in "{where}" takes {kind} with string values only')
        if kind == "wildcard":
            for v in values:
                _check_wildcard(v, where)
        if kind in ("prefix", "suffix") and not inner:
            raise invalid_pattern(f'Null {kind} not allowed in anything-but in "{where}"')
        return
    values = value if isinstance(value, list) else [value]
    if not values:
        raise invalid_pattern(f'anything-but in "{where}" needs at least one value')
    if not (all(isinstance(v, str) for v in values) or all(_is_number(v) for v in values)):
        raise invalid_pattern(
            f'Inside anything-but list in "{where}", mixed types are not allowed; use strings or numbers'
        )


def _numeric_bounds(value, where: str) -> list[tuple[str, float]]:
    if not isinstance(value, list) or not value or len(value) % 2:
        raise invalid_pattern(f'Value of numeric in "{where}" must be an array of operator and number pairs')
    bounds = []
    for op, number in zip(value[::2], value[1::2]):
        if op not in _NUMERIC_OPERATORS:
            raise invalid_pattern(f'Unrecognized numeric range operator: {op!r} in "{where}"')
        if not _is_number(number) or not math.isfinite(number):
            raise invalid_pattern(f'Value of {op} must be a number in "{where}"')
        bounds.append((op, float(number)))
    lower = [b for b in bounds if b[0] in (">", ">=")]
    upper = [b for b in bounds if b[0] in ("<", "<=")]
    equal = [b for b in bounds if b[0] == "="]
    if (equal and len(bounds) > 1) or len(lower) > 1 or len(upper) > 1:
        raise invalid_pattern(f'numeric in "{where}" takes "=" alone, or at most one lower and one upper bound')
    if lower and upper and lower[0][1] >= upper[0][1]:
        raise invalid_pattern(f'Bottom must be less than top in numeric range in "{where}"')
    return bounds


def _network(value, where: str):
    if not isinstance(value, str):
        raise invalid_pattern(f'cidr match pattern in "{where}" must be a string')
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise invalid_pattern(f'Malformed CIDR, one "/" required: {value} in "{where}"') from None


# -- matching -------------------------------------------------------------------------


def matches(pattern: dict, event: dict) -> bool:
    """Whether ``event`` (a decoded JSON object) matches ``pattern`` (as :func:`compile_pattern` returned it)."""
    return _match_object(pattern, event)


def _match_object(pattern: dict, node) -> bool:
    for key, rule in pattern.items():
        if key == "$or":
            if not any(_match_object(alternative, node) for alternative in rule):
                return False
            continue
        value = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
        if isinstance(rule, dict):
            if isinstance(value, list):
                ok = any(isinstance(v, dict) and _match_object(rule, v) for v in value)
            else:
                # An absent object still lets {"exists": false} below it match.
                ok = _match_object(rule, value if isinstance(value, dict) else {})
        else:
            ok = _match_leaf(rule, value)
        if not ok:
            return False
    return True


def _match_leaf(matchers: list, value) -> bool:
    if value is _MISSING:
        return any(isinstance(m, dict) and m.get("exists") is False for m in matchers)
    if isinstance(value, dict):
        return False  # matchers apply to leaves; an object is no leaf (exists included, as on AWS)
    values = value if isinstance(value, list) else [value]
    for matcher in matchers:
        if isinstance(matcher, dict) and "exists" in matcher:
            if matcher["exists"]:
                return True
            continue
        if any(_match_value(matcher, v) for v in values):
            return True
    return False


def _same(matcher, value) -> bool:
    """Exact equality as EventBridge compares: types must agree; numbers compare by value."""
    if _is_number(matcher) and _is_number(value):
        return float(matcher) == float(value)
    return type(matcher) is type(value) and matcher == value


def _match_value(matcher, value) -> bool:
    if not isinstance(matcher, dict):
        return _same(matcher, value)
    ((kind, operand),) = matcher.items()
    if kind == "numeric":
        return _is_number(value) and _in_range(_numeric_bounds(operand, ""), float(value))
    if kind == "cidr":
        return isinstance(value, str) and _in_network(_network(operand, ""), value)
    if kind == "anything-but":
        return _anything_but(operand, value)
    return isinstance(value, str) and _string_match(kind, operand, value)


def _string_match(kind: str, operand, value: str) -> bool:
    if isinstance(operand, dict):  # {"prefix": {"equals-ignore-case": "..."}}
        operand, value = operand["equals-ignore-case"].casefold(), value.casefold()
    if kind == "prefix":
        return value.startswith(operand)
    if kind == "suffix":
        return value.endswith(operand)
    if kind == "equals-ignore-case":
        return value.casefold() == operand.casefold()
    return _wildcard_match(operand, value)


def _wildcard_match(pattern: str, value: str) -> bool:
    """Whether ``value`` is ``pattern`` with each ``*`` standing for any text. Matched piece by piece, leftmost
    first, in time linear in the pieces' finds: as a regex (``a.*a.*a.*b``) a few stars over an event's long
    value backtracked for hours."""
    if "*" not in pattern:
        return value == pattern
    first, *middle, last = pattern.split("*")
    end = len(value) - len(last)
    if end < len(first) or not value.startswith(first) or not value.endswith(last):
        return False
    position = len(first)
    for piece in middle:
        found = value.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def _anything_but(operand, value) -> bool:
    if isinstance(operand, dict):
        ((kind, inner),) = operand.items()
        if not isinstance(value, str):
            return False
        options = inner if isinstance(inner, list) else [inner]
        return not any(_string_match(kind, option, value) for option in options)
    options = operand if isinstance(operand, list) else [operand]
    return not any(_same(option, value) for option in options)


def _in_range(bounds: list[tuple[str, float]], number: float) -> bool:
    checks = {
        "<": number.__lt__,
        "<=": number.__le__,
        "=": number.__eq__,
        ">": number.__gt__,
        ">=": number.__ge__,
    }
    return all(checks[op](bound) for op, bound in bounds)


def _in_network(network, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) in network
    except ValueError:
        return False
