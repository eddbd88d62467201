"""Inference Recommender through boto3: real benchmarks of a tiny model on real endpoints.

The jobs stop early and honestly: a StoppingConditions.MaxInvocations the tiny model reaches
in its first measurement window ends a 120-second phase (AWS's minimum) after seconds.
"""

from __future__ import annotations

import pytest

from support.endpoints import BUCKET, FIRST_ENDPOINT_SECONDS, ROLE, Models, error_of
from support.jobs import tar_gz
from support.waiting import status_in, wait_for

PAYLOADS = f"s3://{BUCKET}/recommender/payloads.tar.gz"
QUICK = {"MaxInvocations": 60}  # per minute: one request a second ends the benchmark in its first window


@pytest.fixture(scope="module")
def model(server, module_client, tmp_path_factory):
    models = Models(server, tmp_path_factory.mktemp("recommender"))
    models.s3.put_object(
        Bucket=BUCKET,
        Key="recommender/payloads.tar.gz",
        Body=tar_gz({"payloads/a.txt": b"1,2,3", "payloads/b.txt": b"4,5,6"}),
    )
    return models.versioned("ir-model")


def advanced(name: str, model: str, phases=None, stopping=None, **input_config) -> dict:
    return {
        "JobName": name,
        "JobType": "Advanced",
        "RoleArn": ROLE,
        "InputConfig": {
            "ModelName": model,
            "ContainerConfig": {"PayloadConfig": {"SamplePayloadUrl": PAYLOADS, "SupportedContentTypes": ["text/csv"]}},
            "EndpointConfigurations": [{"InstanceType": "ml.m5.large"}],
            "TrafficPattern": {
                "TrafficType": "PHASES",
                "Phases": phases or [{"InitialNumberOfUsers": 1, "SpawnRate": 1, "DurationInSeconds": 120}],
            },
            **input_config,
        },
        "StoppingConditions": QUICK if stopping is None else stopping,
    }


def wait_job(sm, name: str, until=("COMPLETED", "FAILED", "STOPPED")) -> dict:
    return wait_for(
        lambda: sm.describe_inference_recommendations_job(JobName=name),
        status_in("Status", until),
        timeout=FIRST_ENDPOINT_SECONDS,
        what=f"inference recommendations job {name} to be {'/'.join(until)}",
    )


def test_advanced_job_benchmarks_a_real_endpoint(sm, client, model, unique):
    name = unique("ir")
    arn = sm.create_inference_recommendations_job(**advanced(name, model))["JobArn"]
    assert arn.endswith(f":inference-recommendations-job/{name}")
    job = wait_job(sm, name)
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    [rec] = job["InferenceRecommendations"]
    metrics = rec["Metrics"]
    assert rec["EndpointConfiguration"]["InstanceType"] == "ml.m5.large"
    assert metrics["MaxInvocations"] >= 60  # the condition that stopped it
    assert 0 < metrics["ModelLatency"] < 10_000_000  # microseconds
    assert metrics["CostPerHour"] == pytest.approx(0.115)
    assert metrics["CostPerInference"] == pytest.approx(metrics["CostPerHour"] / (metrics["MaxInvocations"] * 60))
    assert 0 <= metrics["MemoryUtilization"] <= 100 and metrics["CpuUtilization"] >= 0
    assert rec["InvocationStartTime"] <= rec["InvocationEndTime"]

    [step] = sm.list_inference_recommendations_job_steps(JobName=name, StepType="BENCHMARK")["Steps"]
    assert step["Status"] == "COMPLETED" and step["StepType"] == "BENCHMARK"
    assert step["InferenceBenchmark"]["EndpointMetrics"]["MaxInvocations"] == metrics["MaxInvocations"]
    assert sm.list_inference_recommendations_job_steps(JobName=name, Status="FAILED")["Steps"] == []

    # The candidate endpoint, its configuration and model are gone; the job is listed under its model.
    temporary = rec["EndpointConfiguration"]["EndpointName"]
    assert sm.list_endpoints(NameContains=temporary)["Endpoints"] == []
    listed = sm.list_inference_recommendations_jobs(ModelNameEquals=model, NameContains=name)
    assert [j["JobName"] for j in listed["InferenceRecommendationsJobs"]] == [name]
    assert listed["InferenceRecommendationsJobs"][0]["SamplePayloadUrl"] == PAYLOADS

    cloudwatch = client("cloudwatch")
    published = wait_for(
        lambda: cloudwatch.list_metrics(
            Namespace="/aws/sagemaker/InferenceRecommendationsJobs", Dimensions=[{"Name": "JobName", "Value": name}]
        )["Metrics"],
        lambda found: {"ClientInvocations", "ClientLatency", "NumberOfUsers"} <= {m["MetricName"] for m in found},
        timeout=30,
        what="the job's CloudWatch metrics",
    )
    assert "ClientInvocationErrors" in {m["MetricName"] for m in published}

    # The execution log SDK v2's right_size() waits on (CloudWatch Logs, as AWS writes it).
    events = client("logs").get_log_events(
        logGroupName="/aws/sagemaker/InferenceRecommendationsJobs", logStreamName=f"{name}/execution"
    )["events"]
    lines = [e["message"] for e in events]
    assert lines[0] == f"Job {name} (Advanced) created: 1 benchmark(s) planned."
    assert lines[1].startswith(f"Benchmark 0: ml.m5.large, endpoint {temporary}")
    assert lines[2].startswith(f"Benchmark 0 COMPLETED: MaxInvocations {metrics['MaxInvocations']} per minute")
    assert lines[3] == f"Job {name} COMPLETED: 1 recommendation(s)."


@pytest.mark.parametrize(
    "change, words",
    [
        ({"EndpointConfigurations": [{"InstanceType": "ml.t2.medium"}]}, "burstable"),
        (
            {"EndpointConfigurations": [{"ServerlessConfig": {"MemorySizeInMB": 1111, "MaxConcurrency": 1}}]},
            "MemorySizeInMB 1111 is not one of the allowed sizes",
        ),
        ({"Phases": [{"InitialNumberOfUsers": 5, "SpawnRate": 1, "DurationInSeconds": 120}]}, "InitialNumberOfUsers"),
        ({"Phases": [{"InitialNumberOfUsers": 1, "SpawnRate": 10, "DurationInSeconds": 120}]}, "SpawnRate"),
        ({"Phases": [{"InitialNumberOfUsers": 1, "SpawnRate": 1, "DurationInSeconds": 30}]}, "between 120 and 3600"),
        (
            {
                "Phases": [
                    {"InitialNumberOfUsers": 1, "SpawnRate": 0, "DurationInSeconds": 120},
                    {"InitialNumberOfUsers": 3, "SpawnRate": 3, "DurationInSeconds": 120},
                    {"InitialNumberOfUsers": 1, "SpawnRate": 0, "DurationInSeconds": 120},
                ]
            },
            "within 3 of the number of users at the end of Phases[1]",
        ),
        ({"StoppingConditions": {"MaxInvocations": 50000}}, "MaxInvocations"),
        ({"ModelName": "no-such-model"}, "no-such-model"),
        ({"ContainerConfig": {}}, "SamplePayloadUrl"),
        (
            {
                "ResourceLimit": {"MaxNumberOfTests": 1},
                "EndpointConfigurations": [{"InstanceType": "ml.m5.large"}, {"InstanceType": "ml.c5.large"}],
            },
            "MaxNumberOfTests allows 1",
        ),
    ],
)
def test_bad_jobs_are_refused_with_the_rule_named(sm, model, unique, change, words):
    request = advanced(unique("bad"), model)
    change = dict(change)
    if "Phases" in change:
        request["InputConfig"]["TrafficPattern"]["Phases"] = change.pop("Phases")
    if "StoppingConditions" in change:
        request["StoppingConditions"] = change.pop("StoppingConditions")
    request["InputConfig"].update(change)
    code, message = error_of(sm.create_inference_recommendations_job, **request)
    assert code == "ValidationException" and words in message
    assert sm.list_inference_recommendations_jobs(NameContains=request["JobName"])["InferenceRecommendationsJobs"] == []


def test_default_job_refuses_advanced_parameters_and_unknown_jobs_are_not_found(sm, model, unique):
    request = advanced(unique("dflt"), model)
    request["JobType"] = "Default"
    code, message = error_of(sm.create_inference_recommendations_job, **request)
    assert code == "ValidationException" and "Advanced jobs only" in message
    code, _ = error_of(sm.describe_inference_recommendations_job, JobName="never-made")
    assert code == "ValidationException"


def test_stop_ends_the_benchmark_and_removes_its_endpoint(sm, model, unique):
    name = unique("stop")
    request = advanced(name, model, stopping={"FlatInvocations": "Continue"})
    sm.create_inference_recommendations_job(**request)
    wait_for(
        lambda: sm.list_inference_recommendations_job_steps(JobName=name)["Steps"],
        lambda steps: steps and steps[0]["Status"] == "IN_PROGRESS",
        timeout=60,
        what="the benchmark to start",
    )
    sm.stop_inference_recommendations_job(JobName=name)
    job = wait_job(sm, name, until=("STOPPED",))
    assert "CompletionTime" in job and "InferenceRecommendations" not in job
    [step] = sm.list_inference_recommendations_job_steps(JobName=name)["Steps"]
    assert step["Status"] == "STOPPED"
    wait_for(
        lambda: sm.list_endpoints(NameContains=name)["Endpoints"],
        lambda found: found == [],
        timeout=60,
        what="the candidate endpoint to be deleted",
    )
    code, _ = error_of(sm.stop_inference_recommendations_job, JobName="never-made")
    assert code == "ValidationException"


def test_parallel_benchmarks_that_would_oversubscribe_the_host_fail_saying_so(sm, model, unique):
    # An ml.m5.24xlarge instance takes every processor of this machine (96 vCPUs, capped by the host):
    # two side by side cannot fit, whatever the host.
    name = unique("par")
    request = advanced(
        name,
        model,
        EndpointConfigurations=[{"InstanceType": "ml.m5.24xlarge"}, {"InstanceType": "ml.m5.24xlarge"}],
        ResourceLimit={"MaxNumberOfTests": 2, "MaxParallelOfTests": 2},
    )
    sm.create_inference_recommendations_job(**request)
    job = wait_job(sm, name)
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    assert len(job["InferenceRecommendations"]) == 1
    steps = sm.list_inference_recommendations_job_steps(JobName=name)["Steps"]
    assert sorted(s["Status"] for s in steps) == ["COMPLETED", "FAILED"]
    [failed] = [s for s in steps if s["Status"] == "FAILED"]
    assert "oversubscribe the host" in failed["InferenceBenchmark"]["FailureReason"]


def test_a_server_killed_mid_benchmark_runs_the_step_again_on_a_fresh_endpoint(make_server, client, tmp_path):
    srv = make_server("ir-restart").start()
    sm = client("sagemaker", srv)
    models = Models(srv, tmp_path)
    models.s3.put_object(Bucket=BUCKET, Key="recommender/payloads.tar.gz", Body=tar_gz({"payloads/a.txt": b"1,2,3"}))
    # Answers in 0.5 s: one user makes 120 invocations a minute, the second (added after 20 s) reaches 150, so
    # the load runs some 20 s: long enough to kill the server while it runs.
    model = models.versioned("ir-restart-model", delay=0.5)
    phases = [{"InitialNumberOfUsers": 1, "SpawnRate": 3, "DurationInSeconds": 120}]
    sm.create_inference_recommendations_job(**advanced("irr", model, phases=phases, stopping={"MaxInvocations": 150}))
    cloudwatch = client("cloudwatch", srv)
    wait_for(  # the load generator has reported its first window
        lambda: cloudwatch.list_metrics(
            Namespace="/aws/sagemaker/InferenceRecommendationsJobs",
            MetricName="ClientInvocations",
            Dimensions=[{"Name": "JobName", "Value": "irr"}],
        )["Metrics"],
        bool,
        timeout=FIRST_ENDPOINT_SECONDS,
        what="the benchmark's load to start",
    )
    [killed] = [e["EndpointName"] for e in sm.list_endpoints(NameContains="irr-ir0")["Endpoints"]]

    srv.kill()
    srv.start()
    sm = client("sagemaker", srv)
    job = wait_job(sm, "irr")
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    [rec] = job["InferenceRecommendations"]
    assert rec["EndpointConfiguration"]["EndpointName"] != killed  # the step ran again, from its start
    assert rec["Metrics"]["MaxInvocations"] >= 150
    [step] = sm.list_inference_recommendations_job_steps(JobName="irr")["Steps"]
    assert step["Status"] == "COMPLETED"
    assert sm.list_endpoints(NameContains="irr-ir0")["Endpoints"] == []  # the one left behind is gone too
    assert srv.stopped_cleanly()
