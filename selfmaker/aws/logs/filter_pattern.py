"""CloudWatch Logs filter patterns for unstructured events: the term syntax.

``ERROR``                events that contain ERROR (terms are case-sensitive substrings)
``ERROR Exception``      events that contain both
``"Failed to start"``    a phrase; quote any term that is not only letters, digits and _
``ERROR -Retrying``      ERROR but not Retrying
``?ERROR ?WARN``         either of them

JSON (``{ $.level = ... }``), space-delimited (``[ip, user, ...]``) and
regular-expression (``%...%``) patterns are refused with a clear error rather
than matched approximately.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r'\s*([?-]?)(?:"((?:[^"\\]|\\.)*)"|([^\s"]+))')
_BARE_TERM = re.compile(r"\w+", re.ASCII)


class PatternError(ValueError):
    """A filter pattern SelfMaker cannot interpret; the message is fit for the client."""


@dataclass(frozen=True)
class FilterPattern:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def matches(self, message: str) -> bool:
        return (
            all(term in message for term in self.required)
            and not any(term in message for term in self.excluded)
            and (not self.optional or any(term in message for term in self.optional))
        )

    @property
    def matches_everything(self) -> bool:
        return not (self.required or self.optional or self.excluded)


def parse(pattern: str | None) -> FilterPattern:
    text = (pattern or "").strip()
    if text[:1] in ("{", "[") or (len(text) > 1 and text[0] == "%" and text[-1] == "%"):
        raise PatternError(
            'SelfMaker supports term filter patterns (terms, "quoted phrases", ?either and '
            "-excluded terms); JSON, space-delimited and regular-expression patterns are not "
            "supported."
        )
    buckets: dict[str, list[str]] = {"": [], "?": [], "-": []}
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise PatternError(f"Invalid filter pattern: unbalanced quotes in {pattern!r}.")
        operator, quoted, bare = match.groups()
        if quoted is not None:
            term = re.sub(r"\\(.)", r"\1", quoted)
        elif not _BARE_TERM.fullmatch(bare):
            raise PatternError(
                f"Invalid character(s) in term '{bare}': quote terms that contain characters "
                "other than letters, digits and underscores."
            )
        else:
            term = bare
        if term:
            buckets[operator].append(term)
        position = match.end()
    return FilterPattern(tuple(buckets[""]), tuple(buckets["?"]), tuple(buckets["-"]))
