"""Restart safety: SIGKILL the server during an execution; after the restart it resumes and ends.

One step's job outlives the restart and is followed to its end; another's
processes are killed while the server is down (an internal error, which its
RetryPolicies cover: it runs again as attempt 2); the step depending on both
was still pending and starts after the restart.
"""

from __future__ import annotations

import os
import signal
import time

from support.pipelines import create, processing, runtimes_config, start, steps, wait
from support.waiting import wait_for

RETRY_INTERNAL_ERRORS = [
    {"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 1, "BackoffRate": 1.0, "MaxAttempts": 2}
]


def test_an_execution_resumes_after_a_sigkill(make_server, client, tmp_path):
    server = make_server("pipelines-crash", env={"SELFMAKER_RUNTIMES_CONFIG": runtimes_config(tmp_path)}).start()
    sm = client("sagemaker", server)
    create(
        sm,
        "crash",
        [
            processing("Outlives", "import time; time.sleep(4)"),
            processing("Vanishes", "import time; time.sleep(4)", RetryPolicies=RETRY_INTERNAL_ERRORS),
            processing("Pending", "print('after both')", DependsOn=["Outlives", "Vanishes"]),
        ],
    )
    arn = start(sm, "crash")
    both_executing = wait_for(
        lambda: steps(sm, arn),
        lambda found: len(found) == 2 and {s["StepStatus"] for s in found.values()} == {"Executing"},
        what="the first two steps to be executing",
    )
    vanishing = both_executing["Vanishes"]["Metadata"]["ProcessingJob"]["Arn"].rsplit("/", 1)[-1]
    time.sleep(0.5)  # the instances are up
    server.kill()
    pid_file = next(server.data_dir.glob(f"jobs/*/*/processing-job/{vanishing}/algo-1/state/pid"))
    os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    server.start()
    sm = client("sagemaker", server)
    done = wait(sm, arn, timeout=120)
    assert done["PipelineExecutionStatus"] == "Succeeded", done.get("FailureReason")
    found = steps(sm, arn)
    assert {name: s["StepStatus"] for name, s in found.items()} == {
        "Outlives": "Succeeded",
        "Vanishes": "Succeeded",
        "Pending": "Succeeded",
    }
    assert found["Outlives"]["AttemptCount"] == 1
    assert found["Vanishes"]["AttemptCount"] == 2
    first_attempt = sm.describe_processing_job(ProcessingJobName=vanishing)
    assert first_attempt["ProcessingJobStatus"] == "Failed"
    assert first_attempt["FailureReason"].startswith("InternalServerError")
    assert found["Vanishes"]["Metadata"]["ProcessingJob"]["Arn"].rsplit("/", 1)[-1] != vanishing
    assert found["Pending"]["StartTime"] >= max(found["Outlives"]["EndTime"], found["Vanishes"]["EndTime"])
    server.stop()
