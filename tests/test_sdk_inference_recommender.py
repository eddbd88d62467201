"""Inference Recommender through the real SageMaker SDK: v2 ``Model.right_size()`` then ``Model.deploy()`` with
the recommendation it returned, and v3's resource class (sagemaker.core.resources.InferenceRecommendationsJob).

right_size() waits by reading the job's execution log (CloudWatch Logs) every 60 s until the job ends; the
test reads it every second instead (its only change to the SDK, as test_sdk_endpoints.py does for endpoints).
The benchmark stops early and honestly: a MaxInvocations the tiny model reaches in its first window.
"""

from __future__ import annotations

from support.endpoints import BUCKET, IMAGE, ROLE, Models, versioned_archive
from support.jobs import tar_gz

PAYLOADS = f"s3://{BUCKET}/sdk-ir/payloads.tar.gz"
MODEL_DATA = f"s3://{BUCKET}/sdk-ir/model.tar.gz"

FAST_V2_WAITS = """
    import functools
    import sagemaker.session as session
    session._display_inference_recommendations_job_steps_status = functools.partial(
        session._display_inference_recommendations_job_steps_status, poll=1)
    _wait_for_endpoint = session.Session.wait_for_endpoint
    session.Session.wait_for_endpoint = lambda self, endpoint, poll=30, live_logging=False: _wait_for_endpoint(
        self, endpoint, poll=0.5, live_logging=live_logging)
"""


def upload(server, tmp_path) -> None:
    models = Models(server, tmp_path)
    models.s3.put_object(Bucket=BUCKET, Key="sdk-ir/payloads.tar.gz", Body=tar_gz({"payloads/a.csv": b"1,2,3"}))
    models.s3.put_object(Bucket=BUCKET, Key="sdk-ir/model.tar.gz", Body=versioned_archive("sdkir"))


def test_v2_right_size_then_deploy_the_recommendation(sdk_v2, server, sm, tmp_path):
    upload(server, tmp_path)
    result = sdk_v2.run(
        server,
        FAST_V2_WAITS
        + f"""
    import contextlib, io, json
    from sagemaker.inference_recommender.inference_recommender_mixin import Phase
    from sagemaker.model import Model
    from sagemaker.parameter import CategoricalParameter
    from sagemaker.predictor import Predictor
    model = Model(image_uri="{IMAGE}", model_data="{MODEL_DATA}", role="{ROLE}", predictor_cls=Predictor)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        model.right_size(
            sample_payload_url="{PAYLOADS}", supported_content_types=["text/csv"], framework="XGBOOST",
            job_name="sdk-ir-v2", hyperparameter_ranges=[{{"instance_types": CategoricalParameter(["ml.m5.large"]),
                                                           "OMP_NUM_THREADS": CategoricalParameter(["1"])}}],
            phases=[Phase(duration_in_seconds=120, initial_number_of_users=1, spawn_rate=1)], max_invocations=60)
    [recommendation] = model.inference_recommendations
    predictor = model.deploy(inference_recommendation_id=recommendation["RecommendationId"])
    answer = predictor.predict(b"1,2,3").decode()
    environment = model.env
    client = predictor.sagemaker_session.sagemaker_client
    config = client.describe_endpoint_config(EndpointConfigName=client.describe_endpoint(
        EndpointName=predictor.endpoint_name)["EndpointConfigName"])
    predictor.delete_endpoint()
    print("\\n" + json.dumps({{"status": model.inference_recommender_job_results["Status"],
                              "recommendation": recommendation, "log": printed.getvalue(), "answer": answer,
                              "environment": environment, "variant": config["ProductionVariants"][0]}}, default=str))
    """,
        timeout=900,
    )
    assert result["status"] == "COMPLETED"
    metrics = result["recommendation"]["Metrics"]
    assert metrics["MaxInvocations"] >= 60 and 0 < metrics["ModelLatency"] < 10_000_000
    assert metrics["CostPerHour"] > 0 and metrics["CostPerInference"] > 0
    # The SDK printed the job's execution log while it waited.
    assert "Job sdk-ir-v2 (Advanced) created" in result["log"]
    assert "Benchmark 0 COMPLETED: MaxInvocations" in result["log"]
    assert "Job sdk-ir-v2 COMPLETED: 1 recommendation(s)" in result["log"]
    # deploy() took the instance type, count, environment and model from the recommendation.
    assert result["answer"] == "sdkir:1,2,3" and result["environment"] == {"OMP_NUM_THREADS": "1"}
    assert result["variant"]["InstanceType"] == "ml.m5.large" and result["variant"]["InitialInstanceCount"] == 1
    job = sm.describe_inference_recommendations_job(JobName="sdk-ir-v2")
    assert job["InputConfig"]["ContainerConfig"]["Framework"] == "XGBOOST"


def test_v3_inference_recommendations_job_resource(sdk_v3, server, tmp_path):
    upload(server, tmp_path)
    Models(server, tmp_path).create("sdk-ir-v3-model", versioned_archive("sdkir3"))
    result = sdk_v3.run(
        server,
        f"""
    import json
    from sagemaker.core.resources import InferenceRecommendationsJob
    from sagemaker.core.shapes import (EndpointInputConfiguration, Phase, RecommendationJobContainerConfig,
                                       RecommendationJobInputConfig, RecommendationJobPayloadConfig,
                                       RecommendationJobStoppingConditions, TrafficPattern)
    job = InferenceRecommendationsJob.create(
        job_name="sdk-ir-v3", job_type="Advanced", role_arn="{ROLE}",
        input_config=RecommendationJobInputConfig(
            model_name="sdk-ir-v3-model",
            container_config=RecommendationJobContainerConfig(payload_config=RecommendationJobPayloadConfig(
                sample_payload_url="{PAYLOADS}", supported_content_types=["text/csv"])),
            endpoint_configurations=[EndpointInputConfiguration(instance_type="ml.c5.large")],
            traffic_pattern=TrafficPattern(traffic_type="PHASES", phases=[
                Phase(initial_number_of_users=1, spawn_rate=1, duration_in_seconds=120)])),
        stopping_conditions=RecommendationJobStoppingConditions(max_invocations=60))
    job.wait(poll=1, timeout=600)
    [recommendation] = job.inference_recommendations
    [step] = list(job.get_all_steps(step_type="BENCHMARK"))
    print(json.dumps({{"status": job.status, "instance_type": recommendation.endpoint_configuration.instance_type,
                      "max_invocations": recommendation.metrics.max_invocations,
                      "cost_per_hour": recommendation.metrics.cost_per_hour, "step": step.status,
                      "step_max_invocations": step.inference_benchmark.endpoint_metrics.max_invocations}}))
    """,
        timeout=900,
    )
    assert result["status"] == "COMPLETED" and result["step"] == "COMPLETED"
    assert result["instance_type"] == "ml.c5.large" and result["max_invocations"] >= 60
    assert result["step_max_invocations"] == result["max_invocations"] and result["cost_per_hour"] > 0
