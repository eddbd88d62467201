"""A tuning job's training jobs are real training jobs, with the trial components and lineage AWS records for
them; a pipeline's Tuning step links each of them to the execution's lineage context, as a Training step's job."""

from __future__ import annotations

import re

import pytest

from support import pipelines
from support.tuning import request, sagemaker_with_bucket, trials, tuning_server, wait


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory):
    server = tuning_server(make_server, tmp_path_factory, "tuning-lineage")
    yield server
    server.stop()


@pytest.fixture
def sm(client, srv):
    return sagemaker_with_bucket(client, srv)


def _check_trial_records(sm, trial: dict) -> str:
    """A trial's training job as AWS records it: listed, tagged, its trial component (source, parameters,
    artifacts) and lineage (its image contributed to it; it produced the model). Returns the component's ARN."""
    name = trial["TrainingJobName"]
    job = sm.describe_training_job(TrainingJobName=name)
    assert name in [s["TrainingJobName"] for s in sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]]
    assert {"Key": "team", "Value": "tuning"} in sm.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    component = sm.describe_trial_component(TrialComponentName=f"{name}-aws-training-job")
    assert component["Source"] == {"SourceArn": job["TrainingJobArn"], "SourceType": "SageMakerTrainingJob"}
    assert component["Status"]["PrimaryStatus"] == "Completed"
    assert component["Parameters"]["x"]["NumberValue"] == pytest.approx(float(trial["TunedHyperParameters"]["x"]))
    assert component["Parameters"]["SageMaker.InstanceType"] == {"StringValue": "ml.m5.large"}
    model = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert component["OutputArtifacts"]["SageMaker.ModelArtifact"]["Value"] == model
    assert component["InputArtifacts"]["SageMaker.ImageUri"]["Value"] == job["AlgorithmSpecification"]["TrainingImage"]
    produced = [
        a
        for a in sm.list_associations(SourceArn=component["TrialComponentArn"])["AssociationSummaries"]
        if a["AssociationType"] == "Produced"
    ]
    assert [a["DestinationType"] for a in produced] == ["Model"]
    assert sm.describe_artifact(ArtifactArn=produced[0]["DestinationArn"])["Source"]["SourceUri"] == model
    fed = sm.list_associations(DestinationArn=component["TrialComponentArn"])["AssociationSummaries"]
    assert ("ContributedTo", "Image") in [(a["AssociationType"], a["SourceType"]) for a in fed]
    return component["TrialComponentArn"]


def test_a_pipeline_tuning_step_records_its_training_jobs_lineage(sm, unique):
    name = unique("tune-lineage")[-40:]
    arguments = request("ignored", most=2, parallel=2)
    del arguments["HyperParameterTuningJobName"]  # the step names its job
    pipelines.create(sm, name, [{"Name": "Tune", "Type": "Tuning", "Arguments": arguments}])
    arn = pipelines.start(sm, name)
    done = pipelines.wait(sm, arn, timeout=600)
    assert done["PipelineExecutionStatus"] == "Succeeded", done.get("FailureReason")
    tuning_arn = pipelines.steps(sm, arn)["Tune"]["Metadata"]["TuningJob"]["Arn"]
    tuning_name = tuning_arn.rsplit("/", 1)[-1]
    assert wait(sm, tuning_name)["HyperParameterTuningJobStatus"] == "Completed"
    found = trials(sm, tuning_name)
    assert len(found) == 2
    # Named as AWS names them: <tuning job>-<3-digit index>-<8 hex>.
    assert sorted(re.fullmatch(rf"{tuning_name}-(\d{{3}})-[0-9a-f]{{8}}", t["TrainingJobName"])[1] for t in found) == [
        "001",
        "002",
    ]
    components = [_check_trial_records(sm, trial) for trial in found]
    # The execution's lineage context: each trial's component contributed to it.
    context = sm.describe_context(ContextName=f"pipeline-execution-{arn.rsplit('/', 1)[-1]}")
    linked = sm.list_associations(DestinationArn=context["ContextArn"])["AssociationSummaries"]
    assert sorted(a["SourceArn"] for a in linked) == sorted(components)
    assert {a["AssociationType"] for a in linked} == {"ContributedTo"}
