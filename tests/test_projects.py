"""SageMaker Projects end to end: the portfolio switch, a project from the built-in build-train-deploy template
whose model-build pipeline really runs, an approval that deploys to the staging endpoint, and the teardown."""

from __future__ import annotations

import json
import re

import pytest
from botocore.exceptions import ClientError

from support.accounts import A, B, accounts_server
from support.waiting import wait_for

BUILD_TRAIN_DEPLOY = "MLOps template for model building, training, and deployment"
DEPLOY_ONLY = "MLOps template for model deployment"

srv, as_ = accounts_server("projects", A, B)


def error(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def studio_templates(sc) -> dict:
    """What Studio lists as project templates: products tagged sagemaker:studio-visibility."""
    found = sc.search_products(Filters={"FullTextSearch": ["sagemaker:studio-visibility"]})["ProductViewSummaries"]
    return {p["Name"]: p for p in found}


def wait_project(sm, name: str, timeout: float = 120) -> dict:
    return wait_for(
        lambda: sm.describe_project(ProjectName=name),
        lambda p: not p["ProjectStatus"].endswith(("Pending", "InProgress")),
        timeout=timeout,
        what=f"project {name} to settle",
    )


def wait_execution(sm, pipeline: str, timeout: float = 900) -> dict:
    return wait_for(
        lambda: (sm.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"] or [{}])[0],
        lambda e: e.get("PipelineExecutionStatus") in ("Succeeded", "Failed", "Stopped"),
        timeout=timeout,
        what=f"an execution of {pipeline} to end",
    )


def failed_steps(sm, execution_arn: str) -> list:
    steps = sm.list_pipeline_execution_steps(PipelineExecutionArn=execution_arn)["PipelineExecutionSteps"]
    return [(s["StepName"], s.get("FailureReason")) for s in steps if s["StepStatus"] == "Failed"]


QUEUE_TEMPLATE = {
    "Parameters": {
        "SageMakerProjectName": {"Type": "String"},
        "SageMakerProjectId": {"Type": "String"},
        "Delay": {"Type": "Number", "Default": "0"},
    },
    "Resources": {
        "Work": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": {"Fn::Sub": "${SageMakerProjectName}-work"}, "DelaySeconds": {"Ref": "Delay"}},
        }
    },
    "Outputs": {"Queue": {"Value": {"Ref": "Work"}}},
}


def custom_product(as_, who, unique, template: dict, bucket_owner=None) -> tuple[str, str]:
    """A product of ``who`` whose template is in a bucket of ``bucket_owner`` (``who`` by default)."""
    s3 = as_(bucket_owner or who, "s3")
    bucket = unique("templates")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="t.json", Body=json.dumps(template).encode())
    sc = as_(who, "servicecatalog")
    made = sc.create_product(
        Name=unique("custom"),
        Owner="platform team",
        ProductType="CLOUD_FORMATION_TEMPLATE",
        ProvisioningArtifactParameters={
            "Name": "v1",
            "Info": {"LoadTemplateFromURL": f"https://{bucket}.s3.amazonaws.com/t.json"},
            "Type": "CLOUD_FORMATION_TEMPLATE",
        },
        Tags=[{"Key": "sagemaker:studio-visibility", "Value": "true"}],
        IdempotencyToken=unique("token"),
    )
    return made["ProductViewDetail"]["ProductViewSummary"]["ProductId"], made["ProvisioningArtifactDetail"]["Id"]


def test_projects_wait_for_the_portfolio_and_stay_in_their_account(as_, unique):
    sm_b, sc_b = as_(B, "sagemaker"), as_(B, "servicecatalog")
    assert sm_b.get_sagemaker_servicecatalog_portfolio_status()["Status"] == "Disabled"
    assert studio_templates(sc_b) == {}
    code, message = error(
        sm_b.create_project, ProjectName="early", ServiceCatalogProvisioningDetails={"ProductId": "prod-abcdefghijklm"}
    )
    assert code == "ValidationException" and "EnableSagemakerServicecatalogPortfolio" in message

    sm, sc = as_(A, "sagemaker"), as_(A, "servicecatalog")
    sm.enable_sagemaker_servicecatalog_portfolio()
    assert {BUILD_TRAIN_DEPLOY, DEPLOY_ONLY} <= set(studio_templates(sc))
    portfolio = sc.list_portfolios()["PortfolioDetails"][0]["Id"]
    # A product whose template sits in another account's bucket cannot be made.
    code, message = error(lambda **kw: custom_product(as_, A, unique, QUEUE_TEMPLATE, bucket_owner=B))
    assert code == "InvalidParametersException" and "access" in message
    product, artifact = custom_product(as_, A, unique, QUEUE_TEMPLATE)
    assert product not in {p["ProductId"] for p in studio_templates(sc).values()}  # in no portfolio yet
    sc.associate_product_with_portfolio(ProductId=product, PortfolioId=portfolio)
    assert product in {p["ProductId"] for p in studio_templates(sc).values()}

    name = unique("q")[-32:].strip("-")
    details = {"ProductId": product, "ProvisioningArtifactId": artifact}
    sm.create_project(ProjectName=name, ServiceCatalogProvisioningDetails=details)
    assert wait_project(sm, name)["ProjectStatus"] == "CreateCompleted"
    assert error(sm.create_project, ProjectName=name, ServiceCatalogProvisioningDetails=details)[0] == (
        "ValidationException"
    )
    reserved = {**details, "ProvisioningParameters": [{"Key": "SageMakerProjectId", "Value": "p-x"}]}
    assert error(sm.create_project, ProjectName=unique("r")[-32:], ServiceCatalogProvisioningDetails=reserved)[0] == (
        "ValidationException"
    )

    # Account B: enabled, it sees its own templates only; A's project and product are not there for it.
    sm_b.enable_sagemaker_servicecatalog_portfolio()
    assert product not in {p["ProductId"] for p in studio_templates(sc_b).values()}
    assert error(sc_b.describe_product, Id=product)[0] == "ResourceNotFoundException"
    assert error(sm_b.describe_project, ProjectName=name)[0] == "ValidationException"
    assert error(sm_b.delete_project, ProjectName=name)[0] == "ValidationException"
    code, _ = error(sm_b.create_project, ProjectName=unique("steal")[-32:], ServiceCatalogProvisioningDetails=details)
    assert code == "ValidationException"
    assert name not in [p["ProjectName"] for p in sm_b.list_projects()["ProjectSummaryList"]]

    # UpdateProject changes the provisioned stack through Service Catalog.
    sm.update_project(
        ProjectName=name,
        ServiceCatalogProvisioningUpdateDetails={"ProvisioningParameters": [{"Key": "Delay", "Value": "3"}]},
    )
    assert wait_project(sm, name)["ProjectStatus"] == "UpdateCompleted"
    sqs = as_(A, "sqs")
    url = sqs.get_queue_url(QueueName=f"{name}-work")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])["Attributes"]["DelaySeconds"] == "3"
    sm.delete_project(ProjectName=name)
    wait_for(
        lambda: sm.list_projects(NameContains=name)["ProjectSummaryList"],
        lambda f: not f,
        timeout=60,
        what="the project to be deleted",
    )
    assert error(sqs.get_queue_url, QueueName=f"{name}-work")[0] == "AWS.SimpleQueueService.NonExistentQueue"

    # A template without SageMaker's parameters fails the project, saying why.
    broken, _ = custom_product(as_, A, unique, {"Resources": {"Work": {"Type": "AWS::SQS::Queue"}}})
    sc.associate_product_with_portfolio(ProductId=broken, PortfolioId=portfolio)
    failed = unique("f")[-32:].strip("-")
    sm.create_project(ProjectName=failed, ServiceCatalogProvisioningDetails={"ProductId": broken})
    project = wait_project(sm, failed)
    assert project["ProjectStatus"] == "CreateFailed"
    assert (
        "SageMakerProjectName" in project["ServiceCatalogProvisionedProductDetails"]["ProvisionedProductStatusMessage"]
    )
    sm.delete_project(ProjectName=failed)
    wait_for(
        lambda: sm.list_projects(NameContains=failed)["ProjectSummaryList"],
        lambda f: not f,
        timeout=60,
        what="the failed project to be deleted",
    )

    # Disabling the portfolio takes SageMaker's templates away and gates CreateProject again.
    sm_b.disable_sagemaker_servicecatalog_portfolio()
    assert sm_b.get_sagemaker_servicecatalog_portfolio_status()["Status"] == "Disabled"
    assert studio_templates(sc_b) == {}


def test_the_mlops_loop_builds_registers_deploys_on_approval_and_is_torn_down(as_, unique):
    sm, sc, cfn, events = (as_(A, s) for s in ("sagemaker", "servicecatalog", "cloudformation", "events"))
    runtime = as_(A, "sagemaker-runtime")
    sm.enable_sagemaker_servicecatalog_portfolio()
    assert sm.get_sagemaker_servicecatalog_portfolio_status()["Status"] == "Enabled"
    product = studio_templates(sc)[BUILD_TRAIN_DEPLOY]
    assert product["Owner"] == "Amazon SageMaker"
    described = sc.describe_product(Id=product["ProductId"])
    artifact = described["ProvisioningArtifacts"][0]["Id"]
    assert described["LaunchPaths"]

    name = unique("loop")[-32:].strip("-")
    created = sm.create_project(
        ProjectName=name,
        ProjectDescription="the loop",
        ServiceCatalogProvisioningDetails={"ProductId": product["ProductId"], "ProvisioningArtifactId": artifact},
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    project_id = created["ProjectId"]
    assert re.fullmatch(r"p-[a-z0-9]{12}", project_id)
    project = wait_project(sm, name)
    assert project["ProjectStatus"] == "CreateCompleted", project
    pp_id = project["ServiceCatalogProvisionedProductDetails"]["ProvisionedProductId"]
    pp = sc.describe_provisioned_product(Id=pp_id)["ProvisionedProductDetail"]
    assert pp["Status"] == "AVAILABLE"
    made = cfn.describe_stack_resources(StackName=f"SC-{A.account}-{pp_id}")["StackResources"]
    assert {r["LogicalResourceId"]: r["ResourceType"] for r in made} == {
        "MlOpsArtifactsBucket": "AWS::S3::Bucket",
        "ModelPackageGroup": "AWS::SageMaker::ModelPackageGroup",
        "ModelBuildPipeline": "AWS::SageMaker::Pipeline",
        "ModelDeployPipeline": "AWS::SageMaker::Pipeline",
        "ModelDeploymentRule": "AWS::Events::Rule",
    }
    assert name in [p["ProjectName"] for p in sm.list_projects(NameContains=name)["ProjectSummaryList"]]
    found = sm.search(
        Resource="Project",
        SearchExpression={"Filters": [{"Name": "ProjectId", "Operator": "Equals", "Value": project_id}]},
    )
    assert [r["Project"]["ProjectName"] for r in found["Results"]] == [name]

    # What the template made carries the project's tags.
    group = f"{name}-{project_id}"
    build = group
    pipeline_arn = sm.describe_pipeline(PipelineName=build)["PipelineArn"]
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=pipeline_arn)["Tags"]}
    assert (tags["sagemaker:project-name"], tags["sagemaker:project-id"], tags["team"]) == (name, project_id, "ml")
    rule = events.describe_rule(Name=f"sagemaker-{name}-{project_id}-model")
    assert json.loads(rule["EventPattern"])["detail"]["ModelPackageGroupName"] == [group]

    # The model-build pipeline runs on synthetic data and registers a package awaiting approval.
    sm.start_pipeline_execution(PipelineName=build, PipelineParameters=[{"Name": "SampleCount", "Value": "300"}])
    execution = wait_execution(sm, build)
    assert execution["PipelineExecutionStatus"] == "Succeeded", failed_steps(sm, execution["PipelineExecutionArn"])
    packages = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert [p["ModelApprovalStatus"] for p in packages] == ["PendingManualApproval"]

    # Approval: the rule starts the deploy pipeline, which puts the package on <project>-staging.
    sm.update_model_package(ModelPackageArn=packages[0]["ModelPackageArn"], ModelApprovalStatus="Approved")
    deployed = wait_execution(sm, f"{group}-deploy")
    assert deployed["PipelineExecutionStatus"] == "Succeeded", failed_steps(sm, deployed["PipelineExecutionArn"])
    endpoint = sm.describe_endpoint(EndpointName=f"{name}-staging")
    assert endpoint["EndpointStatus"] == "InService"
    answer = runtime.invoke_endpoint(EndpointName=f"{name}-staging", ContentType="text/csv", Body=b"5,1,2")
    score = json.loads(answer["Body"].read())["predictions"][0]["score"]
    assert abs(score - 14.0) < 4.0  # the synthetic data's law: 3*5 - 2*1 + 0.5*2

    # DeleteProject takes down the stack and the staging deployment; the registry and bucket are retained.
    sm.delete_project(ProjectName=name)
    wait_for(
        lambda: sm.list_projects(NameContains=name)["ProjectSummaryList"],
        lambda found: not found,
        timeout=120,
        what="the project to be deleted",
    )
    assert error(sm.describe_pipeline, PipelineName=build)[0] == "ResourceNotFound"
    assert error(events.describe_rule, Name=f"sagemaker-{name}-{project_id}-model")[0] == "ResourceNotFoundException"
    assert error(sc.describe_provisioned_product, Id=pp_id)[0] == "ResourceNotFoundException"
    wait_for(
        lambda: sm.list_endpoints(NameContains=f"{name}-staging")["Endpoints"],
        lambda found: not found,
        timeout=120,
        what="the staging endpoint to be deleted",
    )
    assert sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupStatus"] == "Completed"


def test_a_project_survives_a_killed_server_while_it_is_made_and_deleted(make_server, client, unique):
    server = make_server("projects-restart").start()
    sm, sc = client("sagemaker", server), client("servicecatalog", server)
    sm.enable_sagemaker_servicecatalog_portfolio()
    product = studio_templates(sc)[DEPLOY_ONLY]["ProductId"]
    group = unique("source")
    sm.create_model_package_group(ModelPackageGroupName=group)
    name = unique("deploy")[-32:].strip("-")
    project_id = sm.create_project(
        ProjectName=name,
        ServiceCatalogProvisioningDetails={
            "ProductId": product,
            "ProvisioningParameters": [{"Key": "SourceModelPackageGroupName", "Value": group}],
        },
    )["ProjectId"]
    server.kill()  # at once: Pending, or the stack half made
    server.start()
    sm, events = client("sagemaker", server), client("events", server)
    assert wait_project(sm, name)["ProjectStatus"] == "CreateCompleted"
    rule = events.describe_rule(Name=f"sagemaker-{name}-{project_id}-model")
    assert json.loads(rule["EventPattern"])["detail"]["ModelPackageGroupName"] == [group]
    sm.delete_project(ProjectName=name)
    server.kill()
    server.start()
    sm, events = client("sagemaker", server), client("events", server)
    wait_for(
        lambda: sm.list_projects(NameContains=name)["ProjectSummaryList"],
        lambda found: not found,
        timeout=120,
        what="the project to be deleted after the restart",
    )
    assert error(events.describe_rule, Name=f"sagemaker-{name}-{project_id}-model")[0] == "ResourceNotFoundException"
    assert error(sm.describe_pipeline, PipelineName=f"{name}-{project_id}-deploy")[0] == "ResourceNotFound"
