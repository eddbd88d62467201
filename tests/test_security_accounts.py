"""Security: one account never reaches another account's resources, whatever reference it hands over.

Two accounts (A and B) share one open-mode server through a credentials file. B makes
its resources; A then names them everywhere an operation takes another resource's name,
ARN, URL, token or id (tags, Search, lineage, experiments and metrics, the registry,
pipelines and their callbacks, SQS, CloudWatch, the feature store runtime, Athena;
hosting, the runtime and jobs are in tests/test_security_accounts_workloads.py). Each attack is refused as AWS refuses
it (not found, validation, access denied) and changes nothing of B's; each test also
shows the same call working on the caller's own resource, so the refusal is the wall
and not a broken operation. The registry is the one family that shares across
accounts, and only through the group's resource policy.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from support.accounts import NOT_FOUND, REGION, A, B, accounts_server, arn_of, refused, until
from support.featurestore import create_group, record
from support.pipelines import IMAGE
from support.pipelines import create as create_pipeline
from support.pipelines import start as start_pipeline
from support.pipelines import wait as wait_pipeline

# The wall is in the store's SQL: hold it on both databases.
pytestmark = pytest.mark.both_databases

srv, as_ = accounts_server("accounts", A, B)


# -- tags and search ------------------------------------------------------------------------------------------


def test_tags_and_search_stay_in_their_account(as_, unique):
    a, b = as_(A), as_(B)
    theirs = b.create_experiment(ExperimentName=unique("b-exp"), Tags=[{"Key": "owner", "Value": "b"}])["ExperimentArn"]
    mine = a.create_experiment(ExperimentName=unique("a-exp"))["ExperimentArn"]

    refused(a.add_tags, "ResourceNotFound", ResourceArn=theirs, Tags=[{"Key": "owner", "Value": "a"}])
    refused(a.add_tags, "ResourceNotFound", ResourceArn=theirs, Tags=[{"Key": "planted", "Value": "a"}])
    refused(a.list_tags, "ResourceNotFound", ResourceArn=theirs)
    refused(a.delete_tags, "ResourceNotFound", ResourceArn=theirs, TagKeys=["owner"])
    assert b.list_tags(ResourceArn=theirs)["Tags"] == [{"Key": "owner", "Value": "b"}]  # unchanged
    # The same resource named in A's account (same name, A's account id) is not B's either.
    refused(a.list_tags, "ResourceNotFound", ResourceArn=theirs.replace(B.account, A.account))

    a.add_tags(ResourceArn=mine, Tags=[{"Key": "owner", "Value": "a"}])  # positive control
    assert a.list_tags(ResourceArn=mine)["Tags"] == [{"Key": "owner", "Value": "a"}]

    # Search and suggestions: A finds its own experiment, never B's (nor B's tag keys).
    b.add_tags(ResourceArn=theirs, Tags=[{"Key": "b-secret-key", "Value": "1"}])
    hits = a.search(
        Resource="Experiment",
        SearchExpression={"Filters": [{"Name": "Tags.owner", "Operator": "Exists"}]},
        MaxResults=100,
    )["Results"]
    arns = {h["Experiment"]["ExperimentArn"] for h in hits}
    assert mine in arns and theirs not in arns
    b_hits = b.search(
        Resource="Experiment",
        SearchExpression={"Filters": [{"Name": "Tags.owner", "Operator": "Exists"}]},
        MaxResults=100,
    )["Results"]
    assert theirs in {h["Experiment"]["ExperimentArn"] for h in b_hits}
    suggested = {
        s["PropertyName"]
        for s in a.get_search_suggestions(
            Resource="Experiment", SuggestionQuery={"PropertyNameQuery": {"PropertyNameHint": "Tags."}}
        )["PropertyNameSuggestions"]
    }
    assert "Tags.owner" in suggested and "Tags.b-secret-key" not in suggested


# -- Describe by ARN ------------------------------------------------------------------------------------------


def test_describe_update_delete_by_arn_find_nothing_of_another_account(as_, unique):
    a, b = as_(A), as_(B)
    names = {kind: unique(f"b-{kind}") for kind in ("context", "action", "exp", "trial", "tc", "pipe", "fg")}
    b.create_context(ContextName=names["context"], Source={"SourceUri": "s3://x/y"}, ContextType="t")
    b.create_action(ActionName=names["action"], Source={"SourceUri": "s3://x/y"}, ActionType="t")
    artifact = b.create_artifact(Source={"SourceUri": f"s3://b/{unique('art')}"}, ArtifactType="t")["ArtifactArn"]
    b.create_experiment(ExperimentName=names["exp"])
    b.create_trial(TrialName=names["trial"], ExperimentName=names["exp"])
    b.create_trial_component(TrialComponentName=names["tc"])
    b.create_model_package_group(ModelPackageGroupName=names["exp"])
    create_pipeline(b, names["pipe"], [{"Name": "Stop", "Type": "Fail", "Arguments": {"ErrorMessage": "x"}}])
    create_group(b, names["fg"], {"id": "String", "et": "Fractional"})

    attacks = [
        (a.describe_context, "ContextName", arn_of(B, f"context/{names['context']}")),
        (a.describe_action, "ActionName", arn_of(B, f"action/{names['action']}")),
        (a.describe_artifact, "ArtifactArn", artifact),
        (a.describe_experiment, "ExperimentName", arn_of(B, f"experiment/{names['exp']}")),
        (a.describe_trial, "TrialName", arn_of(B, f"experiment-trial/{names['trial']}")),
        (a.describe_trial_component, "TrialComponentName", arn_of(B, f"experiment-trial-component/{names['tc']}")),
        (a.describe_pipeline, "PipelineName", arn_of(B, f"pipeline/{names['pipe']}")),
        (a.describe_feature_group, "FeatureGroupName", arn_of(B, f"feature-group/{names['fg']}")),
        (a.update_context, "ContextName", arn_of(B, f"context/{names['context']}")),
        (a.update_action, "ActionName", arn_of(B, f"action/{names['action']}")),
        (a.update_trial_component, "TrialComponentName", arn_of(B, f"experiment-trial-component/{names['tc']}")),
        (a.delete_context, "ContextName", arn_of(B, f"context/{names['context']}")),
        (a.delete_action, "ActionName", arn_of(B, f"action/{names['action']}")),
        (a.delete_artifact, "ArtifactArn", artifact),
        (a.delete_trial, "TrialName", arn_of(B, f"experiment-trial/{names['trial']}")),
        (a.delete_trial_component, "TrialComponentName", arn_of(B, f"experiment-trial-component/{names['tc']}")),
        (a.delete_feature_group, "FeatureGroupName", arn_of(B, f"feature-group/{names['fg']}")),
    ]
    for call, member, arn in attacks:
        refused(call, *NOT_FOUND, **{member: arn})
    refused(
        a.delete_pipeline,
        *NOT_FOUND,
        PipelineName=arn_of(B, f"pipeline/{names['pipe']}"),
        ClientRequestToken=str(uuid.uuid4()),
    )
    # Nothing of B's changed or went away.
    assert b.describe_context(ContextName=names["context"]).get("Description") is None
    b.describe_action(ActionName=names["action"])
    b.describe_artifact(ArtifactArn=artifact)
    b.describe_trial(TrialName=names["trial"])
    b.describe_trial_component(TrialComponentName=names["tc"])
    b.describe_pipeline(PipelineName=names["pipe"])
    assert b.describe_feature_group(FeatureGroupName=names["fg"])["FeatureGroupStatus"] == "Created"

    # Positive control: by ARN works for the owner; and A's own ARN in another region names nothing.
    mine = unique("a-context")
    a.create_context(ContextName=mine, Source={"SourceUri": "s3://x/y"}, ContextType="t")
    assert a.describe_context(ContextName=arn_of(A, f"context/{mine}"))["ContextName"] == mine
    assert b.describe_context(ContextName=arn_of(B, f"context/{names['context']}"))["ContextName"] == names["context"]
    refused(a.describe_context, *NOT_FOUND, ContextName=arn_of(A, f"context/{mine}", region="eu-west-1"))
    refused(as_(A, region="eu-west-1").describe_context, *NOT_FOUND, ContextName=mine)


# -- lineage --------------------------------------------------------------------------------------------------


def test_lineage_never_joins_or_walks_into_another_account(as_, unique):
    a, b = as_(A), as_(B)
    b_source = b.create_context(ContextName=unique("b-src"), Source={"SourceUri": "s3://b/1"}, ContextType="t")[
        "ContextArn"
    ]
    b_target = b.create_action(ActionName=unique("b-dst"), Source={"SourceUri": "s3://b/2"}, ActionType="t")[
        "ActionArn"
    ]
    b.add_association(SourceArn=b_source, DestinationArn=b_target)
    a_source = a.create_context(ContextName=unique("a-src"), Source={"SourceUri": "s3://a/1"}, ContextType="t")[
        "ContextArn"
    ]
    a_target = a.create_action(ActionName=unique("a-dst"), Source={"SourceUri": "s3://a/2"}, ActionType="t")[
        "ActionArn"
    ]

    for source, destination in ((a_source, b_target), (b_source, a_target), (b_source, b_target)):
        refused(
            a.add_association, "ResourceNotFound", "ValidationException", SourceArn=source, DestinationArn=destination
        )
    refused(a.delete_association, "ResourceNotFound", SourceArn=b_source, DestinationArn=b_target)
    assert a.list_associations(SourceArn=b_source)["AssociationSummaries"] == []
    assert a.list_associations(DestinationArn=b_target)["AssociationSummaries"] == []
    refused(a.query_lineage, "ResourceNotFound", StartArns=[b_source], Direction="Both", IncludeEdges=True)
    # B's graph is whole.
    assert [s["DestinationArn"] for s in b.list_associations(SourceArn=b_source)["AssociationSummaries"]] == [b_target]
    assert {
        v["Arn"] for v in b.query_lineage(StartArns=[b_source], Direction="Both", IncludeEdges=True)["Vertices"]
    } == {b_source, b_target}

    # Lineage is regional too: from another region, A's own entities are not there.
    elsewhere = as_(A, region="eu-west-1")
    refused(elsewhere.add_association, "ResourceNotFound", SourceArn=a_source, DestinationArn=a_target)
    refused(elsewhere.query_lineage, "ResourceNotFound", StartArns=[a_source])

    # Positive control: A joins and walks its own entities.
    a.add_association(SourceArn=a_source, DestinationArn=a_target)
    walked = a.query_lineage(StartArns=[a_source], Direction="Descendants", IncludeEdges=True)
    assert {v["Arn"] for v in walked["Vertices"]} == {a_source, a_target}
    assert [(e["SourceArn"], e["DestinationArn"]) for e in walked["Edges"]] == [(a_source, a_target)]


# -- experiments and metrics ----------------------------------------------------------------------------------


def test_experiments_and_metrics_stay_in_their_account(as_, unique):
    a, b = as_(A), as_(B)
    b_exp, b_trial, b_tc = unique("b-exp"), unique("b-trial"), unique("b-tc")
    b.create_experiment(ExperimentName=b_exp)
    b_trial_arn = b.create_trial(TrialName=b_trial, ExperimentName=b_exp)["TrialArn"]
    b_tc_arn = b.create_trial_component(TrialComponentName=b_tc)["TrialComponentArn"]
    a_exp, a_trial, a_tc = unique("a-exp"), unique("a-trial"), unique("a-tc")
    a.create_experiment(ExperimentName=a_exp)
    a.create_trial(TrialName=a_trial, ExperimentName=a_exp)
    a.create_trial_component(TrialComponentName=a_tc)
    b.associate_trial_component(TrialComponentName=b_tc, TrialName=b_trial)

    exp_arn = arn_of(B, f"experiment/{b_exp}")
    refused(a.create_trial, *NOT_FOUND, TrialName=unique("planted"), ExperimentName=exp_arn)
    # By ARN (refused by the name pattern where the API takes names only) and by name (A has none of B's).
    for trial, component in (
        (b_trial_arn, a_tc),
        (a_trial, b_tc_arn),
        (b_trial_arn, b_tc_arn),
        (b_trial, a_tc),
        (a_trial, b_tc),
        (b_trial, b_tc),
    ):
        refused(a.associate_trial_component, *NOT_FOUND, TrialName=trial, TrialComponentName=component)
    for trial, component in ((b_trial_arn, b_tc_arn), (b_trial, b_tc)):
        refused(a.disassociate_trial_component, *NOT_FOUND, TrialName=trial, TrialComponentName=component)
    refused(a.create_trial, *NOT_FOUND, TrialName=unique("planted"), ExperimentName=b_exp)
    for experiment, trial in ((exp_arn, b_trial_arn), (b_exp, b_trial)):
        refused(a.list_trials, *NOT_FOUND, ExperimentName=experiment)
        refused(a.list_trial_components, *NOT_FOUND, TrialName=trial)
        refused(a.list_trial_components, *NOT_FOUND, ExperimentName=experiment)
    metrics = as_(A, "sagemaker-metrics")
    datum = [{"MetricName": "loss", "Timestamp": time.time(), "Value": 0.5, "Step": 1}]
    for component in (b_tc_arn, b_tc):
        refused(metrics.batch_put_metrics, *NOT_FOUND, TrialComponentName=component, MetricData=datum)
    got = metrics.batch_get_metrics(
        MetricQueries=[
            {
                "MetricName": "loss",
                "ResourceArn": b_tc_arn,
                "MetricStat": "Avg",
                "Period": "IterationNumber",
                "XAxisType": "IterationNumber",
            }
        ]
    )["MetricQueryResults"][0]
    assert got["Status"] == "ValidationError" and got["MetricValues"] == []
    # B's experiment, trial and component are as B left them.
    assert [t["TrialName"] for t in b.list_trials(ExperimentName=b_exp)["TrialSummaries"]] == [b_trial]
    assert [c["TrialComponentName"] for c in b.list_trial_components(TrialName=b_trial)["TrialComponentSummaries"]] == [
        b_tc
    ]
    assert b.describe_trial_component(TrialComponentName=b_tc).get("Metrics") is None

    # Positive control: all of it works on A's own.
    a.associate_trial_component(TrialName=a_trial, TrialComponentName=a_tc)
    metrics.batch_put_metrics(TrialComponentName=a_tc, MetricData=datum)
    assert [m["MetricName"] for m in a.describe_trial_component(TrialComponentName=a_tc)["Metrics"]] == ["loss"]
    a.disassociate_trial_component(TrialName=a_trial, TrialComponentName=a_tc)


# -- the model registry ---------------------------------------------------------------------------------------


def _package(**extra) -> dict:
    return {
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        **extra,
    }


def test_registry_is_shared_only_by_the_groups_policy(as_, unique):
    a, b = as_(A), as_(B)
    group = unique("b-group")
    group_arn = b.create_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
    version_arn = b.create_model_package(ModelPackageGroupName=group, **_package())["ModelPackageArn"]
    unversioned = b.create_model_package(ModelPackageName=unique("b-pkg"), **_package())["ModelPackageArn"]

    # Without a policy: nothing of B's registry is A's to read or change.
    denied = ("AccessDeniedException",)
    refused(a.describe_model_package_group, *denied, ModelPackageGroupName=group_arn)
    refused(a.create_model_package, *denied, ModelPackageGroupName=group_arn, **_package())
    refused(a.list_model_packages, *denied, ModelPackageGroupName=group_arn)
    for arn in (version_arn, unversioned):
        refused(a.describe_model_package, *denied, ModelPackageName=arn)
        refused(a.update_model_package, *denied, ModelPackageArn=arn, ModelApprovalStatus="Approved")
        refused(a.delete_model_package, *denied, ModelPackageName=arn)
    refused(a.delete_model_package_group, *denied, ModelPackageGroupName=group_arn)
    refused(a.get_model_package_group_policy, "ValidationException", ModelPackageGroupName=group_arn)
    refused(
        a.put_model_package_group_policy,
        "ValidationException",
        ModelPackageGroupName=group_arn,
        ResourcePolicy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{A.account}:root"},
                        "Action": "sagemaker:*",
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    assert [
        p["ModelPackageArn"] for p in b.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    ] == [version_arn]
    assert b.describe_model_package(ModelPackageName=version_arn)["ModelApprovalStatus"] == "PendingManualApproval"
    refused(b.get_model_package_group_policy, "ValidationException", ModelPackageGroupName=group)  # A put none

    # B's policy lets A register and describe versions, and nothing else.
    b.put_model_package_group_policy(
        ModelPackageGroupName=group,
        ResourcePolicy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{A.account}:root"},
                        "Action": [
                            "sagemaker:CreateModelPackage",
                            "sagemaker:DescribeModelPackage",
                            "sagemaker:DescribeModelPackageGroup",
                        ],
                        "Resource": [group_arn, group_arn.replace(":model-package-group/", ":model-package/") + "/*"],
                    }
                ],
            }
        ),
    )
    shared = a.create_model_package(ModelPackageGroupName=group_arn, **_package())["ModelPackageArn"]
    assert shared.startswith(f"arn:aws:sagemaker:{REGION}:{B.account}:model-package/")
    assert a.describe_model_package(ModelPackageName=version_arn)["ModelPackageArn"] == version_arn
    refused(a.update_model_package, *denied, ModelPackageArn=version_arn, ModelApprovalStatus="Approved")
    refused(a.delete_model_package, *denied, ModelPackageName=version_arn)
    refused(a.describe_model_package, *denied, ModelPackageName=unversioned)  # no group, no policy
    assert b.describe_model_package(ModelPackageName=version_arn)["ModelApprovalStatus"] == "PendingManualApproval"


# -- pipelines ------------------------------------------------------------------------------------------------


def _receive(sqs, url: str, timeout: float = 60) -> dict:
    def one():
        return sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages")

    return until(one, timeout, f"a message in {url}")[0]


def test_pipeline_executions_and_callbacks_stay_in_their_account(as_, unique):
    a, b, b_sqs, a_sqs = as_(A), as_(B), as_(B, "sqs"), as_(A, "sqs")
    queue = b_sqs.create_queue(QueueName=unique("b-callbacks"))["QueueUrl"]
    name = unique("b-pipe")
    pipeline_arn = create_pipeline(
        b, name, [{"Name": "Ask", "Type": "Callback", "SqsQueueUrl": queue, "Arguments": {}}]
    )
    execution = start_pipeline(b, name)
    token = json.loads(_receive(b_sqs, queue)["Body"])["token"]

    refused(a.describe_pipeline_execution, "ResourceNotFound", PipelineExecutionArn=execution)
    refused(a.list_pipeline_execution_steps, "ResourceNotFound", PipelineExecutionArn=execution)
    refused(a.list_pipeline_parameters_for_execution, "ResourceNotFound", PipelineExecutionArn=execution)
    refused(a.describe_pipeline_definition_for_execution, "ResourceNotFound", PipelineExecutionArn=execution)
    refused(
        a.update_pipeline_execution,
        "ResourceNotFound",
        PipelineExecutionArn=execution,
        PipelineExecutionDescription="mine now",
    )
    refused(
        a.stop_pipeline_execution,
        "ResourceNotFound",
        PipelineExecutionArn=execution,
        ClientRequestToken=str(uuid.uuid4()),
    )
    refused(
        a.retry_pipeline_execution,
        "ResourceNotFound",
        PipelineExecutionArn=execution,
        ClientRequestToken=str(uuid.uuid4()),
    )
    refused(a.send_pipeline_execution_step_success, "ValidationException", CallbackToken=token)
    refused(a.send_pipeline_execution_step_failure, "ValidationException", CallbackToken=token)
    refused(
        a.start_pipeline_execution, "ResourceNotFound", PipelineName=pipeline_arn, ClientRequestToken=str(uuid.uuid4())
    )
    refused(a.list_pipeline_executions, "ResourceNotFound", PipelineName=pipeline_arn)
    refused(a.describe_pipeline, "ResourceNotFound", PipelineName=pipeline_arn)
    # A's own pipeline of the same name cannot reuse B's execution's steps (selective execution).
    create_pipeline(a, name, [{"Name": "Ask", "Type": "Callback", "SqsQueueUrl": queue, "Arguments": {}}])
    refused(
        a.start_pipeline_execution,
        "ResourceNotFound",
        PipelineName=name,
        ClientRequestToken=str(uuid.uuid4()),
        SelectiveExecutionConfig={"SourcePipelineExecutionArn": execution, "SelectedSteps": [{"StepName": "Ask"}]},
    )

    # B's execution is untouched, still waiting on its callback, which B answers.
    found = b.describe_pipeline_execution(PipelineExecutionArn=execution)
    assert found["PipelineExecutionStatus"] == "Executing" and found.get("PipelineExecutionDescription") is None
    b.send_pipeline_execution_step_success(CallbackToken=token)
    assert wait_pipeline(b, execution)["PipelineExecutionStatus"] == "Succeeded"

    # A's pipeline names B's queue in its callback step: A's execution fails, B's queue gets nothing.
    planted = start_pipeline(a, name)
    done = wait_pipeline(a, planted)
    assert done["PipelineExecutionStatus"] == "Failed"
    assert b_sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages") is None

    # Positive control: A's callback pipeline on A's queue gets its message and its answer.
    a_queue = a_sqs.create_queue(QueueName=unique("a-callbacks"))["QueueUrl"]
    own = unique("a-pipe")
    create_pipeline(a, own, [{"Name": "Ask", "Type": "Callback", "SqsQueueUrl": a_queue, "Arguments": {}}])
    mine = start_pipeline(a, own)
    a.send_pipeline_execution_step_success(CallbackToken=json.loads(_receive(a_sqs, a_queue)["Body"])["token"])
    assert wait_pipeline(a, mine)["PipelineExecutionStatus"] == "Succeeded"


# -- SQS ------------------------------------------------------------------------------------------------------


def test_sqs_queue_urls_of_another_account_are_not_found(as_, unique):
    a, b = as_(A, "sqs"), as_(B, "sqs")
    queue_name = unique("b-queue")
    theirs = b.create_queue(QueueName=queue_name)["QueueUrl"]
    b.send_message(QueueUrl=theirs, MessageBody="b's secret")
    gone = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")

    refused(a.send_message, *gone, QueueUrl=theirs, MessageBody="planted")
    refused(a.send_message_batch, *gone, QueueUrl=theirs, Entries=[{"Id": "1", "MessageBody": "planted"}])
    refused(a.receive_message, *gone, QueueUrl=theirs, WaitTimeSeconds=0)
    refused(a.purge_queue, *gone, QueueUrl=theirs)
    refused(a.get_queue_attributes, *gone, QueueUrl=theirs, AttributeNames=["All"])
    refused(a.set_queue_attributes, *gone, QueueUrl=theirs, Attributes={"VisibilityTimeout": "0"})
    refused(a.delete_queue, *gone, QueueUrl=theirs)
    refused(a.tag_queue, *gone, QueueUrl=theirs, Tags={"owner": "a"})
    refused(a.get_queue_url, *gone, QueueName=queue_name, QueueOwnerAWSAccountId=B.account)
    refused(a.get_queue_url, *gone, QueueName=queue_name)
    assert theirs not in a.list_queues(QueueNamePrefix=queue_name).get("QueueUrls", [])
    # A's own queue cannot make B's queue its dead-letter queue.
    mine = a.create_queue(QueueName=unique("a-queue"))["QueueUrl"]
    b_arn = f"arn:aws:sqs:{REGION}:{B.account}:{queue_name}"
    refused(
        a.set_queue_attributes,
        "InvalidParameterValue",
        "InvalidAttributeValue",
        QueueUrl=mine,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": b_arn, "maxReceiveCount": 1})},
    )
    # A's receipt handle does not work on... A's queue for B's message, nor B's on A's queue.
    received = b.receive_message(QueueUrl=theirs, WaitTimeSeconds=1, VisibilityTimeout=0)["Messages"][0]
    assert received["Body"] == "b's secret"
    refused(a.delete_message, "ReceiptHandleIsInvalid", QueueUrl=mine, ReceiptHandle=received["ReceiptHandle"])
    refused(a.delete_message, *gone, QueueUrl=theirs, ReceiptHandle=received["ReceiptHandle"])
    # B's message is still there, and nothing was planted.
    bodies = [
        m["Body"]
        for m in until(
            lambda: b.receive_message(QueueUrl=theirs, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages")
        )
    ]
    assert bodies == ["b's secret"]
    # Positive control: A uses its own URL.
    a.send_message(QueueUrl=mine, MessageBody="a")
    assert a.receive_message(QueueUrl=mine, WaitTimeSeconds=1)["Messages"][0]["Body"] == "a"


# -- CloudWatch -----------------------------------------------------------------------------------------------


def test_cloudwatch_metrics_and_alarms_stay_in_their_account(as_, unique):
    a, b = as_(A, "cloudwatch"), as_(B, "cloudwatch")
    namespace = unique("Accounts/Wall")
    now = time.time()
    b.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "secret", "Value": 42.0, "Timestamp": now}])
    query = [
        {
            "Id": "q",
            "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": "secret"}, "Period": 60, "Stat": "Sum"},
        }
    ]
    window = {"StartTime": now - 600, "EndTime": now + 600}
    assert b.get_metric_data(MetricDataQueries=query, **window)["MetricDataResults"][0]["Values"] == [42.0]
    assert a.get_metric_data(MetricDataQueries=query, **window)["MetricDataResults"][0]["Values"] == []
    refused(
        a.get_metric_data,
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "ValidationError",
        "NotSupported",
        "UnsupportedOperation",
        MetricDataQueries=[{**query[0], "AccountId": B.account}],
        **window,
    )
    assert (
        a.get_metric_statistics(Namespace=namespace, MetricName="secret", Period=60, Statistics=["Sum"], **window)[
            "Datapoints"
        ]
        == []
    )
    assert a.list_metrics(Namespace=namespace)["Metrics"] == []

    alarm = unique("b-alarm")
    b.put_metric_alarm(
        AlarmName=alarm,
        Namespace=namespace,
        MetricName="secret",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    alarm_arn = f"arn:aws:cloudwatch:{REGION}:{B.account}:alarm:{alarm}"
    refused(a.tag_resource, "ResourceNotFoundException", ResourceARN=alarm_arn, Tags=[{"Key": "k", "Value": "v"}])
    refused(a.list_tags_for_resource, "ResourceNotFoundException", ResourceARN=alarm_arn)
    refused(a.delete_alarms, "ResourceNotFound", "ResourceNotFoundException", AlarmNames=[alarm])
    refused(
        a.set_alarm_state,
        "ResourceNotFound",
        "ResourceNotFoundException",
        AlarmName=alarm,
        StateValue="OK",
        StateReason="mine",
    )
    assert a.describe_alarms(AlarmNames=[alarm])["MetricAlarms"] == []
    assert [x["AlarmName"] for x in b.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]] == [alarm]
    assert b.list_tags_for_resource(ResourceARN=alarm_arn)["Tags"] == []

    # Positive control: A reads its own metric.
    a.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "secret", "Value": 1.0, "Timestamp": now}])
    assert a.get_metric_data(MetricDataQueries=query, **window)["MetricDataResults"][0]["Values"] == [1.0]


# -- feature store runtime ------------------------------------------------------------------------------------


def test_feature_store_runtime_reaches_only_its_own_groups(as_, unique):
    a, b = as_(A), as_(B)
    a_rt, b_rt = as_(A, "sagemaker-featurestore-runtime"), as_(B, "sagemaker-featurestore-runtime")
    name = unique("b-fg")
    theirs = create_group(b, name, {"id": "String", "et": "Fractional", "v": "String"})["FeatureGroupArn"]
    b_rt.put_record(FeatureGroupName=name, Record=record(id="1", et="1.0", v="b's secret"))
    missing = ("ResourceNotFound", "ValidationError", "ValidationException")

    for group in (name, theirs):
        refused(a_rt.get_record, *missing, FeatureGroupName=group, RecordIdentifierValueAsString="1")
        refused(a_rt.put_record, *missing, FeatureGroupName=group, Record=record(id="1", et="9.0", v="planted"))
        refused(
            a_rt.delete_record, *missing, FeatureGroupName=group, RecordIdentifierValueAsString="1", EventTime="9.0"
        )
    batch = a_rt.batch_get_record(Identifiers=[{"FeatureGroupName": theirs, "RecordIdentifiersValueAsString": ["1"]}])
    assert batch["Records"] == [] and (batch["Errors"] or batch["UnprocessedIdentifiers"])
    written = a_rt.batch_write_record(
        Entries=[{"FeatureGroupName": theirs, "Record": record(id="1", et="9.0", v="planted")}]
    )
    assert written["Errors"] or written["UnprocessedEntries"]
    # A's group with B's name: A's ARN spelled with another region or resource type names nothing.
    create_group(a, name, {"id": "String", "et": "Fractional", "v": "String"})
    a_rt.put_record(FeatureGroupName=name, Record=record(id="1", et="2.0", v="a's own"))
    for wrong in (arn_of(A, f"feature-group/{name}", region="eu-west-1"), arn_of(A, f"model/{name}")):
        refused(a_rt.get_record, *missing, FeatureGroupName=wrong, RecordIdentifierValueAsString="1")
    # B's record is as B wrote it.
    got = b_rt.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="1")["Record"]
    assert {f["FeatureName"]: f["ValueAsString"] for f in got}["v"] == "b's secret"

    # Positive control: A writes and reads its own group by name and by ARN.
    mine = arn_of(A, f"feature-group/{name}")
    got = a_rt.get_record(FeatureGroupName=mine, RecordIdentifierValueAsString="1")["Record"]
    assert {f["FeatureName"]: f["ValueAsString"] for f in got}["v"] == "a's own"


# -- Athena ---------------------------------------------------------------------------------------------------


def test_athena_query_ids_of_another_account_are_not_found(as_, unique):
    a, b = as_(A, "athena"), as_(B, "athena")
    bucket = unique("b-athena")
    as_(B, "s3").create_bucket(Bucket=bucket)
    query_id = b.start_query_execution(
        QueryString="SELECT 42 AS answer", ResultConfiguration={"OutputLocation": f"s3://{bucket}/out/"}
    )["QueryExecutionId"]
    state = until(
        lambda: (
            b.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]["State"]
            not in ("QUEUED", "RUNNING")
            and b.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]["State"]
        ),
        30,
    )
    assert state == "SUCCEEDED"

    for call in (a.get_query_execution, a.get_query_results, a.stop_query_execution):
        refused(call, "InvalidRequestException", QueryExecutionId=query_id)
    # Query ids are regional: B's own id from another region is not found.
    refused(
        as_(B, "athena", region="eu-west-1").get_query_execution, "InvalidRequestException", QueryExecutionId=query_id
    )
    # Positive control: B reads its own results.
    rows = b.get_query_results(QueryExecutionId=query_id)["ResultSet"]["Rows"]
    assert rows[-1]["Data"][0]["VarCharValue"] == "42"
