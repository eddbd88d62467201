"""SageMaker Experiments through boto3: experiments, trials, trial components, associations, metrics, Search.

Also the internal API jobs use (record_job / record_job_metrics), written in-process into a server's
database before that server starts, then read back through boto3.
"""

from __future__ import annotations

import math
import statistics
import time

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.both_databases

ACCOUNT = "123456789012"


def error(excinfo) -> tuple[str, str]:
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


@pytest.fixture
def metrics(client):
    return client("sagemaker-metrics")


@pytest.fixture
def experiment(sm, unique):
    name = unique("exp")
    sm.create_experiment(ExperimentName=name)
    return name


def all_pages(call, member, **kwargs) -> list:
    items, token = [], None
    while True:
        page = call(**kwargs, **({"NextToken": token} if token else {}))
        items += page[member]
        token = page.get("NextToken")
        if not token:
            return items


# -- experiments ----------------------------------------------------------------


def test_experiment_lifecycle(sm, unique):
    name = unique("Exp")
    arn = sm.create_experiment(ExperimentName=name, Description="first")["ExperimentArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:experiment/{name.lower()}"
    described = sm.describe_experiment(ExperimentName=name.upper())
    assert described["ExperimentName"] == name and described["DisplayName"] == name
    assert described["Description"] == "first"
    # AWS records an IamIdentity for model package groups, packages and projects only (UserContext).
    assert "CreatedBy" not in described and "LastModifiedBy" not in described
    created = described["CreationTime"]

    with pytest.raises(ClientError) as exc:
        sm.create_experiment(ExperimentName=name.lower())
    code, message = error(exc)
    assert code == "ValidationException" and "already exists" in message  # what the SDK's load-or-create tests

    time.sleep(0.01)
    sm.update_experiment(ExperimentName=name, DisplayName="Shown", Description="second")
    updated = sm.describe_experiment(ExperimentName=name)
    assert (updated["DisplayName"], updated["Description"]) == ("Shown", "second")
    assert updated["CreationTime"] == created and updated["LastModifiedTime"] > created

    summary = next(s for s in all_pages(sm.list_experiments, "ExperimentSummaries") if s["ExperimentArn"] == arn)
    assert summary["ExperimentName"] == name and summary["DisplayName"] == "Shown"

    assert sm.delete_experiment(ExperimentName=name)["ExperimentArn"] == arn
    with pytest.raises(ClientError) as exc:
        sm.describe_experiment(ExperimentName=name)
    assert error(exc) == ("ResourceNotFound", f"Experiment '{arn}' does not exist.")


def test_list_experiments_pages_sorts_and_filters_by_time(sm, unique):
    before = time.time()
    time.sleep(0.01)
    names = [unique("page") for _ in range(12)]
    for name in names:
        sm.create_experiment(ExperimentName=name)
    time.sleep(0.01)
    after = time.time()
    window = {"CreatedAfter": before, "CreatedBefore": after}

    first = sm.list_experiments(**window)
    assert len(first["ExperimentSummaries"]) == 10 and first["NextToken"]  # AWS's default page is 10
    newest_first = [
        s["ExperimentName"] for s in all_pages(sm.list_experiments, "ExperimentSummaries", **window, MaxResults=5)
    ]
    assert newest_first == names[::-1]
    by_name = all_pages(
        sm.list_experiments, "ExperimentSummaries", **window, SortBy="Name", SortOrder="Ascending", MaxResults=7
    )
    assert [s["ExperimentName"] for s in by_name] == sorted(names, key=str.lower)
    assert not {s["ExperimentName"] for s in sm.list_experiments(CreatedAfter=after)["ExperimentSummaries"]} & set(
        names
    )


# -- trials -----------------------------------------------------------------------


def test_trial_needs_an_existing_experiment(sm, unique, experiment):
    missing = unique("nope")
    with pytest.raises(ClientError) as exc:
        sm.create_trial(TrialName=unique("t"), ExperimentName=missing)
    assert error(exc) == (
        "ResourceNotFound",
        f"Experiment 'arn:aws:sagemaker:us-east-1:{ACCOUNT}:experiment/{missing}' does not exist.",
    )

    name = unique("Trial")
    arn = sm.create_trial(
        TrialName=name,
        ExperimentName=experiment.upper(),
        MetadataProperties={"CommitId": "abc123", "Repository": "git://r"},
        Tags=[{"Key": "team", "Value": "ml"}],
    )["TrialArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:experiment-trial/{name.lower()}"
    trial = sm.describe_trial(TrialName=name)
    assert trial["ExperimentName"] == experiment  # as the experiment spells it
    assert trial["DisplayName"] == name and trial["MetadataProperties"]["CommitId"] == "abc123"
    sm.update_trial(TrialName=name, DisplayName="Renamed")
    assert sm.describe_trial(TrialName=name)["DisplayName"] == "Renamed"
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]

    with pytest.raises(ClientError) as exc:
        sm.create_trial(TrialName=name, ExperimentName=experiment)
    assert error(exc)[0] == "ValidationException" and "already exists" in error(exc)[1]
    with pytest.raises(ClientError) as exc:
        sm.describe_trial(TrialName=unique("ghost"))
    assert error(exc)[0] == "ResourceNotFound"


def test_list_trials_by_experiment_and_component(sm, unique):
    a, b = unique("exp-a"), unique("exp-b")
    for e in (a, b):
        sm.create_experiment(ExperimentName=e)
    in_a = [unique("ta") for _ in range(3)]
    in_b = [unique("tb") for _ in range(2)]
    for t in in_a:
        sm.create_trial(TrialName=t, ExperimentName=a)
    for t in in_b:
        sm.create_trial(TrialName=t, ExperimentName=b)

    listed = all_pages(sm.list_trials, "TrialSummaries", ExperimentName=a, MaxResults=2)
    assert [s["TrialName"] for s in listed] == in_a[::-1]
    assert {"TrialArn", "TrialName", "DisplayName", "CreationTime", "LastModifiedTime"} <= set(listed[0])
    ascending = sm.list_trials(ExperimentName=b, SortBy="Name", SortOrder="Ascending")["TrialSummaries"]
    assert [s["TrialName"] for s in ascending] == sorted(in_b)

    component = unique("tc")
    sm.create_trial_component(TrialComponentName=component)
    sm.associate_trial_component(TrialComponentName=component, TrialName=in_a[0])
    sm.associate_trial_component(TrialComponentName=component, TrialName=in_b[1])
    assert {s["TrialName"] for s in sm.list_trials(TrialComponentName=component)["TrialSummaries"]} == {
        in_a[0],
        in_b[1],
    }
    assert [
        s["TrialName"] for s in sm.list_trials(TrialComponentName=component, ExperimentName=b)["TrialSummaries"]
    ] == [in_b[1]]

    for kwargs in ({"ExperimentName": unique("gone")}, {"TrialComponentName": unique("gone")}):
        with pytest.raises(ClientError) as exc:
            sm.list_trials(**kwargs)
        assert error(exc)[0] == "ResourceNotFound"


# -- trial components -----------------------------------------------------------------


def test_trial_component_create_describe_update(sm, unique):
    name = unique("Comp")
    start, end = time.time() - 60, time.time()
    arn = sm.create_trial_component(
        TrialComponentName=name,
        Status={"PrimaryStatus": "InProgress", "Message": "running"},
        StartTime=start,
        EndTime=end,
        Parameters={"lr": {"NumberValue": 0.01}, "optimizer": {"StringValue": "adam"}},
        InputArtifacts={"train": {"Value": "s3://bucket/train.csv", "MediaType": "text/csv"}},
        OutputArtifacts={"model": {"Value": "s3://bucket/model.tar.gz"}},
        MetadataProperties={"GeneratedBy": "test"},
    )["TrialComponentArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:experiment-trial-component/{name.lower()}"
    tc = sm.describe_trial_component(TrialComponentName=name)
    assert tc["DisplayName"] == name and tc["Status"] == {"PrimaryStatus": "InProgress", "Message": "running"}
    assert abs(tc["StartTime"].timestamp() - start) < 0.01 and abs(tc["EndTime"].timestamp() - end) < 0.01
    assert tc["Parameters"] == {"lr": {"NumberValue": 0.01}, "optimizer": {"StringValue": "adam"}}
    assert tc["InputArtifacts"]["train"] == {"Value": "s3://bucket/train.csv", "MediaType": "text/csv"}
    assert tc["MetadataProperties"] == {"GeneratedBy": "test"} and "CreatedBy" not in tc
    assert "Metrics" not in tc
    assert sm.describe_trial_component(TrialComponentName=arn)["TrialComponentName"] == name  # by ARN too

    sm.update_trial_component(
        TrialComponentName=name,
        DisplayName="Shown",
        Status={"PrimaryStatus": "Completed"},
        Parameters={"lr": {"NumberValue": 0.02}, "epochs": {"NumberValue": 3}},
        ParametersToRemove=["optimizer"],
        InputArtifactsToRemove=["train"],
        OutputArtifacts={"report": {"Value": "s3://bucket/report.html"}},
    )
    tc = sm.describe_trial_component(TrialComponentName=name)
    assert tc["DisplayName"] == "Shown" and tc["Status"] == {"PrimaryStatus": "Completed"}
    assert tc["Parameters"] == {"lr": {"NumberValue": 0.02}, "epochs": {"NumberValue": 3}}
    assert "InputArtifacts" not in tc  # emptied: omitted, as every empty member is
    assert set(tc["OutputArtifacts"]) == {"model", "report"}
    assert tc["LastModifiedTime"] >= tc["CreationTime"]

    # Setting and removing the same key in one request is refused, and changes nothing.
    with pytest.raises(ClientError) as exc:
        sm.update_trial_component(
            TrialComponentName=name,
            DisplayName="Other",
            Parameters={"lr": {"NumberValue": 1}},
            ParametersToRemove=["lr"],
        )
    assert error(exc)[0] == "ValidationException" and "lr" in error(exc)[1]
    assert sm.describe_trial_component(TrialComponentName=name)["DisplayName"] == "Shown"

    with pytest.raises(ClientError) as exc:
        sm.update_trial_component(TrialComponentName=unique("ghost"), DisplayName="x")
    assert error(exc)[0] == "ResourceNotFound"
    with pytest.raises(ClientError) as exc:
        sm.create_trial_component(TrialComponentName=name, Status={"PrimaryStatus": "Sleeping"})
    assert error(exc)[0] == "ValidationException"


def test_list_trial_components_filters_sorts_and_pages(sm, unique, experiment):
    trial = unique("t")
    sm.create_trial(TrialName=trial, ExperimentName=experiment)
    other_trial = unique("t")
    sm.create_trial(TrialName=other_trial, ExperimentName=experiment)
    before = time.time()
    time.sleep(0.01)
    components = [unique("c") for _ in range(5)]
    for c in components:
        sm.create_trial_component(TrialComponentName=c, Status={"PrimaryStatus": "Completed"})
    loose = unique("loose")
    sm.create_trial_component(TrialComponentName=loose)
    for c in components[:3]:
        sm.associate_trial_component(TrialComponentName=c, TrialName=trial)
    for c in components[2:]:
        sm.associate_trial_component(TrialComponentName=c, TrialName=other_trial)

    by_trial = all_pages(sm.list_trial_components, "TrialComponentSummaries", TrialName=trial, MaxResults=2)
    assert [s["TrialComponentName"] for s in by_trial] == components[:3][::-1]
    assert by_trial[0]["Status"] == {"PrimaryStatus": "Completed"} and "CreatedBy" not in by_trial[0]
    # The experiment's components, each once though components[2] is in both of its trials.
    by_experiment = all_pages(
        sm.list_trial_components,
        "TrialComponentSummaries",
        ExperimentName=experiment,
        SortBy="Name",
        SortOrder="Ascending",
        MaxResults=3,
    )
    assert [s["TrialComponentName"] for s in by_experiment] == sorted(components)
    window = sm.list_trial_components(
        CreatedAfter=before, CreatedBefore=time.time() + 1, MaxResults=100, SortBy="CreationTime", SortOrder="Ascending"
    )["TrialComponentSummaries"]
    assert [
        s["TrialComponentName"] for s in window if s["TrialComponentName"] in components + [loose]
    ] == components + [loose]
    assert (
        sm.list_trial_components(SourceArn=f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/none")[
            "TrialComponentSummaries"
        ]
        == []
    )

    with pytest.raises(ClientError) as exc:
        sm.list_trial_components(ExperimentName=experiment, TrialName=trial)
    code, message = error(exc)
    assert code == "ValidationException" and "ExperimentName and TrialName" in message
    with pytest.raises(ClientError) as exc:
        sm.list_trial_components(TrialName=unique("gone"))
    assert error(exc)[0] == "ResourceNotFound"
    token = sm.list_trial_components(TrialName=trial, MaxResults=1)["NextToken"]
    with pytest.raises(ClientError) as exc:
        sm.list_trial_components(TrialName=other_trial, MaxResults=1, NextToken=token)
    assert error(exc)[0] == "ValidationException"


# -- associations and deletes -------------------------------------------------------------


def test_associate_and_disassociate(sm, unique, experiment):
    trial, component = unique("t"), unique("c")
    trial_arn = sm.create_trial(TrialName=trial, ExperimentName=experiment)["TrialArn"]
    component_arn = sm.create_trial_component(TrialComponentName=component)["TrialComponentArn"]
    for _ in range(2):  # associating again is not an error
        result = sm.associate_trial_component(TrialComponentName=component, TrialName=trial)
        assert (result["TrialComponentArn"], result["TrialArn"]) == (component_arn, trial_arn)
    assert len(sm.list_trial_components(TrialName=trial)["TrialComponentSummaries"]) == 1

    with pytest.raises(ClientError) as exc:
        sm.associate_trial_component(TrialComponentName=component, TrialName=unique("ghost"))
    assert error(exc)[0] == "ResourceNotFound"
    with pytest.raises(ClientError) as exc:
        sm.associate_trial_component(TrialComponentName=unique("ghost"), TrialName=trial)
    assert error(exc)[0] == "ResourceNotFound"

    result = sm.disassociate_trial_component(TrialComponentName=component, TrialName=trial)
    assert (result["TrialComponentArn"], result["TrialArn"]) == (component_arn, trial_arn)
    assert sm.list_trial_components(TrialName=trial)["TrialComponentSummaries"] == []
    assert sm.list_trials(TrialComponentName=component)["TrialSummaries"] == []


def test_deletes_follow_aws_order(sm, metrics, unique, experiment):
    trial, component = unique("t"), unique("c")
    trial_arn = sm.create_trial(TrialName=trial, ExperimentName=experiment)["TrialArn"]
    component_arn = sm.create_trial_component(TrialComponentName=component)["TrialComponentArn"]
    sm.associate_trial_component(TrialComponentName=component, TrialName=trial)
    metrics.batch_put_metrics(
        TrialComponentName=component, MetricData=[{"MetricName": "loss", "Timestamp": time.time(), "Value": 1.0}]
    )

    with pytest.raises(ClientError) as exc:
        sm.delete_trial_component(TrialComponentName=component)
    assert error(exc) == (
        "ValidationException",
        f"TrialComponent '{component_arn}' is linked to 1 or more trials and cannot be deleted.",
    )
    with pytest.raises(ClientError) as exc:
        sm.delete_trial(TrialName=trial)
    assert error(exc)[0] == "ValidationException" and trial_arn in error(exc)[1]
    with pytest.raises(ClientError) as exc:
        sm.delete_experiment(ExperimentName=experiment)
    assert error(exc)[0] == "ValidationException" and "trials" in error(exc)[1]
    sm.describe_trial_component(TrialComponentName=component)  # all still there
    sm.describe_trial(TrialName=trial)

    # The SDK's delete_all order: disassociate and delete each component, then the trial, then the experiment.
    sm.disassociate_trial_component(TrialComponentName=component, TrialName=trial)
    assert sm.delete_trial_component(TrialComponentName=component)["TrialComponentArn"] == component_arn
    assert sm.delete_trial(TrialName=trial)["TrialArn"] == trial_arn
    sm.delete_experiment(ExperimentName=experiment)
    with pytest.raises(ClientError) as exc:
        sm.delete_trial(TrialName=trial)
    assert error(exc)[0] == "ResourceNotFound"

    # A component made again under the same name starts with no metrics of its own.
    sm.create_trial_component(TrialComponentName=component)
    assert not sm.describe_trial_component(TrialComponentName=component).get("Metrics")


# -- metrics ---------------------------------------------------------------------------------


def test_batch_put_metrics_summaries(sm, metrics, unique):
    component = unique("m")
    arn = sm.create_trial_component(TrialComponentName=component)["TrialComponentArn"]
    base = int(time.time()) - 600
    losses = [0.9, 0.7, 0.72, 0.5, 0.41, 0.3]
    # Sent out of time order: "Last" is the newest point, not the last one to arrive.
    order = [0, 1, 2, 5, 3, 4]
    data = [{"MetricName": "loss", "Timestamp": base + i, "Step": i, "Value": losses[i]} for i in order]
    data.append({"MetricName": "acc", "Timestamp": base, "Value": 0.5})
    assert "Errors" not in metrics.batch_put_metrics(TrialComponentName=component, MetricData=data)

    def summary(name):
        found = sm.describe_trial_component(TrialComponentName=component)["Metrics"]
        return next(m for m in found if m["MetricName"] == name)

    loss = summary("loss")
    assert loss["Count"] == len(losses) and loss["Min"] == min(losses) and loss["Max"] == max(losses)
    assert loss["Last"] == losses[-1] and loss["TimeStamp"].timestamp() == base + 5
    assert loss["Avg"] == pytest.approx(statistics.mean(losses))
    assert loss["StdDev"] == pytest.approx(statistics.stdev(losses))  # the sample deviation, as AWS reports it
    assert summary("acc")["Count"] == 1 and summary("acc")["StdDev"] == 0

    # Later batches fold into the same summary; bad entries are reported by index and the rest kept.
    more = [0.2, 0.25]
    result = metrics.batch_put_metrics(
        TrialComponentName=component,
        MetricData=[
            {"MetricName": "loss", "Timestamp": base + 6, "Step": 6, "Value": more[0]},
            {"MetricName": "loss", "Timestamp": base + 7, "Value": float("nan")},
            {"MetricName": "loss", "Timestamp": time.time() - 15 * 24 * 3600, "Value": 9.0},  # older than two weeks
            {"MetricName": "loss", "Timestamp": base + 8, "Step": 7, "Value": more[1]},
        ],
    )
    assert result["Errors"] == [
        {"Code": "VALIDATION_ERROR", "MetricIndex": 1},
        {"Code": "VALIDATION_ERROR", "MetricIndex": 2},
    ]
    loss = summary("loss")
    every = losses + more
    assert loss["Count"] == len(every) and loss["Last"] == more[-1] and loss["Min"] == min(every)
    assert loss["Avg"] == pytest.approx(statistics.mean(every))
    assert loss["StdDev"] == pytest.approx(statistics.stdev(every))
    assert "SourceArn" not in loss  # a component made by hand has no source

    with pytest.raises(ClientError) as exc:
        metrics.batch_put_metrics(
            TrialComponentName=unique("ghost"), MetricData=[{"MetricName": "x", "Timestamp": time.time(), "Value": 1.0}]
        )
    assert error(exc)[0] == "ResourceNotFound"
    with pytest.raises(ClientError) as exc:  # at most 10 points per call
        metrics.batch_put_metrics(
            TrialComponentName=component, MetricData=[{"MetricName": "x", "Timestamp": time.time(), "Value": 1.0}] * 11
        )
    assert error(exc)[0] == "ValidationException"
    assert summary("loss")["Count"] == len(every)

    # BatchGetMetrics reads the stored series back.
    got = metrics.batch_get_metrics(
        MetricQueries=[
            {
                "MetricName": "loss",
                "ResourceArn": arn,
                "MetricStat": "Avg",
                "Period": "IterationNumber",
                "XAxisType": "IterationNumber",
            },
            {
                "MetricName": "loss",
                "ResourceArn": arn,
                "MetricStat": "Max",
                "Period": "IterationNumber",
                "XAxisType": "IterationNumber",
                "Start": base + 2,
                "End": base + 4,
            },
            {
                "MetricName": "nothing",
                "ResourceArn": arn,
                "MetricStat": "Avg",
                "Period": "OneMinute",
                "XAxisType": "Timestamp",
            },
        ]
    )["MetricQueryResults"]
    assert got[0]["Status"] == "Complete"
    assert got[0]["XAxisValues"] == list(range(8)) and got[0]["MetricValues"] == pytest.approx(every)
    assert got[1]["XAxisValues"] == [2, 3, 4] and got[1]["MetricValues"] == pytest.approx(losses[2:5])
    assert got[2]["Status"] == "ValidationError" and got[2]["MetricValues"] == []


def test_batch_get_metrics_by_time_period(sm, metrics, unique):
    component = unique("p")
    arn = sm.create_trial_component(TrialComponentName=component)["TrialComponentArn"]
    minute = (int(time.time()) // 60 - 5) * 60  # the start of a whole minute, five minutes ago
    points = [(minute + 1, 1.0), (minute + 30, 3.0), (minute + 59, 2.0), (minute + 61, 10.0), (minute + 180, 4.0)]
    metrics.batch_put_metrics(
        TrialComponentName=component,
        MetricData=[{"MetricName": "rmse", "Timestamp": t, "Value": v, "Step": i} for i, (t, v) in enumerate(points)],
    )

    def query(stat, period="OneMinute", axis="Timestamp"):
        [result] = metrics.batch_get_metrics(
            MetricQueries=[
                {
                    "MetricName": "rmse",
                    "ResourceArn": arn,
                    "MetricStat": stat,
                    "Period": period,
                    "XAxisType": axis,
                }
            ]
        )["MetricQueryResults"]
        return result["XAxisValues"], result["MetricValues"]

    assert query("Avg") == ([minute, minute + 60, minute + 180], [2.0, 10.0, 4.0])
    assert query("Count") == ([minute, minute + 60, minute + 180], [3.0, 1.0, 1.0])
    assert query("Last")[1] == [2.0, 10.0, 4.0] and query("Min")[1] == [1.0, 10.0, 4.0]
    values = query("StdDev")[1]
    assert values[0] == pytest.approx(statistics.stdev([1.0, 3.0, 2.0])) and values[1:] == [0.0, 0.0]
    five = {}
    for t, v in points:
        five.setdefault(t - t % 300, []).append(v)
    assert query("Max", period="FiveMinute") == (sorted(five), [max(five[k]) for k in sorted(five)])
    assert sum(query("Count", period="OneHour")[1]) == len(points)
    # A time period on an iteration axis places each bucket at its last step.
    assert query("Max", axis="IterationNumber") == ([2, 3, 4], [3.0, 10.0, 4.0])


# -- Search -------------------------------------------------------------------------------------


def test_search_components_by_experiment_as_experiment_analytics_does(sm, metrics, unique, experiment):
    trial = unique("t")
    sm.create_trial(TrialName=trial, ExperimentName=experiment)
    inside, outside = unique("in"), unique("out")
    for c in (inside, outside):
        sm.create_trial_component(TrialComponentName=c, Parameters={"depth": {"NumberValue": 4}})
    sm.associate_trial_component(TrialComponentName=inside, TrialName=trial)
    metrics.batch_put_metrics(
        TrialComponentName=inside, MetricData=[{"MetricName": "auc", "Timestamp": time.time(), "Value": 0.8}]
    )

    found = sm.search(
        Resource="ExperimentTrialComponent",
        SearchExpression={"Filters": [{"Name": "Parents.ExperimentName", "Operator": "Equals", "Value": experiment}]},
    )["Results"]
    assert [r["TrialComponent"]["TrialComponentName"] for r in found] == [inside]
    doc = found[0]["TrialComponent"]
    assert doc["Parents"] == [{"TrialName": trial, "ExperimentName": experiment}]
    assert doc["Metrics"][0]["MetricName"] == "auc" and doc["Parameters"] == {"depth": {"NumberValue": 4}}

    # What the SDK's Run asks before associating: is this component already in that trial?
    for name, hits in ((inside, 1), (outside, 0)):
        result = sm.search(
            Resource="ExperimentTrialComponent",
            SearchExpression={
                "Filters": [
                    {"Name": "TrialComponentName", "Operator": "Equals", "Value": name},
                    {"Name": "Parents.TrialName", "Operator": "Equals", "Value": trial},
                ]
            },
        )
        assert len(result["Results"]) == hits

    [trial_doc] = sm.search(
        Resource="ExperimentTrial",
        SearchExpression={"Filters": [{"Name": "TrialName", "Operator": "Equals", "Value": trial}]},
    )["Results"]
    summaries = trial_doc["Trial"]["TrialComponentSummaries"]
    assert [s["TrialComponentName"] for s in summaries] == [inside] and trial_doc["Trial"][
        "ExperimentName"
    ] == experiment
    [experiment_doc] = sm.search(
        Resource="Experiment",
        SearchExpression={"Filters": [{"Name": "ExperimentName", "Operator": "Equals", "Value": experiment}]},
    )["Results"]
    assert experiment_doc["Experiment"]["DisplayName"] == experiment


# -- the components jobs record ---------------------------------------------------------------


def test_jobs_record_their_trial_components(make_server, client, unique):
    """record_job / record_job_metrics, called in-process as job reconcilers will, read back through boto3."""
    from selfmaker.backends import Backends
    from selfmaker.config import Settings
    from selfmaker.server.operations import Context, load_all
    from selfmaker.services import experiments
    from selfmaker.services.experiment_metrics import Point

    load_all()
    srv = make_server(unique("jobs"))
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    backends = Backends.build(Settings(data_dir=srv.data_dir, database_url=srv.database_url))
    ctx = Context(backends=backends, account_id=ACCOUNT, region="us-east-1")
    job_arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/train-1"
    try:
        experiments.EXPERIMENT.create(ctx, {"ExperimentName": "churn"})
        with pytest.raises(Exception) as exc:
            experiments.record_job(ctx, job_arn, experiment_config={"ExperimentName": "nope"})
        assert "does not exist" in str(exc.value)
        experiments.record_job(
            ctx,
            job_arn,
            status="InProgress",
            start_time=1_700_000_000.0,
            parameters={"eta": 0.3, "objective": "binary:logistic"},
            input_artifacts={"train": "s3://data/train"},
            experiment_config={"ExperimentName": "churn", "TrialComponentDisplayName": "Train"},
        )
        experiments.record_job(
            ctx,
            job_arn,
            status="Completed",
            end_time=1_700_000_100.0,
            output_artifacts={"SageMaker.ModelArtifact": "s3://out/model.tar.gz"},
        )
        experiments.record_job_metrics(
            ctx, job_arn, [Point("validation:auc", v, time.time() - 10 + i, i) for i, v in enumerate([0.7, 0.8, 0.9])]
        )
    finally:
        backends.close()
    srv.start()
    sm, metrics = client("sagemaker", srv), client("sagemaker-metrics", srv)

    [summary] = sm.list_trial_components(SourceArn=job_arn)["TrialComponentSummaries"]
    assert summary["TrialComponentName"] == "train-1-aws-training-job"
    assert summary["TrialComponentSource"] == {"SourceArn": job_arn, "SourceType": "SageMakerTrainingJob"}
    tc = sm.describe_trial_component(TrialComponentName="train-1-aws-training-job")
    assert tc["DisplayName"] == "Train" and tc["Status"]["PrimaryStatus"] == "Completed"
    assert tc["StartTime"].timestamp() == 1_700_000_000 and tc["EndTime"].timestamp() == 1_700_000_100
    assert tc["Parameters"] == {"eta": {"NumberValue": 0.3}, "objective": {"StringValue": "binary:logistic"}}
    assert tc["OutputArtifacts"] == {"SageMaker.ModelArtifact": {"Value": "s3://out/model.tar.gz"}}
    assert tc["Sources"] == [summary["TrialComponentSource"]]
    [auc] = tc["Metrics"]
    assert (auc["SourceArn"], auc["Count"], auc["Last"]) == (job_arn, 3, 0.9)
    assert auc["Avg"] == pytest.approx(0.8) and auc["StdDev"] == pytest.approx(statistics.stdev([0.7, 0.8, 0.9]))

    # Given only an ExperimentName, the job's component joins a new trial named like it.
    [trial] = sm.list_trials(ExperimentName="churn")["TrialSummaries"]
    assert trial["TrialName"] == "train-1-aws-training-job" and trial["TrialSource"]["SourceArn"] == job_arn
    assert [
        s["TrialComponentName"] for s in sm.list_trial_components(ExperimentName="churn")["TrialComponentSummaries"]
    ] == ["train-1-aws-training-job"]
    # BatchGetMetrics also takes the job's ARN.
    [result] = metrics.batch_get_metrics(
        MetricQueries=[
            {
                "MetricName": "validation:auc",
                "ResourceArn": job_arn,
                "MetricStat": "Last",
                "Period": "IterationNumber",
                "XAxisType": "IterationNumber",
            }
        ]
    )["MetricQueryResults"]
    assert result["XAxisValues"] == [0, 1, 2] and result["MetricValues"] == pytest.approx([0.7, 0.8, 0.9])
    assert not math.isnan(result["MetricValues"][0])
    srv.stop()
