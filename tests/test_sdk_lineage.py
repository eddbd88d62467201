"""The SageMaker Python SDK v2's sagemaker.lineage classes, end to end against SelfMaker."""


def test_sdk_v2_lineage_end_to_end(server, sdk_v2, unique):
    tag = unique("sdk")
    result = sdk_v2.run(
        server,
        f"""
        import json
        import boto3
        from botocore.exceptions import ClientError
        from sagemaker.session import Session
        from sagemaker.lineage.action import Action
        from sagemaker.lineage.artifact import Artifact, ModelArtifact
        from sagemaker.lineage.association import Association
        from sagemaker.lineage.context import Context, EndpointContext
        from sagemaker.lineage.query import (LineageEntityEnum, LineageFilter, LineageQuery,
                                             LineageQueryDirectionEnum, LineageSourceEnum)

        session = Session(boto3.Session(region_name="us-east-1"))
        out = {{}}

        # dataset -> training -> model -> deployment -> endpoint
        dataset = Artifact.create(artifact_name="train-data", source_uri="s3://{tag}/train.csv",
                                  artifact_type="DataSet", properties={{"rows": "100"}}, sagemaker_session=session)
        model = Artifact.create(source_uri="s3://{tag}/model.tar.gz", artifact_type="Model",
                                sagemaker_session=session)
        training = Action.create(action_name="{tag}-train", source_uri="arn:job/{tag}", action_type="Training",
                                 status="Completed", sagemaker_session=session)
        deployment = Action.create(action_name="{tag}-deploy", source_uri="arn:ep/{tag}",
                                   action_type="ModelDeployment", status="Completed", sagemaker_session=session)
        endpoint = Context.create(context_name="{tag}-ep", source_uri="arn:ep/{tag}", context_type="Endpoint",
                                  description="the endpoint", sagemaker_session=session)
        edges = [(dataset.artifact_arn, training.action_arn, "ContributedTo"),
                 (training.action_arn, model.artifact_arn, "Produced"),
                 (model.artifact_arn, deployment.action_arn, "ContributedTo"),
                 (deployment.action_arn, endpoint.context_arn, "AssociatedWith")]
        for source, destination, kind in edges:
            Association.create(source_arn=source, destination_arn=destination, association_type=kind,
                               sagemaker_session=session)

        try:  # the same source again is "already exists", which the SDK's helpers rely on
            Artifact.create(source_uri="s3://{tag}/train.csv", artifact_type="DataSet", sagemaker_session=session)
            out["duplicate"] = "created"
        except ClientError as e:
            out["duplicate"] = [e.response["Error"]["Code"], "already exists" in e.response["Error"]["Message"]]

        loaded = Artifact.load(artifact_arn=dataset.artifact_arn, sagemaker_session=session)
        out["loaded"] = [loaded.artifact_name, loaded.source.source_uri, loaded.properties]
        loaded.properties = {{"rows": "100", "cols": "3"}}
        loaded.properties_to_remove = ["rows"]
        loaded.save()
        out["saved"] = Artifact.load(artifact_arn=dataset.artifact_arn, sagemaker_session=session).properties
        dataset.set_tag({{"Key": "stage", "Value": "raw"}})
        out["tags"] = session.sagemaker_client.list_tags(ResourceArn=dataset.artifact_arn)["Tags"]
        out["by_uri"] = [a.artifact_arn for a in Artifact.list(source_uri="s3://{tag}/model.tar.gz",
                                                               sagemaker_session=session)]
        out["into_training"] = [(a.source_arn, a.source_type) for a in
                                Association.list(destination_arn=training.action_arn, sagemaker_session=session)]

        query = LineageQuery(session)
        everything = query.query(start_arns=[model.artifact_arn])  # Both, with edges, depth 10
        out["all_vertices"] = sorted((v.arn, v.lineage_entity, v.lineage_source) for v in everything.vertices)
        out["all_edges"] = sorted((e.source_arn, e.destination_arn, e.association_type) for e in everything.edges)
        datasets = query.query(
            start_arns=[endpoint.context_arn], direction=LineageQueryDirectionEnum.ASCENDANTS, include_edges=False,
            query_filter=LineageFilter(entities=[LineageEntityEnum.ARTIFACT], sources=[LineageSourceEnum.DATASET]))
        out["datasets_of_endpoint"] = [v.to_lineage_object().source.source_uri for v in datasets.vertices]
        # The SDK's own helpers, which are LineageQuery underneath.
        out["model_datasets"] = [a.source.source_uri for a in
                                 ModelArtifact.load(model.artifact_arn, sagemaker_session=session).dataset_artifacts()]
        out["model_endpoints"] = [c.context_arn for c in
                                  ModelArtifact.load(model.artifact_arn, sagemaker_session=session).endpoint_contexts()]
        out["endpoint_datasets"] = [a.source.source_uri for a in
                                    EndpointContext.load("{tag}-ep", sagemaker_session=session).dataset_artifacts()]

        try:  # an entity with associations cannot be deleted...
            dataset.delete()
            out["delete_associated"] = "deleted"
        except ClientError as e:
            out["delete_associated"] = e.response["Error"]["Code"]
        # ...unless the SDK disassociates it first.
        for entity in (dataset, training, model, deployment, endpoint):
            entity.delete(disassociate=True)
        out["left"] = [a.source_arn for a in Association.list(destination_arn=endpoint.context_arn,
                                                              sagemaker_session=session)]
        out["arns"] = {{"dataset": dataset.artifact_arn, "model": model.artifact_arn,
                       "training": training.action_arn, "deployment": deployment.action_arn,
                       "endpoint": endpoint.context_arn}}
        print(json.dumps(out))
    """,
    )
    arns = result["arns"]
    assert result["duplicate"] == ["ValidationException", True]
    assert result["loaded"] == ["train-data", f"s3://{tag}/train.csv", {"rows": "100"}]
    assert result["saved"] == {"cols": "3"}
    assert result["tags"] == [{"Key": "stage", "Value": "raw"}]
    assert result["by_uri"] == [arns["model"]]
    assert result["into_training"] == [[arns["dataset"], "DataSet"]]
    assert result["all_vertices"] == sorted(
        [
            [arns["dataset"], "Artifact", "DataSet"],
            [arns["model"], "Artifact", "Model"],
            [arns["training"], "Action", "Training"],
            [arns["deployment"], "Action", "ModelDeployment"],
            [arns["endpoint"], "Context", "Endpoint"],
        ]
    )
    assert result["all_edges"] == sorted(
        [
            [arns["dataset"], arns["training"], "ContributedTo"],
            [arns["training"], arns["model"], "Produced"],
            [arns["model"], arns["deployment"], "ContributedTo"],
            [arns["deployment"], arns["endpoint"], "AssociatedWith"],
        ]
    )
    assert result["datasets_of_endpoint"] == [f"s3://{tag}/train.csv"]
    assert result["model_datasets"] == [f"s3://{tag}/train.csv"]
    assert result["model_endpoints"] == [arns["endpoint"]]
    assert result["endpoint_datasets"] == [f"s3://{tag}/train.csv"]
    assert result["delete_associated"] == "ValidationException"
    assert result["left"] == []
