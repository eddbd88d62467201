"""The classic SageMaker pipeline (SageMaker SDK v3): processing -> training -> evaluation -> condition ->
register the model and batch-transform with it, or fail.

    eval "$(selfmaker env --write-sdk-config)"
    python examples/pipeline_classic_v3.py

The v2 version is pipeline_classic.py, with the same step code (examples/pipeline_code/). In v3 the
pipeline classes live in sagemaker.mlops.workflow and sagemaker.core.workflow, ModelTrainer trains,
ModelBuilder registers and creates the model, and processing inputs and outputs are API shapes.
"""

import logging
from pathlib import Path

import boto3
from botocore.exceptions import WaiterError
from sagemaker.core import image_uris
from sagemaker.core.processing import ScriptProcessor
from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
from sagemaker.core.transformer import Transformer
from sagemaker.core.workflow.conditions import ConditionLessThanOrEqualTo
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterFloat
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep, TransformStep
from sagemaker.serve.model_builder import ModelBuilder
from sagemaker.train.configs import Compute, InputData, OutputDataConfig
from sagemaker.train.model_trainer import ModelTrainer

logging.basicConfig(level=logging.WARNING)
CODE = Path(__file__).parent / "pipeline_code"
GROUP = "example-pipeline-v3-models"

session = PipelineSession()
bucket, prefix = session.default_bucket(), "examples/pipeline-v3"
region = session.boto_region_name
role = session.sagemaker_config["SageMaker"]["Pipeline"]["RoleArn"]
s3 = boto3.client("s3")
s3.put_object(
    Bucket=bucket,
    Key=f"{prefix}/raw/data.csv",
    Body="".join(f"{2 * (i % 7) + i % 3},{i % 7},{i % 3}\n" for i in range(120)),
)
s3.put_object(Bucket=bucket, Key=f"{prefix}/batch/batch.csv", Body="1,2\n3,0\n6,1\n")
mse_threshold = ParameterFloat("MseThreshold", default_value=1.0)


def s3_input(name, uri, local_path):
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(s3_uri=uri, local_path=local_path, s3_data_type="S3Prefix", s3_input_mode="File"),
    )


def s3_output(name, local_path):
    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(
            s3_uri=f"s3://{bucket}/{prefix}/{name}", local_path=local_path, s3_upload_mode="EndOfJob"
        ),
    )


sklearn_image = image_uris.retrieve("sklearn", region, "1.2-1")
xgboost_image = image_uris.retrieve("xgboost", region, "1.7-1")

splitter = ScriptProcessor(
    image_uri=sklearn_image,
    command=["python3"],
    role=role,
    instance_type="ml.m5.large",
    instance_count=1,
    sagemaker_session=session,
)
prepare = ProcessingStep(
    name="Prepare",
    step_args=splitter.run(
        code=str(CODE / "preprocess.py"),
        inputs=[s3_input("input", f"s3://{bucket}/{prefix}/raw", "/opt/ml/processing/input")],
        outputs=[s3_output("train", "/opt/ml/processing/train"), s3_output("test", "/opt/ml/processing/test")],
    ),
)

trainer = ModelTrainer(
    training_image=xgboost_image,
    role=role,
    sagemaker_session=session,
    compute=Compute(instance_type="ml.m5.large", instance_count=1),
    hyperparameters={"objective": "reg:squarederror", "num_round": "20", "max_depth": "3", "eta": "0.5"},
    output_data_config=OutputDataConfig(s3_output_path=f"s3://{bucket}/{prefix}/model"),
)
train = TrainingStep(
    name="Train",
    step_args=trainer.train(
        input_data_config=[
            InputData(
                channel_name="train",
                data_source=prepare.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri,
                content_type="text/csv",
            )
        ]
    ),
)

report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
evaluator = ScriptProcessor(
    image_uri=xgboost_image,
    command=["python3"],
    role=role,
    instance_type="ml.m5.large",
    instance_count=1,
    sagemaker_session=session,
)
evaluate = ProcessingStep(
    name="Evaluate",
    property_files=[report],
    step_args=evaluator.run(
        code=str(CODE / "evaluate.py"),
        inputs=[
            s3_input("model", train.properties.ModelArtifacts.S3ModelArtifacts, "/opt/ml/processing/model"),
            s3_input(
                "test",
                prepare.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
                "/opt/ml/processing/test",
            ),
        ],
        outputs=[s3_output("evaluation", "/opt/ml/processing/evaluation")],
    ),
)

builder = ModelBuilder(
    image_uri=xgboost_image,
    s3_model_data_url=train.properties.ModelArtifacts.S3ModelArtifacts,
    role_arn=role,
    sagemaker_session=session,
)
register = ModelStep(
    name="Register",
    step_args=builder.register(
        model_package_group_name=GROUP,
        content_types=["text/csv"],
        response_types=["text/csv"],
        inference_instances=["ml.m5.large"],
        transform_instances=["ml.m5.large"],
        approval_status="Approved",
    ),
)
create_model = ModelStep(name="CreateModel", step_args=builder.build())
transformer = Transformer(
    model_name=create_model.properties.ModelName,
    instance_type="ml.m5.large",
    instance_count=1,
    output_path=f"s3://{bucket}/{prefix}/transformed",
    accept="text/csv",
    sagemaker_session=session,
)
transform = TransformStep(
    name="Transform", step_args=transformer.transform(data=f"s3://{bucket}/{prefix}/batch", content_type="text/csv")
)
too_high = FailStep(name="MseTooHigh", error_message=Join(on=" ", values=["test MSE above", mse_threshold]))
check = ConditionStep(
    name="CheckMse",
    conditions=[
        ConditionLessThanOrEqualTo(
            left=JsonGet(step_name=evaluate.name, property_file=report, json_path="regression_metrics.mse.value"),
            right=mse_threshold,
        )
    ],
    if_steps=[register, create_model, transform],
    else_steps=[too_high],
)

pipeline = Pipeline(
    name="example-classic-v3",
    parameters=[mse_threshold],
    steps=[prepare, train, evaluate, check],
    sagemaker_session=session,
)
pipeline.upsert(role_arn=role)
execution = pipeline.start()
print("started", execution.arn)
try:
    execution.wait(delay=2, max_attempts=300)
except WaiterError:
    pass  # a failed execution: its steps say why, below
status = execution.describe()["PipelineExecutionStatus"]
for step in reversed(execution.list_steps()):  # oldest first
    print(f"  {step['StepName']:<28} {step['StepStatus']}  {step.get('FailureReason', '')}")
print("execution", status)
if status != "Succeeded":
    raise SystemExit(f"the pipeline execution ended {status}")

latest = boto3.client("sagemaker").list_model_packages(
    ModelPackageGroupName=GROUP, SortBy="CreationTime", SortOrder="Descending"
)["ModelPackageSummaryList"][0]
print("registered", latest["ModelPackageArn"], latest["ModelApprovalStatus"])
predictions = s3.get_object(Bucket=bucket, Key=f"{prefix}/transformed/batch.csv.out")["Body"].read().decode()
print("batch predictions for (1,2), (3,0), (6,1):", predictions.split())
