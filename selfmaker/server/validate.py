"""Validate (and normalise) request parameters against a botocore input shape.

The checks and messages follow the AWS services' own:
``1 validation error detected: Value 'x' at 'pipelineName' failed to satisfy
constraint: Member must satisfy regular expression pattern: ...``.
Timestamps become epoch-seconds floats and blobs become bytes, so handlers see
one representation whatever the wire protocol was.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from functools import lru_cache

import regex
from botocore.model import Shape

from .errors import validation

_MAX_REPORTED = 10


@lru_cache(maxsize=4096)
def _compiled(pattern: str):
    """Compile a model pattern (Java syntax) for Python; None if it cannot be."""
    translated = (
        pattern.replace(r"\z", r"\Z")
        # Java writes supplementary characters as surrogate pairs; Python sees code points.
        .replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF")
        .replace(r"\p{Print}", r"\p{Graph}\x20")
    )
    try:
        return regex.compile(translated)
    except regex.error:
        return None  # a handful of model patterns are not valid regexes at all


def _matches(pattern: str, value: str) -> bool:
    """Whether ``value`` satisfies a model pattern (one it cannot compile passes). Short values repeat from
    request to request (an endpoint's name, a content type), and the ``regex`` module takes microseconds
    per match: their answers are remembered."""
    if len(value) <= _REMEMBERED_LENGTH:
        return _short_matches(pattern, value)
    compiled = _compiled(pattern)
    return compiled is None or compiled.fullmatch(value) is not None


_REMEMBERED_LENGTH = 256


@lru_cache(maxsize=8192)
def _short_matches(pattern: str, value: str) -> bool:
    compiled = _compiled(pattern)
    return compiled is None or compiled.fullmatch(value) is not None


@lru_cache(maxsize=4096)
def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def parse_timestamp(value) -> float | None:
    seconds = _timestamp(value)
    # NaN, infinities and moments outside years 1-9999 are refused here: every later use would fail on them.
    return seconds if seconds is not None and _FIRST_MOMENT <= seconds < _END_OF_9999 else None


_FIRST_MOMENT, _END_OF_9999 = -62135596800, 253402300800  # epoch seconds of 0001-01-01 and 10000-01-01


def _timestamp(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return None


class _Validator:
    def __init__(self, finite: bool = True) -> None:
        self.finite = finite
        self.errors: list[str] = []

    def fail(self, value, path: str, constraint: str) -> None:
        shown = "null" if value is None else f"'{_show(value)}'"
        self.errors.append(f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}")

    def check(self, value, shape: Shape, path: str):
        method = _CHECKS.get(shape.type_name)
        return method(self, value, shape, path) if method else value

    def _structure(self, value, shape, path):
        if not isinstance(value, dict):
            self.fail(value, path, "Member must be a structure")
            return value
        out = {}
        for name in shape.required_members:
            if value.get(name) is None:
                self.fail(None, f"{path}.{_camel(name)}" if path else _camel(name), "Member must not be null")
        members = shape.members
        for name, member_value in value.items():
            member = members.get(name)
            if member is None or member_value is None:
                continue  # unknown members are ignored, as the JSON services do
            sub = f"{path}.{_camel(name)}" if path else _camel(name)
            out[name] = self.check(member_value, member, sub)
        return out

    def _list(self, value, shape, path):
        if not isinstance(value, list):
            self.fail(value, path, "Member must be a list")
            return value
        self._length(value, shape, path)
        return [self.check(item, shape.member, f"{path}.{i + 1}.member") for i, item in enumerate(value)]

    def _map(self, value, shape, path):
        if not isinstance(value, dict):
            self.fail(value, path, "Member must be a map")
            return value
        self._length(value, shape, path)
        out = {}
        for key, item in value.items():
            key = self.check(key, shape.key, f"{path}.key")
            out[key] = self.check(item, shape.value, f"{path}.{key}.member")
        return out

    def _string(self, value, shape, path):
        if not isinstance(value, str):
            self.fail(value, path, "Member must be of type string")
            return value
        self._length(value, shape, path)
        enum = shape.enum
        if enum and value not in enum:
            self.fail(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        pattern = shape.metadata.get("pattern")
        if pattern and not _matches(pattern, value):
            self.fail(value, path, f"Member must satisfy regular expression pattern: {pattern}")
        return value

    def _length(self, value, shape, path):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and len(value) < low:
            self.fail(value, path, f"Member must have length greater than or equal to {low}")
        if high is not None and len(value) > high:
            self.fail(value, path, f"Member must have length less than or equal to {high}")

    def _range(self, value, shape, path):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            self.fail(value, path, f"Member must have value greater than or equal to {low}")
        if high is not None and value > high:
            self.fail(value, path, f"Member must have value less than or equal to {high}")

    def _integer(self, value, shape, path):
        if isinstance(value, str):  # query and rest protocols carry numbers as text
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(value, path, "Member must be of type integer")
            return value
        self._range(value, shape, path)
        return value

    _long = _integer

    def _float(self, value, shape, path):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.fail(value, path, "Member must be of type double")
            return value
        # JSON protocols send NaN and infinities as the strings "NaN", "Infinity", "-Infinity" (Smithy),
        # and query and header text parse the same way: refused unless the operation takes them.
        if self.finite and not math.isfinite(value):
            self.fail(value, path, "Member must be a finite number")
            return value
        self._range(value, shape, path)
        return value

    _double = _float

    def _boolean(self, value, shape, path):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            self.fail(value, path, "Member must be of type boolean")
        return value

    def _timestamp(self, value, shape, path):
        parsed = parse_timestamp(value)
        if parsed is None:
            self.fail(value, path, "Member must be a timestamp")
            return value
        return parsed

    def _blob(self, value, shape, path):
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value)
        elif isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                self.fail(value, path, "Member must be base64-encoded binary data")
                return value
        else:
            self.fail(value, path, "Member must be of type blob")
            return value
        self._length(value, shape, path)
        return value


# type name -> its check, looked up once per value (not by building "_<type>" and getattr each time)
_CHECKS = {
    kind: getattr(_Validator, f"_{kind}")
    for kind in ("structure", "list", "map", "string", "integer", "long", "float", "double", "boolean")
    + ("timestamp", "blob")
}


def validate(params: dict, shape: Shape | None, finite: bool = True) -> dict:
    """Return the normalised parameters, or raise a ValidationException naming every violation.

    ``finite``: doubles must be finite numbers (no NaN, no infinity)."""
    if shape is None:
        return {}
    validator = _Validator(finite)
    result = validator.check(params if params is not None else {}, shape, "")
    if validator.errors:
        count = len(validator.errors)
        shown = validator.errors[:_MAX_REPORTED]
        noun = "error" if count == 1 else "errors"
        raise validation(f"{count} validation {noun} detected: " + "; ".join(shown))
    return result
