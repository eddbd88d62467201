"""Pipelines through the real SageMaker SDK: the classic shape of the SageMaker examples.

Processing (scikit-learn script) -> Training (built-in XGBoost) -> evaluation
Processing with a PropertyFile -> Condition on JsonGet -> RegisterModel, Model
and Transform, or else Fail. Upserted twice (create, then update), started
with parameter overrides, followed with ``execution.wait()`` and
``list_steps()``; one run takes each branch.
"""

from __future__ import annotations

from support.sdk import run_captured

# y = 2a + b: XGBoost learns it well enough that the MSE on the test rows is small, never zero.
DATA = "".join(f"{2 * (i % 7) + (i % 3)},{i % 7},{i % 3}\n" for i in range(80))

PREPROCESS = """
import os
rows = open('/opt/ml/processing/input/data.csv').read().splitlines()
for name, part in (('train', rows[:60]), ('test', rows[60:])):
    os.makedirs(f'/opt/ml/processing/{name}', exist_ok=True)
    open(f'/opt/ml/processing/{name}/{name}.csv', 'w').write('\\n'.join(part) + '\\n')
print('split', len(rows), 'rows')
"""

EVALUATE = """
import json, os, tarfile
import numpy as np
import xgboost
with tarfile.open('/opt/ml/processing/model/model.tar.gz') as tar:
    tar.extractall('/tmp/model')
booster = xgboost.Booster()
booster.load_model('/tmp/model/xgboost-model')
data = np.loadtxt('/opt/ml/processing/test/test.csv', delimiter=',')
predictions = booster.predict(xgboost.DMatrix(data[:, 1:]))
mse = float(np.mean((predictions - data[:, 0]) ** 2))
os.makedirs('/opt/ml/processing/evaluation', exist_ok=True)
json.dump({'regression_metrics': {'mse': {'value': mse}}}, open('/opt/ml/processing/evaluation/evaluation.json', 'w'))
print('mse', mse)
"""

CLASSIC_V2 = """
    import json, os, boto3
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

    bucket, prefix = "selfmaker-sdk-tests", "pipelines-v2"
    role = "arn:aws:iam::123456789012:role/SageMakerRole"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=f"{{prefix}}/raw/data.csv", Body={data!r})
    s3.put_object(Bucket=bucket, Key=f"{{prefix}}/batch/batch.csv", Body="1,2\\n3,0\\n")
    open("preprocess.py", "w").write({preprocess!r})
    open("evaluate.py", "w").write({evaluate!r})
    session = PipelineSession()

    input_data = ParameterString("InputData", default_value=f"s3://{{bucket}}/{{prefix}}/raw")
    threshold = ParameterFloat("MseThreshold", default_value=0.0)
    approval = ParameterString("ModelApprovalStatus", default_value="PendingManualApproval",
                               enum_values=["PendingManualApproval", "Approved"])

    sklearn = SKLearnProcessor(framework_version="1.2-1", role=role, instance_type="ml.m5.large", instance_count=1,
                               sagemaker_session=session)
    prepare = ProcessingStep("Prepare", step_args=sklearn.run(
        code="preprocess.py", inputs=[ProcessingInput(source=input_data, destination="/opt/ml/processing/input")],
        outputs=[ProcessingOutput(output_name="train", source="/opt/ml/processing/train"),
                 ProcessingOutput(output_name="test", source="/opt/ml/processing/test")]))

    image = image_uris.retrieve("xgboost", "us-east-1", "1.7-1")
    xgb = Estimator(image_uri=image, role=role, instance_count=1, instance_type="ml.m5.large",
                    output_path=f"s3://{{bucket}}/{{prefix}}/model", sagemaker_session=session)
    xgb.set_hyperparameters(objective="reg:squarederror", num_round=20, max_depth=3, eta=0.5)
    train = TrainingStep("Train", step_args=xgb.fit({{"train": TrainingInput(
        prepare.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri, content_type="text/csv")}}))

    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluator = ScriptProcessor(image_uri=image, command=["python3"], role=role, instance_type="ml.m5.large",
                                instance_count=1, sagemaker_session=session)
    evaluate = ProcessingStep("Evaluate", property_files=[report], step_args=evaluator.run(
        code="evaluate.py",
        inputs=[ProcessingInput(source=train.properties.ModelArtifacts.S3ModelArtifacts,
                                destination="/opt/ml/processing/model"),
                ProcessingInput(source=prepare.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
                                destination="/opt/ml/processing/test")],
        outputs=[ProcessingOutput(output_name="evaluation", source="/opt/ml/processing/evaluation")]))

    model = Model(image_uri=image, model_data=train.properties.ModelArtifacts.S3ModelArtifacts, role=role,
                  sagemaker_session=session)
    metrics = ModelMetrics(model_statistics=MetricsSource(content_type="application/json", s3_uri=Join(on="/", values=[
        evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, "evaluation.json"])))
    register = ModelStep("Register", step_args=model.register(
        content_types=["text/csv"], response_types=["text/csv"], inference_instances=["ml.m5.large"],
        transform_instances=["ml.m5.large"], model_package_group_name="pipelines-v2-models",
        approval_status=approval, model_metrics=metrics))
    create_model = ModelStep("Model", step_args=model.create(instance_type="ml.m5.large"))
    if_steps = [register, create_model]
    if {transform}:
        transformer = Transformer(model_name=create_model.properties.ModelName, instance_type="ml.m5.large",
                                  instance_count=1, output_path=f"s3://{{bucket}}/{{prefix}}/transformed",
                                  sagemaker_session=session)
        if_steps.append(TransformStep("Transform", step_args=transformer.transform(
            data=f"s3://{{bucket}}/{{prefix}}/batch", content_type="text/csv")))
    fail = FailStep("MseTooHigh", error_message=Join(on=" ", values=["MSE above", threshold]))
    check = ConditionStep("CheckMse", if_steps=if_steps, else_steps=[fail], conditions=[ConditionLessThanOrEqualTo(
        left=JsonGet(step_name=evaluate.name, property_file=report, json_path="regression_metrics.mse.value"),
        right=threshold)])

    pipeline = Pipeline("classic-v2", parameters=[input_data, threshold, approval],
                        steps=[prepare, train, evaluate, check], sagemaker_session=session)
    created = pipeline.upsert(role_arn=role)
    updated = pipeline.upsert(role_arn=role)  # exists: the SDK falls back to UpdatePipeline

    def run(parameters):
        execution = pipeline.start(parameters=parameters)
        try:
            execution.wait(delay=1, max_attempts=900)
        except WaiterError:
            pass  # a Failed execution
        return {{"arn": execution.arn, "status": execution.describe()["PipelineExecutionStatus"],
                "reason": execution.describe().get("FailureReason"),
                "steps": {{s["StepName"]: {{"status": s["StepStatus"], "metadata": s.get("Metadata", {{}})}}
                          for s in execution.list_steps()}}}}

    good = run({{"MseThreshold": 1000.0, "ModelApprovalStatus": "Approved"}})
    bad = run({{"MseThreshold": 0.0}})
    packages = boto3.client("sagemaker").list_model_packages(ModelPackageGroupName="pipelines-v2-models")
    # Lineage: the execution's context, and what its Model and RegisterModel steps made.
    sm = boto3.client("sagemaker")
    context = sm.describe_context(ContextName="pipeline-execution-" + good["arn"].rsplit("/", 1)[-1])
    lineage = {{}}
    for association in sm.list_associations(DestinationArn=context["ContextArn"])["AssociationSummaries"]:
        if ":artifact/" in association["SourceArn"]:
            artifact = sm.describe_artifact(ArtifactArn=association["SourceArn"])
            upstream = sm.list_associations(DestinationArn=artifact["ArtifactArn"])["AssociationSummaries"]
            lineage[artifact["Source"]["SourceUri"]] = [artifact["ArtifactType"], len(upstream)]
    transformed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{{prefix}}/transformed").get("Contents", [])
    print("RESULT " + json.dumps({{"created": created["PipelineArn"], "version": updated.get("PipelineVersionId"),
                                  "good": good, "bad": bad, "transformed": [o["Key"] for o in transformed],
                                  "packages": [p["ModelApprovalStatus"] for p in packages["ModelPackageSummaryList"]],
                                  "lineage": lineage,
                                  "definition": json.loads(pipeline.definition())["Parameters"]}}, default=str))
"""


def test_v2_classic_pipeline_takes_both_branches(sdk_v2, server):
    result, output = run_captured(
        sdk_v2, server, CLASSIC_V2.format(data=DATA, preprocess=PREPROCESS, evaluate=EVALUATE, transform=True)
    )
    assert result["created"].endswith(":pipeline/classic-v2")
    assert result["version"] == 2

    good = result["good"]
    assert good["status"] == "Succeeded", (good, output[-3000:])
    assert {name: s["status"] for name, s in good["steps"].items()} == {
        "Prepare": "Succeeded",
        "Train": "Succeeded",
        "Evaluate": "Succeeded",
        "CheckMse": "Succeeded",
        "Register-RegisterModel": "Succeeded",
        "Model-CreateModel": "Succeeded",
        "Transform": "Succeeded",
    }
    assert good["steps"]["CheckMse"]["metadata"] == {"Condition": {"Outcome": "True"}}
    assert ":training-job/pipelines-" in good["steps"]["Train"]["metadata"]["TrainingJob"]["Arn"]
    assert (
        ":model-package/pipelines-v2-models/1"
        in good["steps"]["Register-RegisterModel"]["metadata"]["RegisterModel"]["Arn"]
    )
    assert good["steps"]["Transform"]["metadata"]["TransformJob"]["Arn"]
    assert result["packages"] == ["Approved"]
    # The package and the model are artifacts of the execution, each fed by the model data it serves.
    package_arn = good["steps"]["Register-RegisterModel"]["metadata"]["RegisterModel"]["Arn"]
    model_arn = good["steps"]["Model-CreateModel"]["metadata"]["Model"]["Arn"]
    assert result["lineage"] == {package_arn: ["ModelPackage", 1], model_arn: ["Model", 1]}
    assert result["transformed"] == ["pipelines-v2/transformed/batch.csv.out"]

    bad = result["bad"]
    assert bad["status"] == "Failed" and bad["reason"] == "MSE above 0.0"
    assert bad["steps"]["CheckMse"]["metadata"] == {"Condition": {"Outcome": "False"}}
    assert bad["steps"]["MseTooHigh"] == {"status": "Failed", "metadata": {"Fail": {"ErrorMessage": "MSE above 0.0"}}}
    assert "Register-RegisterModel" not in bad["steps"]


CLASSIC_V3 = """
    import json, boto3
    from botocore.exceptions import WaiterError
    from sagemaker.core import image_uris
    from sagemaker.core.processing import ScriptProcessor
    from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
    from sagemaker.core.workflow.conditions import ConditionLessThanOrEqualTo
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.fail_step import FailStep
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train.configs import Compute, InputData, OutputDataConfig
    from sagemaker.train.model_trainer import ModelTrainer

    bucket, prefix = "selfmaker-sdk-tests", "pipelines-v3"
    role = "arn:aws:iam::123456789012:role/SageMakerRole"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=f"{{prefix}}/raw/data.csv", Body={data!r})
    session = PipelineSession()
    threshold = ParameterFloat("MseThreshold", default_value=0.0)
    open("preprocess.py", "w").write({preprocess!r})
    open("evaluate.py", "w").write({evaluate!r})

    sklearn_image = image_uris.retrieve("sklearn", "us-east-1", "1.2-1")
    xgb_image = image_uris.retrieve("xgboost", "us-east-1", "1.7-1")

    def s3_in(name, uri, local):
        return ProcessingInput(input_name=name, s3_input=ProcessingS3Input(s3_uri=uri, local_path=local, s3_data_type="S3Prefix", s3_input_mode="File"))

    def s3_out(name, local):
        return ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
            s3_uri=Join(on="/", values=[f"s3://{{bucket}}/{{prefix}}", name]), local_path=local, s3_upload_mode="EndOfJob"))

    prep = ScriptProcessor(image_uri=sklearn_image, command=["python3"], role=role, instance_type="ml.m5.large",
                           instance_count=1, sagemaker_session=session)
    prepare = ProcessingStep(name="Prepare", step_args=prep.run(
        code="preprocess.py", inputs=[s3_in("input", f"s3://{{bucket}}/{{prefix}}/raw", "/opt/ml/processing/input")],
        outputs=[s3_out("train", "/opt/ml/processing/train"), s3_out("test", "/opt/ml/processing/test")]))

    trainer = ModelTrainer(training_image=xgb_image, role=role, sagemaker_session=session,
                           compute=Compute(instance_type="ml.m5.large", instance_count=1),
                           hyperparameters={{"objective": "reg:squarederror", "num_round": "20", "max_depth": "3"}},
                           output_data_config=OutputDataConfig(s3_output_path=f"s3://{{bucket}}/{{prefix}}/model"))
    train = TrainingStep(name="Train", step_args=trainer.train(input_data_config=[InputData(
        channel_name="train", data_source=prepare.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri,
        content_type="text/csv")]))

    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluator = ScriptProcessor(image_uri=xgb_image, command=["python3"], role=role, instance_type="ml.m5.large",
                                instance_count=1, sagemaker_session=session)
    evaluate = ProcessingStep(name="Evaluate", property_files=[report], step_args=evaluator.run(
        code="evaluate.py",
        inputs=[s3_in("model", train.properties.ModelArtifacts.S3ModelArtifacts, "/opt/ml/processing/model"),
                s3_in("test", prepare.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri, "/opt/ml/processing/test")],
        outputs=[s3_out("evaluation", "/opt/ml/processing/evaluation")]))

    builder = ModelBuilder(image_uri=xgb_image, s3_model_data_url=train.properties.ModelArtifacts.S3ModelArtifacts,
                           role_arn=role, sagemaker_session=session)
    register = ModelStep(name="Register", step_args=builder.register(
        model_package_group_name="pipelines-v3-models", content_types=["text/csv"], response_types=["text/csv"],
        inference_instances=["ml.m5.large"], transform_instances=["ml.m5.large"], approval_status="Approved"))
    fail = FailStep(name="MseTooHigh", error_message=Join(on=" ", values=["MSE above", threshold]))
    check = ConditionStep(name="CheckMse", if_steps=[register], else_steps=[fail], conditions=[ConditionLessThanOrEqualTo(
        left=JsonGet(step_name=evaluate.name, property_file=report, json_path="regression_metrics.mse.value"),
        right=threshold)])
    pipeline = Pipeline(name="classic-v3", parameters=[threshold], steps=[prepare, train, evaluate, check],
                        sagemaker_session=session)
    pipeline.upsert(role_arn=role)

    def run(parameters):
        execution = pipeline.start(parameters=parameters)
        try:
            execution.wait(delay=1, max_attempts=900)
        except WaiterError:
            pass
        described = execution.describe()
        return {{"status": described["PipelineExecutionStatus"], "reason": described.get("FailureReason"),
                "steps": {{s["StepName"]: s["StepStatus"] for s in execution.list_steps()}}}}

    good, bad = run({{"MseThreshold": 1000.0}}), run({{"MseThreshold": 0.0}})
    packages = boto3.client("sagemaker").list_model_packages(ModelPackageGroupName="pipelines-v3-models")
    print("RESULT " + json.dumps({{"good": good, "bad": bad,
                                  "packages": [p["ModelApprovalStatus"] for p in packages["ModelPackageSummaryList"]],
                                  "train": json.loads(pipeline.definition())["Steps"][1]["Arguments"]}}, default=str))
"""


def test_v3_model_trainer_pipeline_takes_both_branches(sdk_v3, server):
    result, output = run_captured(
        sdk_v3, server, CLASSIC_V3.format(data=DATA, preprocess=PREPROCESS, evaluate=EVALUATE)
    )
    assert result["good"] == {
        "status": "Succeeded",
        "reason": None,
        "steps": {
            "Prepare": "Succeeded",
            "Train": "Succeeded",
            "Evaluate": "Succeeded",
            "CheckMse": "Succeeded",
            "Register": "Succeeded",
        },
    }, output[-3000:]
    assert result["bad"] == {
        "status": "Failed",
        "reason": "MSE above 0.0",
        "steps": {
            "Prepare": "Succeeded",
            "Train": "Succeeded",
            "Evaluate": "Succeeded",
            "CheckMse": "Succeeded",
            "MseTooHigh": "Failed",
        },
    }
    assert result["packages"] == ["Approved"]
    assert result["train"]["AlgorithmSpecification"]["TrainingImage"].endswith("/sagemaker-xgboost:1.7-1")
