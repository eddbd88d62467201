"""Train the built-in XGBoost algorithm, deploy the model to an endpoint and invoke it (SageMaker SDK v3).

    eval "$(selfmaker env --write-sdk-config)"
    python examples/xgboost_train_deploy_v3.py

The v2 version is xgboost_train_deploy.py. In v3, ModelTrainer trains, and the resource classes of
sagemaker.core (Model, EndpointConfig, Endpoint) deploy. The role comes from the SDK config
(TrainingJob.RoleArn, Model.ExecutionRoleArn), the bucket from its DefaultS3Bucket.
"""

import logging
import time

import boto3
from sagemaker.core import image_uris
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.core.shapes import ContainerDefinition, ProductionVariant
from sagemaker.train.configs import Compute, InputData, OutputDataConfig
from sagemaker.train.model_trainer import ModelTrainer

logging.basicConfig(level=logging.INFO)  # v3 reports through `logging`, configured by the application
session = Session()
bucket = session.default_bucket()
prefix = "examples/xgboost-v3"
role = session.sagemaker_config["SageMaker"]["Model"]["ExecutionRoleArn"]


def rows(count: int, start: int = 0) -> str:
    """CSV with the label first, as the built-in XGBoost expects: y, a, b with y = 2a + b."""
    return "".join(f"{2 * (i % 7) + i % 3},{i % 7},{i % 3}\n" for i in range(start, start + count))


s3 = boto3.client("s3")
s3.put_object(Bucket=bucket, Key=f"{prefix}/train/train.csv", Body=rows(200))

image = image_uris.retrieve("xgboost", session.boto_region_name, "1.7-1")
trainer = ModelTrainer(
    training_image=image,
    base_job_name="xgboost-example-v3",
    compute=Compute(instance_type="ml.m5.large", instance_count=1),
    hyperparameters={"objective": "reg:squarederror", "num_round": "20", "max_depth": "3", "eta": "0.5"},
    output_data_config=OutputDataConfig(s3_output_path=f"s3://{bucket}/{prefix}/output"),
)
trainer.train(
    input_data_config=[
        InputData(channel_name="train", data_source=f"s3://{bucket}/{prefix}/train", content_type="text/csv")
    ],
    wait=True,
    logs=True,
)
job = trainer._latest_training_job
job.refresh()
print("training job", job.training_job_name, job.training_job_status)

name = f"xgboost-example-v3-{int(time.time())}"
Model.create(
    model_name=name,
    execution_role_arn=role,
    primary_container=ContainerDefinition(image=image, model_data_url=job.model_artifacts.s3_model_artifacts),
)
EndpointConfig.create(
    endpoint_config_name=name,
    production_variants=[
        ProductionVariant(
            variant_name="AllTraffic", model_name=name, instance_type="ml.m5.large", initial_instance_count=1
        )
    ],
)
endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=name)
endpoint.wait_for_status("InService", poll=1, timeout=600)
try:
    features = [[3, 1], [5, 2], [0, 0]]
    answer = endpoint.invoke(
        body="\n".join(f"{a},{b}" for a, b in features), content_type="text/csv", accept="text/csv"
    )
    body = answer.body.read() if hasattr(answer.body, "read") else answer.body
    predictions = [float(value) for value in body.decode().replace(",", " ").split()]  # one row per line, or one line
    for (a, b), prediction in zip(features, predictions):
        print(f"  a={a} b={b}: predicted {prediction:.2f}, expected {2 * a + b}")
    if any(abs(prediction - (2 * a + b)) > 1.0 for (a, b), prediction in zip(features, predictions)):
        raise SystemExit("the model's predictions are further from y = 2a + b than expected")
finally:
    endpoint.delete()  # an endpoint holds a model server process until it is deleted
print("done: trained, deployed, invoked and deleted", name)
