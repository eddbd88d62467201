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


@atexit.register
def _report() -> None:
    if _conformance.RECORDER.problems and os.environ.get("SELFMAKER_CONFORMANCE_LOG"):
        with open(os.environ["SELFMAKER_CONFORMANCE_LOG"], "a") as log:
            log.write("".join(f"{problem}\n" for problem in _conformance.RECORDER.problems))
