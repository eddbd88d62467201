"""CloudFormation between two accounts: a stack, its resources, its template and its change sets are its
account's only, and a stack makes and names things in its own account (another account's model, bucket or
template object is as absent to it as to that account's API calls)."""

from __future__ import annotations

import json

from support.accounts import A, B, accounts_server, refused
from support.waiting import wait_for

srv, as_ = accounts_server("cloudformation-accounts", A, B)

ROLE = "arn:aws:iam::{account}:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


def finished(cfn, name: str) -> dict:
    return wait_for(
        lambda: cfn.describe_stacks(StackName=name)["Stacks"][0],
        lambda s: "IN_PROGRESS" not in s["StackStatus"],
        timeout=60,
        what=f"stack {name} to finish",
    )


def test_another_accounts_stack_is_not_there(as_, unique):
    a, b = as_(A, "cloudformation"), as_(B, "cloudformation")
    name = unique("private")
    template = json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}})
    stack_id = a.create_stack(StackName=name, TemplateBody=template)["StackId"]
    assert finished(a, name)["StackStatus"] == "CREATE_COMPLETE"
    for target in (name, stack_id):
        refused(b.describe_stacks, "ValidationError", StackName=target)
        refused(b.describe_stack_resources, "ValidationError", StackName=target)
        refused(b.describe_stack_events, "ValidationError", StackName=target)
        refused(b.get_template, "ValidationError", StackName=target)
        refused(b.update_stack, "ValidationError", StackName=target, TemplateBody=template)
        b.delete_stack(StackName=target)  # nothing of B's there: a no-op
    physical = a.describe_stack_resources(StackName=name)["StackResources"][0]["PhysicalResourceId"]
    refused(b.describe_stack_resources, "ValidationError", PhysicalResourceId=physical)
    assert name not in [s["StackName"] for s in b.list_stacks()["StackSummaries"]]
    refused(b.create_change_set, "ValidationError", StackName=name, ChangeSetName="x", TemplateBody=template)
    assert a.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_a_stack_makes_and_names_things_in_its_own_account_only(as_, unique):
    a_sm, a_s3 = as_(A, "sagemaker"), as_(A, "s3")
    b = as_(B, "cloudformation")
    model = unique("a-model")
    a_sm.create_model(
        ModelName=model, ExecutionRoleArn=ROLE.format(account=A.account), PrimaryContainer={"Image": IMAGE}
    )
    bucket = unique("a-bucket")
    a_s3.create_bucket(Bucket=bucket)
    a_s3.put_object(Bucket=bucket, Key="t.json", Body=json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}))

    # B's endpoint config naming A's model: SageMaker in B's account finds no such model.
    name = unique("borrow-model")
    config = {
        "Type": "AWS::SageMaker::EndpointConfig",
        "Properties": {
            "ProductionVariants": [
                {"ModelName": model, "VariantName": "v", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
            ]
        },
    }
    b.create_stack(StackName=name, TemplateBody=json.dumps({"Resources": {"Config": config}}))
    assert finished(b, name)["StackStatus"] == "ROLLBACK_COMPLETE"
    failed = [
        e for e in b.describe_stack_events(StackName=name)["StackEvents"] if e["ResourceStatus"] == "CREATE_FAILED"
    ]
    assert model in failed[0]["ResourceStatusReason"]

    # B's bucket resource named as A's bucket fails, and B's stack delete leaves A's bucket alone.
    name = unique("take-bucket")
    b.create_stack(
        StackName=name,
        TemplateBody=json.dumps(
            {"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": bucket}}}}
        ),
    )
    assert finished(b, name)["StackStatus"] == "ROLLBACK_COMPLETE"
    assert a_s3.head_object(Bucket=bucket, Key="t.json")["ContentLength"] > 0

    # A template in A's bucket is not B's to read.
    message = refused(
        b.create_stack,
        "ValidationError",
        StackName=unique("url"),
        TemplateURL=f"http://s3.amazonaws.com/{bucket}/t.json",
    )
    assert "TemplateURL" in message
    a_cfn = as_(A, "cloudformation")
    own = unique("own-url")
    a_cfn.create_stack(StackName=own, TemplateURL=f"https://{bucket}.s3.amazonaws.com/t.json")
    assert finished(a_cfn, own)["StackStatus"] == "CREATE_COMPLETE"
