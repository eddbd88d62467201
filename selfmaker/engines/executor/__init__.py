"""Executors run job instances (docs/design.md, principle 4): ``local`` (bubblewrap) now; ``docker``, ``ray`` later."""

from __future__ import annotations

from .base import Executor, ExecutorUnavailable, ExitStatus, InstanceSpec, Limits, Mount, Placement  # noqa: F401


def open_executor(url: str) -> Executor:
    """The executor a setting names: ``local`` (the default)."""
    if url in ("", "local"):
        from .local import LocalExecutor

        return LocalExecutor()
    if url.split(":", 1)[0] in ("docker", "ray"):
        raise ValueError(
            f"the {url.split(':', 1)[0]} executor is not available in this version of SelfMaker; use executor 'local'"
        )
    raise ValueError(f"unknown executor {url!r}: use 'local'")
