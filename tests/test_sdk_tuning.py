"""Hyperparameter tuning through the real SageMaker SDK v2: ``HyperparameterTuner(...).fit()``, ``.wait()`` and
``.best_training_job()`` over an Estimator whose image runs a tiny trial (support/tuning.py)."""

from __future__ import annotations

import pytest

from support.sdk import ROLE
from support.tuning import IMAGE, METRICS, objective, runtimes_config


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory):
    config = runtimes_config(tmp_path_factory.mktemp("sdk-tuning-config"))
    server = make_server("sdk-tuning", env={"SELFMAKER_RUNTIMES_CONFIG": config}).start()
    yield server
    server.stop()


def test_v2_tuner_fits_waits_and_names_the_best_job(sdk_v2, srv, client):
    result = sdk_v2.run(
        srv,
        f"""
    import json
    import boto3
    import sagemaker.session as session
    from sagemaker.estimator import Estimator
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner
    boto3.client("s3").create_bucket(Bucket="selfmaker-sdk-tests")
    _wait = session.Session.wait_for_tuning_job
    session.Session.wait_for_tuning_job = lambda self, job, poll=5: _wait(self, job, poll=0.5)
    estimator = Estimator(image_uri="{IMAGE}", role="{ROLE}", instance_count=1, instance_type="ml.m5.large",
                          hyperparameters={{"sleep": 0}}, max_run=120)
    tuner = HyperparameterTuner(
        estimator, objective_metric_name="objective", metric_definitions={METRICS!r},
        hyperparameter_ranges={{"x": ContinuousParameter(0, 6), "kind": CategoricalParameter(["a", "b", "c"])}},
        strategy="Random", max_jobs=4, max_parallel_jobs=2, random_seed=3)
    tuner.fit(job_name="sdk-tuner-v2", wait=False)
    tuner.wait()
    best = tuner.best_training_job()
    client = tuner.sagemaker_session.sagemaker_client
    described = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="sdk-tuner-v2")
    trials = client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="sdk-tuner-v2")["TrainingJobSummaries"]
    print(json.dumps({{"best": best, "status": described["HyperParameterTuningJobStatus"],
                      "trials": [[t["TunedHyperParameters"], t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
                                  t["TrainingJobName"]] for t in trials]}}))
    """,
    )
    assert result["status"] == "Completed"
    assert len(result["trials"]) == 4
    for tuned, value, _ in result["trials"]:
        assert abs(value - objective(float(tuned["x"]), kind=tuned["kind"].strip('"'))) < 1e-4
    top = max(result["trials"], key=lambda t: t[1])
    assert result["best"] == top[2]
    assert (
        client("sagemaker", srv)
        .describe_training_job(TrainingJobName=top[2])["TuningJobArn"]
        .endswith("hyper-parameter-tuning-job/sdk-tuner-v2")
    )
