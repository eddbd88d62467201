"""Lineage for a finished job, as SageMaker records it: Artifacts for its data, image and model,
associated with the job's trial component (inputs ContributedTo it, outputs are Produced by it)."""

from __future__ import annotations

from ...server.errors import AWSError
from ...server.operations import Context
from .. import lineage


def artifact(ctx: Context, uri: str, artifact_type: str) -> str:
    source = {"SourceUri": uri}
    try:
        return lineage.ARTIFACT.create(ctx, {"Source": source, "ArtifactType": artifact_type})["ArtifactArn"]
    except AWSError as err:
        if not err.exists:
            raise
        return lineage.ARTIFACT.arn(ctx, lineage.artifact_id(source))


def associate(ctx: Context, source_arn: str, destination_arn: str, association_type: str) -> None:
    try:
        lineage.add_association(
            ctx, {"SourceArn": source_arn, "DestinationArn": destination_arn, "AssociationType": association_type}
        )
    except AWSError as err:
        if not err.exists:
            raise


def record(ctx: Context, component_arn: str, inputs: dict[str, str], outputs: dict[str, str]) -> None:
    """``inputs``/``outputs`` map URIs to artifact types (DataSet, Image, Model)."""
    for uri, artifact_type in inputs.items():
        associate(ctx, artifact(ctx, uri, artifact_type), component_arn, "ContributedTo")
    for uri, artifact_type in outputs.items():
        associate(ctx, component_arn, artifact(ctx, uri, artifact_type), "Produced")
