"""Helpers for the pipeline tests: a server whose test image runs on the host's Python (no runtime to build),
definitions made of small processing steps, and waiting for an execution to end."""

from __future__ import annotations

import base64
import json
import sys
import textwrap
import uuid

from support.waiting import status_in, wait_for

IMAGE = "selfmaker.test/python:3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TERMINAL = {"Succeeded", "Failed", "Stopped", "CompletedWithFailures"}


def runtimes_config(tmp_path) -> str:
    path = tmp_path / "runtimes.json"
    path.write_text(json.dumps({"images": {IMAGE: {"python": sys.executable}}}))
    return str(path)


def processing(name: str, script: str, *, inputs: list | None = None, outputs: list | None = None, **step) -> dict:
    """A Processing step running ``script`` (dedented Python) with python3 -c."""
    arguments = {
        "ProcessingResources": {
            "ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1}
        },
        "AppSpecification": {"ImageUri": IMAGE, "ContainerEntrypoint": entrypoint(script)},
        "RoleArn": ROLE,
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }
    if inputs:
        arguments["ProcessingInputs"] = inputs
    if outputs:
        arguments["ProcessingOutputConfig"] = {"Outputs": outputs}
    return {"Name": name, "Type": "Processing", "Arguments": arguments, **step}


LOADER = (
    "import base64, sys; i = sys.argv.index('--'); code = base64.b64decode(''.join(sys.argv[1:i])); "
    "sys.argv = sys.argv[:1] + sys.argv[i + 1:]; exec(code)"
)


def entrypoint(script: str) -> list[str]:
    """python3 -c running ``script``: base64 in pieces, as entrypoint members are single lines of 256 characters."""
    encoded = base64.b64encode(textwrap.dedent(script).encode()).decode()
    return ["python3", "-c", LOADER, *(encoded[i : i + 256] for i in range(0, len(encoded), 256)), "--"]


def s3_input(name: str, uri, local: str) -> dict:
    return {
        "InputName": name,
        "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": "S3Prefix", "S3InputMode": "File"},
    }


def s3_output(name: str, uri, local: str) -> dict:
    return {"OutputName": name, "S3Output": {"S3Uri": uri, "LocalPath": local, "S3UploadMode": "EndOfJob"}}


def definition(steps: list, parameters: list | None = None, experiment: bool = True) -> str:
    return json.dumps(
        {
            "Version": "2020-12-01",
            "Metadata": {},
            "Parameters": parameters or [],
            "PipelineExperimentConfig": {
                "ExperimentName": {"Get": "Execution.PipelineName"},
                "TrialName": {"Get": "Execution.PipelineExecutionId"},
            }
            if experiment
            else None,
            "Steps": steps,
        }
    )


def create(sm, name: str, steps: list, parameters: list | None = None, **extra) -> str:
    return sm.create_pipeline(
        PipelineName=name,
        RoleArn=ROLE,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineDefinition=definition(steps, parameters),
        **extra,
    )["PipelineArn"]


def start(sm, name: str, parameters: dict | None = None, **extra) -> str:
    return sm.start_pipeline_execution(
        PipelineName=name,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in (parameters or {}).items()],
        **extra,
    )["PipelineExecutionArn"]


def wait(sm, arn: str, timeout: float = 300, until=TERMINAL) -> dict:
    """DescribePipelineExecution until its status is in ``until``; the last description."""
    return wait_for(
        lambda: sm.describe_pipeline_execution(PipelineExecutionArn=arn),
        status_in("PipelineExecutionStatus", until),
        timeout=timeout,
        what=f"{arn} to be {'/'.join(sorted(until))}",
    )


def steps(sm, arn: str) -> dict[str, dict]:
    """The execution's steps by name."""
    listed = sm.list_pipeline_execution_steps(PipelineExecutionArn=arn, MaxResults=100)["PipelineExecutionSteps"]
    return {s["StepName"]: s for s in listed}
