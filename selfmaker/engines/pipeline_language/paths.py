"""Property paths: ``ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri``, ``Return[1]``.

One syntax serves step properties (``Get: Steps.<Step>.<Path>``, against the
Describe output of the step's job, model or package) and ``Std:JsonGet`` paths
(against a JSON document): dot-separated member names, each followed by any
number of ``[int]`` or ``['key']`` accessors. As in the SDK's ``PropertiesList``,
a list item is reached by its index or by its name (``Outputs['train']`` is the
output whose ``OutputName`` is ``train``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NoReturn

from .errors import PropertyError

# Members that name a list item, most specific first; any other string member
# ending in "Name" is tried after them.
NAME_MEMBERS = (
    "OutputName",
    "InputName",
    "ChannelName",
    "MetricName",
    "VariantName",
    "ParameterName",
    "FeatureName",
    "Name",
    "Key",
)

_MEMBER = re.compile(r"[^.\[\]'\"]+")
_INDEX = re.compile(r"\[(-?\d+)\]")
_QUOTED = re.compile(r"""\[(?:'([^']*)'|"([^"]*)")\]""")


@dataclass(frozen=True)
class Token:
    value: str | int
    bracketed: bool  # written as an accessor ([0] or ['k']) rather than a dotted member name

    def __str__(self) -> str:
        if isinstance(self.value, int):
            return f"[{self.value}]"
        return f"['{self.value}']" if self.bracketed else self.value


@lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[Token, ...]:
    """Split a path into tokens; ValueError says where the syntax breaks."""
    if not isinstance(path, str) or not path:
        raise ValueError("the path is empty")
    tokens: list[Token] = []
    at = 0
    expect_member = True  # at the start or after a dot: a member name (or an accessor) must follow
    while at < len(path):
        if path[at] == "[":
            match = _INDEX.match(path, at) or _QUOTED.match(path, at)
            if not match:
                raise ValueError(f"bad accessor at character {at} of {path!r}: use [0] or ['name']")
            if match.re is _INDEX:
                tokens.append(Token(int(match.group(1)), True))
            else:
                tokens.append(Token(match.group(1) if match.group(1) is not None else match.group(2), True))
            at = match.end()
            expect_member = False
        elif expect_member:
            match = _MEMBER.match(path, at)
            if not match:
                raise ValueError(f"expected a member name at character {at} of {path!r}")
            tokens.append(Token(match.group(0), False))
            at = match.end()
            expect_member = False
        elif path[at] == ".":
            at += 1
            expect_member = True
            if at == len(path):
                raise ValueError(f"{path!r} ends with a dot")
        else:
            raise ValueError(f"unexpected {path[at]!r} at character {at} of {path!r}")
    return tuple(tokens)


def lookup(document, path: str):
    """The value at ``path`` in ``document``; PropertyError when the path does not resolve."""
    try:
        tokens = parse_path(path)
    except ValueError as e:
        raise PropertyError(f"Invalid path {path!r}: {e}", f"invalid path: {e}") from None
    value = document
    for depth, token in enumerate(tokens):
        value = _step(value, token, lambda depth=depth: "".join(_joined(tokens[: depth + 1])), path)
    return value


def _joined(tokens):
    for i, token in enumerate(tokens):
        yield ("." if i and not token.bracketed else "") + str(token)


def _step(value, token: Token, where, path: str):
    if isinstance(value, dict):
        if isinstance(token.value, str) and token.value in value:
            return value[token.value]
        _fail(path, f"{where()} is not there (members: {_preview(value.keys())})")
    if isinstance(value, list):
        if isinstance(token.value, int):
            if 0 <= token.value < len(value):
                return value[token.value]
            _fail(path, f"{where()} is out of range (the list has {len(value)} items)")
        if token.bracketed:
            item = _item_named(value, token.value)
            if item is not None:
                return item
            names = [n for n in (_name_of(i) for i in value) if n is not None]
            _fail(path, f"{where()}: no item named {token.value!r} in the list (names: {_preview(names)})")
    _fail(path, f"{where()} cannot be read from a {_kind(value)}")


def _fail(path: str, detail: str) -> NoReturn:
    raise PropertyError(f"Path {path!r} does not resolve: {detail}", detail)


def _item_named(items: list, name: str):
    for member in NAME_MEMBERS:
        for item in items:
            if isinstance(item, dict) and item.get(member) == name:
                return item
    for item in items:
        if isinstance(item, dict) and any(k.endswith("Name") and v == name for k, v in item.items()):
            return item
    return None


def _name_of(item):
    if isinstance(item, dict):
        for member in NAME_MEMBERS:
            if isinstance(item.get(member), str):
                return item[member]
    return None


def _preview(names, limit: int = 12) -> str:
    names = [str(n) for n in names]
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", str: "string", int: "number", float: "number"}.get(type(value), type(value).__name__)
