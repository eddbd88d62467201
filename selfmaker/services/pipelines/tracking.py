"""Experiments and lineage for an execution, as SageMaker keeps them.

With a PipelineExperimentConfig, the execution has an Experiment (the
pipeline's, by default) and a Trial (the execution's id, by default); its jobs
are created with that ExperimentConfig, so their trial components join the
trial. For lineage, the execution is a Context (type PipelineExecution, its
source the execution's ARN) that each job's trial component is associated with;
the jobs themselves record their data, image and model artifacts. A Tuning step's jobs are its tuning job's
training jobs: each one's trial component is associated with the context, as a Training step's. A Model or
RegisterModel step's model or package is an Artifact (its source the model's or
package's ARN) that the model data it serves contributed to, and that
contributed to the execution.
"""

from __future__ import annotations

import logging

from ...server.errors import AWSError
from ...server.operations import Context, call
from .. import experiments
from ..jobs import provenance
from .steps import create_once

log = logging.getLogger("selfmaker.pipelines")

CONTEXT_TYPE = "PipelineExecution"
JOB_KINDS = frozenset({"TrainingJob", "ProcessingJob", "TransformJob"})


def _model_data(described: dict) -> list[str]:
    """The model data URIs a model (DescribeModel) or package (DescribeModelPackage) serves."""
    containers = [
        described.get("PrimaryContainer") or {},
        *(described.get("Containers") or []),
        *((described.get("InferenceSpecification") or {}).get("Containers") or []),
    ]
    uris = [
        c.get("ModelDataUrl") or ((c.get("ModelDataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
        for c in containers
    ]
    return [uri for uri in uris if uri]


def context_name(execution_id: str) -> str:
    return f"pipeline-execution-{execution_id}"


def start(ctx: Context, execution_arn: str, execution_id: str, pipeline_name: str, experiment: dict | None) -> None:
    """The execution's Experiment and Trial (``experiment``: the evaluated PipelineExperimentConfig) and Context."""
    if experiment:
        create_once(ctx, "CreateExperiment", {"ExperimentName": experiment["ExperimentName"]})
        create_once(
            ctx, "CreateTrial", {"TrialName": experiment["TrialName"], "ExperimentName": experiment["ExperimentName"]}
        )
    create_once(
        ctx,
        "CreateContext",
        {
            "ContextName": context_name(execution_id),
            "ContextType": CONTEXT_TYPE,
            "Source": {"SourceUri": execution_arn, "SourceType": "SageMakerPipelineExecution"},
            "Properties": {"PipelineName": pipeline_name},
        },
    )


def _tuning_trials(ctx: Context, name: str) -> list[str]:
    """The ARNs of a tuning job's training jobs (every page of its list)."""
    arns, params = [], {"HyperParameterTuningJobName": name, "MaxResults": 100}
    while True:
        page = call(ctx, "ListTrainingJobsForHyperParameterTuningJob", params)
        arns += [s["TrainingJobArn"] for s in page["TrainingJobSummaries"]]
        if not page.get("NextToken"):
            return arns
        params["NextToken"] = page["NextToken"]


def step_ended(ctx: Context, execution_id: str, resource: dict | None, described: dict | None = None) -> None:
    """Link what a step made to the execution's context: a job's trial component (each training job's of a
    tuning job), a model or a package (``described``: its Describe output, whose model data becomes part of
    its lineage)."""
    if not resource or not resource.get("Arn"):
        return
    context = f"{ctx.arn('sagemaker', 'context/')}{context_name(execution_id)}"
    try:
        if resource.get("Kind") == "HyperParameterTuningJob":
            for arn in _tuning_trials(ctx, resource["Name"]):
                component = experiments.TRIAL_COMPONENT.arn(ctx, experiments.job_component_name(arn))
                try:
                    provenance.associate(ctx, component, context, "ContributedTo")
                except AWSError as err:  # a trial whose training job could not be created has no component
                    log.warning("could not link %s to %s: %s", component, context, err.message)
            return
        if resource.get("Kind") in JOB_KINDS:
            source = experiments.TRIAL_COMPONENT.arn(ctx, experiments.job_component_name(resource["Arn"]))
        elif resource.get("Kind") in ("Model", "ModelPackage"):
            source = provenance.artifact(ctx, resource["Arn"], resource["Kind"])
            for uri in _model_data(described or {}):
                provenance.associate(ctx, provenance.artifact(ctx, uri, "Model"), source, "ContributedTo")
        else:
            return
        provenance.associate(ctx, source, context, "ContributedTo")
    except AWSError as err:  # lineage is a record of the run, never a reason to fail it
        log.warning("could not link %s to %s: %s", resource["Arn"], context, err.message)
