"""CloudFormation stacks through boto3's cloudformation client: templates, intrinsics, rollback, change sets.

Stacks here hold the quick resources (queues, recorded roles, models, endpoint configs, model package groups);
endpoints and notebook instances (moto's scenarios) are in test_cloudformation_sagemaker.py.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.cloudformation import outputs, wait_stack
from support.server import ACCOUNT, REGION
from support.waiting import wait_for

ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


@pytest.fixture(scope="module")
def cfn(server):
    return make_client("cloudformation", server.url)


@pytest.fixture(scope="module")
def sqs(server):
    return make_client("sqs", server.url)


@pytest.fixture(scope="module")
def sm(server):
    return make_client("sagemaker", server.url)


def resources(cfn, name: str) -> dict:
    return {r["LogicalResourceId"]: r for r in cfn.describe_stack_resources(StackName=name)["StackResources"]}


def error(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


QUEUE_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Description": "queues and a role",
    "Parameters": {
        "Env": {"Type": "String", "AllowedValues": ["dev", "prod"], "Default": "dev"},
        "Timeout": {"Type": "Number", "Default": "45", "MinValue": 0, "MaxValue": 900},
        "Secret": {"Type": "String", "NoEcho": True, "Default": "hunter2"},
    },
    "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]}},
    "Resources": {
        "DeadLetters": {"Type": "AWS::SQS::Queue"},
        "Work": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": {"Fn::Sub": "${AWS::StackName}-work-${Env}"},
                "VisibilityTimeout": {"Ref": "Timeout"},
                "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetters", "Arn"]}, "maxReceiveCount": 3},
                "DelaySeconds": {"Fn::If": ["IsProd", 5, {"Ref": "AWS::NoValue"}]},
            },
        },
        "Role": {
            "Type": "AWS::IAM::Role",
            "DependsOn": "Work",
            "Properties": {
                "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}
            },
        },
        "OnlyInProd": {"Type": "AWS::SQS::Queue", "Condition": "IsProd"},
    },
    "Outputs": {
        "WorkUrl": {"Value": {"Ref": "Work"}},
        "WorkArn": {"Value": {"Fn::GetAtt": "Work.Arn"}},
        "Joined": {"Value": {"Fn::Join": [":", [{"Ref": "AWS::Region"}, {"Ref": "AWS::AccountId"}, {"Ref": "Env"}]]}},
        "RoleArn": {"Value": {"Fn::GetAtt": ["Role", "Arn"]}, "Description": "the role"},
        "Second": {"Value": {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}},
        "ProdOnly": {"Value": {"Ref": "OnlyInProd"}, "Condition": "IsProd"},
    },
}


def test_a_stack_of_queues_and_a_role_resolves_its_intrinsics_and_is_deleted(cfn, sqs, unique):
    name = unique("queues")
    body = json.dumps(QUEUE_TEMPLATE)
    code, message = error(cfn.create_stack, StackName=name, TemplateBody=body)
    assert code == "InsufficientCapabilitiesException" and "CAPABILITY_IAM" in message
    stack_id = cfn.create_stack(StackName=name, TemplateBody=body, Capabilities=["CAPABILITY_IAM"])["StackId"]
    assert stack_id.startswith(f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/")
    stack = wait_stack(cfn, name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    assert stack["Description"] == "queues and a role"
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params == {"Env": "dev", "Timeout": "45", "Secret": "****"}

    out = outputs(stack)
    assert set(out) == {"WorkUrl", "WorkArn", "Joined", "RoleArn", "Second"}  # ProdOnly's condition is false
    assert out["WorkUrl"].endswith(f"/{ACCOUNT}/{name}-work-dev")
    assert out["WorkArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}-work-dev"
    assert out["Joined"] == f"{REGION}:{ACCOUNT}:dev"
    assert out["Second"] == "b"
    assert out["RoleArn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/{name}-Role-")

    attributes = sqs.get_queue_attributes(QueueUrl=out["WorkUrl"], AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "45"
    assert attributes["DelaySeconds"] == "0"  # Fn::If chose AWS::NoValue
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 3

    found = resources(cfn, name)
    assert set(found) == {"DeadLetters", "Work", "Role"}
    assert {r["ResourceStatus"] for r in found.values()} == {"CREATE_COMPLETE"}
    assert found["Work"]["PhysicalResourceId"] == out["WorkUrl"]
    one = cfn.describe_stack_resource(StackName=name, LogicalResourceId="Work")["StackResourceDetail"]
    assert one["ResourceType"] == "AWS::SQS::Queue"
    listed = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    assert {r["LogicalResourceId"] for r in listed} == {"DeadLetters", "Work", "Role"}
    # Created in dependency order: the dead-letter queue before the queue that names it, the role last.
    events = list(reversed(cfn.describe_stack_events(StackName=name)["StackEvents"]))
    completed = [e["LogicalResourceId"] for e in events if e["ResourceStatus"] == "CREATE_COMPLETE"]
    assert completed == ["DeadLetters", "Work", "Role", name]
    assert cfn.get_template(StackName=name)["TemplateBody"] == QUEUE_TEMPLATE

    cfn.update_termination_protection(StackName=name, EnableTerminationProtection=True)
    assert "TerminationProtection is enabled" in error(cfn.delete_stack, StackName=name)[1]
    cfn.update_termination_protection(StackName=name, EnableTerminationProtection=False)
    cfn.delete_stack(StackName=name)
    wait_for(
        lambda: cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"],
        lambda s: s == "DELETE_COMPLETE",
        what="the stack to be deleted",
    )
    assert error(sqs.get_queue_url, QueueName=f"{name}-work-dev")[0] == "AWS.SimpleQueueService.NonExistentQueue"
    assert error(cfn.describe_stacks, StackName=name) == ("ValidationError", f"Stack with id {name} does not exist")
    summaries = cfn.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])["StackSummaries"]
    assert stack_id in [s["StackId"] for s in summaries]


YAML_TEMPLATE = """
AWSTemplateFormatVersion: 2010-09-09
Parameters:
  Names:
    Type: CommaDelimitedList
    Default: alpha,beta
  Env:
    Type: String
    Default: prod
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
Resources:
  Group:
    Type: AWS::SageMaker::ModelPackageGroup
    Properties:
      ModelPackageGroupName: !Sub
        - "${Stack}-${First}"
        - First: !Select [0, !Ref Names]
          Stack: !Ref AWS::StackName
      ModelPackageGroupDescription: !Join [" ", [group, of, !Ref Env]]
      Tags:
        - Key: env
          Value: !If [IsProd, production, !Ref AWS::NoValue]
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: !If [NotProd, 10, 20]
Outputs:
  GroupArn:
    Value: !GetAtt Group.ModelPackageGroupArn
  GroupRef:
    Value: !Ref Group
  QueueName:
    Value: !GetAtt [Queue, QueueName]
  Literal:
    Value: !Sub "${!NotAVariable}-${AWS::Partition}-${AWS::URLSuffix}"
"""


def test_yaml_short_forms(cfn, sm, sqs, unique):
    name = unique("yaml")
    cfn.create_stack(StackName=name, TemplateBody=YAML_TEMPLATE)
    stack = wait_stack(cfn, name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    out = outputs(stack)
    group = sm.describe_model_package_group(ModelPackageGroupName=f"{name}-alpha")
    assert group["ModelPackageGroupDescription"] == "group of prod"
    assert out["GroupArn"] == out["GroupRef"] == group["ModelPackageGroupArn"]
    tags = sm.list_tags(ResourceArn=group["ModelPackageGroupArn"])["Tags"]
    assert {"Key": "env", "Value": "production"} in tags
    url = sqs.get_queue_url(QueueName=out["QueueName"])["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "20"
    }
    assert out["Literal"] == "${NotAVariable}-aws-amazonaws.com"
    cfn.delete_stack(StackName=name)


@pytest.mark.parametrize(
    "template, words",
    [
        (
            {
                "Resources": {
                    "A": {"Type": "AWS::SQS::Queue", "DependsOn": "B"},
                    "B": {"Type": "AWS::SQS::Queue", "DependsOn": "A"},
                }
            },
            "Circular dependency between resources: [A, B]",
        ),
        (
            {"Resources": {"A": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Ref": "Nope"}}}}},
            "Unresolved resource dependencies [Nope]",
        ),
        ({"Resources": {}}, "At least one Resources member must be defined"),
        ({"Resources": {"A": {"Properties": {}}}}, "must contain a Type member"),
        ({"Resources": {"A": {"Type": "AWS::SQS::Queue"}}, "Bogus": {}}, "Invalid template property"),
        ("Resources:\n  A: &anchor\n    Type: AWS::SQS::Queue\n  B: *anchor\n", "anchors are not allowed"),
        ("Resources: [unclosed", "YAML not well-formed"),
        (
            {
                "Resources": {"A": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"O": {"Value": {"Fn::GetAtt": ["A", "Nope"]}}},
            },
            "resource A does not support attribute type Nope in Fn::GetAtt",
        ),
        (
            {"Conditions": {"C": {"Fn::Equals": [{"Ref": "A"}, "x"]}}, "Resources": {"A": {"Type": "AWS::SQS::Queue"}}},
            "Cannot reference resources in the Conditions block",
        ),
        (
            {
                "Resources": {
                    "A": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Fn::GetAtt": ["Missing", "Arn"]}}}
                }
            },
            "undefined resource Missing",
        ),
    ],
)
def test_bad_templates_are_refused_before_any_work(cfn, unique, template, words):
    body = template if isinstance(template, str) else json.dumps(template)
    name = unique("bad")
    for call in (cfn.validate_template, lambda **kw: cfn.create_stack(StackName=name, **kw)):
        code, message = error(call, TemplateBody=body)
        assert code == "ValidationError" and words in message, message
    assert error(cfn.describe_stacks, StackName=name)[0] == "ValidationError"


def test_parameters_are_checked_and_validate_template_reports_them(cfn, unique):
    body = json.dumps(QUEUE_TEMPLATE)
    described = cfn.validate_template(TemplateBody=body)
    assert described["Description"] == "queues and a role"
    assert described["Capabilities"] == ["CAPABILITY_IAM"]
    by_key = {p["ParameterKey"]: p for p in described["Parameters"]}
    assert by_key["Env"]["DefaultValue"] == "dev" and by_key["Secret"]["NoEcho"] is True
    name = unique("params")
    create = lambda *params: cfn.create_stack(  # noqa: E731
        StackName=name, TemplateBody=body, Capabilities=["CAPABILITY_IAM"], Parameters=list(params)
    )
    assert "must be one of AllowedValues" in error(create, {"ParameterKey": "Env", "ParameterValue": "qa"})[1]
    assert "not greater than 900" in error(create, {"ParameterKey": "Timeout", "ParameterValue": "901"})[1]
    assert "must be a number" in error(create, {"ParameterKey": "Timeout", "ParameterValue": "x"})[1]
    assert "do not exist in the template" in error(create, {"ParameterKey": "Other", "ParameterValue": "x"})[1]
    required = json.dumps({"Parameters": {"P": {"Type": "String"}}, "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}})
    assert error(cfn.create_stack, StackName=name, TemplateBody=required)[1] == "Parameters: [P] must have values"
    assert error(cfn.describe_stacks, StackName=name)[0] == "ValidationError"  # nothing was made


def test_an_unsupported_type_fails_the_stack_and_rolls_back_what_was_made(cfn, sqs, unique):
    name = unique("unsupported")
    template = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-q"}},
            "Machine": {"Type": "AWS::EC2::Instance", "DependsOn": "Queue", "Properties": {"ImageId": "ami-1"}},
        }
    }
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    stack = wait_stack(cfn, name)
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "Machine" in stack["StackStatusReason"]
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert [e["LogicalResourceId"] for e in failed] == ["Machine"]
    assert "AWS::EC2::Instance is not supported" in failed[0]["ResourceStatusReason"]
    assert error(sqs.get_queue_url, QueueName=f"{name}-q")[0] == "AWS.SimpleQueueService.NonExistentQueue"
    statuses = {r["LogicalResourceId"]: r["ResourceStatus"] for r in resources(cfn, name).values()}
    assert statuses == {"Queue": "DELETE_COMPLETE", "Machine": "DELETE_COMPLETE"}
    # The same type added by an update fails the update, which rolls back to the stack as it was.
    kept = unique("kept")
    cfn.create_stack(StackName=kept, TemplateBody=json.dumps({"Resources": {"Queue": template["Resources"]["Queue"]}}))
    assert wait_stack(cfn, kept)["StackStatus"] == "CREATE_COMPLETE"
    cfn.update_stack(StackName=kept, TemplateBody=json.dumps(template))
    assert wait_stack(cfn, kept)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert {r: v["ResourceStatus"] for r, v in resources(cfn, kept).items()} == {"Queue": "CREATE_COMPLETE"}
    sqs.get_queue_url(QueueName=f"{name}-q")
    cfn.delete_stack(StackName=kept)
    assert error(cfn.update_stack, StackName=name, TemplateBody=json.dumps(template))[1].endswith(
        "is in ROLLBACK_COMPLETE state and can not be updated."
    )
    cfn.delete_stack(StackName=name)
    wait_for(
        lambda: cfn.list_stacks()["StackSummaries"],
        lambda s: not [x for x in s if x["StackName"] == name and x["StackStatus"] != "DELETE_COMPLETE"],
    )


def model_template(image: str = IMAGE, role: str = ROLE, instances: int | str = 1) -> dict:
    return {
        "Resources": {
            "Model": {
                "Type": "AWS::SageMaker::Model",
                "Properties": {"ExecutionRoleArn": role, "PrimaryContainer": {"Image": image}},
            },
            "Config": {
                "Type": "AWS::SageMaker::EndpointConfig",
                "Properties": {
                    "ProductionVariants": [
                        {
                            "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
                            "VariantName": "AllTraffic",
                            "InitialInstanceCount": instances,
                            "InstanceType": "ml.m5.large",
                            "InitialVariantWeight": 1,
                        }
                    ]
                },
            },
        },
        "Outputs": {
            "ModelArn": {"Value": {"Ref": "Model"}},
            "ModelName": {"Value": {"Fn::GetAtt": ["Model", "ModelName"]}},
            "ConfigArn": {"Value": {"Ref": "Config"}},
            "ConfigName": {"Value": {"Fn::GetAtt": ["Config", "EndpointConfigName"]}},
        },
    }


def test_a_failing_resource_rolls_the_stack_back_naming_it_and_sagemakers_reason(cfn, sm, unique):
    name = unique("failing")
    template = model_template()
    template["Resources"]["Config"]["Properties"]["ProductionVariants"][0]["InstanceType"] = "ml.nonsense"
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    stack = wait_stack(cfn, name)
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert [e["LogicalResourceId"] for e in failed] == ["Config"]
    reason = failed[0]["ResourceStatusReason"]  # SageMaker's own validation said it
    assert "'ml.nonsense' at 'productionVariants.1.member.instanceType'" in reason and "Service: SageMaker" in reason
    model_name = next(
        e["PhysicalResourceId"]
        for e in events
        if e["LogicalResourceId"] == "Model" and e["ResourceStatus"] == "CREATE_COMPLETE"
    )
    assert error(sm.describe_model, ModelName=model_name.rsplit("/", 1)[1])[0] == "ValidationException"


def test_disable_rollback_keeps_what_was_made(cfn, sm, unique):
    name = unique("keep")
    template = model_template()
    template["Resources"]["Config"]["Properties"]["ProductionVariants"][0]["InstanceType"] = "ml.nonsense"
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template), DisableRollback=True)
    stack = wait_stack(cfn, name)
    assert stack["StackStatus"] == "CREATE_FAILED"
    model = resources(cfn, name)["Model"]
    assert model["ResourceStatus"] == "CREATE_COMPLETE"
    sm.describe_model(ModelName=model["PhysicalResourceId"].rsplit("/", 1)[1])
    cfn.delete_stack(StackName=name)
    wait_for(lambda: resources(cfn, stack["StackId"])["Model"]["ResourceStatus"], lambda s: s == "DELETE_COMPLETE")


def test_update_replaces_a_model_and_its_config_and_delete_removes_them(cfn, sm, unique):
    """moto's model and endpoint config scenarios: every property change replaces them, under a new name."""
    name = unique("models")
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(model_template()))
    first = outputs(wait_stack(cfn, name))
    model = sm.describe_model(ModelName=first["ModelName"])
    assert first["ModelArn"] == model["ModelArn"]  # Ref is the ARN, GetAtt ModelName the name
    assert first["ModelName"].startswith(f"{name}-Model-")
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert (
        first["ConfigArn"] == sm.describe_endpoint_config(EndpointConfigName=first["ConfigName"])["EndpointConfigArn"]
    )
    config = sm.describe_endpoint_config(EndpointConfigName=first["ConfigName"])
    assert config["ProductionVariants"][0]["ModelName"] == first["ModelName"]

    new_image = IMAGE.replace("1.7-1", "1.5-1")
    cfn.update_stack(StackName=name, TemplateBody=json.dumps(model_template(image=new_image, instances="2")))
    stack = wait_stack(cfn, name)
    assert stack["StackStatus"] == "UPDATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    second = outputs(stack)
    assert second["ModelName"] != first["ModelName"] and second["ConfigName"] != first["ConfigName"]
    assert sm.describe_model(ModelName=second["ModelName"])["PrimaryContainer"]["Image"] == new_image
    variant = sm.describe_endpoint_config(EndpointConfigName=second["ConfigName"])["ProductionVariants"][0]
    assert variant["InitialInstanceCount"] == 2 and variant["ModelName"] == second["ModelName"]
    assert error(sm.describe_model, ModelName=first["ModelName"])[0] == "ValidationException"
    assert error(sm.describe_endpoint_config, EndpointConfigName=first["ConfigName"])[0] == "ValidationException"

    assert error(cfn.update_stack, StackName=name, UsePreviousTemplate=True) == (
        "ValidationError",
        "No updates are to be performed.",
    )
    cfn.delete_stack(StackName=name)
    wait_for(
        lambda: cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackStatus"],
        lambda s: s == "DELETE_COMPLETE",
    )
    assert error(sm.describe_model, ModelName=second["ModelName"])[0] == "ValidationException"


def test_a_failed_update_rolls_back_to_the_previous_resources(cfn, sm, unique):
    name = unique("update-rollback")
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(model_template()))
    first = outputs(wait_stack(cfn, name))
    broken = model_template(image=IMAGE.replace("1.7-1", "1.5-1"))
    broken["Resources"]["Config"]["Properties"]["ProductionVariants"][0]["InstanceType"] = "ml.nonsense"
    cfn.update_stack(StackName=name, TemplateBody=json.dumps(broken))
    stack = wait_stack(cfn, name)
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert outputs(stack) == first
    assert sm.describe_model(ModelName=first["ModelName"])["PrimaryContainer"]["Image"] == IMAGE
    models = sm.list_models(NameContains=f"{name}-Model")["Models"]
    assert [m["ModelName"] for m in models] == [first["ModelName"]]  # the replacement was cleaned up
    assert cfn.get_template(StackName=name)["TemplateBody"] == model_template()
    cfn.delete_stack(StackName=name)


def test_change_sets_describe_then_execute_an_update(cfn, sm, unique):
    name = unique("changes")
    created = cfn.create_change_set(
        StackName=name, ChangeSetName="first", ChangeSetType="CREATE", TemplateBody=json.dumps(model_template())
    )
    assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "REVIEW_IN_PROGRESS"
    described = cfn.describe_change_set(ChangeSetName=created["Id"])
    assert described["Status"] == "CREATE_COMPLETE" and described["ExecutionStatus"] == "AVAILABLE"
    assert {c["ResourceChange"]["Action"] for c in described["Changes"]} == {"Add"}
    cfn.execute_change_set(ChangeSetName="first", StackName=name)
    first = outputs(wait_stack(cfn, name))
    assert error(cfn.describe_change_set, ChangeSetName=created["Id"])[0] == "ChangeSetNotFound"

    updated = model_template(instances=3)
    cfn.create_change_set(StackName=name, ChangeSetName="more", TemplateBody=json.dumps(updated))
    changes = {
        c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"]
        for c in cfn.describe_change_set(ChangeSetName="more", StackName=name)["Changes"]
    }
    assert set(changes) == {"Config"} and changes["Config"]["Action"] == "Modify"
    assert changes["Config"]["Replacement"] == "True"
    assert changes["Config"]["Details"][0]["Target"]["Name"] == "ProductionVariants"
    summaries = cfn.list_change_sets(StackName=name)["Summaries"]
    assert [s["ChangeSetName"] for s in summaries] == ["more"]

    same = cfn.create_change_set(StackName=name, ChangeSetName="same", TemplateBody=json.dumps(model_template()))
    refused = cfn.describe_change_set(ChangeSetName=same["Id"])
    assert refused["Status"] == "FAILED" and "didn't contain changes" in refused["StatusReason"]
    assert error(cfn.execute_change_set, ChangeSetName=same["Id"])[0] == "InvalidChangeSetStatus"
    cfn.delete_change_set(ChangeSetName="same", StackName=name)

    cfn.execute_change_set(ChangeSetName="more", StackName=name)
    second = outputs(wait_stack(cfn, name))
    assert second["ModelName"] == first["ModelName"] and second["ConfigName"] != first["ConfigName"]
    assert (
        sm.describe_endpoint_config(EndpointConfigName=second["ConfigName"])["ProductionVariants"][0][
            "InitialInstanceCount"
        ]
        == 3
    )
    assert cfn.list_change_sets(StackName=name)["Summaries"] == []
    cfn.delete_stack(StackName=name)


REGISTRY_TEMPLATE = """
Parameters:
  Approval:
    Type: String
    Default: PendingManualApproval
  Message:
    Type: String
    Default: first
Resources:
  Group:
    Type: AWS::SageMaker::ModelPackageGroup
    Properties:
      ModelPackageGroupName: !Sub "${AWS::StackName}-group"
  Package:
    Type: AWS::SageMaker::ModelPackage
    Properties:
      ModelPackageGroupName: !Ref Group
      ModelApprovalStatus: !Ref Approval
      InferenceSpecification:
        Containers:
          - Image: %(image)s
        SupportedContentTypes: [text/csv]
        SupportedResponseMIMETypes: [text/csv]
  Features:
    Type: AWS::SageMaker::FeatureGroup
    Properties:
      FeatureGroupName: !Sub "${AWS::StackName}-features"
      RecordIdentifierFeatureName: id
      EventTimeFeatureName: et
      FeatureDefinitions:
        - {FeatureName: id, FeatureType: String}
        - {FeatureName: et, FeatureType: Fractional}
      OnlineStoreConfig: {EnableOnlineStore: true}
  Pipeline:
    Type: AWS::SageMaker::Pipeline
    Properties:
      PipelineName: !Sub "${AWS::StackName}-pipeline"
      RoleArn: %(role)s
      PipelineDefinition:
        PipelineDefinitionBody: !Sub |
          {"Version": "2020-12-01", "Steps": [{"Name": "Stop", "Type": "Fail", "Arguments": {"ErrorMessage": "${Message}"}}]}
Outputs:
  Package:
    Value: !GetAtt Package.ModelPackageArn
  Status:
    Value: !GetAtt Features.FeatureGroupStatus
  Pipeline:
    Value: !Ref Pipeline
  Queue:
    Value: !Ref Pipeline
"""


def test_registry_feature_group_and_pipeline_are_made_updated_in_place_and_deleted(cfn, sm, unique):
    name = unique("registry")
    body = REGISTRY_TEMPLATE % {"image": IMAGE, "role": ROLE}
    cfn.create_stack(StackName=name, TemplateBody=body)
    stack = wait_stack(cfn, name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    out = outputs(stack)
    assert out["Status"] == "Created" and out["Pipeline"] == f"{name}-pipeline"
    package = sm.describe_model_package(ModelPackageName=out["Package"])
    assert package["ModelPackageGroupName"] == f"{name}-group"
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    definition = json.loads(sm.describe_pipeline(PipelineName=out["Pipeline"])["PipelineDefinition"])
    assert definition["Steps"][0]["Arguments"]["ErrorMessage"] == "first"

    # Approval and the pipeline's definition change in place: same package, same pipeline.
    cfn.update_stack(
        StackName=name,
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "Approval", "ParameterValue": "Approved"},
            {"ParameterKey": "Message", "ParameterValue": "second"},
        ],
    )
    stack = wait_stack(cfn, name)
    assert stack["StackStatus"] == "UPDATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    assert outputs(stack) == out
    assert sm.describe_model_package(ModelPackageName=out["Package"])["ModelApprovalStatus"] == "Approved"
    definition = json.loads(sm.describe_pipeline(PipelineName=out["Pipeline"])["PipelineDefinition"])
    assert definition["Steps"][0]["Arguments"]["ErrorMessage"] == "second"

    cfn.delete_stack(StackName=name)
    wait_for(
        lambda: cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackStatus"],
        lambda s: s in ("DELETE_COMPLETE", "DELETE_FAILED"),
        what="the stack to be deleted",
    )
    assert cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE", [
        (e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason"))
        for e in cfn.describe_stack_events(StackName=stack["StackId"])["StackEvents"][:6]
    ]
    for call, member in (
        (sm.describe_pipeline, "PipelineName"),
        (sm.describe_model_package_group, "ModelPackageGroupName"),
    ):
        assert error(call, **{member: out["Pipeline"] if member == "PipelineName" else f"{name}-group"})[0] in (
            "ResourceNotFound",
            "ValidationException",
        )
    assert error(sm.describe_feature_group, FeatureGroupName=f"{name}-features")[0] == "ResourceNotFound"


def test_retained_resources_outlive_the_stack_and_on_failure_delete_removes_it(cfn, sqs, unique):
    name = unique("retain")
    template = {
        "Resources": {
            "Kept": {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Retain", "Properties": {"QueueName": f"{name}-kept"}}
        }
    }
    stack_id = cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))["StackId"]
    assert wait_stack(cfn, name)["StackStatus"] == "CREATE_COMPLETE"
    cfn.delete_stack(StackName=name)
    wait_for(
        lambda: cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"], lambda s: s == "DELETE_COMPLETE"
    )
    assert resources(cfn, stack_id)["Kept"]["ResourceStatus"] == "DELETE_SKIPPED"
    sqs.get_queue_url(QueueName=f"{name}-kept")

    doomed = unique("doomed")
    template = {
        "Resources": {
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{doomed}-q"}},
            "X": {"Type": "Custom::Thing", "DependsOn": "Q"},
        }
    }
    stack_id = cfn.create_stack(StackName=doomed, TemplateBody=json.dumps(template), OnFailure="DELETE")["StackId"]
    wait_for(
        lambda: cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"], lambda s: s == "DELETE_COMPLETE"
    )
    assert error(sqs.get_queue_url, QueueName=f"{doomed}-q")[0] == "AWS.SimpleQueueService.NonExistentQueue"
    assert error(cfn.describe_stacks, StackName=doomed)[0] == "ValidationError"


def test_an_update_adds_and_removes_resources_and_leaves_the_rest_alone(cfn, sqs, unique):
    name = unique("reshape")

    def queues(*logicals: str) -> str:
        return json.dumps(
            {
                "Resources": {
                    q: {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-{q}"}} for q in logicals
                }
            }
        )

    cfn.create_stack(StackName=name, TemplateBody=queues("A", "B"))
    assert wait_stack(cfn, name)["StackStatus"] == "CREATE_COMPLETE"
    cfn.update_stack(StackName=name, TemplateBody=queues("A", "C"))
    assert wait_stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert {r: v["ResourceStatus"] for r, v in resources(cfn, name).items()} == {
        "A": "CREATE_COMPLETE",
        "C": "CREATE_COMPLETE",
    }
    sqs.get_queue_url(QueueName=f"{name}-A")
    sqs.get_queue_url(QueueName=f"{name}-C")
    assert error(sqs.get_queue_url, QueueName=f"{name}-B")[0] == "AWS.SimpleQueueService.NonExistentQueue"
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    since_update = events[: next(i for i, e in enumerate(events) if e["ResourceStatus"] == "UPDATE_IN_PROGRESS") + 1]
    assert {e["LogicalResourceId"] for e in since_update} == {name, "B", "C"}  # A was not touched
    cfn.delete_stack(StackName=name)


def test_a_same_named_resource_that_is_not_the_stacks_survives_its_rollback(cfn, sm, sqs, unique):
    name = unique("squatter")
    sm.create_model(ModelName=f"{name}-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    url = sqs.create_queue(QueueName=f"{name}-queue")["QueueUrl"]
    for resource in (
        {
            "Type": "AWS::SageMaker::Model",
            "Properties": {
                "ModelName": f"{name}-model",
                "ExecutionRoleArn": ROLE,
                "PrimaryContainer": {"Image": IMAGE},
            },
        },
        {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-queue"}},
    ):
        stack = unique("squat")
        cfn.create_stack(StackName=stack, TemplateBody=json.dumps({"Resources": {"Taken": resource}}))
        assert wait_stack(cfn, stack)["StackStatus"] == "ROLLBACK_COMPLETE"
        failed = [
            e
            for e in cfn.describe_stack_events(StackName=stack)["StackEvents"]
            if e["ResourceStatus"] == "CREATE_FAILED"
        ]
        assert "exist" in failed[0]["ResourceStatusReason"]
    sm.describe_model(ModelName=f"{name}-model")
    sqs.get_queue_attributes(QueueUrl=url)


def test_a_custom_named_resource_is_not_replaced_and_the_update_rolls_back(cfn, sm, unique):
    name = unique("named")
    template = model_template()
    template["Resources"]["Model"]["Properties"]["ModelName"] = f"{name}-fixed"
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    assert wait_stack(cfn, name)["StackStatus"] == "CREATE_COMPLETE"
    template["Resources"]["Model"]["Properties"]["PrimaryContainer"]["Image"] = IMAGE.replace("1.7-1", "1.5-1")
    cfn.update_stack(StackName=name, TemplateBody=json.dumps(template))
    assert wait_stack(cfn, name)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    failed = [
        e for e in cfn.describe_stack_events(StackName=name)["StackEvents"] if e["ResourceStatus"] == "UPDATE_FAILED"
    ]
    assert "cannot update a stack when a custom-named resource requires replacing" in failed[0]["ResourceStatusReason"]
    assert sm.describe_model(ModelName=f"{name}-fixed")["PrimaryContainer"]["Image"] == IMAGE
    assert resources(cfn, name)["Model"]["ResourceStatus"] == "CREATE_COMPLETE"  # untouched
    cfn.delete_stack(StackName=name)


def test_aws_cli_deploy_creates_then_finds_nothing_to_change(server, cfn, tmp_path, unique):
    """`aws cloudformation deploy`: a CREATE change set, its waiters, execute; then a change set without changes."""
    name = unique("deploy")
    template = tmp_path / "template.yaml"
    template.write_text(YAML_TEMPLATE)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": REGION}
    command = ["aws", "cloudformation", "deploy", "--endpoint-url", server.url, "--stack-name", name]
    command += ["--template-file", str(template)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    again = subprocess.run(
        [*command, "--no-fail-on-empty-changeset"], capture_output=True, text=True, env=env, timeout=120
    )
    assert again.returncode == 0 and "No changes to deploy" in again.stdout + again.stderr, again.stderr
    cfn.delete_stack(StackName=name)
