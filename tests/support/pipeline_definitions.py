"""Shared material for the pipeline language tests: the Abalone definition (sdk-contract 5.6), the job
descriptions its steps read, and a stand-in for the engine's evaluation scope."""

from __future__ import annotations

import copy
import json

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}


def _output(step: str, name: str) -> dict:
    return {
        "OutputName": name,
        "AppManaged": False,
        "S3Output": {
            "S3Uri": {
                "Std:Join": {
                    "On": "/",
                    "Values": ["s3:/", "my-bucket", "AbalonePipeline", EXECUTION_ID, step, "output", name],
                }
            },
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


def _channel(name: str, output: str) -> dict:
    return {
        "ChannelName": name,
        "ContentType": "text/csv",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3DataDistributionType": "FullyReplicated",
                "S3Uri": {"Get": f"Steps.AbaloneProcess.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri"},
            }
        },
    }


TRAIN_OUTPUT = {"Std:Join": {"On": "/", "Values": ["s3://my-bucket/AbaloneTrain", EXECUTION_ID]}}
MODEL_DATA = {"Get": "Steps.AbaloneTrain.ModelArtifacts.S3ModelArtifacts"}

# The classic shape (sdk-contract 5.6): Processing -> Training -> evaluation Processing with a
# PropertyFile -> Condition (JsonGet, Or/Not/In) -> RegisterModel + Model + Transform | Fail.
ABALONE = {
    "Version": "2020-12-01",
    "Metadata": {},
    "Parameters": [
        {"Name": "ProcessingInstanceCount", "Type": "Integer", "DefaultValue": 1},
        {"Name": "TrainingInstanceType", "Type": "String", "DefaultValue": "ml.m5.xlarge"},
        {
            "Name": "ModelApprovalStatus",
            "Type": "String",
            "DefaultValue": "PendingManualApproval",
            "EnumValues": ["PendingManualApproval", "Approved"],
        },
        {"Name": "InputData", "Type": "String", "DefaultValue": "s3://my-bucket/abalone/abalone.csv"},
        {"Name": "MseThreshold", "Type": "Float", "DefaultValue": 6.0},
        {"Name": "UseGpu", "Type": "Boolean", "DefaultValue": False},
    ],
    "PipelineExperimentConfig": {
        "ExperimentName": {"Get": "Execution.PipelineName"},
        "TrialName": {"Get": "Execution.PipelineExecutionId"},
    },
    "Steps": [
        {
            "Name": "AbaloneProcess",
            "Type": "Processing",
            "Arguments": {
                "ProcessingResources": {
                    "ClusterConfig": {
                        "InstanceType": "ml.m5.xlarge",
                        "InstanceCount": {"Get": "Parameters.ProcessingInstanceCount"},
                        "VolumeSizeInGB": 30,
                    }
                },
                "AppSpecification": {
                    "ImageUri": SKLEARN,
                    "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/preprocess.py"],
                },
                "RoleArn": ROLE,
                "ProcessingInputs": [
                    _input("input-1", {"Get": "Parameters.InputData"}, "/opt/ml/processing/input"),
                    _input(
                        "code",
                        "s3://my-bucket/AbalonePipeline/code/7df44cc2/preprocess.py",
                        "/opt/ml/processing/input/code",
                    ),
                ],
                "ProcessingOutputConfig": {
                    "Outputs": [_output("AbaloneProcess", name) for name in ("train", "validation", "test")]
                },
            },
            "CacheConfig": {"Enabled": True, "ExpireAfter": "PT1H"},
        },
        {
            "Name": "AbaloneTrain",
            "Type": "Training",
            "Arguments": {
                "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": XGBOOST},
                "OutputDataConfig": {"S3OutputPath": TRAIN_OUTPUT},
                "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
                "ResourceConfig": {
                    "VolumeSizeInGB": 30,
                    "InstanceCount": 1,
                    "InstanceType": {"Get": "Parameters.TrainingInstanceType"},
                },
                "RoleArn": ROLE,
                "InputDataConfig": [_channel("train", "train"), _channel("validation", "validation")],
                "HyperParameters": {"objective": "reg:linear", "num_round": "50", "max_depth": "5", "eta": "0.2"},
                "DebugHookConfig": {"S3OutputPath": TRAIN_OUTPUT, "CollectionConfigurations": []},
                "ProfilerConfig": {"S3OutputPath": TRAIN_OUTPUT, "DisableProfiler": False},
            },
            "RetryPolicies": [
                {
                    "BackoffRate": 2.0,
                    "IntervalSeconds": 10,
                    "MaxAttempts": 3,
                    "ExceptionType": ["Step.SERVICE_FAULT", "Step.THROTTLING"],
                },
                {
                    "BackoffRate": 2.0,
                    "IntervalSeconds": 1,
                    "MaxAttempts": 5,
                    "ExceptionType": ["SageMaker.CAPACITY_ERROR"],
                },
            ],
        },
        {
            "Name": "AbaloneEval",
            "Type": "Processing",
            "Arguments": {
                "ProcessingResources": {
                    "ClusterConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
                },
                "AppSpecification": {
                    "ImageUri": XGBOOST,
                    "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/evaluate.py"],
                },
                "RoleArn": ROLE,
                "ProcessingInputs": [
                    _input("input-1", MODEL_DATA, "/opt/ml/processing/model"),
                    _input(
                        "input-2",
                        {"Get": "Steps.AbaloneProcess.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"},
                        "/opt/ml/processing/test",
                    ),
                    _input(
                        "code",
                        "s3://my-bucket/AbalonePipeline/code/1a2b3c/evaluate.py",
                        "/opt/ml/processing/input/code",
                    ),
                ],
                "ProcessingOutputConfig": {"Outputs": [_output("AbaloneEval", "evaluation")]},
            },
            "PropertyFiles": [
                {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
            ],
        },
        {
            "Name": "AbaloneMSECond",
            "Type": "Condition",
            "Arguments": {
                "Conditions": [
                    {
                        "Type": "LessThanOrEqualTo",
                        "LeftValue": {
                            "Std:JsonGet": {
                                "PropertyFile": {"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"},
                                "Path": "regression_metrics.mse.value",
                            }
                        },
                        "RightValue": {"Get": "Parameters.MseThreshold"},
                    },
                    {
                        "Type": "Or",
                        "Conditions": [
                            {
                                "Type": "Not",
                                "Condition": {
                                    "Type": "Equals",
                                    "LeftValue": {"Get": "Parameters.UseGpu"},
                                    "RightValue": True,
                                },
                            },
                            {
                                "Type": "In",
                                "QueryValue": {"Get": "Parameters.TrainingInstanceType"},
                                "Values": ["ml.m5.xlarge", "ml.m5.2xlarge"],
                            },
                        ],
                    },
                ],
                "IfSteps": [
                    {
                        "Name": "AbaloneRegisterModel-RegisterModel",
                        "Type": "RegisterModel",
                        "Arguments": {
                            "ModelPackageGroupName": "AbaloneModelPackageGroupName",
                            "ModelMetrics": {
                                "ModelQuality": {
                                    "Statistics": {
                                        "ContentType": "application/json",
                                        "S3Uri": "s3://my-bucket/eval/evaluation.json",
                                    }
                                },
                                "Bias": {},
                                "Explainability": {},
                            },
                            "InferenceSpecification": {
                                "Containers": [{"Image": XGBOOST, "Environment": {}, "ModelDataUrl": MODEL_DATA}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"],
                                "SupportedRealtimeInferenceInstanceTypes": ["ml.t2.medium", "ml.m5.xlarge"],
                                "SupportedTransformInstanceTypes": ["ml.m5.xlarge"],
                            },
                            "ModelApprovalStatus": {"Get": "Parameters.ModelApprovalStatus"},
                            "SkipModelValidation": "None",
                        },
                    },
                    {
                        "Name": "AbaloneCreateModel-CreateModel",
                        "Type": "Model",
                        "Arguments": {
                            "ExecutionRoleArn": ROLE,
                            "PrimaryContainer": {"Image": XGBOOST, "Environment": {}, "ModelDataUrl": MODEL_DATA},
                        },
                    },
                    {
                        "Name": "AbaloneTransform",
                        "Type": "Transform",
                        "Arguments": {
                            "ModelName": {"Get": "Steps.AbaloneCreateModel-CreateModel.ModelName"},
                            "TransformInput": {
                                "DataSource": {
                                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://my-bucket/batch-data"}
                                },
                                "ContentType": "text/csv",
                            },
                            "TransformOutput": {"S3OutputPath": "s3://my-bucket/AbaloneTransform"},
                            "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge"},
                        },
                    },
                ],
                "ElseSteps": [
                    {
                        "Name": "AbaloneMSEFail",
                        "Type": "Fail",
                        "Arguments": {
                            "ErrorMessage": {
                                "Std:Join": {
                                    "On": " ",
                                    "Values": ["Execution failed due to MSE >", {"Get": "Parameters.MseThreshold"}],
                                }
                            }
                        },
                    }
                ],
            },
        },
    ],
}


class FakeScope:
    """What the engine provides: typed parameters, execution variables, step property documents, files."""

    def __init__(self, parameters=None, properties=None, files=None, objects=None):
        self.parameters = parameters or {}
        self.properties = properties or {}
        self.files = files or {}
        self.objects = objects or {}

    def parameter(self, name):
        return self.parameters[name]

    def execution(self, variable):
        return {"PipelineExecutionId": "2DRR2511NGO3", "PipelineName": "AbalonePipeline"}[variable]

    def experiment(self, variable):
        return {"ExperimentName": "abalonepipeline", "TrialName": "2DRR2511NGO3"}[variable]

    def step_properties(self, step):
        return self.properties[step]

    def property_file(self, step, name):
        return self.files[(step, name)]

    def read_json(self, s3_uri):
        return self.objects[s3_uri]


def mutated(change) -> str:
    """The Abalone definition as JSON text after ``change(document)``."""
    document = copy.deepcopy(ABALONE)
    change(document)
    return json.dumps(document)


def step_of(document, name):
    for step in document["Steps"]:
        if step["Name"] == name:
            return step
        if step["Type"] == "Condition":
            for child in step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"]:
                if child["Name"] == name:
                    return child
    raise KeyError(name)


DESCRIBE_PROCESSING = {
    "ProcessingJobName": "pipelines-2drr2511ngo3-AbaloneProcess-x1",
    "ProcessingInputs": [{"InputName": "input-1", "S3Input": {"S3Uri": "s3://my-bucket/abalone/abalone.csv"}}],
    "ProcessingOutputConfig": {
        "Outputs": [
            {
                "OutputName": "train",
                "S3Output": {"S3Uri": "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/train"},
            },
            {
                "OutputName": "validation",
                "S3Output": {"S3Uri": "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/validation"},
            },
            {
                "OutputName": "test",
                "S3Output": {"S3Uri": "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/test"},
            },
        ]
    },
    "Environment": {"SM_OUTPUT_NOTEBOOK_NAME": "out.ipynb"},
}
DESCRIBE_TRAINING = {
    "TrainingJobName": "pipelines-2drr2511ngo3-AbaloneTrain-x2",
    "ModelArtifacts": {"S3ModelArtifacts": "s3://my-bucket/AbaloneTrain/2DRR2511NGO3/model.tar.gz"},
    "HyperParameters": {"num_round": "50"},
    "FinalMetricDataList": [{"MetricName": "validation:rmse", "Value": 2.1}, {"MetricName": "val:acc", "Value": 0.93}],
}
