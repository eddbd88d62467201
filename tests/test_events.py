"""EventBridge through boto3: the pattern language (TestEventPattern), buses, rules, targets and tags,
PutEvents delivered to SQS, SageMaker's own state-change events (a training job, a model package's
approval) to SQS, a rule starting a SageMaker pipeline with parameters from the event, the wall between
accounts, and delivery that survives a server killed mid-way."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from support.accounts import A, B, accounts_server
from support.jobs import code_archive, training_request
from support.jobs import wait as wait_job
from support.pipelines import create as create_pipeline
from support.pipelines import wait as wait_execution
from support.server import ACCOUNT, REGION
from support.waiting import wait_for

srv, as_ = accounts_server("events-accounts", A, B)

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:latest"
INFERENCE = {"Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz"}]}


@pytest.fixture
def events(client):
    return client("events")


@pytest.fixture
def sqs(client):
    return client("sqs")


def _error(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def _event(**detail) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "SageMaker Model Package State Change",
            "source": "aws.sagemaker",
            "account": ACCOUNT,
            "time": "2024-01-01T00:00:00Z",
            "region": REGION,
            "resources": ["arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1"],
            "detail": detail,
        }
    )


def _queue(sqs, unique) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=unique("events-q"))["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _receive(sqs, url: str, count: int = 1, timeout: float = 60) -> list[dict]:
    """Bodies (decoded) of the next ``count`` messages, deleted once read."""
    got: list[dict] = []

    def poll():
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            got.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return got

    return wait_for(poll, lambda found: len(found) >= count, timeout=timeout, what=f"{count} message(s) on {url}")


# -- the pattern language -------------------------------------------------------------------------

PATTERN_CASES = [
    # (pattern, detail, expected)
    ({"detail": {"ModelApprovalStatus": ["Approved"]}}, {"ModelApprovalStatus": "Approved"}, True),
    ({"detail": {"ModelApprovalStatus": ["Approved"]}}, {"ModelApprovalStatus": "Rejected"}, False),
    ({"detail": {"Name": [{"prefix": "prod-"}]}}, {"Name": "prod-7"}, True),
    ({"detail": {"Name": [{"prefix": "prod-"}]}}, {"Name": "dev-7"}, False),
    ({"detail": {"Name": [{"prefix": {"equals-ignore-case": "PROD-"}}]}}, {"Name": "prod-7"}, True),
    ({"detail": {"Name": [{"suffix": ".csv"}]}}, {"Name": "a.csv"}, True),
    ({"detail": {"Name": [{"equals-ignore-case": "ALPHA"}]}}, {"Name": "alpha"}, True),
    ({"detail": {"Name": [{"wildcard": "model-*-v?"}]}}, {"Name": "model-x-v?"}, True),
    ({"detail": {"Name": [{"wildcard": "model-*.tar"}]}}, {"Name": "model-1.tgz"}, False),
    ({"detail": {"State": [{"anything-but": "Failed"}]}}, {"State": "Completed"}, True),
    ({"detail": {"State": [{"anything-but": ["Failed", "Stopped"]}]}}, {"State": "Stopped"}, False),
    ({"detail": {"State": [{"anything-but": {"prefix": "Fail"}}]}}, {"State": "Failed"}, False),
    ({"detail": {"State": [{"anything-but": {"suffix": "ed"}}]}}, {"State": "Running"}, True),
    ({"detail": {"State": [{"anything-but": "Failed"}]}}, {}, False),  # anything-but needs the field
    ({"detail": {"Version": [{"numeric": [">", 1, "<=", 3]}]}}, {"Version": 3}, True),
    ({"detail": {"Version": [{"numeric": [">", 1, "<=", 3]}]}}, {"Version": 1}, False),
    ({"detail": {"Version": [{"numeric": ["=", 2.0]}]}}, {"Version": 2}, True),
    ({"detail": {"Version": [{"numeric": [">", 1]}]}}, {"Version": "5"}, False),  # strings are not numbers
    ({"detail": {"Version": [2]}}, {"Version": 2.0}, True),
    ({"detail": {"Version": ["2"]}}, {"Version": 2}, False),
    ({"detail": {"FailureReason": [{"exists": True}]}}, {"FailureReason": "x"}, True),
    ({"detail": {"FailureReason": [{"exists": False}]}}, {"FailureReason": "x"}, False),
    ({"detail": {"FailureReason": [{"exists": False}]}}, {}, True),
    ({"detail": {"Spec": [{"exists": True}]}}, {"Spec": {"a": 1}}, False),  # exists applies to leaves
    ({"detail": {"Ip": [{"cidr": "10.0.0.0/24"}]}}, {"Ip": "10.0.0.7"}, True),
    ({"detail": {"Ip": [{"cidr": "10.0.0.0/24"}]}}, {"Ip": "10.0.1.7"}, False),
    ({"detail": {"Tags": ["b"]}}, {"Tags": ["a", "b"]}, True),  # an array matches when any element does
    ({"detail": {"Items": {"Kind": ["x"]}}}, {"Items": [{"Kind": "y"}, {"Kind": "x"}]}, True),
    ({"detail": {"Flag": [None]}}, {"Flag": None}, True),
    ({"detail": {"Flag": [True]}}, {"Flag": "true"}, False),
    ({"detail": {"$or": [{"A": ["1"]}, {"B": [{"numeric": [">", 5]}]}]}}, {"B": 9}, True),
    ({"detail": {"$or": [{"A": ["1"]}, {"B": [{"numeric": [">", 5]}]}]}}, {"A": "2", "B": 1}, False),
    ({"source": ["aws.sagemaker"], "detail-type": [{"prefix": "SageMaker Model"}]}, {}, True),
    ({"source": ["aws.s3"]}, {}, False),
    ({"resources": [{"wildcard": "*:model-package/g/*"}]}, {}, True),
]


@pytest.mark.parametrize(("pattern", "detail", "expected"), PATTERN_CASES)
def test_pattern_language(events, pattern, detail, expected):
    result = events.test_event_pattern(EventPattern=json.dumps(pattern), Event=_event(**detail))["Result"]
    assert result is expected, (pattern, detail)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("[1]", "Filter is not an object"),
        ('{"source": "aws.sagemaker"}', "must be an object or an array"),
        ('{"source": []}', "Empty arrays"),
        ('{"detail": {}}', "Empty objects"),
        ('{"a": [{"prefixx": "x"}]}', "Unrecognized match type prefixx"),
        ('{"a": [{"prefix": 1}]}', "prefix match pattern"),
        ('{"a": [{"exists": "yes"}]}', "exists match pattern"),
        ('{"a": [{"numeric": [">", "one"]}]}', "must be a number"),
        ('{"a": [{"numeric": [">", 5, "<", 1]}]}', "Bottom must be less than top"),
        ('{"a": [{"numeric": ["~", 5]}]}', "Unrecognized numeric range operator"),
        ('{"a": [{"anything-but": ["x", 1]}]}', "mixed types"),
        ('{"a": [{"cidr": "10.0.0.0/99"}]}', "CIDR"),
        ('{"a": [{"wildcard": "a**b"}]}', "Consecutive wildcard"),
        ('{"$or": [{"a": ["1"]}]}', "$or"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_patterns_are_refused(events, unique, pattern, reason):
    code, message = _error(events.test_event_pattern, EventPattern=pattern, Event=_event())
    assert code == "InvalidEventPatternException" and reason in message, message
    name = unique("bad")
    code, _ = _error(events.put_rule, Name=name, EventPattern=pattern)
    assert code == "InvalidEventPatternException"
    assert _error(events.describe_rule, Name=name)[0] == "ResourceNotFoundException"  # nothing was stored


def test_test_event_pattern_needs_a_whole_event(events):
    code, message = _error(events.test_event_pattern, EventPattern='{"source": ["x"]}', Event='{"source": "x"}')
    assert code == "ValidationException" and "mandatory fields" in message


# -- buses, rules, targets, tags -----------------------------------------------------------------


def test_rules_targets_and_tags(events, unique):
    prefix = unique("r")
    pattern = json.dumps({"source": ["my.app"]})
    arns = [events.put_rule(Name=f"{prefix}-{i}", EventPattern=pattern)["RuleArn"] for i in range(3)]
    assert arns[0] == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{prefix}-0"
    described = events.describe_rule(Name=f"{prefix}-0")
    assert (described["State"], described["EventBusName"], described["EventPattern"]) == ("ENABLED", "default", pattern)
    first = events.list_rules(NamePrefix=prefix, Limit=2)
    second = events.list_rules(NamePrefix=prefix, Limit=2, NextToken=first["NextToken"])
    assert [r["Name"] for r in first["Rules"] + second["Rules"]] == [f"{prefix}-{i}" for i in range(3)]
    assert "NextToken" not in second
    events.disable_rule(Name=f"{prefix}-1")
    assert events.describe_rule(Name=f"{prefix}-1")["State"] == "DISABLED"
    events.enable_rule(Name=f"{prefix}-1")
    assert events.describe_rule(Name=f"{prefix}-1")["State"] == "ENABLED"

    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{prefix}-q"
    events.put_targets(Rule=f"{prefix}-0", Targets=[{"Id": "q", "Arn": queue_arn}])
    events.put_targets(Rule=f"{prefix}-2", Targets=[{"Id": "q", "Arn": queue_arn, "Input": '{"a": 1}'}])
    assert events.list_targets_by_rule(Rule=f"{prefix}-2")["Targets"] == [
        {"Id": "q", "Arn": queue_arn, "Input": '{"a": 1}'}
    ]
    assert events.list_rule_names_by_target(TargetArn=queue_arn)["RuleNames"] == [f"{prefix}-0", f"{prefix}-2"]
    code, message = _error(events.delete_rule, Name=f"{prefix}-0")
    assert code == "ValidationException" and "has targets" in message
    events.remove_targets(Rule=f"{prefix}-0", Ids=["q"])
    events.delete_rule(Name=f"{prefix}-0")
    assert _error(events.describe_rule, Name=f"{prefix}-0")[0] == "ResourceNotFoundException"

    events.tag_resource(ResourceARN=arns[1], Tags=[{"Key": "team", "Value": "ml"}])
    assert events.list_tags_for_resource(ResourceARN=arns[1])["Tags"] == [{"Key": "team", "Value": "ml"}]
    events.untag_resource(ResourceARN=arns[1], TagKeys=["team"])
    assert events.list_tags_for_resource(ResourceARN=arns[1])["Tags"] == []
    assert _error(events.list_tags_for_resource, ResourceARN=arns[0])[0] == "ResourceNotFoundException"


def test_custom_event_buses(events, unique):
    bus = unique("bus")
    arn = events.create_event_bus(Name=bus)["EventBusArn"]
    assert arn == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"
    assert _error(events.create_event_bus, Name=bus)[0] == "ResourceAlreadyExistsException"
    assert events.describe_event_bus(Name=arn)["Name"] == bus
    assert events.describe_event_bus()["Name"] == "default"
    names = [b["Name"] for b in events.list_event_buses(NamePrefix=bus)["EventBuses"]]
    assert names == [bus]
    rule = events.put_rule(Name="on-bus", EventBusName=bus, EventPattern='{"source": ["x"]}')["RuleArn"]
    assert rule.endswith(f":rule/{bus}/on-bus")
    assert _error(events.describe_rule, Name="on-bus")[0] == "ResourceNotFoundException"  # not on default
    assert _error(events.delete_event_bus, Name=bus)[0] == "ValidationException"
    events.delete_rule(Name="on-bus", EventBusName=bus)
    events.delete_event_bus(Name=bus)
    assert _error(events.describe_event_bus, Name=bus)[0] == "ResourceNotFoundException"
    assert _error(events.put_rule, Name="x", EventBusName=bus, EventPattern='{"a": ["b"]}')[0] == (
        "ResourceNotFoundException"
    )


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ({"Arn": "arn:aws:lambda:us-east-1:123456789012:function:f"}, "is not a target SelfMaker delivers to"),
        ({"Arn": "arn:aws:sqs:us-east-1:210987654321:theirs"}, "not in the rule's account"),
        ({"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "Input": "{not json"}, "Input is not valid JSON"),
        ({"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "Input": "{}", "InputPath": "$.detail"}, "Only one of"),
        ({"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "InputPath": "detail"}, "is not a JSONPath"),
        (
            {"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "DeadLetterConfig": {"Arn": "arn:aws:sqs:x"}},
            "DeadLetterConfig is not supported",
        ),
        ({"Arn": "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p", "Input": "{}"}, "Input is not supported"),
    ],
)
def test_targets_selfmaker_cannot_deliver_are_refused(events, unique, target, reason):
    rule = unique("t")
    events.put_rule(Name=rule, EventPattern='{"source": ["x"]}')
    code, message = _error(events.put_targets, Rule=rule, Targets=[{"Id": "t", **target}])
    assert code == "ValidationException" and reason in message, message
    assert events.list_targets_by_rule(Rule=rule)["Targets"] == []


# -- delivery ------------------------------------------------------------------------------------


def test_put_events_reach_matching_rules_queues(events, sqs, unique):
    url, queue_arn = _queue(sqs, unique)
    rule = unique("app")
    events.put_rule(
        Name=rule, EventPattern=json.dumps({"source": [rule], "detail": {"level": [{"numeric": [">=", 3]}]}})
    )
    events.put_targets(
        Rule=rule,
        Targets=[
            {"Id": "whole", "Arn": queue_arn},
            {
                "Id": "shaped",
                "Arn": queue_arn,
                "InputTransformer": {
                    "InputPathsMap": {"level": "$.detail.level", "who": "$.detail.who"},
                    "InputTemplate": '{"summary": "<who> at <level>", "level": <level>, "rule": "<aws.events.rule-name>"}',
                },
            },
        ],
    )
    put = events.put_events(
        Entries=[
            {"Source": rule, "DetailType": "t", "Detail": json.dumps({"level": 5, "who": "ann"})},
            {"Source": rule, "DetailType": "t", "Detail": json.dumps({"level": 1, "who": "bob"})},  # no match
            {"Source": "aws.sagemaker", "DetailType": "t", "Detail": "{}"},  # only AWS puts aws.* events
            {"Source": rule, "DetailType": "t", "Detail": "[1]"},
        ]
    )
    assert put["FailedEntryCount"] == 2
    assert [e.get("ErrorCode") for e in put["Entries"]] == [
        None,
        None,
        "NotAuthorizedForSourceException",
        "MalformedDetail",
    ]
    got = _receive(sqs, url, 2)
    whole = next(m for m in got if "detail" in m)
    assert whole["id"] == put["Entries"][0]["EventId"]
    assert (whole["source"], whole["account"], whole["region"], whole["detail"]) == (
        rule,
        ACCOUNT,
        REGION,
        {"level": 5, "who": "ann"},
    )
    assert list(whole) == ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"]
    assert next(m for m in got if "summary" in m) == {"summary": "ann at 5", "level": 5, "rule": rule}
    time.sleep(2)  # nothing else arrives: the low-level event matched no rule
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []


def test_model_package_approval_reaches_a_queue(events, sqs, sm, unique):
    url, queue_arn = _queue(sqs, unique)
    group = unique("pkg")
    rule = unique("approved")
    pattern = {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": [group], "ModelApprovalStatus": ["Approved"]},
    }
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    sm.create_model_package_group(ModelPackageGroupName=group)
    arn = sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=INFERENCE)["ModelPackageArn"]
    time.sleep(2)  # PendingManualApproval does not match
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    (event,) = _receive(sqs, url)
    assert (event["source"], event["detail-type"], event["resources"]) == (
        "aws.sagemaker",
        "SageMaker Model Package State Change",
        [arn],
    )
    detail = event["detail"]
    assert (detail["ModelPackageArn"], detail["ModelPackageVersion"], detail["ModelApprovalStatus"]) == (
        arn,
        1,
        "Approved",
    )
    assert detail["CreationTime"].endswith("Z") and detail["InferenceSpecification"]["Containers"][0]["Image"] == IMAGE


TRAIN = "import os\nopen(os.path.join(os.environ['SM_MODEL_DIR'], 'm.txt'), 'w').write('ok')\n"


def test_training_job_state_changes_reach_a_queue(client, events, sqs, sm, unique):
    url, queue_arn = _queue(sqs, unique)
    name = unique("evtrain")
    rule = unique("training")
    pattern = {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Training Job State Change"],
        "detail": {"TrainingJobName": [name], "TrainingJobStatus": [{"anything-but": "InProgress"}]},
    }
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    bucket = unique("evbucket")
    client("s3").create_bucket(Bucket=bucket)
    client("s3").put_object(Bucket=bucket, Key="code.tar.gz", Body=code_archive({"train.py": TRAIN}))
    sm.create_training_job(**training_request(name, bucket, "code.tar.gz"), Tags=[{"Key": "team", "Value": "ml"}])
    assert wait_job(sm, "training", name)["TrainingJobStatus"] == "Completed"
    (event,) = _receive(sqs, url)
    assert event["detail-type"] == "SageMaker Training Job State Change"
    detail = event["detail"]
    assert (detail["TrainingJobName"], detail["TrainingJobStatus"], detail["Tags"]) == (
        name,
        "Completed",
        {"team": "ml"},
    )
    assert event["resources"] == [detail["TrainingJobArn"]]
    assert isinstance(detail["CreationTime"], int) and detail["TrainingEndTime"] >= detail["CreationTime"]


FAIL_WITH_PARAMETER = [
    {"Name": "Report", "Type": "Fail", "Arguments": {"ErrorMessage": {"Get": "Parameters.PackageArn"}}}
]


def test_a_rule_starts_a_pipeline_with_parameters_from_the_event(events, sm, unique):
    pipeline = unique("deploy")
    pipeline_arn = create_pipeline(
        sm, pipeline, FAIL_WITH_PARAMETER, parameters=[{"Name": "PackageArn", "Type": "String", "DefaultValue": "none"}]
    )
    source = unique("ci")
    rule = unique("start")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(
        Rule=rule,
        Targets=[
            {
                "Id": "deploy",
                "Arn": pipeline_arn,
                "RoleArn": "arn:aws:iam::123456789012:role/events",
                "InputTransformer": {"InputPathsMap": {"package": "$.detail.arn"}, "InputTemplate": "{}"},
                "SageMakerPipelineParameters": {
                    "PipelineParameterList": [{"Name": "PackageArn", "Value": "<package>"}]
                },
            }
        ],
    )
    events.put_events(Entries=[{"Source": source, "DetailType": "go", "Detail": json.dumps({"arn": "pkg/7"})}])
    executions = wait_for(
        lambda: sm.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"],
        lambda found: len(found) == 1,
        what="the rule to start one execution",
    )
    done = wait_execution(sm, executions[0]["PipelineExecutionArn"], timeout=60)
    assert done["PipelineExecutionStatus"] == "Failed" and "pkg/7" in done["FailureReason"]


def test_pipeline_events_of_executions_and_steps(events, sqs, sm, unique):
    url, queue_arn = _queue(sqs, unique)
    pipeline = unique("observed")
    pipeline_arn = create_pipeline(
        sm, pipeline, FAIL_WITH_PARAMETER, parameters=[{"Name": "PackageArn", "Type": "String"}]
    )
    rule = unique("pipe")
    events.put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {"source": ["aws.sagemaker"], "resources": [pipeline_arn], "detail": {"pipelineArn": [pipeline_arn]}}
        ),
    )
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    sm.start_pipeline_execution(
        PipelineName=pipeline, PipelineParameters=[{"Name": "PackageArn", "Value": "boom"}], ClientRequestToken="t" * 32
    )
    got = _receive(sqs, url, 3)  # Executing, Failed; the Fail step fails as it starts
    execution = [e["detail"] for e in got if e["detail-type"].endswith("Pipeline Execution Status Change")]
    step = [e["detail"] for e in got if e["detail-type"].endswith("Step Status Change")]
    assert [d["currentPipelineExecutionStatus"] for d in execution][-1] == "Failed"
    assert execution[-1]["previousPipelineExecutionStatus"] == "Executing"
    failed = next(d for d in step if d["currentStepStatus"] == "Failed")
    assert (failed["stepName"], failed["stepType"], failed["failureReason"]) == ("Report", "Fail", "boom")


def test_one_accounts_events_never_reach_another_accounts_rules(as_, unique):
    mine, theirs = as_(A, "events"), as_(B, "events")
    their_sqs = as_(B, "sqs")
    source = unique("shared-source")
    their_url, their_arn = _queue(their_sqs, unique)
    theirs.put_rule(Name="all", EventPattern=json.dumps({"source": [source]}))
    theirs.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": their_arn}])
    # Our rule cannot target their queue, their bus is not ours to name, and our events do not reach their rule.
    rule = unique("mine")
    mine.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    code, message = _error(mine.put_targets, Rule=rule, Targets=[{"Id": "q", "Arn": their_arn}])
    assert code == "ValidationException" and "account" in message
    their_bus = f"arn:aws:events:{REGION}:{B.account}:event-bus/default"
    assert _error(mine.describe_event_bus, Name=their_bus)[0] == "ResourceNotFoundException"
    assert _error(mine.describe_rule, Name="all")[0] == "ResourceNotFoundException"
    put = mine.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": "{}", "EventBusName": their_bus}])
    assert put["Entries"][0]["ErrorCode"] == "ResourceNotFoundException"
    mine.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": "{}"}])
    time.sleep(3)
    assert their_sqs.receive_message(QueueUrl=their_url, WaitTimeSeconds=1).get("Messages", []) == []
    # Their own event does.
    theirs.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": "{}"}])
    (event,) = _receive(their_sqs, their_url)
    assert event["account"] == B.account


def test_delivery_survives_a_killed_server(make_server, client, unique):
    server = make_server("events-restart").start()
    events, sqs = client("events", server), client("sqs", server)
    url, queue_arn = _queue(sqs, unique)
    events.put_rule(Name="r", EventPattern=json.dumps({"source": ["restart.test"]}))
    events.put_targets(Rule="r", Targets=[{"Id": "q", "Arn": queue_arn}])
    # Stop the worker from delivering: the queue is missing, so deliveries wait in the store and retry.
    sqs.delete_queue(QueueUrl=url)
    ids = [
        events.put_events(Entries=[{"Source": "restart.test", "DetailType": "t", "Detail": json.dumps({"n": n})}])[
            "Entries"
        ][0]["EventId"]
        for n in range(3)
    ]
    time.sleep(1.5)
    server.kill()
    server.start()
    events, sqs = client("events", server), client("sqs", server)
    sqs.create_queue(QueueName=url.rsplit("/", 1)[-1])
    got = _receive(sqs, url, 3, timeout=90)
    assert sorted(e["id"] for e in got) == sorted(ids)
