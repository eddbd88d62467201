"""Helpers for the job tests: the image they run, code archives, waiting for an end."""

from __future__ import annotations

import io
import os
import tarfile
import textwrap
from pathlib import Path

from support.waiting import status_in, wait_for

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TERMINAL = {"Completed", "Failed", "Stopped"}
# The first job of a run builds the scikit-learn runtime (venv + pip): allow for it.
FIRST_JOB_SECONDS = 600


def neo_python() -> str:
    """The compilation runtime's interpreter: the one the servers' compilation jobs use, built once per test run
    in the run's runtimes directory (conftest.py), whichever test file asks first."""
    from selfmaker.engines import runtimes

    image = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{runtimes.NEO_REPOSITORY}:1.0-compile-xgboost"
    bin_dir = runtimes.ensure(runtimes.resolve(image), Path(os.environ["SELFMAKER_RUNTIMES_DIR"]), lambda line: None)
    return str(bin_dir / "python")


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A .tar.gz holding ``files`` (member name -> bytes): model data, code archives."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def code_archive(files: dict[str, str]) -> bytes:
    """A sourcedir.tar.gz holding ``files`` (name -> source, dedented)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            body = textwrap.dedent(text).encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def wait(sm, kind: str, name: str, timeout: float = FIRST_JOB_SECONDS, until=TERMINAL) -> dict:
    """Describe<kind>Job until its status is in ``until``; the last description."""
    describe = getattr(sm, f"describe_{kind}_job")
    key = {"training": "TrainingJobName", "processing": "ProcessingJobName"}[kind]
    status_key = {"training": "TrainingJobStatus", "processing": "ProcessingJobStatus"}[kind]
    return wait_for(
        lambda: describe(**{key: name}),
        status_in(status_key, until),
        timeout=timeout,
        what=f"{kind} job {name} to be {'/'.join(sorted(until))}",
    )


def training_request(
    name: str,
    bucket: str,
    code_key: str,
    *,
    hyperparameters: dict | None = None,
    channels: dict | None = None,
    max_runtime: int = 300,
    **extra,
) -> dict:
    """A v2 script-mode CreateTrainingJob request running ``train.py`` from s3://bucket/code_key."""
    hps = {
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": f'"s3://{bucket}/{code_key}"',
        **(hyperparameters or {}),
    }
    request = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "HyperParameters": hps,
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel, uri in (channels or {}).items()
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
    }
    if not request["InputDataConfig"]:
        del request["InputDataConfig"]
    request.update(extra)
    return request


def processing_request(
    name: str,
    entrypoint: list[str],
    *,
    inputs: list | None = None,
    outputs: list | None = None,
    instances: int = 1,
    **extra,
) -> dict:
    request = {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": instances, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
        },
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE, "ContainerEntrypoint": entrypoint},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }
    if inputs:
        request["ProcessingInputs"] = inputs
    if outputs:
        request["ProcessingOutputConfig"] = {"Outputs": outputs}
    request.update(extra)
    return request


def s3_input(name: str, uri: str, local_path: str, **options) -> dict:
    return {
        "InputName": name,
        "S3Input": {"S3Uri": uri, "LocalPath": local_path, "S3DataType": "S3Prefix", "S3InputMode": "File", **options},
    }


def s3_output(name: str, uri: str, local_path: str, mode: str = "EndOfJob") -> dict:
    return {"OutputName": name, "S3Output": {"S3Uri": uri, "LocalPath": local_path, "S3UploadMode": mode}}


def log_lines(logs, group: str, job: str) -> list[str]:
    try:
        streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job}/")["logStreams"]
    except logs.exceptions.ResourceNotFoundException:  # no job has logged to the group yet
        return []
    lines = []
    for stream in sorted(streams, key=lambda s: s["logStreamName"]):
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True)[
            "events"
        ]
        lines += [e["message"] for e in events]
    return lines


def wait_for_log(logs, group: str, job: str, text: str, timeout: float = FIRST_JOB_SECONDS) -> list[str]:
    """Until a line of ``job``'s logs contains ``text`` (the job's script got that far); all its lines."""
    return wait_for(
        lambda: log_lines(logs, group, job),
        lambda lines: any(text in line for line in lines),
        timeout=timeout,
        interval=0.2,
        what=f"{job} to log {text!r}",
    )
