"""Experiments and lineage for an execution, as SageMaker keeps them.

With a PipelineExperimentConfig, the execution has an Experiment (the
pipeline's, by default) and a Trial (the execution's id, by default); its jobs
are created with that ExperimentConfig, so their trial components join the
trial. For lineage, the execution is a Context (type PipelineExecution, its
source the execution's ARN) that each job's trial component is associated with;
the jobs themselves record their data, image and model artifacts.
"""

from __future__ import annotations

import logging

from ...server.errors import AWSError
from ...server.operations import Context
from ...server.protocol import call
from .. import experiments

log = logging.getLogger("selfmaker.pipelines")

CONTEXT_TYPE = "PipelineExecution"
JOB_KINDS = frozenset({"TrainingJob", "ProcessingJob", "TransformJob"})


def _ensure(ctx: Context, operation: str, params: dict) -> None:
    """Create unless it exists (a pass run again after a crash finds it made)."""
    try:
        call(ctx, operation, params)
    except AWSError as err:
        if "already exist" not in err.message:
            raise


def context_name(execution_id: str) -> str:
    return f"pipeline-execution-{execution_id}"


def start(ctx: Context, execution_arn: str, execution_id: str, pipeline_name: str,
          experiment: dict | None) -> None:
    """The execution's Experiment and Trial (``experiment``: the evaluated PipelineExperimentConfig) and Context."""
    if experiment:
        _ensure(ctx, "CreateExperiment", {"ExperimentName": experiment["ExperimentName"]})
        _ensure(ctx, "CreateTrial", {"TrialName": experiment["TrialName"],
                                     "ExperimentName": experiment["ExperimentName"]})
    _ensure(ctx, "CreateContext", {
        "ContextName": context_name(execution_id), "ContextType": CONTEXT_TYPE,
        "Source": {"SourceUri": execution_arn, "SourceType": "SageMakerPipelineExecution"},
        "Properties": {"PipelineName": pipeline_name}})


def step_ended(ctx: Context, execution_id: str, resource: dict | None) -> None:
    """Associate a job step's trial component with the execution's context."""
    if not resource or resource.get("Kind") not in JOB_KINDS:
        return
    component = experiments.TRIAL_COMPONENT.arn(ctx, experiments.job_component_name(resource["Arn"]))
    context = f"{ctx.arn('sagemaker', 'context/')}{context_name(execution_id)}"
    try:
        _ensure(ctx, "AddAssociation", {"SourceArn": component, "DestinationArn": context,
                                        "AssociationType": "ContributedTo"})
    except AWSError as err:  # lineage is a record of the run, never a reason to fail it
        log.warning("could not link %s to %s: %s", component, context, err.message)
