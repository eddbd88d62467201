"""The classic SageMaker pipeline (SageMaker SDK v2): processing -> training -> evaluation -> condition ->
register the model and batch-transform with it, or fail.

    eval "$(selfmaker env --write-sdk-config)"
    python examples/pipeline_classic.py

The steps' code is in examples/pipeline_code/. Watch the execution as a live graph in the web console
(http://localhost:7600/console, Pipelines).
"""

from pathlib import Path

import boto3
from botocore.exceptions import WaiterError
from sagemaker import image_uris
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.model import Model
from sagemaker.model_metrics import MetricsSource, ModelMetrics
from sagemaker.processing import ProcessingInput, ProcessingOutput, ScriptProcessor
from sagemaker.sklearn.processing import SKLearnProcessor
from sagemaker.transformer import Transformer
from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import ConditionLessThanOrEqualTo
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.parameters import ParameterFloat, ParameterString
from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep, TrainingStep, TransformStep

CODE = Path(__file__).parent / "pipeline_code"
GROUP = "example-pipeline-models"  # the model registry's package group

session = PipelineSession()  # steps are recorded into the definition instead of run at once
bucket, prefix = session.default_bucket(), "examples/pipeline"
region = session.boto_region_name
s3 = boto3.client("s3")
# y = 2a + b: the raw data the pipeline splits, and rows (without the label) to batch-transform.
s3.put_object(
    Bucket=bucket,
    Key=f"{prefix}/raw/data.csv",
    Body="".join(f"{2 * (i % 7) + i % 3},{i % 7},{i % 3}\n" for i in range(120)),
)
s3.put_object(Bucket=bucket, Key=f"{prefix}/batch/batch.csv", Body="1,2\n3,0\n6,1\n")

input_data = ParameterString("InputData", default_value=f"s3://{bucket}/{prefix}/raw")
mse_threshold = ParameterFloat("MseThreshold", default_value=1.0)

sklearn = SKLearnProcessor(
    framework_version="1.2-1", instance_type="ml.m5.large", instance_count=1, sagemaker_session=session
)
prepare = ProcessingStep(
    "Prepare",
    step_args=sklearn.run(
        code=str(CODE / "preprocess.py"),
        inputs=[ProcessingInput(source=input_data, destination="/opt/ml/processing/input")],
        outputs=[
            ProcessingOutput(output_name="train", source="/opt/ml/processing/train"),
            ProcessingOutput(output_name="test", source="/opt/ml/processing/test"),
        ],
    ),
)

image = image_uris.retrieve("xgboost", region, "1.7-1")
xgb = Estimator(
    image_uri=image,
    instance_count=1,
    instance_type="ml.m5.large",
    output_path=f"s3://{bucket}/{prefix}/model",
    sagemaker_session=session,
)
xgb.set_hyperparameters(objective="reg:squarederror", num_round=20, max_depth=3, eta=0.5)
train = TrainingStep(
    "Train",
    step_args=xgb.fit(
        {
            "train": TrainingInput(
                prepare.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri, content_type="text/csv"
            )
        }
    ),
)

report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
evaluator = ScriptProcessor(
    image_uri=image, command=["python3"], instance_type="ml.m5.large", instance_count=1, sagemaker_session=session
)
evaluate = ProcessingStep(
    "Evaluate",
    property_files=[report],
    step_args=evaluator.run(
        code=str(CODE / "evaluate.py"),
        inputs=[
            ProcessingInput(
                source=train.properties.ModelArtifacts.S3ModelArtifacts, destination="/opt/ml/processing/model"
            ),
            ProcessingInput(
                source=prepare.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
                destination="/opt/ml/processing/test",
            ),
        ],
        outputs=[ProcessingOutput(output_name="evaluation", source="/opt/ml/processing/evaluation")],
    ),
)

model = Model(image_uri=image, model_data=train.properties.ModelArtifacts.S3ModelArtifacts, sagemaker_session=session)
metrics = ModelMetrics(
    model_statistics=MetricsSource(
        content_type="application/json",
        s3_uri=Join(
            on="/",
            values=[evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, "evaluation.json"],
        ),
    )
)
register = ModelStep(
    "Register",
    step_args=model.register(
        content_types=["text/csv"],
        response_types=["text/csv"],
        inference_instances=["ml.m5.large"],
        transform_instances=["ml.m5.large"],
        model_package_group_name=GROUP,
        approval_status="Approved",
        model_metrics=metrics,
    ),
)
create_model = ModelStep("CreateModel", step_args=model.create(instance_type="ml.m5.large"))
transformer = Transformer(
    model_name=create_model.properties.ModelName,
    instance_type="ml.m5.large",
    instance_count=1,
    output_path=f"s3://{bucket}/{prefix}/transformed",
    accept="text/csv",
    sagemaker_session=session,
)
transform = TransformStep(
    "Transform", step_args=transformer.transform(data=f"s3://{bucket}/{prefix}/batch", content_type="text/csv")
)
too_high = FailStep("MseTooHigh", error_message=Join(on=" ", values=["test MSE above", mse_threshold]))
check = ConditionStep(
    "CheckMse",
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
    "example-classic",
    parameters=[input_data, mse_threshold],
    steps=[prepare, train, evaluate, check],
    sagemaker_session=session,
)
pipeline.upsert()  # the role comes from the SDK config (Pipeline.RoleArn); creates, or updates a re-run
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
