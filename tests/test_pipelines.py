"""Pipelines through boto3: the operations, definition validation, and executions that really run.

The steps are small processing jobs on an image mapped to the host's Python
(no runtime to build), so an execution takes about as long as its jobs.
"""

from __future__ import annotations

import itertools
import json
import uuid

import pytest
from botocore.exceptions import ClientError

from support.pipelines import (
    ROLE,
    create,
    definition,
    processing,
    runtimes_config,
    s3_input,
    s3_output,
    start,
    steps,
    wait,
)
from support.waiting import wait_for

pytestmark = pytest.mark.both_databases

BUCKET = "pipelines-tests"


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory):
    config = runtimes_config(tmp_path_factory.mktemp("pipelines-config"))
    server = make_server("pipelines", env={"SELFMAKER_RUNTIMES_CONFIG": config}).start()
    yield server
    server.stop()


@pytest.fixture
def sm(client, srv):
    return client("sagemaker", srv)


@pytest.fixture
def s3(client, srv):
    s3 = client("s3", srv)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except ClientError:
        pass
    return s3


def error(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


NOOP = processing("Noop", "print('hello')")


# -- pipelines and versions ----------------------------------------------------------------------------


def test_create_describe_update_versions_delete(sm, unique):
    name = unique("pipe")
    token = str(uuid.uuid4())
    text = definition([NOOP])
    arn = sm.create_pipeline(
        PipelineName=name,
        RoleArn=ROLE,
        ClientRequestToken=token,
        PipelineDefinition=text,
        PipelineDescription="first",
        Tags=[{"Key": "team", "Value": "ml"}],
    )["PipelineArn"]
    assert arn.endswith(f":pipeline/{name.lower()}")
    # The same request again answers the same pipeline; another request for the name is refused.
    assert (
        sm.create_pipeline(PipelineName=name, RoleArn=ROLE, ClientRequestToken=token, PipelineDefinition=text)[
            "PipelineArn"
        ]
        == arn
    )
    code, message = error(
        sm.create_pipeline,
        PipelineName=name,
        RoleArn=ROLE,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineDefinition=text,
    )
    assert code == "ValidationException" and "already exists" in message

    described = sm.describe_pipeline(PipelineName=name)
    assert described["PipelineDefinition"] == text and described["PipelineStatus"] == "Active"
    assert described["PipelineDisplayName"] == name and described["PipelineDescription"] == "first"
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]

    second = definition([NOOP, processing("Other", "print(2)")])
    updated = sm.update_pipeline(PipelineName=name, PipelineDefinition=second, PipelineDescription="second")
    assert updated == {"PipelineArn": arn, "PipelineVersionId": 2, "ResponseMetadata": updated["ResponseMetadata"]}
    assert sm.describe_pipeline(PipelineName=arn)["PipelineDefinition"] == second
    assert sm.describe_pipeline(PipelineName=name, PipelineVersionId=1)["PipelineDefinition"] == text
    sm.update_pipeline_version(PipelineArn=arn, PipelineVersionId=1, PipelineVersionDisplayName="v-one")
    versions = sm.list_pipeline_versions(PipelineName=name)["PipelineVersionSummaries"]
    assert [v["PipelineVersionId"] for v in versions] == [2, 1]
    assert versions[1]["PipelineVersionDisplayName"] == "v-one"
    first_page = sm.list_pipeline_versions(PipelineName=name, SortOrder="Ascending", MaxResults=1)
    assert [v["PipelineVersionId"] for v in first_page["PipelineVersionSummaries"]] == [1]
    rest = sm.list_pipeline_versions(PipelineName=name, SortOrder="Ascending", NextToken=first_page["NextToken"])
    assert [v["PipelineVersionId"] for v in rest["PipelineVersionSummaries"]] == [2]

    listed = sm.list_pipelines(PipelineNamePrefix=name)["PipelineSummaries"]
    assert [p["PipelineName"] for p in listed] == [name]
    assert "PipelineDefinition" not in listed[0]

    assert sm.delete_pipeline(PipelineName=name, ClientRequestToken=str(uuid.uuid4()))["PipelineArn"] == arn
    assert error(sm.describe_pipeline, PipelineName=name)[0] == "ResourceNotFound"
    assert error(sm.list_pipeline_versions, PipelineName=name)[0] == "ResourceNotFound"


def test_definition_from_s3(sm, s3, unique):
    name = unique("pipe-s3")
    text = definition([NOOP])
    s3.put_object(Bucket=BUCKET, Key=f"{name}/definition.json", Body=text.encode())
    sm.create_pipeline(
        PipelineName=name,
        RoleArn=ROLE,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineDefinitionS3Location={"Bucket": BUCKET, "ObjectKey": f"{name}/definition.json"},
    )
    assert sm.describe_pipeline(PipelineName=name)["PipelineDefinition"] == text
    code, message = error(
        sm.create_pipeline,
        PipelineName=unique("pipe-s3"),
        RoleArn=ROLE,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineDefinitionS3Location={"Bucket": BUCKET, "ObjectKey": "missing.json"},
    )
    assert code == "ValidationException" and "missing.json" in message


@pytest.mark.parametrize(
    "steps_, parameters, expected",
    [
        ("not json", None, "Unable to parse pipeline definition. Expecting start of Json Object."),
        ("{not json", None, "not valid JSON"),
        ([NOOP, NOOP], None, "Noop"),
        ([processing("A", "1", DependsOn=["Nowhere"])], None, "Nowhere"),
        ([processing("A", "1", DependsOn=["B"]), processing("B", "1", DependsOn=["A"])], None, "cycle"),
        (
            [{"Name": "L", "Type": "Lambda", "Arguments": {}, "FunctionArn": "arn:aws:lambda:us-east-1:1:function:f"}],
            None,
            "Lambda",
        ),
        ([{"Name": "A", "Type": "Processing", "Arguments": "x"}], None, "A"),
        (
            [{"Name": "F", "Type": "Fail", "Arguments": {"ErrorMessage": {"Get": "Parameters.Missing"}}}],
            None,
            "Missing",
        ),
        ([NOOP], [{"Name": "N", "Type": "Integer", "DefaultValue": "x"}], "N"),
    ],
)
def test_invalid_definitions_are_refused(sm, unique, steps_, parameters, expected):
    text = steps_ if isinstance(steps_, str) else definition(steps_, parameters)
    name = unique("bad")
    code, message = error(
        sm.create_pipeline,
        PipelineName=name,
        RoleArn=ROLE,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineDefinition=text,
    )
    assert code == "ValidationException" and expected in message, message
    assert error(sm.describe_pipeline, PipelineName=name)[0] == "ResourceNotFound"


def test_unknown_things_are_not_found(sm):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/nope/execution/abcdefghijkl"
    assert error(sm.describe_pipeline_execution, PipelineExecutionArn=arn)[0] == "ResourceNotFound"
    assert error(sm.start_pipeline_execution, PipelineName="nope", ClientRequestToken="t" * 32)[0] == "ResourceNotFound"
    code, _ = error(sm.send_pipeline_execution_step_success, CallbackToken="abcdefghij")
    assert code == "ValidationException"


# -- executions ----------------------------------------------------------------------------------------

EVALUATE = """
    import json, os
    os.makedirs('/opt/ml/processing/evaluation', exist_ok=True)
    score = float(open('/opt/ml/processing/input/score.txt').read())
    json.dump({'metrics': {'score': {'value': score}}}, open('/opt/ml/processing/evaluation/evaluation.json', 'w'))
"""


def classic(prefix: str) -> tuple[list, list]:
    """Prepare -> Evaluate (property file) -> Condition on JsonGet -> Report, or else Fail."""
    out = {
        "Std:Join": {
            "On": "/",
            "Values": [f"s3://{BUCKET}/{prefix}", {"Get": "Execution.PipelineExecutionId"}, "score"],
        }
    }
    prepare = processing(
        "Prepare",
        """
        import os, sys
        os.makedirs('/opt/ml/processing/score', exist_ok=True)
        open('/opt/ml/processing/score/score.txt', 'w').write(sys.argv[1])
    """,
        outputs=[s3_output("score", out, "/opt/ml/processing/score")],
    )
    prepare["Arguments"]["AppSpecification"]["ContainerArguments"] = [{"Get": "Parameters.Score"}]
    evaluate = processing(
        "Evaluate",
        EVALUATE,
        inputs=[
            s3_input(
                "score",
                {"Get": "Steps.Prepare.ProcessingOutputConfig.Outputs['score'].S3Output.S3Uri"},
                "/opt/ml/processing/input",
            )
        ],
        outputs=[s3_output("evaluation", f"s3://{BUCKET}/{prefix}/evaluation", "/opt/ml/processing/evaluation")],
        PropertyFiles=[{"PropertyFileName": "Report", "OutputName": "evaluation", "FilePath": "evaluation.json"}],
    )
    report = processing("Report", "print('good model')")
    fail = {
        "Name": "TooLow",
        "Type": "Fail",
        "Arguments": {
            "ErrorMessage": {"Std:Join": {"On": " ", "Values": ["Score below", {"Get": "Parameters.Threshold"}]}}
        },
    }
    condition = {
        "Name": "Good",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": {
                        "Std:JsonGet": {
                            "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.Report"},
                            "Path": "metrics.score.value",
                        }
                    },
                    "RightValue": {"Get": "Parameters.Threshold"},
                }
            ],
            "IfSteps": [report],
            "ElseSteps": [fail],
        },
    }
    parameters = [
        {"Name": "Score", "Type": "String", "DefaultValue": "0.5"},
        {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.7},
    ]
    return [prepare, evaluate, condition], parameters


@pytest.fixture(scope="module")
def classic_pipeline(module_client, srv):
    sm, s3 = module_client("sagemaker", srv), module_client("s3", srv)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except ClientError:
        pass
    name = f"classic-{uuid.uuid4().hex[:8]}"
    steps_, parameters = classic(name)
    create(sm, name, steps_, parameters)
    return name


def test_execution_takes_the_if_branch(sm, classic_pipeline):
    arn = start(sm, classic_pipeline, {"Score": 0.9}, PipelineExecutionDisplayName="good-run")
    assert arn.startswith(sm.describe_pipeline(PipelineName=classic_pipeline)["PipelineArn"] + "/execution/")
    done = wait(sm, arn)
    assert done["PipelineExecutionStatus"] == "Succeeded", done
    assert done["PipelineExecutionDisplayName"] == "good-run" and done["PipelineVersionId"] == 1
    assert done["PipelineExperimentConfig"] == {"ExperimentName": classic_pipeline, "TrialName": arn.rsplit("/", 1)[-1]}
    found = steps(sm, arn)
    assert set(found) == {"Prepare", "Evaluate", "Good", "Report"}
    assert {s["StepStatus"] for s in found.values()} == {"Succeeded"}
    assert found["Good"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    job_arn = found["Evaluate"]["Metadata"]["ProcessingJob"]["Arn"]
    job = sm.describe_processing_job(ProcessingJobName=job_arn.rsplit("/", 1)[-1])
    assert job["ProcessingJobStatus"] == "Completed" and job["ProcessingJobName"].startswith("pipelines-")
    assert found["Prepare"]["AttemptCount"] == 1
    # Newest first; each step starts after what it depends on ended.
    listed = sm.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"]
    assert [s["StepName"] for s in listed] == ["Report", "Good", "Evaluate", "Prepare"]
    assert found["Evaluate"]["StartTime"] >= found["Prepare"]["EndTime"]
    # The parameters it ran with, and the definition it started from.
    parameters = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in parameters} == {"Score": "0.9", "Threshold": "0.7"}
    text = sm.describe_pipeline_definition_for_execution(PipelineExecutionArn=arn)["PipelineDefinition"]
    assert json.loads(text)["Steps"][0]["Name"] == "Prepare"
    # The jobs' trial components joined the execution's trial.
    components = sm.list_trial_components(TrialName=arn.rsplit("/", 1)[-1])["TrialComponentSummaries"]
    assert len(components) == 3
    # Lineage: the execution is a context its jobs' trial components contributed to.
    context = sm.describe_context(ContextName=f"pipeline-execution-{arn.rsplit('/', 1)[-1]}")
    assert context["ContextType"] == "PipelineExecution" and context["Source"]["SourceUri"] == arn
    linked = sm.list_associations(DestinationArn=context["ContextArn"])["AssociationSummaries"]
    assert sorted(a["SourceArn"] for a in linked) == sorted(c["TrialComponentArn"] for c in components)
    summaries = sm.list_pipeline_executions(PipelineName=classic_pipeline)["PipelineExecutionSummaries"]
    assert arn in [s["PipelineExecutionArn"] for s in summaries]
    # Search finds pipelines and executions.
    found = sm.search(
        Resource="PipelineExecution",
        SearchExpression={"Filters": [{"Name": "PipelineExecutionArn", "Operator": "Equals", "Value": arn}]},
    )["Results"]
    assert [r["PipelineExecution"]["PipelineExecutionStatus"] for r in found] == ["Succeeded"]
    found = sm.search(
        Resource="Pipeline",
        SearchExpression={"Filters": [{"Name": "PipelineName", "Operator": "Equals", "Value": classic_pipeline}]},
    )["Results"]
    assert [r["Pipeline"]["PipelineName"] for r in found] == [classic_pipeline]


def test_execution_takes_the_else_branch_and_fails(sm, classic_pipeline):
    arn = start(sm, classic_pipeline, {"Score": "0.1", "Threshold": "0.25"})
    done = wait(sm, arn)
    assert done["PipelineExecutionStatus"] == "Failed"
    assert done["FailureReason"] == "Score below 0.25"
    found = steps(sm, arn)
    assert set(found) == {"Prepare", "Evaluate", "Good", "TooLow"}
    assert found["Good"]["Metadata"] == {"Condition": {"Outcome": "False"}}
    assert found["TooLow"]["StepStatus"] == "Failed"
    assert found["TooLow"]["Metadata"] == {"Fail": {"ErrorMessage": "Score below 0.25"}}
    summary = sm.list_pipeline_executions(PipelineName=classic_pipeline)["PipelineExecutionSummaries"]
    assert (
        next(s for s in summary if s["PipelineExecutionArn"] == arn)["PipelineExecutionFailureReason"]
        == "Score below 0.25"
    )


def test_start_is_idempotent_and_checks_parameters(sm, classic_pipeline):
    token = str(uuid.uuid4())
    first = sm.start_pipeline_execution(PipelineName=classic_pipeline, ClientRequestToken=token)
    again = sm.start_pipeline_execution(PipelineName=classic_pipeline, ClientRequestToken=token)
    assert first["PipelineExecutionArn"] == again["PipelineExecutionArn"]
    code, message = error(
        sm.start_pipeline_execution,
        PipelineName=classic_pipeline,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineParameters=[{"Name": "Threshold", "Value": "high"}],
    )
    assert code == "ValidationException" and "Threshold" in message
    code, message = error(
        sm.start_pipeline_execution,
        PipelineName=classic_pipeline,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineParameters=[{"Name": "Nope", "Value": "1"}],
    )
    assert code == "ValidationException" and "Nope" in message
    wait(sm, first["PipelineExecutionArn"])


def test_cache_hit_on_rerun(sm, unique):
    name = unique("cached")
    cached = processing("Slowish", "print('computing')", CacheConfig={"Enabled": True, "ExpireAfter": "PT1H"})
    after = processing("After", "print('after')", DependsOn=["Slowish"])
    create(sm, name, [cached, after])
    first = start(sm, name)
    assert wait(sm, first)["PipelineExecutionStatus"] == "Succeeded"
    second = start(sm, name)
    assert wait(sm, second)["PipelineExecutionStatus"] == "Succeeded"
    one, two = steps(sm, first), steps(sm, second)
    assert "CacheHitResult" not in one["Slowish"]
    assert two["Slowish"]["CacheHitResult"] == {"SourcePipelineExecutionArn": first}
    assert two["Slowish"]["Metadata"] == one["Slowish"]["Metadata"]  # the earlier job
    assert "CacheHitResult" not in two["After"]
    assert two["After"]["Metadata"] != one["After"]["Metadata"]


def test_retry_execution_from_its_failed_step(sm, s3, unique):
    name = unique("retry")
    flag = f"s3://{BUCKET}/{name}/flag/"
    s3.put_object(Bucket=BUCKET, Key=f"{name}/flag/flag.txt", Body=b"fail")
    first = processing("First", "print('once')")
    flaky = processing(
        "Flaky",
        """
        import sys
        sys.exit(0 if open('/opt/ml/processing/flag/flag.txt').read() == 'ok' else 3)
    """,
        inputs=[s3_input("flag", flag, "/opt/ml/processing/flag")],
        DependsOn=["First"],
    )
    create(sm, name, [first, flaky])
    arn = start(sm, name)
    failed = wait(sm, arn)
    assert failed["PipelineExecutionStatus"] == "Failed"
    assert failed["FailureReason"] == "Step failure: One or multiple steps failed."
    before = steps(sm, arn)
    assert before["Flaky"]["StepStatus"] == "Failed" and "exit code 3" in before["Flaky"]["FailureReason"]

    s3.put_object(Bucket=BUCKET, Key=f"{name}/flag/flag.txt", Body=b"ok")
    token = str(uuid.uuid4())
    assert (
        sm.retry_pipeline_execution(PipelineExecutionArn=arn, ClientRequestToken=token)["PipelineExecutionArn"] == arn
    )
    sm.retry_pipeline_execution(PipelineExecutionArn=arn, ClientRequestToken=token)  # the same retry: no-op
    done = wait(sm, arn)
    assert done["PipelineExecutionStatus"] == "Succeeded" and "FailureReason" not in done
    after = steps(sm, arn)
    assert after["First"]["Metadata"] == before["First"]["Metadata"]  # not run again
    assert after["Flaky"]["StepStatus"] == "Succeeded" and after["Flaky"]["AttemptCount"] == 2
    assert after["Flaky"]["Metadata"] != before["Flaky"]["Metadata"]
    code, _ = error(sm.retry_pipeline_execution, PipelineExecutionArn=arn, ClientRequestToken=str(uuid.uuid4()))
    assert code == "ValidationException"


def test_stop_stops_running_jobs(sm, unique):
    name = unique("stop")
    create(
        sm,
        name,
        [processing("Sleep", "import time; time.sleep(120)"), processing("Never", "print(1)", DependsOn=["Sleep"])],
    )
    arn = start(sm, name)
    running = wait(sm, arn, until={"Executing"})
    assert running["PipelineExecutionStatus"] == "Executing"
    wait_for(
        lambda: steps(sm, arn).get("Sleep", {}).get("StepStatus"),
        lambda status: status == "Executing",
        what="the Sleep step to be executing",
    )
    sm.stop_pipeline_execution(PipelineExecutionArn=arn, ClientRequestToken=str(uuid.uuid4()))
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] in (
        "Stopping",
        "Stopped",
    )
    done = wait(sm, arn)
    assert done["PipelineExecutionStatus"] == "Stopped"
    found = steps(sm, arn)
    assert set(found) == {"Sleep"} and found["Sleep"]["StepStatus"] == "Stopped"
    job = found["Sleep"]["Metadata"]["ProcessingJob"]["Arn"].rsplit("/", 1)[-1]
    assert sm.describe_processing_job(ProcessingJobName=job)["ProcessingJobStatus"] == "Stopped"
    # Stopping again is harmless.
    sm.stop_pipeline_execution(PipelineExecutionArn=arn, ClientRequestToken=str(uuid.uuid4()))


def test_parallelism_limits_running_steps(sm, unique):
    name = unique("parallel")
    create(
        sm,
        name,
        [processing(f"P{i}", "import time; time.sleep(0.5)") for i in range(3)],
        ParallelismConfiguration={"MaxParallelExecutionSteps": 1},
    )
    arn = start(sm, name)
    assert wait(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    found = sorted(steps(sm, arn).values(), key=lambda s: s["StartTime"])
    for earlier, later in itertools.pairwise(found):
        assert later["StartTime"] >= earlier["EndTime"]
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["ParallelismConfiguration"] == {
        "MaxParallelExecutionSteps": 1
    }


def test_selective_execution_reuses_unselected_steps(sm, unique):
    name = unique("selective")
    create(
        sm,
        name,
        [
            processing("A", "print('a')"),
            processing("B", "print('b')", DependsOn=["A"]),
            processing("C", "print('c')", DependsOn=["B"]),
        ],
    )
    source = start(sm, name)
    assert wait(sm, source)["PipelineExecutionStatus"] == "Succeeded"
    arn = start(
        sm, name, SelectiveExecutionConfig={"SourcePipelineExecutionArn": source, "SelectedSteps": [{"StepName": "B"}]}
    )
    assert wait(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    original, found = steps(sm, source), steps(sm, arn)
    assert found["A"]["SelectiveExecutionResult"] == {"SourcePipelineExecutionArn": source}
    assert found["A"]["Metadata"] == original["A"]["Metadata"]
    assert found["B"]["Metadata"] != original["B"]["Metadata"] and "SelectiveExecutionResult" not in found["B"]
    assert set(found) == {"A", "B", "C"} and found["C"]["SelectiveExecutionResult"]
    code, message = error(
        sm.start_pipeline_execution,
        PipelineName=name,
        ClientRequestToken=str(uuid.uuid4()),
        SelectiveExecutionConfig={"SourcePipelineExecutionArn": source, "SelectedSteps": [{"StepName": "Z"}]},
    )
    assert code == "ValidationException" and "Z" in message


def test_update_execution_and_delete_with_running_execution(sm, unique):
    name = unique("upd")
    create(sm, name, [processing("Sleep", "import time; time.sleep(120)")])
    arn = start(sm, name)
    sm.update_pipeline_execution(
        PipelineExecutionArn=arn, PipelineExecutionDescription="about", PipelineExecutionDisplayName="renamed"
    )
    described = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
    assert described["PipelineExecutionDescription"] == "about"
    assert described["PipelineExecutionDisplayName"] == "renamed"
    code, message = error(sm.delete_pipeline, PipelineName=name, ClientRequestToken=str(uuid.uuid4()))
    assert code == "ValidationException" and "running" in message
    sm.stop_pipeline_execution(PipelineExecutionArn=arn, ClientRequestToken=str(uuid.uuid4()))
    wait(sm, arn)
    sm.delete_pipeline(PipelineName=name, ClientRequestToken=str(uuid.uuid4()))
    assert error(sm.describe_pipeline_execution, PipelineExecutionArn=arn)[0] == "ResourceNotFound"


# -- callbacks -----------------------------------------------------------------------------------------


def _answer_one(sqs, sm, queue_url: str, succeed: bool) -> dict:
    """What a worker does: receive the step's message and answer it; returns the message body."""
    messages = wait_for(
        lambda: sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []),
        interval=0,
        what="a callback message",
    )
    body = json.loads(messages[0]["Body"])
    if succeed:
        sm.send_pipeline_execution_step_success(
            CallbackToken=body["token"], OutputParameters=[{"Name": "answer", "Value": "42"}]
        )
    else:
        sm.send_pipeline_execution_step_failure(CallbackToken=body["token"], FailureReason="worker said no")
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    return body


def test_callback_answered_by_a_worker_through_sqs(sm, client, srv, unique):
    sqs = client("sqs", srv)
    queue_url = sqs.create_queue(QueueName=unique("callbacks"))["QueueUrl"]
    name = unique("callback")
    callback = {
        "Name": "AskWorker",
        "Type": "Callback",
        "SqsQueueUrl": queue_url,
        "OutputParameters": [{"OutputName": "answer", "OutputType": "String"}],
        "Arguments": {"question": {"Get": "Parameters.Question"}},
    }
    use = processing("UseAnswer", "import sys; assert sys.argv[1] == '42', sys.argv")
    use["Arguments"]["AppSpecification"]["ContainerArguments"] = [{"Get": "Steps.AskWorker.OutputParameters['answer']"}]
    create(sm, name, [callback, use], [{"Name": "Question", "Type": "String", "DefaultValue": "life"}])

    arn = start(sm, name)
    body = _answer_one(sqs, sm, queue_url, succeed=True)
    assert body["pipelineExecutionArn"] == arn and body["status"] == "Executing"
    assert body["arguments"] == {"question": "life"} and len(body["token"]) == 10
    assert wait(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    found = steps(sm, arn)
    assert found["AskWorker"]["Metadata"]["Callback"] == {
        "CallbackToken": body["token"],
        "SqsQueueUrl": queue_url,
        "OutputParameters": [{"Name": "answer", "Value": "42"}],
    }
    assert found["UseAnswer"]["StepStatus"] == "Succeeded"
    code, _ = error(
        sm.send_pipeline_execution_step_success, CallbackToken=body["token"], ClientRequestToken=str(uuid.uuid4())
    )
    assert code == "ValidationException"  # answered already

    failing = start(sm, name)
    _answer_one(sqs, sm, queue_url, succeed=False)
    done = wait(sm, failing)
    assert done["PipelineExecutionStatus"] == "Failed"
    assert steps(sm, failing)["AskWorker"]["FailureReason"] == "worker said no"
    assert "UseAnswer" not in steps(sm, failing)


def test_callback_to_a_missing_queue_fails_the_step(sm, unique):
    name = unique("callback-missing")
    queue = "http://127.0.0.1:1/123456789012/no-such-queue"
    create(sm, name, [{"Name": "Ask", "Type": "Callback", "SqsQueueUrl": queue, "Arguments": {}}])
    arn = start(sm, name)
    assert wait(sm, arn)["PipelineExecutionStatus"] == "Failed"
    assert "no-such-queue" in steps(sm, arn)["Ask"]["FailureReason"]


def test_callback_without_an_answer_times_out(make_server, client, unique):
    """A Callback step waits --callback-timeout-seconds (AWS's 7 days by default), then fails; the late
    answer is refused."""
    server = make_server("pipelines-callback-timeout", ["--callback-timeout-seconds", "2"]).start()
    sm, sqs = client("sagemaker", server), client("sqs", server)
    queue_url = sqs.create_queue(QueueName=unique("late"))["QueueUrl"]
    name = unique("callback-timeout")
    create(sm, name, [{"Name": "Ask", "Type": "Callback", "SqsQueueUrl": queue_url, "Arguments": {}}])
    arn = start(sm, name)
    assert wait(sm, arn)["PipelineExecutionStatus"] == "Failed"
    assert "timed out" in steps(sm, arn)["Ask"]["FailureReason"]
    token = json.loads(sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["Body"])["token"]
    code, message = error(sm.send_pipeline_execution_step_success, CallbackToken=token)
    assert code == "ValidationException" and "expired" in message
