"""SageMaker's built-in project templates: CloudFormation templates run by SelfMaker's engine.

They are modelled on AWS's first-party "MLOps template for model building, training, and deployment" and
"MLOps template for model deployment", with AWS's names (the model package group and the build pipeline
``<project-name>-<project-id>``, the rule ``sagemaker-<project-name>-<project-id>-model``, the endpoint
``<project-name>-staging``) and AWS's parameters (``SageMakerProjectName``, ``SageMakerProjectId``, filled by
CreateProject). Where AWS's templates use CodeCommit (the seed code), CodeBuild (running the seed code to upsert
the pipeline) and CodePipeline (deploying an approved model), SelfMaker uses SageMaker pipelines: the seed code
is the model-build pipeline itself, and the deploy step is a second pipeline that an EventBridge rule starts
when a model package of the group is approved (docs/projects.md says why).

The seed code (synthetic data, training with the built-in XGBoost, evaluation) runs as processing steps whose
script is carried in the definition, one line per container argument (``python3 -c`` joins them): a template
cannot put files into S3, and the definition is what a user edits and re-upserts, as they edit the seed code.
"""

from __future__ import annotations

import json

XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
ROLE = "arn:aws:iam::${AWS::AccountId}:role/service-role/AmazonSageMakerServiceCatalogProductsUseRole"
NAME_ID = "${SageMakerProjectName}-${SageMakerProjectId}"
BUCKET = "sagemaker-project-${SageMakerProjectId}"
RUN_LINES = "import sys; exec(chr(10).join(sys.argv[1:]))"  # the script's lines are the arguments
EXECUTION = {"Get": "Execution.PipelineExecutionId"}

PREPROCESS = """
import os, numpy as np
n = int(os.environ["SAMPLE_COUNT"])
rng = np.random.default_rng(int(os.environ.get("SEED", "7")))
x = rng.uniform(0, 10, size=(n, 3))
y = 3 * x[:, 0] - 2 * x[:, 1] + 0.5 * x[:, 2] + rng.normal(0, 0.5, size=n)
rows = np.column_stack([y, x])
cut1, cut2 = int(0.7 * n), int(0.85 * n)
for name, part in (("train", rows[:cut1]), ("validation", rows[cut1:cut2]), ("test", rows[cut2:])):
    os.makedirs(f"/opt/ml/processing/{name}", exist_ok=True)
    np.savetxt(f"/opt/ml/processing/{name}/{name}.csv", part, delimiter=",", fmt="%.6f")
print("wrote", n, "synthetic rows")
"""

EVALUATE = """
import glob, json, os, tarfile, numpy as np, xgboost as xgb
with tarfile.open("/opt/ml/processing/model/model.tar.gz") as archive:
    archive.extractall("/tmp/model")
booster = xgb.Booster()
booster.load_model("/tmp/model/xgboost-model")
test = np.loadtxt(glob.glob("/opt/ml/processing/test/*.csv")[0], delimiter=",", ndmin=2)
predictions = booster.predict(xgb.DMatrix(test[:, 1:]))
errors = (test[:, 0] - predictions) ** 2
report = {"regression_metrics": {"mse": {"value": float(errors.mean()), "standard_deviation": float(errors.std())}}}
os.makedirs("/opt/ml/processing/evaluation", exist_ok=True)
json.dump(report, open("/opt/ml/processing/evaluation/evaluation.json", "w"))
print("evaluation", report)
"""

DEPLOY = """
import os, time, boto3
sm = boto3.client("sagemaker")
package, endpoint = os.environ["MODEL_PACKAGE_ARN"], os.environ["ENDPOINT_NAME"]
tags = [{"Key": "sagemaker:project-name", "Value": os.environ["PROJECT_NAME"]}]
tags.append({"Key": "sagemaker:project-id", "Value": os.environ["PROJECT_ID"]})
described = sm.describe_model_package(ModelPackageName=package)
if described["ModelApprovalStatus"] != "Approved":
    raise SystemExit(f"{package} is {described['ModelApprovalStatus']}, not Approved: nothing to deploy")
suffix = time.strftime("%Y%m%d%H%M%S") + "-" + package.rsplit("/", 1)[-1]
name = f"{endpoint}-{suffix}"[-63:].lstrip("-")
container = {k: v for k, v in described["InferenceSpecification"]["Containers"][0].items() if k in ("Image", "ModelDataUrl", "Environment")}
sm.create_model(ModelName=name, ExecutionRoleArn=os.environ["ROLE_ARN"], PrimaryContainer=container, Tags=tags)
variant = {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
variant["InstanceType"] = os.environ["INSTANCE_TYPE"]
sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], Tags=tags)
try:
    sm.describe_endpoint(EndpointName=endpoint)
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=name)
    print("updating", endpoint, "to", name)
except sm.exceptions.ClientError:
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name, Tags=tags)
    print("creating", endpoint, "with", name)
for _ in range(600):
    status = sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"]
    if status in ("InService", "Failed"):
        break
    time.sleep(2)
print(endpoint, status)
if status != "InService":
    raise SystemExit(f"{endpoint} is {status}")
"""


def _script_app(script: str) -> dict:
    lines = script.strip().splitlines()
    assert len(lines) < 100 and all(len(line) <= 256 and "${" not in line for line in lines)
    return {"ImageUri": XGBOOST, "ContainerEntrypoint": ["python3", "-c", RUN_LINES], "ContainerArguments": lines}


def _s3(*parts) -> dict:
    return {"Std:Join": {"On": "/", "Values": ["s3:/", BUCKET, *parts]}}


def _output(pipeline: str, step: str, name: str) -> dict:
    return {
        "OutputName": name,
        "AppManaged": False,
        "S3Output": {
            "S3Uri": _s3(pipeline, EXECUTION, step, name),
            "LocalPath": f"/opt/ml/processing/{name}",
            "S3UploadMode": "EndOfJob",
        },
    }


def _input(name: str, uri, local: str) -> dict:
    return {
        "InputName": name,
        "AppManaged": False,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": local,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
            "S3CompressionType": "None",
        },
    }


def _processing(instance_type, app: dict) -> dict:
    return {
        "ProcessingResources": {
            "ClusterConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30}
        },
        "AppSpecification": app,
        "RoleArn": ROLE,
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def _split(name: str) -> dict:
    return {"Get": f"Steps.PreprocessData.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"}


MODEL_DATA = {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}


def build_pipeline_definition() -> dict:
    """The model-build pipeline (AWS's seed code's shape: processing → training → evaluation → condition →
    RegisterModel as PendingManualApproval), on synthetic data made by its first step."""
    pipeline = NAME_ID
    preprocess = _processing({"Get": "Parameters.ProcessingInstanceType"}, _script_app(PREPROCESS))
    preprocess["Environment"] = {
        "SAMPLE_COUNT": {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.SampleCount"}]}}
    }
    preprocess["ProcessingOutputConfig"] = {
        "Outputs": [_output(pipeline, "PreprocessData", n) for n in ("train", "validation", "test")]
    }
    evaluate = _processing({"Get": "Parameters.ProcessingInstanceType"}, _script_app(EVALUATE))
    evaluate["ProcessingInputs"] = [
        _input("model", MODEL_DATA, "/opt/ml/processing/model"),
        _input("test", _split("test"), "/opt/ml/processing/test"),
    ]
    evaluate["ProcessingOutputConfig"] = {"Outputs": [_output(pipeline, "EvaluateModel", "evaluation")]}
    channel = lambda name: {  # noqa: E731
        "ChannelName": name,
        "ContentType": "text/csv",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3DataDistributionType": "FullyReplicated",
                "S3Uri": _split(name),
            }
        },
    }
    evaluation_uri = {
        "Std:Join": {
            "On": "/",
            "Values": [
                {"Get": "Steps.EvaluateModel.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
                "evaluation.json",
            ],
        }
    }
    return {
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [
            {"Name": "ProcessingInstanceType", "Type": "String", "DefaultValue": "ml.m5.xlarge"},
            {"Name": "TrainingInstanceType", "Type": "String", "DefaultValue": "ml.m5.xlarge"},
            {"Name": "ModelApprovalStatus", "Type": "String", "DefaultValue": "PendingManualApproval"},
            {"Name": "SampleCount", "Type": "Integer", "DefaultValue": 600},
            {"Name": "MseThreshold", "Type": "Float", "DefaultValue": 6.0},
        ],
        "Steps": [
            {"Name": "PreprocessData", "Type": "Processing", "Arguments": preprocess},
            {
                "Name": "TrainModel",
                "Type": "Training",
                "Arguments": {
                    "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": XGBOOST},
                    "OutputDataConfig": {"S3OutputPath": _s3(pipeline, EXECUTION, "TrainModel")},
                    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                    "ResourceConfig": {
                        "VolumeSizeInGB": 30,
                        "InstanceCount": 1,
                        "InstanceType": {"Get": "Parameters.TrainingInstanceType"},
                    },
                    "RoleArn": ROLE,
                    "InputDataConfig": [channel("train"), channel("validation")],
                    "HyperParameters": {
                        "objective": "reg:squarederror",
                        "num_round": "40",
                        "max_depth": "4",
                        "eta": "0.3",
                    },
                },
            },
            {
                "Name": "EvaluateModel",
                "Type": "Processing",
                "Arguments": evaluate,
                "PropertyFiles": [
                    {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
                ],
            },
            {
                "Name": "CheckMSEEvaluation",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {
                            "Type": "LessThanOrEqualTo",
                            "LeftValue": {
                                "Std:JsonGet": {
                                    "PropertyFile": {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"},
                                    "Path": "regression_metrics.mse.value",
                                }
                            },
                            "RightValue": {"Get": "Parameters.MseThreshold"},
                        }
                    ],
                    "IfSteps": [
                        {
                            "Name": "RegisterModel",
                            "Type": "RegisterModel",
                            "Arguments": {
                                "ModelPackageGroupName": pipeline,
                                "ModelMetrics": {
                                    "ModelQuality": {
                                        "Statistics": {"ContentType": "application/json", "S3Uri": evaluation_uri}
                                    }
                                },
                                "InferenceSpecification": {
                                    "Containers": [{"Image": XGBOOST, "ModelDataUrl": MODEL_DATA}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"],
                                    "SupportedRealtimeInferenceInstanceTypes": ["ml.t2.medium", "ml.m5.large"],
                                    "SupportedTransformInstanceTypes": ["ml.m5.large"],
                                },
                                "ModelApprovalStatus": {"Get": "Parameters.ModelApprovalStatus"},
                            },
                        }
                    ],
                    "ElseSteps": [
                        {
                            "Name": "MseAboveThreshold",
                            "Type": "Fail",
                            "Arguments": {
                                "ErrorMessage": "The model's MSE is above MseThreshold: it is not registered"
                            },
                        }
                    ],
                },
            },
        ],
    }


def deploy_pipeline_definition() -> dict:
    """The deploy step (AWS: CodePipeline's staging deployment): the approved package onto ``<project>-staging``."""
    deploy = _processing("ml.m5.large", _script_app(DEPLOY))
    deploy["Environment"] = {
        "MODEL_PACKAGE_ARN": {"Get": "Parameters.ModelPackageArn"},
        "ENDPOINT_NAME": "${SageMakerProjectName}-staging",
        "INSTANCE_TYPE": {"Get": "Parameters.StagingInstanceType"},
        "PROJECT_NAME": "${SageMakerProjectName}",
        "PROJECT_ID": "${SageMakerProjectId}",
        "ROLE_ARN": ROLE,
    }
    return {
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [
            {"Name": "ModelPackageArn", "Type": "String"},
            {"Name": "StagingInstanceType", "Type": "String", "DefaultValue": "ml.m5.large"},
        ],
        "Steps": [{"Name": "DeployStaging", "Type": "Processing", "Arguments": deploy}],
    }


def _sub(definition: dict) -> dict:
    return {"PipelineDefinitionBody": {"Fn::Sub": json.dumps(definition, indent=1)}}


def _deploy_resources(group_name) -> dict:
    """The deploy pipeline and the rule that starts it on an approval in ``group_name``."""
    return {
        "ModelDeployPipeline": {
            "Type": "AWS::SageMaker::Pipeline",
            "Properties": {
                "PipelineName": {"Fn::Sub": f"{NAME_ID}-deploy"},
                "PipelineDescription": "Deploys an approved model package to the staging endpoint",
                "RoleArn": {"Fn::Sub": ROLE},
                "PipelineDefinition": _sub(deploy_pipeline_definition()),
            },
        },
        "ModelDeploymentRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": {"Fn::Sub": "sagemaker-${SageMakerProjectName}-${SageMakerProjectId}-model"},
                "Description": "Rule to trigger a deployment when SageMaker Model registry is updated with a new "
                "model package approved",
                "EventPattern": {
                    "source": ["aws.sagemaker"],
                    "detail-type": ["SageMaker Model Package State Change"],
                    "detail": {"ModelPackageGroupName": [group_name], "ModelApprovalStatus": ["Approved"]},
                },
                "State": "ENABLED",
                "Targets": [
                    {
                        "Id": "deploy-staging",
                        "Arn": {
                            "Fn::Sub": "arn:aws:sagemaker:${AWS::Region}:${AWS::AccountId}:pipeline/"
                            + NAME_ID
                            + "-deploy"
                        },
                        "RoleArn": {"Fn::Sub": ROLE},
                        "InputTransformer": {
                            "InputPathsMap": {"package": "$.detail.ModelPackageArn"},
                            "InputTemplate": "{}",
                        },
                        "SageMakerPipelineParameters": {
                            "PipelineParameterList": [{"Name": "ModelPackageArn", "Value": "<package>"}]
                        },
                    }
                ],
            },
            "DependsOn": ["ModelDeployPipeline"],
        },
    }


PROJECT_PARAMETERS = {
    "SageMakerProjectName": {
        "Type": "String",
        "Description": "Name of the project",
        "MinLength": 1,
        "MaxLength": 32,
        "AllowedPattern": "^[a-zA-Z](-*[a-zA-Z0-9])*",
    },
    "SageMakerProjectId": {"Type": "String", "Description": "Service generated Id of the project."},
}


def build_train_deploy() -> dict:
    resources = {
        "MlOpsArtifactsBucket": {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",  # it holds the models the endpoints serve
            "Properties": {"BucketName": {"Fn::Sub": BUCKET}},
        },
        "ModelPackageGroup": {
            "Type": "AWS::SageMaker::ModelPackageGroup",
            "DeletionPolicy": "Retain",  # the registry's versions outlive the project
            "Properties": {
                "ModelPackageGroupName": {"Fn::Sub": NAME_ID},
                "ModelPackageGroupDescription": {"Fn::Sub": "Model package group of project ${SageMakerProjectName}"},
            },
        },
        "ModelBuildPipeline": {
            "Type": "AWS::SageMaker::Pipeline",
            "DependsOn": ["MlOpsArtifactsBucket", "ModelPackageGroup"],
            "Properties": {
                "PipelineName": {"Fn::Sub": NAME_ID},
                "PipelineDescription": "Model build: synthetic data, XGBoost training, evaluation, registration",
                "RoleArn": {"Fn::Sub": ROLE},
                "PipelineDefinition": _sub(build_pipeline_definition()),
            },
        },
        **_deploy_resources({"Fn::Sub": NAME_ID}),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Toolchain template which provides the resources needed to represent infrastructure as code. "
        "This template specifically creates a model-build pipeline, a model package group, and a deploy step "
        "that puts approved models on a staging endpoint.",
        "Parameters": PROJECT_PARAMETERS,
        "Resources": resources,
        "Outputs": {
            "ModelPackageGroupName": {"Value": {"Fn::Sub": NAME_ID}},
            "ModelBuildPipelineName": {"Value": {"Ref": "ModelBuildPipeline"}},
            "ModelDeployPipelineName": {"Value": {"Ref": "ModelDeployPipeline"}},
            "ArtifactsBucket": {"Value": {"Ref": "MlOpsArtifactsBucket"}},
            "StagingEndpointName": {"Value": {"Fn::Sub": "${SageMakerProjectName}-staging"}},
        },
    }


def deploy_only() -> dict:
    parameters = {
        **PROJECT_PARAMETERS,
        "SourceModelPackageGroupName": {
            "Type": "String",
            "Description": "Name of the model package group whose approved models are deployed",
            "MinLength": 1,
        },
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Toolchain template which deploys approved models of an existing model package group to a "
        "staging endpoint.",
        "Parameters": parameters,
        "Resources": _deploy_resources({"Ref": "SourceModelPackageGroupName"}),
        "Outputs": {
            "ModelDeployPipelineName": {"Value": {"Ref": "ModelDeployPipeline"}},
            "StagingEndpointName": {"Value": {"Fn::Sub": "${SageMakerProjectName}-staging"}},
        },
    }


# key -> (product name, description, template)
BUILT_IN = {
    "model-building-training-deployment": (
        "MLOps template for model building, training, and deployment",
        "Use this template to automate the entire model lifecycle that includes both model building and "
        "deployment workflows. (SelfMaker: SageMaker pipelines in place of CodeCommit, CodeBuild and CodePipeline.)",
        build_train_deploy,
    ),
    "model-deployment": (
        "MLOps template for model deployment",
        "Use this template to automate the deployment of models in the Amazon SageMaker model registry to a "
        "staging endpoint. (SelfMaker: a SageMaker pipeline in place of CodePipeline.)",
        deploy_only,
    ),
}
