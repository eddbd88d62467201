"""The one polling loop of the suite: ask until the answer is the awaited one, or fail saying what was last seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_NOTHING = object()


def wait_for(
    probe: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
    what: str = "",
) -> T:
    """Call ``probe()`` until ``until(answer)`` is true and return that answer.

    ``ignore``: exceptions that mean "not yet" (an endpoint still starting). After ``timeout`` seconds the
    test fails with ``what`` and the last answer (or error), which is what one needs to see to debug it.
    """
    deadline = time.monotonic() + timeout
    last: object = _NOTHING
    while True:
        try:
            last = probe()
        except ignore as err:
            last = err
        else:
            if until(last):
                return last
        if time.monotonic() >= deadline:
            seen = "nothing" if last is _NOTHING else repr(last)[:2000]
            raise AssertionError(
                f"waited {timeout} s for {what or getattr(probe, '__name__', 'a condition')}; last seen: {seen}"
            )
        time.sleep(interval)


def status_in(key: str, wanted) -> Callable[[dict], bool]:
    """until= for a Describe answer: its ``key`` is one of ``wanted``."""
    return lambda described: described[key] in wanted
