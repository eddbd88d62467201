"""Inference experiments (shadow tests) through boto3 on a real endpoint: a baseline model in production and a
candidate that answers differently in the shadow; the caller only ever sees production's answers (no request
fails while the endpoint changes), captured data shows both, Promote makes the candidate answer, Remove and the
end of the schedule restore the endpoint; updates, validation, lists, and a restart mid-experiment.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from support.endpoints import BUCKET, Load, Models, deploy, error_of, invoke, variant, wait_status
from support.shadow_tests import capture_records, experiment, model_variant, wait_experiment
from support.waiting import wait_for

PREFIX = f"ie{int(time.time()) % 100000}"  # the experiments of this module, for the list test


@pytest.fixture(scope="module")
def models(server, tmp_path_factory):
    models = Models(server, tmp_path_factory.mktemp("shadow-models"))
    return {"base": models.versioned(f"{PREFIX}-base"), "cand": models.versioned(f"{PREFIX}-cand"), "m": models}


@pytest.fixture(scope="module")
def endpoint(module_client, models):
    """An endpoint serving the baseline model as variant Prod; each test leaves it as it found it."""
    sm = module_client("sagemaker")
    name = f"{PREFIX}-ep"
    described = deploy(sm, name, [variant(models["base"], "Prod")])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    yield name
    sm.delete_endpoint(EndpointName=name)


def test_bad_requests_are_refused_and_change_nothing(sm, endpoint, models):
    base, cand = models["base"], models["cand"]
    good = experiment(f"{PREFIX}-bad", endpoint, base, cand)
    later = datetime.now(UTC) + timedelta(hours=1)
    cases = {
        "no endpoint": ({**good, "EndpointName": "nope"}, "ValidationException", "Could not find endpoint"),
        "source is no production variant": (
            {**good, "ShadowModeConfig": {**good["ShadowModeConfig"], "SourceModelVariantName": "Other"}},
            "ValidationException",
            "SourceModelVariantName Other is not a production variant",
        ),
        "shadow named like production": (
            {
                **good,
                "ModelVariants": [model_variant(base, "Prod")],
                "ShadowModeConfig": {
                    "SourceModelVariantName": "Prod",
                    "ShadowModelVariants": [{"ShadowModelVariantName": "Prod", "SamplingPercentage": 10}],
                },
            },
            "ValidationException",
            "needs a name of its own",
        ),
        "no configuration for the shadow": (
            {**good, "ModelVariants": [model_variant(base, "Prod")]},
            "ValidationException",
            "ModelVariants needs a configuration for variant(s) Shadow",
        ),
        "a variant of neither role": (
            {**good, "ModelVariants": [*good["ModelVariants"], model_variant(cand, "Third")][1:]},
            "ValidationException",
            "is neither the SourceModelVariantName",
        ),
        "unknown model": (
            {**good, "ModelVariants": [model_variant(base, "Prod"), model_variant("ghost", "Shadow")]},
            "ValidationException",
            "Could not find model",
        ),
        "no instances": (
            {**good, "ModelVariants": [model_variant(base, "Prod"), model_variant(cand, "Shadow", count=0)]},
            "ValidationException",
            "InstanceCount of variant Shadow must be at least 1",
        ),
        "longer than 30 days": (
            {**good, "Schedule": {"StartTime": later, "EndTime": later + timedelta(days=31)}},
            "ValidationException",
            "cannot exceed 30 days",
        ),
        "ends before it starts": (
            {**good, "Schedule": {"StartTime": later, "EndTime": later - timedelta(minutes=1)}},
            "ValidationException",
            "EndTime must be after its StartTime",
        ),
        "sampling over 100": (
            {
                **good,
                "ShadowModeConfig": {
                    "SourceModelVariantName": "Prod",
                    "ShadowModelVariants": [{"ShadowModelVariantName": "Shadow", "SamplingPercentage": 101}],
                },
            },
            "ValidationException",
            "",
        ),
        "capture to a URI that is no S3 location": (
            {**good, "DataStorageConfig": {"Destination": "https://example.com/x"}},
            "ValidationException",
            "DataStorageConfig.Destination",
        ),
    }
    for case, (params, code, words) in cases.items():
        try:
            sm.create_inference_experiment(**params)
            raise AssertionError(f"{case}: accepted")
        except ClientError as err:
            got_code, message = err.response["Error"]["Code"], err.response["Error"]["Message"]
        assert (got_code, words in message) == (code, True), (case, got_code, message)
    assert sm.list_inference_experiments(NameContains=f"{PREFIX}-bad")["InferenceExperiments"] == []
    for call in (sm.describe_inference_experiment, sm.start_inference_experiment, sm.delete_inference_experiment):
        assert error_of(call, Name=f"{PREFIX}-ghost")[0] == "ResourceNotFound"


def test_remove_restores_the_endpoint(server, sm, client, endpoint, models):
    """Production answers throughout; the shadow's answers are captured and counted, never returned."""
    base, cand, name = models["base"], models["cand"], f"{PREFIX}-remove"
    s3, runtime = client("s3"), client("sagemaker-runtime")
    before = sm.describe_endpoint(EndpointName=endpoint)
    storage = {"Destination": f"s3://{BUCKET}/{name}", "ContentType": {"CsvContentTypes": ["text/plain"]}}
    with Load(server.url, endpoint) as load:
        arn = sm.create_inference_experiment(
            **experiment(name, endpoint, base, cand, DataStorageConfig=storage, Description="first")
        )["InferenceExperimentArn"]
        described = wait_experiment(sm, name, ("Running", "Cancelled", "Completed"))
        assert described["Status"] == "Running", described.get("StatusReason")
        time.sleep(0.5)
    assert load.errors == [] and set(load.answers) == {base} and set(load.variants) == {"Prod"}, load.errors[:3]

    assert arn.endswith(f":inference-experiment/{name}")
    assert [v["Status"] for v in described["ModelVariants"]] == ["InService", "InService"]
    assert described["EndpointMetadata"]["EndpointStatus"] == "InService"
    assert described["Schedule"]["EndTime"] - described["Schedule"]["StartTime"] == timedelta(days=7)
    on_endpoint = sm.describe_endpoint(EndpointName=endpoint)
    assert on_endpoint["EndpointConfigName"] == described["EndpointMetadata"]["EndpointConfigName"]
    assert [v["VariantName"] for v in on_endpoint["ShadowProductionVariants"]] == ["Shadow"]
    assert on_endpoint["DataCaptureConfig"]["DestinationS3Uri"] == storage["Destination"]

    assert {invoke(runtime, endpoint, f"r{i}") for i in range(3)} == {(f"{base}:r{i}", "Prod") for i in range(3)}

    def outputs(records: dict) -> dict[str, set[str]]:
        return {v: {r["captureData"]["endpointOutput"]["data"] for r in found} for v, found in records.items()}

    wanted = {"Prod": {f"{base}:r{i}" for i in range(3)}, "Shadow": {f"{cand}:r{i}" for i in range(3)}}
    records = wait_for(
        lambda: capture_records(s3, BUCKET, name),
        lambda found: all(wanted[v] <= outputs(found).get(v, set()) for v in wanted),
        timeout=20,
        what="the captured answers of both variants",  # the candidate's answers, for comparison
    )
    assert {r["captureData"]["endpointInput"]["encoding"] for r in records["Shadow"]} == {"CSV"}

    cloudwatch = client("cloudwatch")
    wait_for(
        lambda: cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="Invocations",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "Shadow"}],
            StartTime=datetime.now(UTC) - timedelta(minutes=10),
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"],
        lambda points: sum(p["Sum"] for p in points) >= 3,
        timeout=20,
        what="the shadow variant's Invocations",
    )

    # While Running: the sampling share changes in place; other members are refused; Start and Delete conflict.
    sm.update_inference_experiment(
        Name=name,
        Description="halved",
        ShadowModeConfig={
            "SourceModelVariantName": "Prod",
            "ShadowModelVariants": [{"ShadowModelVariantName": "Shadow", "SamplingPercentage": 50}],
        },
    )
    wait_for(
        lambda: sm.describe_endpoint(EndpointName=endpoint)["ShadowProductionVariants"][0]["CurrentWeight"],
        lambda weight: weight == 0.5,
        what="the shadow's sampling share to be 50 %",
    )
    assert wait_experiment(sm, name, ("Running",))["Description"] == "halved"
    code, message = error_of(
        sm.update_inference_experiment,
        Name=name,
        ModelVariants=[model_variant(base, "Prod", count=2), model_variant(cand, "Shadow")],
    )
    assert code == "ValidationException" and "ModelVariants cannot change" in message
    assert error_of(sm.start_inference_experiment, Name=name)[0] == "ConflictException"
    assert error_of(sm.delete_inference_experiment, Name=name)[0] == "ConflictException"
    code, message = error_of(sm.stop_inference_experiment, Name=name, ModelVariantActions={"Prod": "Promote"})
    assert code == "ValidationException" and "only a shadow variant can be promoted" in message
    code, _ = error_of(sm.stop_inference_experiment, Name=name, ModelVariantActions={"Prod": "Remove"})
    assert code == "ValidationException"
    assert wait_experiment(sm, name, ("Running",))["Status"] == "Running"

    # Both variants' instances report CPU and memory, side by side (sampled every 10 s; CPU needs two samples).
    def utilization(metric: str, variant: str) -> list:
        return cloudwatch.get_metric_statistics(
            Namespace="/aws/sagemaker/Endpoints",
            MetricName=metric,
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
            StartTime=datetime.now(UTC) - timedelta(minutes=10),
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
            Period=60,
            Statistics=["Average"],
        )["Datapoints"]

    for metric in ("MemoryUtilization", "CPUUtilization"):
        for name_ in ("Prod", "Shadow"):
            points = wait_for(
                lambda metric=metric, name_=name_: utilization(metric, name_),
                lambda points: len(points) > 0,
                timeout=40,
                what=f"the {name_} variant's {metric}",
            )
            assert all(p["Average"] >= 0 and p["Unit"] == "Percent" for p in points), points

    with Load(server.url, endpoint) as load:
        sm.stop_inference_experiment(
            Name=name, ModelVariantActions={"Prod": "Retain", "Shadow": "Remove"}, Reason="seen enough"
        )
        described = wait_experiment(sm, name, ("Completed", "Cancelled"))
    assert load.errors == [] and set(load.answers) == {base}, load.errors[:3]
    assert (described["Status"], described["StatusReason"]) == ("Completed", "seen enough")
    assert {v["VariantName"]: v["Status"] for v in described["ModelVariants"]} == {
        "Prod": "InService",
        "Shadow": "Deleted",
    }
    assert "CompletionTime" in described
    after = wait_status(sm, endpoint)
    assert after["EndpointConfigName"] == before["EndpointConfigName"]
    assert "ShadowProductionVariants" not in after and "DataCaptureConfig" not in after
    assert invoke(runtime, endpoint, "back") == (f"{base}:back", "Prod")
    assert error_of(sm.update_inference_experiment, Name=name, Description="late")[0] == "ConflictException"


def test_the_end_of_the_schedule_stops_the_experiment(sm, client, endpoint, models):
    name = f"{PREFIX}-ends"
    before = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    end = datetime.now(UTC) + timedelta(seconds=12)
    sm.create_inference_experiment(
        **experiment(name, endpoint, models["base"], models["cand"], Schedule={"EndTime": end})
    )
    assert wait_experiment(sm, name, ("Running", "Completed", "Cancelled"))["Status"] in ("Running", "Completed")
    described = wait_experiment(sm, name, ("Completed", "Cancelled"), timeout=60)
    assert described["Status"] == "Completed" and "StatusReason" not in described
    assert wait_status(sm, endpoint)["EndpointConfigName"] == before
    assert "ShadowProductionVariants" not in sm.describe_endpoint(EndpointName=endpoint)


def test_a_scheduled_experiment_waits_and_can_be_started_updated_and_deleted(sm, endpoint, models):
    name = f"{PREFIX}-later"
    start = datetime.now(UTC) + timedelta(days=1)
    sm.create_inference_experiment(
        **experiment(name, endpoint, models["base"], models["cand"], Schedule={"StartTime": start})
    )
    described = wait_experiment(sm, name, ("Created",))
    assert described["Schedule"]["EndTime"] - described["Schedule"]["StartTime"] == timedelta(days=7)
    code, _ = error_of(
        sm.create_inference_experiment, **experiment(f"{name}-2", endpoint, models["base"], models["cand"])
    )
    assert code == "ResourceInUse"  # one experiment per endpoint at a time
    # Before the start everything may change (and is checked again).
    sm.update_inference_experiment(
        Name=name, Schedule={"StartTime": start, "EndTime": start + timedelta(days=2)}, Description="two days"
    )
    described = wait_experiment(sm, name, ("Created",))
    assert described["Schedule"]["EndTime"] - described["Schedule"]["StartTime"] == timedelta(days=2)
    code, _ = error_of(sm.update_inference_experiment, Name=name, ModelVariants=[model_variant(models["base"], "Prod")])
    assert code == "ValidationException"
    assert error_of(sm.stop_inference_experiment, Name=name, ModelVariantActions={"Shadow": "Remove"})[0] == (
        "ConflictException"
    )
    sm.delete_inference_experiment(Name=name)
    assert error_of(sm.describe_inference_experiment, Name=name)[0] == "ResourceNotFound"


def test_promote_makes_the_candidate_answer(server, sm, client, endpoint, models):
    base, cand, name = models["base"], models["cand"], f"{PREFIX}-promote"
    runtime = client("sagemaker-runtime")
    sm.create_inference_experiment(**experiment(name, endpoint, base, cand, sampling=20))
    assert wait_experiment(sm, name, ("Running", "Cancelled"))["Status"] == "Running"
    with Load(server.url, endpoint) as load:
        sm.stop_inference_experiment(
            Name=name,
            ModelVariantActions={"Prod": "Remove", "Shadow": "Promote"},
            DesiredModelVariants=[model_variant(cand, "Shadow", instance_type="ml.c5.large")],
            DesiredState="Completed",
        )
        described = wait_experiment(sm, name, ("Completed", "Cancelled"))
        wait_for(lambda: dict(load.answers), lambda answers: answers.get(cand, 0) > 0, what="the candidate to answer")
    assert described["Status"] == "Completed", described.get("StatusReason")
    assert load.errors == [] and set(load.answers) == {base, cand}, load.errors[:3]
    assert {v["VariantName"]: v["Status"] for v in described["ModelVariants"]} == {
        "Prod": "Deleted",
        "Shadow": "InService",
    }
    after = wait_status(sm, endpoint)
    [production] = after["ProductionVariants"]
    assert (production["VariantName"], production["CurrentInstanceCount"]) == ("Shadow", 1)
    assert "ShadowProductionVariants" not in after
    config = sm.describe_endpoint_config(EndpointConfigName=after["EndpointConfigName"])
    assert [(v["ModelName"], v["InstanceType"]) for v in config["ProductionVariants"]] == [(cand, "ml.c5.large")]
    assert invoke(runtime, endpoint, "now") == (f"{cand}:now", "Shadow")

    # Back to the baseline as "Prod" for what follows.
    sm.create_endpoint_config(EndpointConfigName=f"{PREFIX}-reset", ProductionVariants=[variant(base, "Prod")])
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=f"{PREFIX}-reset")
    assert wait_status(sm, endpoint)["EndpointConfigName"] == f"{PREFIX}-reset"


def test_lists_filter_sort_and_page(sm):
    everything = sm.list_inference_experiments(NameContains=PREFIX, SortBy="Name", SortOrder="Ascending")
    names = [e["Name"] for e in everything["InferenceExperiments"]]
    assert names == [f"{PREFIX}-ends", f"{PREFIX}-promote", f"{PREFIX}-remove"]
    assert all(e["Type"] == "ShadowMode" and e["Status"] == "Completed" for e in everything["InferenceExperiments"])
    paged, token = [], None
    while True:
        page = sm.list_inference_experiments(
            NameContains=PREFIX,
            SortBy="Name",
            SortOrder="Descending",
            MaxResults=1,
            **({"NextToken": token} if token else {}),
        )
        paged += [e["Name"] for e in page["InferenceExperiments"]]
        token = page.get("NextToken")
        if not token:
            break
    assert paged == names[::-1]
    oldest = min(everything["InferenceExperiments"], key=lambda e: e["CreationTime"])
    newer = sm.list_inference_experiments(
        NameContains=PREFIX, Type="ShadowMode", StatusEquals="Completed", CreationTimeAfter=oldest["CreationTime"]
    )
    assert sorted(e["Name"] for e in newer["InferenceExperiments"]) == sorted(set(names) - {oldest["Name"]})
    assert sm.list_inference_experiments(NameContains=PREFIX, StatusEquals="Running")["InferenceExperiments"] == []
    assert error_of(sm.list_inference_experiments, NextToken="forged")[0] == "ValidationException"


def test_a_restart_mid_experiment_resumes(make_server, client, tmp_path):
    srv = make_server("shadow-restart").start()
    sm = client("sagemaker", srv)
    models = Models(srv, tmp_path)
    base, cand = models.versioned("rbase"), models.versioned("rcand")
    assert deploy(sm, "rep", [variant(base, "Prod")])["EndpointStatus"] == "InService"
    sm.create_inference_experiment(**experiment("rexp", "rep", base, cand))
    assert wait_experiment(sm, "rexp", ("Running", "Cancelled"))["Status"] == "Running"

    srv.kill()
    srv.start()
    sm = client("sagemaker", srv)
    assert wait_experiment(sm, "rexp", ("Running",))["Status"] == "Running"
    assert "ShadowProductionVariants" in wait_status(sm, "rep")
    runtime = client("sagemaker-runtime", srv)
    assert invoke(runtime, "rep", "again") == (f"{base}:again", "Prod")
    sm.stop_inference_experiment(Name="rexp", ModelVariantActions={"Shadow": "Remove"}, DesiredState="Cancelled")
    assert wait_experiment(sm, "rexp", ("Completed", "Cancelled"))["Status"] == "Cancelled"
    after = wait_status(sm, "rep")
    assert after["EndpointConfigName"] == "rep" and "ShadowProductionVariants" not in after
    assert invoke(runtime, "rep", "end") == (f"{base}:end", "Prod")
