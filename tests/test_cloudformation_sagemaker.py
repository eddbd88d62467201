"""moto's SageMaker CloudFormation scenarios, against SelfMaker, written from the CloudFormation documentation:
a stack makes a model, an endpoint config and a real endpoint (waited for until InService), an update of the
config replaces it and updates the endpoint in place (same name, new config, still answering), delete removes
them all; a notebook instance is made, updated (stopped, changed, started) and deleted. And a server killed
while a stack waits for its endpoint resumes the stack on restart, making nothing twice.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.cloudformation import outputs, wait_stack
from support.endpoints import BUCKET, IMAGE, ROLE, versioned_archive, wait_gone
from support.waiting import wait_for

ENDPOINT_SECONDS = 600  # the first endpoint of a run may build the runtime


@pytest.fixture(scope="module")
def server(make_server):
    return make_server("cloudformation-sagemaker").start()


@pytest.fixture(scope="module")
def clients(server):
    s3 = make_client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    for version in ("v1", "v2"):
        s3.put_object(Bucket=BUCKET, Key=f"cfn/{version}/model.tar.gz", Body=versioned_archive(version))
    return {name: make_client(name, server.url) for name in ("cloudformation", "sagemaker", "sagemaker-runtime")}


def endpoint_template(version: str = "v1", instances: int = 1) -> str:
    return json.dumps(
        {
            "Resources": {
                "Model": {
                    "Type": "AWS::SageMaker::Model",
                    "Properties": {
                        "ExecutionRoleArn": ROLE,
                        "PrimaryContainer": {
                            "Image": IMAGE,
                            "ModelDataUrl": f"s3://{BUCKET}/cfn/{version}/model.tar.gz",
                        },
                    },
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
                                "InitialVariantWeight": 1.0,
                            }
                        ]
                    },
                },
                "Endpoint": {
                    "Type": "AWS::SageMaker::Endpoint",
                    "Properties": {"EndpointConfigName": {"Fn::GetAtt": ["Config", "EndpointConfigName"]}},
                },
            },
            "Outputs": {
                "EndpointArn": {"Value": {"Ref": "Endpoint"}},
                "EndpointName": {"Value": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}},
                "ConfigName": {"Value": {"Fn::GetAtt": ["Config", "EndpointConfigName"]}},
                "ModelName": {"Value": {"Fn::GetAtt": ["Model", "ModelName"]}},
            },
        }
    )


def answer(runtime, endpoint: str) -> str:
    return runtime.invoke_endpoint(EndpointName=endpoint, Body=b"hi", ContentType="text/plain")["Body"].read().decode()


def test_a_server_killed_while_a_stack_waits_for_its_endpoint_resumes_it(server, clients, unique):
    cfn, sm = clients["cloudformation"], clients["sagemaker"]
    name = unique("resumed")
    cfn.create_stack(StackName=name, TemplateBody=endpoint_template())
    wait_for(
        lambda: cfn.describe_stack_events(StackName=name)["StackEvents"],
        lambda events: any(
            e["LogicalResourceId"] == "Endpoint" and e["ResourceStatus"] == "CREATE_IN_PROGRESS" for e in events
        ),
        what="the stack to start its endpoint",
    )
    server.kill()
    server.start()
    stack = wait_stack(cfn, name, timeout=ENDPOINT_SECONDS)
    assert stack["StackStatus"] == "CREATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    out = outputs(stack)
    assert sm.describe_endpoint(EndpointName=out["EndpointName"])["EndpointStatus"] == "InService"
    assert [m["ModelName"] for m in sm.list_models(NameContains=name)["Models"]] == [out["ModelName"]]
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs(NameContains=name)["EndpointConfigs"]] == [
        out["ConfigName"]
    ]
    cfn.delete_stack(StackName=name)
    wait_gone(sm, out["EndpointName"], timeout=120)


def test_stack_makes_updates_and_deletes_a_model_config_and_endpoint(clients, unique):
    cfn, sm, runtime = clients["cloudformation"], clients["sagemaker"], clients["sagemaker-runtime"]
    name = unique("endpoint")
    stack_id = cfn.create_stack(StackName=name, TemplateBody=endpoint_template())["StackId"]
    stack = wait_stack(cfn, name, timeout=ENDPOINT_SECONDS)
    assert stack["StackStatus"] == "CREATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    first = outputs(stack)
    endpoint = sm.describe_endpoint(EndpointName=first["EndpointName"])
    assert first["EndpointArn"] == endpoint["EndpointArn"]  # Ref is the ARN, GetAtt EndpointName the name
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == first["ConfigName"]
    assert answer(runtime, first["EndpointName"]) == "v1:hi"

    # A new model: the model and its config are replaced, the endpoint is updated in place onto them.
    cfn.update_stack(StackName=name, TemplateBody=endpoint_template(version="v2"))
    stack = wait_stack(cfn, name, timeout=ENDPOINT_SECONDS)
    assert stack["StackStatus"] == "UPDATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    second = outputs(stack)
    assert second["EndpointName"] == first["EndpointName"] and second["EndpointArn"] == first["EndpointArn"]
    assert second["ConfigName"] != first["ConfigName"] and second["ModelName"] != first["ModelName"]
    endpoint = sm.describe_endpoint(EndpointName=second["EndpointName"])
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == second["ConfigName"]
    assert answer(runtime, second["EndpointName"]) == "v2:hi"
    for gone in (
        lambda: sm.describe_model(ModelName=first["ModelName"]),
        lambda: sm.describe_endpoint_config(EndpointConfigName=first["ConfigName"]),
    ):
        with pytest.raises(ClientError):
            gone()
    kinds = {
        r["LogicalResourceId"]: r["ResourceStatus"]
        for r in cfn.describe_stack_resources(StackName=name)["StackResources"]
    }
    assert kinds == {"Model": "UPDATE_COMPLETE", "Config": "UPDATE_COMPLETE", "Endpoint": "UPDATE_COMPLETE"}

    cfn.delete_stack(StackName=name)
    wait_for(
        lambda: cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"],
        lambda s: s in ("DELETE_COMPLETE", "DELETE_FAILED"),
        timeout=120,
        what="the stack to be deleted",
    )
    assert cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    wait_gone(sm, second["EndpointName"], timeout=5)
    with pytest.raises(ClientError):
        sm.describe_model(ModelName=second["ModelName"])


NOTEBOOK_TEMPLATE = """
Parameters:
  InstanceType:
    Type: String
    Default: ml.t3.medium
Resources:
  Lifecycle:
    Type: AWS::SageMaker::NotebookInstanceLifecycleConfig
    Properties:
      OnStart:
        - Content: !Base64 "echo started"
  Notebook:
    Type: AWS::SageMaker::NotebookInstance
    Properties:
      InstanceType: !Ref InstanceType
      RoleArn: {role}
      LifecycleConfigName: !GetAtt Lifecycle.NotebookInstanceLifecycleConfigName
Outputs:
  Arn:
    Value: !Ref Notebook
  Name:
    Value: !GetAtt Notebook.NotebookInstanceName
"""


def test_stack_makes_updates_and_deletes_a_notebook_instance(clients, unique):
    cfn, sm = clients["cloudformation"], clients["sagemaker"]
    name = unique("notebook")
    body = NOTEBOOK_TEMPLATE.format(role=ROLE)
    stack_id = cfn.create_stack(StackName=name, TemplateBody=body)["StackId"]
    stack = wait_stack(cfn, name, timeout=ENDPOINT_SECONDS)
    assert stack["StackStatus"] == "CREATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    first = outputs(stack)
    notebook = sm.describe_notebook_instance(NotebookInstanceName=first["Name"])
    assert notebook["NotebookInstanceArn"] == first["Arn"] and notebook["InstanceType"] == "ml.t3.medium"
    assert notebook["NotebookInstanceStatus"] == "InService"

    cfn.update_stack(
        StackName=name,
        UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "InstanceType", "ParameterValue": "ml.t3.large"}],
    )
    stack = wait_stack(cfn, name, timeout=ENDPOINT_SECONDS)
    assert stack["StackStatus"] == "UPDATE_COMPLETE", cfn.describe_stack_events(StackName=name)["StackEvents"]
    assert outputs(stack) == first  # updated in place: the same instance
    notebook = sm.describe_notebook_instance(NotebookInstanceName=first["Name"])
    assert notebook["InstanceType"] == "ml.t3.large" and notebook["NotebookInstanceStatus"] == "InService"

    cfn.delete_stack(StackName=name)
    wait_for(
        lambda: cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"],
        lambda s: s in ("DELETE_COMPLETE", "DELETE_FAILED"),
        timeout=300,
        what="the stack to be deleted",
    )
    assert cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    with pytest.raises(ClientError):
        sm.describe_notebook_instance(NotebookInstanceName=first["Name"])
