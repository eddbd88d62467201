"""AWS::Events::Rule in CloudFormation stacks: made, updated in place and deleted through the events operations."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.cloudformation import wait_stack
from support.server import ACCOUNT, REGION
from support.waiting import wait_for


@pytest.fixture(scope="module")
def cfn(server):
    return make_client("cloudformation", server.url)


@pytest.fixture(scope="module")
def events(server):
    return make_client("events", server.url)


@pytest.fixture(scope="module")
def sqs(server):
    return make_client("sqs", server.url)


def template(source: str, target: dict) -> str:
    return json.dumps(
        {
            "Resources": {
                "Inbox": {"Type": "AWS::SQS::Queue"},
                "OnThing": {
                    "Type": "AWS::Events::Rule",
                    "Properties": {
                        "Description": "things",
                        "EventPattern": {"source": [source], "detail-type": ["thing"]},
                        "Targets": [{"Id": "inbox", "Arn": {"Fn::GetAtt": ["Inbox", "Arn"]}, **target}],
                    },
                },
            },
            "Outputs": {
                "Rule": {"Value": {"Ref": "OnThing"}},
                "RuleArn": {"Value": {"Fn::GetAtt": ["OnThing", "Arn"]}},
                "Queue": {"Value": {"Ref": "Inbox"}},
            },
        }
    )


def receive(sqs, url: str) -> dict:
    got = wait_for(
        lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []),
        bool,
        timeout=30,
        what="a message from the rule",
    )
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    return json.loads(got[0]["Body"])


def test_a_rule_with_a_queue_target_is_made_updated_in_place_and_deleted(cfn, events, sqs, unique):
    stack, first, second = unique("rules"), unique("src"), unique("src")
    cfn.create_stack(StackName=stack, TemplateBody=template(first, {}), Tags=[{"Key": "team", "Value": "ml"}])
    made = wait_stack(cfn, stack)
    assert made["StackStatus"] == "CREATE_COMPLETE", made.get("StackStatusReason")
    out = {o["OutputKey"]: o["OutputValue"] for o in made["Outputs"]}
    rule = out["Rule"]
    assert rule.startswith(f"{stack}-OnThing-")
    assert out["RuleArn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"
    described = events.describe_rule(Name=rule)
    assert (described["State"], described["Description"]) == ("ENABLED", "things")
    assert {"Key": "team", "Value": "ml"} in events.list_tags_for_resource(ResourceARN=out["RuleArn"])["Tags"]
    events.put_events(Entries=[{"Source": first, "DetailType": "thing", "Detail": '{"n": 1}'}])
    assert receive(sqs, out["Queue"])["detail"] == {"n": 1}

    # A new pattern and target input: the same rule (in place), the new pattern matches, the old one no more.
    cfn.update_stack(StackName=stack, TemplateBody=template(second, {"Input": '{"fixed": true}'}))
    updated = wait_stack(cfn, stack)
    assert updated["StackStatus"] == "UPDATE_COMPLETE", updated.get("StackStatusReason")
    assert {o["OutputKey"]: o["OutputValue"] for o in updated["Outputs"]}["Rule"] == rule
    assert json.loads(events.describe_rule(Name=rule)["EventPattern"])["source"] == [second]
    events.put_events(
        Entries=[
            {"Source": first, "DetailType": "thing", "Detail": "{}"},
            {"Source": second, "DetailType": "thing", "Detail": "{}"},
        ]
    )
    assert receive(sqs, out["Queue"]) == {"fixed": True}

    cfn.delete_stack(StackName=stack)
    wait_for(
        lambda: cfn.describe_stacks(StackName=made["StackId"])["Stacks"][0]["StackStatus"],
        lambda s: s == "DELETE_COMPLETE",
        timeout=60,
        what="the stack to be deleted",
    )
    with pytest.raises(ClientError) as caught:
        events.describe_rule(Name=rule)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_target_selfmaker_cannot_deliver_to_fails_the_rule_and_rolls_back(cfn, events, unique):
    stack = unique("rules")
    body = json.loads(template(unique("src"), {}))
    body["Resources"]["OnThing"]["Properties"]["Name"] = stack
    body["Resources"]["OnThing"]["Properties"]["Targets"] = [
        {"Id": "fn", "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f"}
    ]
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(body))
    assert wait_stack(cfn, stack)["StackStatus"] == "ROLLBACK_COMPLETE"
    failed = [
        e
        for e in cfn.describe_stack_events(StackName=stack)["StackEvents"]
        if e["LogicalResourceId"] == "OnThing" and e["ResourceStatus"] == "CREATE_FAILED"
    ]
    assert "is not a target SelfMaker delivers to" in failed[0]["ResourceStatusReason"]
    with pytest.raises(ClientError):
        events.describe_rule(Name=stack)  # the rule the create made is gone with the rollback
