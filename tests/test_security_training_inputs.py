"""Security: what a training job hands the server is data. A shell program (a training job's, or a tuning
trial's: the same toolkit runs it) gets each hyperparameter as one argument, exactly as given, never as shell
syntax to run; a MetricDefinition's regex, run on the server over the log the job's code wrote, is bounded in
time (a catastrophic one finds nothing instead of holding a server thread for ever), and what it captures
counts only as a finite number."""

from __future__ import annotations

import io
import json
import tarfile

from support.accounts import ROLE, A, accounts_server
from support.jobs import code_archive, log_lines, training_request, wait
from support.pipelines import IMAGE

srv, as_ = accounts_server("training-inputs", A)

# Prints each argument it gets on a line of its own, between brackets.
PROGRAM = b'#!/bin/sh\nfor arg in "$@"; do echo "ARG[$arg]"; done\n'
PAYLOADS = {
    "payload": "$(echo INJECTED) ; echo SECOND | cat `echo x` && 'q' \"d\" > /tmp/planted",
    "with space": "two words",
}


def program_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.sh")
        info.size, info.mode = len(PROGRAM), 0o755
        tar.addfile(info, io.BytesIO(PROGRAM))
    return buffer.getvalue()


def test_hyperparameters_reach_a_shell_program_as_plain_arguments(as_, unique):
    sm, s3, logs = as_(A), as_(A, "s3"), as_(A, "logs")
    bucket, name = unique("hp-shell"), unique("hp-shell")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="code/program.tar.gz", Body=program_archive())
    request = training_request(
        name,
        bucket,
        "code/program.tar.gz",
        hyperparameters={key: json.dumps(value) for key, value in PAYLOADS.items()},
        RoleArn=ROLE.format(account=A.account),
    )
    request["HyperParameters"]["sagemaker_program"] = '"train.sh"'
    request["AlgorithmSpecification"]["TrainingImage"] = IMAGE
    sm.create_training_job(**request)
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")

    printed = [line for line in log_lines(logs, "/aws/sagemaker/TrainingJobs", name) if line.startswith("ARG[")]
    expected = []
    for key in sorted(PAYLOADS):
        expected += [f"ARG[--{key}]", f"ARG[{PAYLOADS[key]}]"]
    assert printed == expected


LOGGING = """
print("a" * 40 + "!", flush=True)  # what (a+)+b backtracks on exponentially
print("objective=1e999", flush=True)  # a float, but not a finite one
print("objective=0.25", flush=True)
print("loss=0.5", flush=True)
"""


def test_metric_regexes_are_bounded_in_time_and_count_only_finite_values(as_, unique):
    sm, s3 = as_(A), as_(A, "s3")
    bucket, name = unique("metric-regex"), unique("metric-regex")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="code/train.tar.gz", Body=code_archive({"train.py": LOGGING}))
    request = training_request(name, bucket, "code/train.tar.gz", RoleArn=ROLE.format(account=A.account))
    request["AlgorithmSpecification"] = {
        "TrainingImage": IMAGE,
        "TrainingInputMode": "File",
        "MetricDefinitions": [
            {"Name": "catastrophic", "Regex": "(a+)+b"},
            {"Name": "objective", "Regex": r"objective=([-0-9.e]+)"},
            {"Name": "loss", "Regex": r"loss=([-0-9.e]+)"},
        ],
    }
    sm.create_training_job(**request)
    job = wait(sm, "training", name, timeout=180)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    final = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert final == {"objective": 0.25, "loss": 0.5}
