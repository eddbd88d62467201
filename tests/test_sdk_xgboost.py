"""The built-in XGBoost algorithm and batch transform through the real SageMaker SDK v2.

One fit serves both: the estimator's model then runs a Transformer (CI stays lean).
"""

from __future__ import annotations

import re

import pytest

from support.sdk import run_captured

TRAIN_CSV = "".join(f"{2 * (i % 7) + (i % 3)},{i % 7},{i % 3}\n" for i in range(60))
VALIDATION_CSV = "".join(f"{2 * (i % 5) + (i % 2)},{i % 5},{i % 2}\n" for i in range(20))
TEST_CSV = "".join(f"{i % 7},{i % 3}\n" for i in range(9))

FIT = """
    import json, boto3, sagemaker
    from sagemaker import image_uris
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    s3 = boto3.client("s3")
    s3.put_object(Bucket="selfmaker-sdk-tests", Key="xgb/train/train.csv", Body={train!r})
    s3.put_object(Bucket="selfmaker-sdk-tests", Key="xgb/validation/validation.csv", Body={validation!r})
    image = image_uris.retrieve("xgboost", "us-east-1", "1.7-1")
    estimator = Estimator(image_uri=image, role="arn:aws:iam::123456789012:role/SageMakerRole",
                          instance_count=1, instance_type="ml.m5.large",
                          output_path="s3://selfmaker-sdk-tests/xgb/output")
    estimator.set_hyperparameters(objective="reg:squarederror", num_round=8, max_depth=3, eta=0.5)
    estimator.fit({{"train": TrainingInput("s3://selfmaker-sdk-tests/xgb/train", content_type="text/csv"),
                   "validation": TrainingInput("s3://selfmaker-sdk-tests/xgb/validation", content_type="text/csv")}},
                  logs=True)
    job = estimator.latest_training_job.describe()
"""


def test_v2_builtin_xgboost_estimator_fit_then_transform(sdk_v2, server):
    result, output = run_captured(
        sdk_v2,
        server,
        FIT.format(train=TRAIN_CSV, validation=VALIDATION_CSV)
        + """
    s3.put_object(Bucket="selfmaker-sdk-tests", Key="xgb/test/test.csv", Body="""
        + repr(TEST_CSV)
        + """)
    transformer = estimator.transformer(instance_count=1, instance_type="ml.m5.large", accept="text/csv",
                                        assemble_with="Line", output_path="s3://selfmaker-sdk-tests/xgb/predictions")
    transformer.transform("s3://selfmaker-sdk-tests/xgb/test", content_type="text/csv", split_type="Line")
    transformer.wait()  # logs=True: streams the job's log
    transform = transformer.sagemaker_session.describe_transform_job(transformer.latest_transform_job.name)
    predictions = s3.get_object(Bucket="selfmaker-sdk-tests", Key="xgb/predictions/test.csv.out")["Body"].read()
    print("RESULT " + json.dumps({"status": job["TrainingJobStatus"], "image": image,
                                  "metrics": {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])},
                                  "model": job["ModelArtifacts"]["S3ModelArtifacts"],
                                  "transform": transform["TransformJobStatus"],
                                  "predictions": predictions.decode()}))
    """,
    )
    assert result["status"] == "Completed"
    assert result["image"].endswith("/sagemaker-xgboost:1.7-1")
    lines = re.findall(r"\[(\d+)\]#011train-rmse:(\S+)#011validation-rmse:(\S+)", output)
    assert [int(i) for i, _, _ in lines] == list(range(8))  # the SDK streamed every round's line
    assert result["metrics"]["train:rmse"] == float(lines[-1][1])
    assert result["metrics"]["validation:rmse"] == float(lines[-1][2])
    assert result["model"].endswith("/output/model.tar.gz")
    assert result["transform"] == "Completed"
    predictions = [float(line) for line in result["predictions"].splitlines()]
    assert len(predictions) == TEST_CSV.count("\n")
    # label = 2 * f1 + f2 in the training data: the model is close to it
    assert predictions == pytest.approx([2 * (i % 7) + (i % 3) for i in range(9)], abs=1.5)
    assert "MaxConcurrentTransforms=" in output  # the transform job's log, streamed by wait()


def test_v2_builtin_xgboost_bad_hyperparameter_fails_with_client_error(sdk_v2, server):
    result, _output = run_captured(
        sdk_v2,
        server,
        """
    import json, boto3
    from sagemaker import image_uris
    from sagemaker.estimator import Estimator
    boto3.client("s3").put_object(Bucket="selfmaker-sdk-tests", Key="xgb-bad/train/train.csv", Body="1,2\\n")
    estimator = Estimator(image_uri=image_uris.retrieve("xgboost", "us-east-1", "1.7-1"),
                          role="arn:aws:iam::123456789012:role/SageMakerRole", instance_count=1,
                          instance_type="ml.m5.large", output_path="s3://selfmaker-sdk-tests/xgb-bad/output")
    estimator.set_hyperparameters(max_depth=3)
    try:
        estimator.fit({"train": "s3://selfmaker-sdk-tests/xgb-bad/train"}, logs=False)
        error = None
    except Exception as e:
        error = str(e)
    job = estimator.latest_training_job.describe()
    print("RESULT " + json.dumps({"status": job["TrainingJobStatus"], "reason": job.get("FailureReason"),
                                  "error": error}))
    """,
    )
    assert result["status"] == "Failed"
    assert result["reason"] == "ClientError: Missing required hyperparameter: num_round"
    assert "Missing required hyperparameter: num_round" in result["error"]
