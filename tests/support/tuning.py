"""Helpers for the tuning tests: an image that runs a tiny trial on the host's Python, whose objective is a
known function of its hyperparameters (printed, for MetricDefinitions), and the tests' request and waits.

A trial trains ``epochs`` epochs (1 unless given), ``epoch_sleep`` seconds each, and prints the objective
after each: ``objective - (epochs - epoch)``, so its last value is :func:`objective` and every trial improves
by 1 an epoch."""

from __future__ import annotations

import json
import sys

from support.jobs import ROLE
from support.waiting import status_in, wait_for

IMAGE = "selfmaker.test/tuning:1"
TRAIN = """
import json, time
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
x, y = float(hp.get("x", 0)), float(hp.get("y", 0))
bonus = {"a": 0.0, "b": 1.0, "c": 0.5}.get(hp.get("kind", "a"), 0.0)
time.sleep(float(hp.get("sleep", 0)))
epochs, pause = int(hp.get("epochs", 1)), float(hp.get("epoch_sleep", 0))
for epoch in range(1, epochs + 1):
    time.sleep(pause)
    print(f"epoch {epoch}: objective={10 - (x - 3) ** 2 - (y - 1) ** 2 + bonus - (epochs - epoch):.6f}", flush=True)
open("/opt/ml/model/model.txt", "w").write("ok")
"""
METRICS = [{"Name": "objective", "Regex": r"objective=([-0-9.e]+)"}]


def objective(x: float, y: float = 0, kind: str = "a") -> float:
    return 10 - (x - 3) ** 2 - (y - 1) ** 2 + {"a": 0.0, "b": 1.0, "c": 0.5}[kind]


def runtimes_config(directory) -> str:
    """A runtimes config mapping IMAGE to the host's Python running TRAIN."""
    path = directory / "runtimes.json"
    path.write_text(json.dumps({"images": {IMAGE: {"python": sys.executable, "command": ["python3", "-c", TRAIN]}}}))
    return str(path)


BUCKET = "tuning-tests"
TERMINAL = {"Completed", "Failed", "Stopped"}


def request(name: str, strategy: str = "Random", *, ranges: dict | None = None, most=4, parallel=2, **config):
    """A CreateHyperParameterTuningJob request over the test image (``config``: more of the job's config)."""
    limits = {"MaxParallelTrainingJobs": parallel}
    if most is not None:
        limits["MaxNumberOfTrainingJobs"] = most
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "objective"},
            "ResourceLimits": limits,
            "ParameterRanges": ranges
            or {
                "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "6"}],
                "IntegerParameterRanges": [{"Name": "y", "MinValue": "0", "MaxValue": "3"}],
            },
            "RandomSeed": 7,
            **config,
        },
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": METRICS,
            },
            "StaticHyperParameters": {"sleep": "0"},
            "RoleArn": ROLE,
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        },
        "Tags": [{"Key": "team", "Value": "tuning"}],
    }


def wait(sm, name: str, until=TERMINAL, timeout: float = 300) -> dict:
    return wait_for(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        status_in("HyperParameterTuningJobStatus", until),
        timeout=timeout,
        what=f"tuning job {name} to be {'/'.join(sorted(until))}",
    )


def trials(sm, name: str, **kwargs) -> list[dict]:
    return sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name, **kwargs)[
        "TrainingJobSummaries"
    ]


def score(summary: dict) -> float:
    return summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]


def tuning_server(make_server, tmp_path_factory, name: str):
    """A test module's server whose training image runs the tuning script above (``runtimes_config``)."""
    config = runtimes_config(tmp_path_factory.mktemp(f"{name}-config"))
    return make_server(name, env={"SELFMAKER_RUNTIMES_CONFIG": config}).start()


def sagemaker_with_bucket(client, server):
    """``server``'s sagemaker client, the tuning tests' bucket made first."""
    from botocore.exceptions import ClientError

    try:
        client("s3", server).create_bucket(Bucket=BUCKET)
    except ClientError:
        pass  # made by an earlier test of the module
    return client("sagemaker", server)
