"""A job's execution log: CloudWatch Logs group /aws/sagemaker/InferenceRecommendationsJobs, stream <job>/execution.

AWS writes one there, and SageMaker SDK v2's ``right_size()`` (its default Verbose wait) reads it
and waits for the stream to exist: so the stream is made when the job is created, and each step's
start and end and the job's end add a line.
"""

from __future__ import annotations

import logging
import time

from ...aws.logs import log_store

GROUP = "/aws/sagemaker/InferenceRecommendationsJobs"
log = logging.getLogger("selfmaker.recommender")


def stream(job_name: str) -> str:
    return f"{job_name}/execution"


def write(backends, account_id: str, region: str, job_name: str, message: str) -> None:
    try:
        log_store.append_events(
            backends.store, account_id, region, GROUP, stream(job_name), [(int(time.time() * 1000), message)]
        )
    except Exception:  # a log line is never worth failing the job for
        log.exception("could not write the execution log of %s", job_name)
