"""Loaded at start-up by every Python process an SDK test runs (support/sdk.py puts this folder on PYTHONPATH).

It checks every answer the process's botocore clients receive, as the test process does its own
(support/conformance.py), and appends what did not conform to $SELFMAKER_CONFORMANCE_LOG at exit; SDK.run
fails the test on it. The module is loaded from its file, so no `support` package enters the SDK's import path.
"""

import atexit
import importlib.util
import os
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_selfmaker_conformance", Path(__file__).parents[1] / "conformance.py")
_conformance = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conformance)
_conformance.check_every_client()


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def _problems() -> list[str]:
    """What did not conform. A botocore older than the server's models lacks the members and enum values added
    since, which AWS sends old clients too (and their parsers drop): only types and required members count."""
    import botocore

    problems = _conformance.RECORDER.problems
    if _release(botocore.__version__) < _release(os.environ.get("SELFMAKER_MODELS_BOTOCORE", "0")):
        problems = [p for p in problems if ": not a member of " not in p and " is not one of " not in p]
    return problems


@atexit.register
def _report() -> None:
    if (problems := _problems()) and os.environ.get("SELFMAKER_CONFORMANCE_LOG"):
        with open(os.environ["SELFMAKER_CONFORMANCE_LOG"], "a") as log:
            log.write("".join(f"{problem}\n" for problem in problems))
