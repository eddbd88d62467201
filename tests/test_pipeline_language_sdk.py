"""The pipeline language (selfmaker/engines/pipeline_language) on definitions the real SageMaker SDK v2 and v3 write."""

from __future__ import annotations

import json

import pytest

from selfmaker.engines.pipeline_language import cast_parameters, condition_holds, evaluate, parse
from support.pipeline_definitions import DESCRIBE_PROCESSING, DESCRIBE_TRAINING, FakeScope

# ---- the real SDK v2's definition -----------------------------------------------------------------------

SDK_V2_CLASSIC_PIPELINE = """
import json, os, tempfile
from sagemaker import image_uris
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.model import Model
from sagemaker.model_metrics import MetricsSource, ModelMetrics
from sagemaker.processing import ProcessingInput, ProcessingOutput, ScriptProcessor
from sagemaker.sklearn.processing import SKLearnProcessor
from sagemaker.transformer import Transformer
from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import (ConditionEquals, ConditionIn, ConditionLessThanOrEqualTo, ConditionNot,
                                           ConditionOr)
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.parameters import ParameterBoolean, ParameterFloat, ParameterInteger, ParameterString
from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.retry import (SageMakerJobExceptionTypeEnum, SageMakerJobStepRetryPolicy,
                                      StepExceptionTypeEnum, StepRetryPolicy)
from sagemaker.workflow.steps import CacheConfig, ProcessingStep, TrainingStep, TransformStep

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
session = PipelineSession()
bucket = session.default_bucket()
code = tempfile.mkdtemp()
for script in ("preprocess.py", "evaluate.py"):
    with open(os.path.join(code, script), "w") as f:
        f.write("print('hello')\\n")

instance_count = ParameterInteger(name="ProcessingInstanceCount", default_value=1)
instance_type = ParameterString(name="TrainingInstanceType", default_value="ml.m5.xlarge")
approval = ParameterString(name="ModelApprovalStatus", default_value="PendingManualApproval",
                           enum_values=["PendingManualApproval", "Approved"])
input_data = ParameterString(name="InputData", default_value=f"s3://{bucket}/abalone/abalone.csv")
threshold = ParameterFloat(name="MseThreshold", default_value=6.0)
use_gpu = ParameterBoolean(name="UseGpu", default_value=False)

sklearn = SKLearnProcessor(framework_version="1.2-1", role=ROLE, instance_type="ml.m5.xlarge",
                           instance_count=instance_count, sagemaker_session=session)
process = ProcessingStep(name="AbaloneProcess", cache_config=CacheConfig(enable_caching=True, expire_after="PT1H"),
    step_args=sklearn.run(inputs=[ProcessingInput(source=input_data, destination="/opt/ml/processing/input")],
                          outputs=[ProcessingOutput(output_name=n, source=f"/opt/ml/processing/{n}")
                                   for n in ("train", "validation", "test")],
                          code=os.path.join(code, "preprocess.py")))

image = image_uris.retrieve("xgboost", "us-east-1", "1.7-1")
xgb = Estimator(image_uri=image, role=ROLE, instance_type=instance_type, instance_count=1,
                output_path=f"s3://{bucket}/AbaloneTrain", sagemaker_session=session)
xgb.set_hyperparameters(objective="reg:linear", num_round=50, max_depth=5, eta=0.2)
outputs = process.properties.ProcessingOutputConfig.Outputs
train = TrainingStep(name="AbaloneTrain", step_args=xgb.fit({
        "train": TrainingInput(outputs["train"].S3Output.S3Uri, content_type="text/csv"),
        "validation": TrainingInput(outputs["validation"].S3Output.S3Uri, content_type="text/csv")}),
    retry_policies=[StepRetryPolicy(exception_types=[StepExceptionTypeEnum.SERVICE_FAULT,
                                                     StepExceptionTypeEnum.THROTTLING],
                                    interval_seconds=10, backoff_rate=2.0, max_attempts=3),
                    SageMakerJobStepRetryPolicy(exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR],
                                                interval_seconds=1, max_attempts=5)])

report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
evaluator = ScriptProcessor(image_uri=image, command=["python3"], role=ROLE, instance_type="ml.m5.xlarge",
                            instance_count=1, sagemaker_session=session)
evaluate = ProcessingStep(name="AbaloneEval", property_files=[report],
    step_args=evaluator.run(
        inputs=[ProcessingInput(source=train.properties.ModelArtifacts.S3ModelArtifacts,
                                destination="/opt/ml/processing/model"),
                ProcessingInput(source=outputs["test"].S3Output.S3Uri, destination="/opt/ml/processing/test")],
        outputs=[ProcessingOutput(output_name="evaluation", source="/opt/ml/processing/evaluation")],
        code=os.path.join(code, "evaluate.py")))

model = Model(image_uri=image, model_data=train.properties.ModelArtifacts.S3ModelArtifacts, role=ROLE,
              sagemaker_session=session)
metrics = ModelMetrics(model_statistics=MetricsSource(
    s3_uri=Join(on="/", values=[evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
                                "evaluation.json"]),
    content_type="application/json"))
register = ModelStep(name="AbaloneRegisterModel", step_args=model.register(
    content_types=["text/csv"], response_types=["text/csv"], inference_instances=["ml.t2.medium", "ml.m5.xlarge"],
    transform_instances=["ml.m5.xlarge"], model_package_group_name="AbaloneModelPackageGroupName",
    approval_status=approval, model_metrics=metrics))
create = ModelStep(name="AbaloneCreateModel", step_args=model.create(instance_type="ml.m5.xlarge"))
transformer = Transformer(model_name=create.properties.ModelName, instance_type="ml.m5.xlarge", instance_count=1,
                          output_path=f"s3://{bucket}/AbaloneTransform", sagemaker_session=session)
transform = TransformStep(name="AbaloneTransform",
                          step_args=transformer.transform(data=f"s3://{bucket}/batch-data", content_type="text/csv"))
fail = FailStep(name="AbaloneMSEFail", error_message=Join(on=" ", values=["Execution failed due to MSE >", threshold]))
condition = ConditionStep(name="AbaloneMSECond",
    conditions=[ConditionLessThanOrEqualTo(
                    left=JsonGet(step_name=evaluate.name, property_file=report, json_path="regression_metrics.mse.value"),
                    right=threshold),
                ConditionOr(conditions=[ConditionNot(expression=ConditionEquals(left=use_gpu, right=True)),
                                        ConditionIn(value=instance_type, in_values=["ml.m5.xlarge", "ml.m5.2xlarge"])])],
    if_steps=[register, create, transform], else_steps=[fail])

pipeline = Pipeline(name="AbalonePipeline", parameters=[instance_count, instance_type, approval, input_data,
                                                       threshold, use_gpu],
                    steps=[process, train, evaluate, condition], sagemaker_session=session)
print(json.dumps({"definition": pipeline.definition()}))
"""


@pytest.fixture(scope="module")
def sdk_v2_definition(sdk_v2, server):
    return sdk_v2.run(server, SDK_V2_CLASSIC_PIPELINE)["definition"]


def test_the_sdk_v2_classic_pipeline_parses_with_its_data_dependencies(sdk_v2_definition):
    definition = parse(sdk_v2_definition)
    steps = definition.steps
    assert set(steps) == {
        "AbaloneProcess",
        "AbaloneTrain",
        "AbaloneEval",
        "AbaloneMSECond",
        "AbaloneRegisterModel-RegisterModel",
        "AbaloneCreateModel-CreateModel",
        "AbaloneTransform",
        "AbaloneMSEFail",
    }
    assert {name: step.type for name, step in steps.items()} == {
        "AbaloneProcess": "Processing",
        "AbaloneTrain": "Training",
        "AbaloneEval": "Processing",
        "AbaloneMSECond": "Condition",
        "AbaloneRegisterModel-RegisterModel": "RegisterModel",
        "AbaloneCreateModel-CreateModel": "Model",
        "AbaloneTransform": "Transform",
        "AbaloneMSEFail": "Fail",
    }
    assert steps["AbaloneTrain"].depends_on == {"AbaloneProcess"}
    assert steps["AbaloneEval"].depends_on == {"AbaloneProcess", "AbaloneTrain"}
    assert steps["AbaloneMSECond"].depends_on == {"AbaloneEval"}
    assert steps["AbaloneRegisterModel-RegisterModel"].depends_on == {"AbaloneTrain", "AbaloneEval"}
    assert steps["AbaloneTransform"].depends_on == {"AbaloneCreateModel-CreateModel"}
    assert steps["AbaloneTransform"].branch == ("AbaloneMSECond", True)
    assert steps["AbaloneMSEFail"].branch == ("AbaloneMSECond", False)
    assert steps["AbaloneEval"].property_files == (
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"},
    )
    assert [p["MaxAttempts"] for p in steps["AbaloneTrain"].retry_policies] == [3, 5]
    assert definition.parameters["MseThreshold"].default == 6.0 and definition.parameters["UseGpu"].default is False


def test_the_sdk_v2_classic_pipeline_evaluates(sdk_v2_definition):
    definition = parse(sdk_v2_definition)
    values = cast_parameters(
        definition, [{"Name": "MseThreshold", "Value": "5.0"}, {"Name": "UseGpu", "Value": "True"}]
    )
    scope = FakeScope(
        parameters=values,
        properties={
            "AbaloneProcess": DESCRIBE_PROCESSING,
            "AbaloneTrain": DESCRIBE_TRAINING,
            "AbaloneEval": {
                "ProcessingOutputConfig": {
                    "Outputs": [{"OutputName": "evaluation", "S3Output": {"S3Uri": "s3://b/eval"}}]
                }
            },
            "AbaloneCreateModel-CreateModel": {"ModelName": "pipelines-2drr2511ngo3-model"},
        },
        files={("AbaloneEval", "EvaluationReport"): {"regression_metrics": {"mse": {"value": 4.2}}}},
    )
    training = evaluate(definition.steps["AbaloneTrain"].arguments, scope)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in training["InputDataConfig"]}
    assert channels["validation"].endswith("/AbaloneProcess/output/validation")
    assert training["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    register = evaluate(definition.steps["AbaloneRegisterModel-RegisterModel"].arguments, scope)
    assert register["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == "s3://b/eval/evaluation.json"
    assert (
        register["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        == DESCRIBE_TRAINING["ModelArtifacts"]["S3ModelArtifacts"]
    )
    assert (
        evaluate(definition.steps["AbaloneTransform"].arguments, scope)["ModelName"] == "pipelines-2drr2511ngo3-model"
    )
    conditions = definition.steps["AbaloneMSECond"].arguments["Conditions"]
    assert condition_holds(conditions, scope) is True  # 4.2 <= 5.0, and the instance type is in the list
    scope.files[("AbaloneEval", "EvaluationReport")] = {"regression_metrics": {"mse": {"value": 5.5}}}
    assert condition_holds(conditions, scope) is False
    assert evaluate(definition.steps["AbaloneMSEFail"].arguments, scope) == {
        "ErrorMessage": "Execution failed due to MSE > 5.0"
    }


SDK_V3_PIPELINE = """
import json
from sagemaker.core import image_uris
from sagemaker.core.processing import Processor
from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionIn, ConditionNot, ConditionOr, ConditionEquals
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterBoolean, ParameterFloat, ParameterInteger, ParameterString
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.retry import StepExceptionTypeEnum, StepRetryPolicy
from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
session = PipelineSession()
bucket = session.default_bucket()
count = ParameterInteger(name="InstanceCount", default_value=1)
data = ParameterString(name="InputData", default_value=f"s3://{bucket}/iris/iris.csv")
threshold = ParameterFloat(name="AccuracyThreshold", default_value=0.8)
strict = ParameterBoolean(name="Strict", default_value=True)
image = image_uris.retrieve("xgboost", "us-east-1", "1.7-1")


def output(step, name):
    return ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
        s3_uri=Join(on="/", values=[f"s3://{bucket}", ExecutionVariables.PIPELINE_EXECUTION_ID, step, name]),
        local_path=f"/opt/ml/processing/{name}", s3_upload_mode="EndOfJob"))


prep = Processor(role=ROLE, image_uri=image, instance_count=count, instance_type="ml.m5.xlarge",
                 entrypoint=["python3", "-c", "print('prep')"], sagemaker_session=session)
process = ProcessingStep(name="Prep", cache_config=CacheConfig(enable_caching=True, expire_after="P30D"),
    step_args=prep.run(inputs=[ProcessingInput(input_name="raw", s3_input=ProcessingS3Input(
        s3_uri=data, local_path="/opt/ml/processing/input", s3_data_type="S3Prefix", s3_input_mode="File"))],
        outputs=[output("Prep", "train"), output("Prep", "test")]))

trainer = ModelTrainer(training_image=image, role=ROLE, sagemaker_session=session,
                       compute=Compute(instance_type="ml.m5.xlarge", instance_count=1),
                       hyperparameters={"objective": "multi:softmax", "num_class": "3", "num_round": "10"})
train = TrainingStep(name="Train", retry_policies=[StepRetryPolicy(
        exception_types=[StepExceptionTypeEnum.SERVICE_FAULT], interval_seconds=5, max_attempts=2)],
    step_args=trainer.train(input_data_config=[InputData(
        channel_name="train", data_source=process.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri,
        content_type="text/csv")]))

report = PropertyFile(name="Metrics", output_name="evaluation", path="metrics.json")
evaluator = Processor(role=ROLE, image_uri=image, instance_count=1, instance_type="ml.m5.xlarge",
                      entrypoint=["python3", "-c", "print('eval')"], sagemaker_session=session)
evaluate = ProcessingStep(name="Evaluate", property_files=[report], step_args=evaluator.run(
    inputs=[ProcessingInput(input_name="model", s3_input=ProcessingS3Input(
                s3_uri=train.properties.ModelArtifacts.S3ModelArtifacts, local_path="/opt/ml/processing/model",
                s3_data_type="S3Prefix", s3_input_mode="File")),
            ProcessingInput(input_name="test", s3_input=ProcessingS3Input(
                s3_uri=process.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
                local_path="/opt/ml/processing/test", s3_data_type="S3Prefix", s3_input_mode="File"))],
    outputs=[output("Evaluate", "evaluation")]))

fail = FailStep(name="TooInaccurate", error_message=Join(on=" ", values=["accuracy below", threshold]))
gate = ConditionStep(name="Gate",
    conditions=[ConditionGreaterThanOrEqualTo(
                    left=JsonGet(step_name=evaluate.name, property_file=report, json_path="metrics.accuracy.value"),
                    right=threshold),
                ConditionOr(conditions=[ConditionNot(expression=ConditionEquals(left=strict, right=False)),
                                        ConditionIn(value=count, in_values=[1, 2])])],
    if_steps=[], else_steps=[fail])
pipeline = Pipeline(name="IrisPipeline", parameters=[count, data, threshold, strict],
                    steps=[process, train, evaluate, gate], sagemaker_session=session)
print(json.dumps({"definition": pipeline.definition()}))
"""


@pytest.fixture(scope="module")
def sdk_v3_definition(sdk_v3, server):
    return sdk_v3.run(server, SDK_V3_PIPELINE)["definition"]


def test_an_sdk_v3_pipeline_parses_and_evaluates(sdk_v3_definition):
    assert json.loads(sdk_v3_definition)["MlflowConfig"] is None  # v3 writes the key even when unused
    definition = parse(sdk_v3_definition)
    steps = definition.steps
    assert {name: (step.type, step.depends_on, step.branch) for name, step in steps.items()} == {
        "Prep": ("Processing", frozenset(), None),
        "Train": ("Training", {"Prep"}, None),
        "Evaluate": ("Processing", {"Prep", "Train"}, None),
        "Gate": ("Condition", {"Evaluate"}, None),
        "TooInaccurate": ("Fail", frozenset(), ("Gate", False)),
    }
    values = cast_parameters(
        definition,
        [
            {"Name": "AccuracyThreshold", "Value": "0.9"},
            {"Name": "Strict", "Value": "False"},
            {"Name": "InstanceCount", "Value": "3"},
        ],
    )
    scope = FakeScope(
        parameters=values,
        properties={
            "Prep": {
                "ProcessingOutputConfig": {
                    "Outputs": [{"OutputName": "train", "S3Output": {"S3Uri": "s3://b/2DRR2511NGO3/Prep/train"}}]
                }
            }
        },
        files={("Evaluate", "Metrics"): {"metrics": {"accuracy": {"value": 0.95}}}},
    )
    training = evaluate(steps["Train"].arguments, scope)
    assert training["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/2DRR2511NGO3/Prep/train"
    assert evaluate(steps["Prep"].arguments, scope)["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3
    conditions = steps["Gate"].arguments["Conditions"]
    assert condition_holds(conditions, scope) is False  # not strict, and 3 instances is not in [1, 2]
    scope.parameters["InstanceCount"] = 2
    assert condition_holds(conditions, scope) is True
    assert evaluate(steps["TooInaccurate"].arguments, scope) == {"ErrorMessage": "accuracy below 0.9"}
