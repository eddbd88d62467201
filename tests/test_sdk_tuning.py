"""Hyperparameter tuning through the real SageMaker SDK v2: ``HyperparameterTuner(...).fit()``, ``.wait()`` and
``.best_training_job()`` over an Estimator whose image runs a tiny trial (support/tuning.py)."""

from __future__ import annotations

import pytest

from support.sdk import ROLE
from support.tuning import IMAGE, METRICS, objective, tuning_server


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory):
    server = tuning_server(make_server, tmp_path_factory, "sdk-tuning")
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


TRAIN_CSV = "".join(f"{2 * (i % 7) + (i % 3)},{i % 7},{i % 3}\n" for i in range(60))
VALIDATION_CSV = "".join(f"{2 * (i % 5) + (i % 2)},{i % 5},{i % 2}\n" for i in range(20))


def test_v2_tuner_over_builtin_xgboost_analytics_and_deploy(sdk_v2, srv):
    """A built-in XGBoost search (3 trials, 2 at a time): ``analytics().dataframe()`` holds every trial, and
    ``tuner.deploy()`` serves the best trial's model (predict answers)."""
    result = sdk_v2.run(
        srv,
        f"""
    import json
    import boto3
    import sagemaker.session as session
    from sagemaker import image_uris
    from sagemaker.deserializers import CSVDeserializer
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.serializers import CSVSerializer
    from sagemaker.tuner import ContinuousParameter, HyperparameterTuner, IntegerParameter
    _wait = session.Session.wait_for_tuning_job
    session.Session.wait_for_tuning_job = lambda self, job, poll=5: _wait(self, job, poll=0.5)
    _wait_endpoint = session.Session.wait_for_endpoint
    session.Session.wait_for_endpoint = lambda self, endpoint, poll=30, live_logging=False: _wait_endpoint(
        self, endpoint, poll=0.5, live_logging=live_logging)
    s3 = boto3.client("s3")
    if "selfmaker-sdk-tests" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="selfmaker-sdk-tests")
    s3.put_object(Bucket="selfmaker-sdk-tests", Key="tune/train/train.csv", Body={TRAIN_CSV!r})
    s3.put_object(Bucket="selfmaker-sdk-tests", Key="tune/validation/validation.csv", Body={VALIDATION_CSV!r})
    estimator = Estimator(image_uri=image_uris.retrieve("xgboost", "us-east-1", "1.7-1"), role="{ROLE}",
                          instance_count=1, instance_type="ml.m5.large",
                          output_path="s3://selfmaker-sdk-tests/tune/output")
    estimator.set_hyperparameters(objective="reg:squarederror", num_round=8)
    tuner = HyperparameterTuner(
        estimator, objective_metric_name="validation:rmse", objective_type="Minimize",
        hyperparameter_ranges={{"eta": ContinuousParameter(0.2, 0.6), "max_depth": IntegerParameter(2, 4)}},
        strategy="Random", max_jobs=3, max_parallel_jobs=2, random_seed=1)
    tuner.fit({{"train": TrainingInput("s3://selfmaker-sdk-tests/tune/train", content_type="text/csv"),
               "validation": TrainingInput("s3://selfmaker-sdk-tests/tune/validation", content_type="text/csv")}},
              job_name="sdk-tuner-xgb")
    frame = tuner.analytics().dataframe()
    ranges = tuner.analytics().tuning_ranges
    best = tuner.best_training_job()
    predictor = tuner.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                             serializer=CSVSerializer(), deserializer=CSVDeserializer())
    rows = predictor.predict([[3, 1], [5, 2]])
    client = tuner.sagemaker_session.sagemaker_client
    endpoint = client.describe_endpoint(EndpointName=predictor.endpoint_name)
    config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = client.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    trained = client.describe_training_job(TrainingJobName=best)
    predictor.delete_endpoint()
    print("\\n" + json.dumps({{"rows": rows, "best": best, "endpoint": predictor.endpoint_name,
                      "status": endpoint["EndpointStatus"], "ranges": sorted(ranges),
                      "model_data": model["PrimaryContainer"]["ModelDataUrl"],
                      "artifacts": trained["ModelArtifacts"]["S3ModelArtifacts"],
                      "frame": json.loads(frame.to_json(orient="records"))}}))
    """,
        timeout=600,
    )
    frame = result["frame"]
    assert len(frame) == 3
    assert result["ranges"] == ["eta", "max_depth"]
    for row in frame:
        assert row["TrainingJobStatus"] == "Completed"
        assert 0.2 <= row["eta"] <= 0.6 and 2 <= row["max_depth"] <= 4
        assert row["FinalObjectiveValue"] > 0 and row["TrainingElapsedTimeSeconds"] >= 0
    assert result["best"] == min(frame, key=lambda r: r["FinalObjectiveValue"])["TrainingJobName"]
    assert result["endpoint"] == result["best"]  # tuner.deploy names the endpoint after the best training job
    assert result["status"] == "InService"
    assert result["model_data"] == result["artifacts"]  # the best trial's model is the one served
    predictions = [float(x) for row in result["rows"] for x in row]
    assert len(predictions) == 2 and abs(predictions[0] - 7) < 2 and abs(predictions[1] - 12) < 2


def test_v2_tuner_create_with_an_estimator_dict_tunes_several_definitions(sdk_v2, srv):
    """``HyperparameterTuner.create(estimator_dict=...)`` sends TrainingJobDefinitions: the trials spread over
    them, the analytics name each trial's definition, and ``best_estimator()`` is the best one's estimator."""
    result = sdk_v2.run(
        srv,
        f"""
    import json
    import sagemaker.session as session
    from sagemaker.estimator import Estimator
    from sagemaker.tuner import ContinuousParameter, HyperparameterTuner
    _wait = session.Session.wait_for_tuning_job
    session.Session.wait_for_tuning_job = lambda self, job, poll=5: _wait(self, job, poll=0.5)
    def estimator(kind):
        return Estimator(image_uri="{IMAGE}", role="{ROLE}", instance_count=1, instance_type="ml.m5.large",
                         hyperparameters={{"sleep": 0, "kind": kind}}, max_run=120)
    tuner = HyperparameterTuner.create(
        estimator_dict={{"plain": estimator("a"), "bonus": estimator("b")}},
        objective_metric_name_dict={{"plain": "objective", "bonus": "objective"}},
        metric_definitions_dict={{"plain": {METRICS!r}, "bonus": {METRICS!r}}},
        hyperparameter_ranges_dict={{"plain": {{"x": ContinuousParameter(0, 6)}},
                                     "bonus": {{"x": ContinuousParameter(0, 6)}}}},
        strategy="Random", max_jobs=4, max_parallel_jobs=2, random_seed=11)
    tuner.fit(job_name="sdk-tuner-dict", include_cls_metadata={{}})
    frame = tuner.analytics().dataframe()
    best = tuner.describe()["BestTrainingJob"]
    attached = tuner.best_estimator()
    print(json.dumps({{"best": best["TrainingJobName"], "definition": best["TrainingJobDefinitionName"],
                      "attached": attached.latest_training_job.name,
                      "attached_kind": attached.hyperparameters()["kind"],
                      "frame": json.loads(frame.to_json(orient="records"))}}))
    """,
    )
    frame = result["frame"]
    assert len(frame) == 4
    assert {row["TrainingJobDefinitionName"] for row in frame} <= {"plain", "bonus"}
    for row in frame:
        kind = "a" if row["TrainingJobDefinitionName"] == "plain" else "b"
        assert abs(row["FinalObjectiveValue"] - objective(row["x"], kind=kind)) < 1e-4
    top = max(frame, key=lambda r: r["FinalObjectiveValue"])
    assert (result["best"], result["definition"]) == (top["TrainingJobName"], top["TrainingJobDefinitionName"])
    assert result["attached"] == result["best"]
    assert result["attached_kind"].strip('"') == ("a" if result["definition"] == "plain" else "b")


def test_v2_pipeline_tuning_step_feeds_the_best_model_to_register_model(sdk_v2, srv):
    """A pipeline TuningStep runs a tuning job; ``get_top_model_s3_uri(top_k=0, ...)`` resolves to the best trial's
    model, which a RegisterModel step registers (the package's ModelDataUrl is that trial's artifacts)."""
    result = sdk_v2.run(
        srv,
        f"""
    import json
    import boto3
    from botocore.exceptions import WaiterError
    from sagemaker.estimator import Estimator
    from sagemaker.model import Model
    from sagemaker.tuner import ContinuousParameter, HyperparameterTuner
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_context import PipelineSession
    from sagemaker.workflow.steps import TuningStep
    s3 = boto3.client("s3")
    if "selfmaker-sdk-tests" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="selfmaker-sdk-tests")
    session = PipelineSession()
    estimator = Estimator(image_uri="{IMAGE}", role="{ROLE}", instance_count=1, instance_type="ml.m5.large",
                          hyperparameters={{"sleep": 0}}, max_run=120, sagemaker_session=session,
                          output_path="s3://selfmaker-sdk-tests/tuning-pipe")
    tuner = HyperparameterTuner(estimator, objective_metric_name="objective", metric_definitions={METRICS!r},
                                hyperparameter_ranges={{"x": ContinuousParameter(0, 6)}}, strategy="Random",
                                max_jobs=3, max_parallel_jobs=2, random_seed=5)
    tune = TuningStep("Tune", step_args=tuner.fit())
    model = Model(image_uri="{IMAGE}", role="{ROLE}", sagemaker_session=session,
                  model_data=tune.get_top_model_s3_uri(top_k=0, s3_bucket="selfmaker-sdk-tests", prefix="tuning-pipe"))
    register = ModelStep("Register", step_args=model.register(
        content_types=["text/csv"], response_types=["text/csv"], inference_instances=["ml.m5.large"],
        transform_instances=["ml.m5.large"], model_package_group_name="tuned-models", approval_status="Approved"))
    pipeline = Pipeline("tuning-pipe", steps=[tune, register], sagemaker_session=session)
    pipeline.upsert(role_arn="{ROLE}")
    execution = pipeline.start()
    try:
        execution.wait(delay=1, max_attempts=600)
    except WaiterError:
        pass
    steps = {{s["StepName"]: s for s in execution.list_steps()}}
    sm = boto3.client("sagemaker")
    tuning_arn = steps["Tune"]["Metadata"]["TuningJob"]["Arn"]
    tuning = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_arn.rsplit("/", 1)[-1])
    package = sm.describe_model_package(
        ModelPackageName=steps["Register-RegisterModel"]["Metadata"]["RegisterModel"]["Arn"])
    best = sm.describe_training_job(TrainingJobName=tuning["BestTrainingJob"]["TrainingJobName"])
    print(json.dumps({{"status": execution.describe()["PipelineExecutionStatus"],
                      "steps": {{n: s["StepStatus"] for n, s in steps.items()}},
                      "failure": {{n: s.get("FailureReason") for n, s in steps.items()}},
                      "tuning": tuning["HyperParameterTuningJobStatus"],
                      "trials": tuning["TrainingJobStatusCounters"]["Completed"],
                      "package": package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
                      "best": best["ModelArtifacts"]["S3ModelArtifacts"]}}))
    """,
    )
    assert result["status"] == "Succeeded", result["failure"]
    assert result["steps"] == {"Tune": "Succeeded", "Register-RegisterModel": "Succeeded"}
    assert result["tuning"] == "Completed" and result["trials"] == 3
    assert result["package"] == result["best"]  # TrainingJobSummaries[0] is the best trial


def test_v3_tuner_tunes_a_model_trainer(sdk_v3, srv):
    """The SDK v3's ``sagemaker.train.tuner.HyperparameterTuner`` over a ``ModelTrainer``: ``tune()``, the job's
    ``wait()``, ``best_training_job()`` and ``analytics().dataframe()``."""
    result = sdk_v3.run(
        srv,
        f"""
    import json
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter
    from sagemaker.train.configs import Compute
    from sagemaker.train.model_trainer import ModelTrainer
    from sagemaker.train.tuner import HyperparameterTuner
    trainer = ModelTrainer(training_image="{IMAGE}", role="{ROLE}", base_job_name="v3-tune",
                           compute=Compute(instance_type="ml.m5.large", instance_count=1),
                           hyperparameters={{"sleep": 0}})
    tuner = HyperparameterTuner(trainer, objective_metric_name="objective", metric_definitions={METRICS!r},
                                hyperparameter_ranges={{"x": ContinuousParameter(0, 6),
                                                        "kind": CategoricalParameter(["a", "b"])}},
                                strategy="Random", max_jobs=3, max_parallel_jobs=2, random_seed=9)
    tuner.tune(job_name="sdk-tuner-v3", wait=False)
    tuner.latest_tuning_job.wait(poll=1, timeout=300)
    frame = tuner.analytics().dataframe()
    print(json.dumps({{"best": tuner.best_training_job(), "status": tuner.describe().hyper_parameter_tuning_job_status,
                      "frame": json.loads(frame.to_json(orient="records"))}}))
    """,
    )
    assert result["status"] == "Completed"
    frame = result["frame"]
    assert len(frame) == 3
    for row in frame:
        assert abs(row["FinalObjectiveValue"] - objective(row["x"], kind=row["kind"].strip('"'))) < 1e-4
    assert result["best"] == max(frame, key=lambda r: r["FinalObjectiveValue"])["TrainingJobName"]
