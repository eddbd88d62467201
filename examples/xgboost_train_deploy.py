"""Train the built-in XGBoost algorithm, deploy the model to an endpoint and invoke it (SageMaker SDK v2).

    eval "$(selfmaker env --write-sdk-config)"   # once per shell: endpoint, keys, region, SDK config
    python examples/xgboost_train_deploy.py

The data is generated: y = 2a + b, which 20 rounds of boosted trees learn closely. Nothing here is
specific to SelfMaker: the same script runs on AWS with a real role and bucket in the SDK config.
"""

import time

import boto3
import sagemaker
from sagemaker import image_uris
from sagemaker.deserializers import CSVDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer

session = sagemaker.Session()
bucket = session.default_bucket()  # DefaultS3Bucket of the SDK config
prefix = "examples/xgboost"


def rows(count: int, start: int = 0) -> str:
    """CSV with the label first, as the built-in XGBoost expects: y, a, b with y = 2a + b."""
    return "".join(f"{2 * (i % 7) + i % 3},{i % 7},{i % 3}\n" for i in range(start, start + count))


s3 = boto3.client("s3")
s3.put_object(Bucket=bucket, Key=f"{prefix}/train/train.csv", Body=rows(200))
s3.put_object(Bucket=bucket, Key=f"{prefix}/validation/validation.csv", Body=rows(40, start=200))

# The image URI names the algorithm and its version; SelfMaker runs it in a sandbox, no Docker.
image = image_uris.retrieve("xgboost", session.boto_region_name, "1.7-1")
estimator = Estimator(
    image_uri=image,
    instance_count=1,
    instance_type="ml.m5.large",
    output_path=f"s3://{bucket}/{prefix}/output",
    sagemaker_session=session,
)  # the role comes from the SDK config (TrainingJob.RoleArn)
estimator.set_hyperparameters(objective="reg:squarederror", num_round=20, max_depth=3, eta=0.5)
estimator.fit(
    {
        "train": TrainingInput(f"s3://{bucket}/{prefix}/train", content_type="text/csv"),
        "validation": TrainingInput(f"s3://{bucket}/{prefix}/validation", content_type="text/csv"),
    }
)
job = estimator.latest_training_job.describe()
print("training job", job["TrainingJobName"], job["TrainingJobStatus"])
for metric in job.get("FinalMetricDataList", []):
    print(f"  {metric['MetricName']} = {metric['Value']:.4f}")

endpoint_name = f"xgboost-example-{int(time.time())}"
predictor = estimator.deploy(
    initial_instance_count=1,
    instance_type="ml.m5.large",
    endpoint_name=endpoint_name,
    serializer=CSVSerializer(),
    deserializer=CSVDeserializer(),
    wait=False,
)
session.wait_for_endpoint(endpoint_name, poll=1)  # the SDK's default poll is 30 s
try:
    features = [[3, 1], [5, 2], [0, 0]]
    predictions = [float(value) for row in predictor.predict(features) for value in row]
    for (a, b), prediction in zip(features, predictions):
        print(f"  a={a} b={b}: predicted {prediction:.2f}, expected {2 * a + b}")
    if any(abs(prediction - (2 * a + b)) > 1.0 for (a, b), prediction in zip(features, predictions)):
        raise SystemExit("the model's predictions are further from y = 2a + b than expected")
finally:
    predictor.delete_endpoint()  # an endpoint holds a model server process until it is deleted
print("done: trained, deployed, invoked and deleted", endpoint_name)
