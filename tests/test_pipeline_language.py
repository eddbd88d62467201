"""The pipeline language (selfmaker/engines/pipelines): parsing, validation, expressions, conditions, policies.

Pure and fast: definitions are JSON written from the SageMaker SDK v2's output
(sdk-contract 5.6), plus one definition the real SDK v2 produces.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from selfmaker.engines.pipelines import (
    ConditionError, DefinitionError, EvaluationError, ParameterError, PropertyError, cache_key, cast_parameters,
    condition_holds, evaluate, lookup, parse, parse_duration, references, retry_delay,
)
from selfmaker.engines.pipelines.policies import cache_expiry, caching

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}


def _output(step: str, name: str) -> dict:
    return {"OutputName": name, "AppManaged": False, "S3Output": {
        "S3Uri": {"Std:Join": {"On": "/", "Values": ["s3:/", "my-bucket", "AbalonePipeline", EXECUTION_ID,
                                                     step, "output", name]}},
        "LocalPath": f"/opt/ml/processing/{name}", "S3UploadMode": "EndOfJob"}}


def _input(name: str, uri, local: str) -> dict:
    return {"InputName": name, "AppManaged": False, "S3Input": {
        "S3Uri": uri, "LocalPath": local, "S3DataType": "S3Prefix", "S3InputMode": "File",
        "S3DataDistributionType": "FullyReplicated", "S3CompressionType": "None"}}


def _channel(name: str, output: str) -> dict:
    return {"ChannelName": name, "ContentType": "text/csv", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated",
        "S3Uri": {"Get": f"Steps.AbaloneProcess.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri"}}}}


TRAIN_OUTPUT = {"Std:Join": {"On": "/", "Values": ["s3://my-bucket/AbaloneTrain", EXECUTION_ID]}}
MODEL_DATA = {"Get": "Steps.AbaloneTrain.ModelArtifacts.S3ModelArtifacts"}

# The classic shape (sdk-contract 5.6): Processing -> Training -> evaluation Processing with a
# PropertyFile -> Condition (JsonGet, Or/Not/In) -> RegisterModel + Model + Transform | Fail.
ABALONE = {
    "Version": "2020-12-01", "Metadata": {},
    "Parameters": [
        {"Name": "ProcessingInstanceCount", "Type": "Integer", "DefaultValue": 1},
        {"Name": "TrainingInstanceType", "Type": "String", "DefaultValue": "ml.m5.xlarge"},
        {"Name": "ModelApprovalStatus", "Type": "String", "DefaultValue": "PendingManualApproval",
         "EnumValues": ["PendingManualApproval", "Approved"]},
        {"Name": "InputData", "Type": "String", "DefaultValue": "s3://my-bucket/abalone/abalone.csv"},
        {"Name": "MseThreshold", "Type": "Float", "DefaultValue": 6.0},
        {"Name": "UseGpu", "Type": "Boolean", "DefaultValue": False}],
    "PipelineExperimentConfig": {"ExperimentName": {"Get": "Execution.PipelineName"},
                                 "TrialName": {"Get": "Execution.PipelineExecutionId"}},
    "Steps": [
        {"Name": "AbaloneProcess", "Type": "Processing",
         "Arguments": {
             "ProcessingResources": {"ClusterConfig": {
                 "InstanceType": "ml.m5.xlarge", "InstanceCount": {"Get": "Parameters.ProcessingInstanceCount"},
                 "VolumeSizeInGB": 30}},
             "AppSpecification": {"ImageUri": SKLEARN,
                                  "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/preprocess.py"]},
             "RoleArn": ROLE,
             "ProcessingInputs": [
                 _input("input-1", {"Get": "Parameters.InputData"}, "/opt/ml/processing/input"),
                 _input("code", "s3://my-bucket/AbalonePipeline/code/7df44cc2/preprocess.py",
                        "/opt/ml/processing/input/code")],
             "ProcessingOutputConfig": {"Outputs": [_output("AbaloneProcess", name)
                                                    for name in ("train", "validation", "test")]}},
         "CacheConfig": {"Enabled": True, "ExpireAfter": "PT1H"}},
        {"Name": "AbaloneTrain", "Type": "Training",
         "Arguments": {
             "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": XGBOOST},
             "OutputDataConfig": {"S3OutputPath": TRAIN_OUTPUT},
             "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
             "ResourceConfig": {"VolumeSizeInGB": 30, "InstanceCount": 1,
                                "InstanceType": {"Get": "Parameters.TrainingInstanceType"}},
             "RoleArn": ROLE,
             "InputDataConfig": [_channel("train", "train"), _channel("validation", "validation")],
             "HyperParameters": {"objective": "reg:linear", "num_round": "50", "max_depth": "5", "eta": "0.2"},
             "DebugHookConfig": {"S3OutputPath": TRAIN_OUTPUT, "CollectionConfigurations": []},
             "ProfilerConfig": {"S3OutputPath": TRAIN_OUTPUT, "DisableProfiler": False}},
         "RetryPolicies": [
             {"BackoffRate": 2.0, "IntervalSeconds": 10, "MaxAttempts": 3,
              "ExceptionType": ["Step.SERVICE_FAULT", "Step.THROTTLING"]},
             {"BackoffRate": 2.0, "IntervalSeconds": 1, "MaxAttempts": 5, "ExceptionType": ["SageMaker.CAPACITY_ERROR"]}]},
        {"Name": "AbaloneEval", "Type": "Processing",
         "Arguments": {
             "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                                                       "VolumeSizeInGB": 30}},
             "AppSpecification": {"ImageUri": XGBOOST,
                                  "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/evaluate.py"]},
             "RoleArn": ROLE,
             "ProcessingInputs": [
                 _input("input-1", MODEL_DATA, "/opt/ml/processing/model"),
                 _input("input-2", {"Get": "Steps.AbaloneProcess.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"},
                        "/opt/ml/processing/test"),
                 _input("code", "s3://my-bucket/AbalonePipeline/code/1a2b3c/evaluate.py",
                        "/opt/ml/processing/input/code")],
             "ProcessingOutputConfig": {"Outputs": [_output("AbaloneEval", "evaluation")]}},
         "PropertyFiles": [{"PropertyFileName": "EvaluationReport", "OutputName": "evaluation",
                            "FilePath": "evaluation.json"}]},
        {"Name": "AbaloneMSECond", "Type": "Condition",
         "Arguments": {
             "Conditions": [
                 {"Type": "LessThanOrEqualTo",
                  "LeftValue": {"Std:JsonGet": {
                      "PropertyFile": {"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"},
                      "Path": "regression_metrics.mse.value"}},
                  "RightValue": {"Get": "Parameters.MseThreshold"}},
                 {"Type": "Or", "Conditions": [
                     {"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": {"Get": "Parameters.UseGpu"},
                                                   "RightValue": True}},
                     {"Type": "In", "QueryValue": {"Get": "Parameters.TrainingInstanceType"},
                      "Values": ["ml.m5.xlarge", "ml.m5.2xlarge"]}]}],
             "IfSteps": [
                 {"Name": "AbaloneRegisterModel-RegisterModel", "Type": "RegisterModel",
                  "Arguments": {
                      "ModelPackageGroupName": "AbaloneModelPackageGroupName",
                      "ModelMetrics": {"ModelQuality": {"Statistics": {
                          "ContentType": "application/json", "S3Uri": "s3://my-bucket/eval/evaluation.json"}},
                          "Bias": {}, "Explainability": {}},
                      "InferenceSpecification": {
                          "Containers": [{"Image": XGBOOST, "Environment": {}, "ModelDataUrl": MODEL_DATA}],
                          "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
                          "SupportedRealtimeInferenceInstanceTypes": ["ml.t2.medium", "ml.m5.xlarge"],
                          "SupportedTransformInstanceTypes": ["ml.m5.xlarge"]},
                      "ModelApprovalStatus": {"Get": "Parameters.ModelApprovalStatus"},
                      "SkipModelValidation": "None"}},
                 {"Name": "AbaloneCreateModel-CreateModel", "Type": "Model",
                  "Arguments": {"ExecutionRoleArn": ROLE, "PrimaryContainer": {
                      "Image": XGBOOST, "Environment": {}, "ModelDataUrl": MODEL_DATA}}},
                 {"Name": "AbaloneTransform", "Type": "Transform",
                  "Arguments": {
                      "ModelName": {"Get": "Steps.AbaloneCreateModel-CreateModel.ModelName"},
                      "TransformInput": {"DataSource": {"S3DataSource": {
                          "S3DataType": "S3Prefix", "S3Uri": "s3://my-bucket/batch-data"}}, "ContentType": "text/csv"},
                      "TransformOutput": {"S3OutputPath": "s3://my-bucket/AbaloneTransform"},
                      "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge"}}}],
             "ElseSteps": [
                 {"Name": "AbaloneMSEFail", "Type": "Fail",
                  "Arguments": {"ErrorMessage": {"Std:Join": {
                      "On": " ", "Values": ["Execution failed due to MSE >", {"Get": "Parameters.MseThreshold"}]}}}}]}},
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


@pytest.fixture(scope="module")
def abalone():
    return parse(json.dumps(ABALONE))


# ---- parsing --------------------------------------------------------------------------------------------


def test_every_property_path_the_sdk_writes_is_accepted():
    reads = ["ModelArtifacts.S3ModelArtifacts", "FinalMetricDataList['val:acc'].Value", "HyperParameters",
             "HyperParameters['eta']", "OutputDataConfig.S3OutputPath", "TrainingJobName", "Environment['X']",
             "AlgorithmSpecification.ContainerEntrypoint[0]"]
    steps = [{"Name": "T", "Type": "Training", "Arguments": {}},
             {"Name": "R", "Type": "RegisterModel", "Arguments": {}}, {"Name": "M", "Type": "Model", "Arguments": {}},
             {"Name": "X", "Type": "Transform", "Arguments": {}}, {"Name": "C", "Type": "Condition",
              "Arguments": {"Conditions": [], "IfSteps": [], "ElseSteps": []}},
             {"Name": "Use", "Type": "Processing", "Arguments": {"Reads": [
                 *({"Get": f"Steps.T.{path}"} for path in reads),
                 {"Get": "Steps.R.ModelPackageArn"}, {"Get": "Steps.M.ModelName"}, {"Get": "Steps.C.Outcome"},
                 {"Get": "Steps.X.TransformOutput.S3OutputPath"}, {"Get": "Steps.M.PrimaryContainer.ModelDataUrl"}]}}]
    definition = parse(json.dumps({"Version": "2020-12-01", "Steps": steps}))
    assert definition.steps["Use"].depends_on == {"T", "R", "M", "X", "C"}


def test_parse_flattens_condition_children_in_definition_order(abalone):
    assert list(abalone.steps) == [
        "AbaloneProcess", "AbaloneTrain", "AbaloneEval", "AbaloneMSECond",
        "AbaloneRegisterModel-RegisterModel", "AbaloneCreateModel-CreateModel", "AbaloneTransform", "AbaloneMSEFail"]
    steps = abalone.steps
    assert steps["AbaloneProcess"].branch is None
    assert steps["AbaloneRegisterModel-RegisterModel"].branch == ("AbaloneMSECond", True)
    assert steps["AbaloneTransform"].branch == ("AbaloneMSECond", True)
    assert steps["AbaloneMSEFail"].branch == ("AbaloneMSECond", False)
    assert steps["AbaloneTrain"].type == "Training" and steps["AbaloneMSEFail"].type == "Fail"


def test_dependencies_come_from_references_not_only_depends_on(abalone):
    steps = abalone.steps
    assert steps["AbaloneProcess"].depends_on == frozenset()
    assert steps["AbaloneTrain"].depends_on == {"AbaloneProcess"}
    assert steps["AbaloneEval"].depends_on == {"AbaloneTrain", "AbaloneProcess"}
    assert steps["AbaloneMSECond"].depends_on == {"AbaloneEval"}  # the PropertyFile, not its children's reads
    assert steps["AbaloneRegisterModel-RegisterModel"].depends_on == {"AbaloneTrain"}
    assert steps["AbaloneTransform"].depends_on == {"AbaloneCreateModel-CreateModel"}
    assert steps["AbaloneMSEFail"].depends_on == frozenset()


def test_parameters_policies_and_experiment_config_are_typed(abalone):
    parameters = abalone.parameters
    assert parameters["ProcessingInstanceCount"].type == "Integer" and parameters["ProcessingInstanceCount"].default == 1
    assert parameters["MseThreshold"].default == 6.0
    assert parameters["UseGpu"].default is False
    assert parameters["ModelApprovalStatus"].enum == ("PendingManualApproval", "Approved")
    assert abalone.experiment_config == ABALONE["PipelineExperimentConfig"]
    assert abalone.steps["AbaloneProcess"].cache == {"Enabled": True, "ExpireAfter": "PT1H"}
    assert len(abalone.steps["AbaloneTrain"].retry_policies) == 2
    assert abalone.steps["AbaloneEval"].property_files[0]["PropertyFileName"] == "EvaluationReport"
    assert abalone.version == "2020-12-01" and abalone.raw == ABALONE


def test_depends_on_adds_to_references():
    def change(d):
        d["Steps"][2]["DependsOn"] = ["AbaloneMSECond"]  # AbaloneEval after the condition: a cycle
    with pytest.raises(DefinitionError, match=r"'AbaloneEval' -> 'AbaloneMSECond' -> 'AbaloneEval' form a dependency cycle"):
        parse(mutated(change))

    def itself(d):
        d["Steps"][0]["DependsOn"] = ["AbaloneProcess"]
    with pytest.raises(DefinitionError, match="Step 'AbaloneProcess' depends on itself"):
        parse(mutated(itself))

    def explicit(d):
        d["Steps"][0]["DependsOn"] = []
        step_of(d, "AbaloneMSEFail")["DependsOn"] = ["AbaloneTrain"]
    assert parse(mutated(explicit)).steps["AbaloneMSEFail"].depends_on == {"AbaloneTrain"}


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(Version="2021-01-01"), "Version must be '2020-12-01'"),
    (lambda d: d.update(Extra=1), "unknown member Extra"),
    (lambda d: d["Steps"].append(copy.deepcopy(d["Steps"][0])), "Step name 'AbaloneProcess' is used by more than one step"),
    (lambda d: step_of(d, "AbaloneMSECond")["Arguments"]["ElseSteps"][0].update(Name="AbaloneTrain"),
     "Step name 'AbaloneTrain' is used by more than one step"),
    (lambda d: d["Steps"][0].update(Name="has space"), r"Steps\[0\]: Name must be 1 to 64 letters"),
    (lambda d: d["Steps"][1].update(Type="Lambda"), "Step 'AbaloneTrain': step type Lambda is not supported by SelfMaker yet"),
    (lambda d: d["Steps"][1].update(Type="Tuning"), "Step 'AbaloneTrain': step type Tuning is not supported"),
    (lambda d: d["Steps"][1].update(Type="EMR"), "step type EMR is not supported"),
    (lambda d: d["Steps"][1].update(Type="EndpointConfig"), "step type EndpointConfig is not supported"),
    (lambda d: d["Steps"][1].update(Type="ForEach"), "step type ForEach is not supported"),
    (lambda d: d["Steps"][1].update(Type="Trainning"), "Step 'AbaloneTrain': unknown step type 'Trainning'"),
    (lambda d: d["Steps"][1].update(DependsOn=["Prep"]), "Step 'AbaloneTrain': DependsOn names unknown step 'Prep'"),
    (lambda d: d["Steps"][1].update(Properties={}), "Step 'AbaloneTrain': unknown member Properties"),
    (lambda d: d["Steps"][1].update(PropertyFiles=[]), "Step 'AbaloneTrain': unknown member PropertyFiles for a Training step"),
    (lambda d: d["Steps"][1]["Arguments"]["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(
        S3Uri={"Get": "Steps.Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}),
     r"Step 'AbaloneTrain' \(Arguments.InputDataConfig\[0\].DataSource.S3DataSource.S3Uri\): references unknown step 'Prep'"),
    (lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(InstanceType={"Get": "Parameters.Nope"}),
     r"Step 'AbaloneTrain' \(Arguments.ResourceConfig.InstanceType\): references undeclared parameter 'Nope'"),
    (lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(InstanceType={"Get": "Execution.Nope"}),
     "'Execution.Nope' names no execution variable"),
    (lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(InstanceType={"Get": "Nowhere.X"}),
     "'Nowhere.X' is not a reference"),
    (lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(InstanceType={"Get": "Steps.AbaloneTrain.X"}),
     "a step cannot read its own properties"),
    (lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(
        InstanceType={"Get": "Steps.AbaloneProcess.ProcessingOutputConfig.Outputs[train]"}),
     "bad accessor"),
    (lambda d: d["Steps"][3]["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"].update(
        PropertyFile={"Get": "Steps.AbaloneEval.PropertyFiles.Missing"}),
     r"Step 'AbaloneMSECond' \(Arguments.Conditions\[0\].LeftValue\): step 'AbaloneEval' has no property file 'Missing'"),
    (lambda d: d["Steps"][3]["Arguments"]["Conditions"][0].update(
        LeftValue={"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"}),
     "can only be read with Std:JsonGet"),
    (lambda d: d["Steps"][3]["Arguments"]["Conditions"][0].update(LeftValue={"Std:JsonGet": {
        "S3Uri": {"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"}, "Path": "a"}}),
     "can only be read with Std:JsonGet"),
    (lambda d: d["Steps"][3]["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"].update(S3Uri="s3://b/k"),
     "exactly one of PropertyFile and S3Uri"),
    (lambda d: d["Steps"][3]["Arguments"]["Conditions"][0].update(Type="Bigger"),
     r"Step 'AbaloneMSECond': Conditions\[0\]: Type must be one of"),
    (lambda d: d["Steps"][3]["Arguments"]["Conditions"][1]["Conditions"][0].update(Condition=[]),
     r"Conditions\[1\].Conditions\[0\].Condition: Type must be one of"),
    (lambda d: d["Steps"][3]["Arguments"]["Conditions"][1]["Conditions"][1].pop("Values"),
     r"Conditions\[1\].Conditions\[1\]: a In condition has exactly QueryValue, Values"),
    (lambda d: d["Steps"][2]["PropertyFiles"][0].update(OutputName="report"),
     "property file 'EvaluationReport' reads output 'report', which is not among the step's outputs"),
    (lambda d: d["Steps"][0]["CacheConfig"].update(ExpireAfter="an hour"), "CacheConfig.ExpireAfter: 'an hour' is not a duration"),
    (lambda d: d["Steps"][1]["RetryPolicies"][0].update(ExceptionType=["Step.OOPS"]), r"RetryPolicies\[0\].ExceptionType"),
    (lambda d: d["Steps"][1]["RetryPolicies"][1].update(ExpireAfterMin=5), "MaxAttempts or ExpireAfterMin, not both"),
    (lambda d: d["Steps"][1]["RetryPolicies"][1].update(MaxAttempts=0), "MaxAttempts must be a number from 1 to 20"),
    (lambda d: d["Parameters"].append({"Name": "N", "Type": "Decimal"}), "Parameter 'N': Type must be one of"),
    (lambda d: d["Parameters"].append({"Name": "N", "Type": "Integer", "DefaultValue": "1"}),
     "Parameter 'N': DefaultValue '1' is not a Integer"),
    (lambda d: d["Parameters"].append({"Name": "N", "Type": "Boolean", "DefaultValue": 0}),
     "Parameter 'N': DefaultValue 0 is not a Boolean"),
    (lambda d: d["Parameters"][2].update(DefaultValue="Rejected"), "DefaultValue 'Rejected' is not one of EnumValues"),
    (lambda d: d["Parameters"].append(dict(d["Parameters"][0])), "Parameter 'ProcessingInstanceCount' is declared twice"),
    (lambda d: d.update(PipelineExperimentConfig={"ExperimentName": {"Get": "Steps.AbaloneTrain.X"}}),
     "may read only parameters and execution variables"),
    (lambda d: step_of(d, "AbaloneMSEFail")["Arguments"].update(Other=1), "a Fail step's only argument is ErrorMessage"),
    (lambda d: step_of(d, "AbaloneMSEFail")["Arguments"].update(ErrorMessage=["x"]),
     "Step 'AbaloneMSEFail': ErrorMessage must be a string or an expression"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Get": "Steps.AbaloneMSEFail.X"}),
     "'AbaloneMSEFail' is a Fail step, which has no properties"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(
        ModelName={"Std:Join": {"On": "", "Values": [{"a": 1}]}}), "Std:Join joins strings"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Get": "Steps.AbaloneTrain.ModelArtifact.S3ModelArtifacts"}),
     r"Step 'AbaloneTransform' \(Arguments.ModelName\): Steps.AbaloneTrain.ModelArtifact.S3ModelArtifacts: a Training step's"
     r" properties \(DescribeTrainingJobResponse\) have no member 'ModelArtifact'"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Get": "Steps.AbaloneTrain.ModelArtifacts.S3Uri"}),
     "have no member 'S3Uri' in ModelArtifacts"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Get": "Steps.AbaloneTrain.ModelArtifacts.S3ModelArtifacts.Key"}),
     "ModelArtifacts.S3ModelArtifacts is a string: it has no Key"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Get": "Steps.AbaloneProcess.ProcessingOutputConfig.Outputs.train"}),
     r"ProcessingOutputConfig.Outputs is a list: read an item with \[index\] or \['name'\], not .train"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Get": "Steps.AbaloneProcess.Environment[0]"}),
     r"Environment is a map: read an entry with \['key'\], not \[0\]"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Get": "Steps.AbaloneTrain.Outcome"}),
     "have no member 'Outcome'"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Get": "Steps.AbaloneMSECond.Result"}),
     "a Condition step's only property is Outcome, not 'Result'"),
    (lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Std:Split": {}}),
     r"Step 'AbaloneTransform' \(Arguments.ModelName\): unknown function Std:Split"),
])
def test_invalid_definitions_say_what_and_where(change, message):
    with pytest.raises(DefinitionError, match=message):
        parse(mutated(change))


def test_malformed_json_and_top_level():
    with pytest.raises(DefinitionError, match="not valid JSON"):
        parse("{")
    with pytest.raises(DefinitionError, match="not valid JSON: NaN is not a JSON value"):
        parse('{"Version": "2020-12-01", "Steps": [], "Parameters": [{"Name": "F", "Type": "Float", "DefaultValue": NaN}]}')
    with pytest.raises(DefinitionError, match="must be a JSON object"):
        parse("[]")
    with pytest.raises(DefinitionError, match="Steps must be a list"):
        parse(json.dumps({"Version": "2020-12-01"}))
    for depth in (900, 5000):  # deep enough for the walk over arguments, then for the JSON decoder
        deep = ('{"Version": "2020-12-01", "Steps": [{"Name": "S", "Type": "Model", "Arguments": '
                + '{"x": [' * depth + "1" + "]}" * depth + "}]}")
        with pytest.raises(DefinitionError, match="PipelineDefinition is nested too deeply"):
            parse(deep)


ODD_VALUES = [None, 1, 1.5, True, "x", "", [], {}, [None], {"a": 1}, {"Get": 1}, {"Get": "Steps"}, {"Std:Join": 1},
              {"Std:JsonGet": {"Path": 1}}, {"Type": "Or", "Conditions": 1}, {"Type": "Not", "Condition": 1},
              [{"ExceptionType": ["Step.THROTTLING"], "MaxAttempts": "1"}], {"Enabled": True, "ExpireAfter": 1},
              [{"PropertyFileName": 1, "OutputName": [], "FilePath": "x"}], [{"Name": "P", "Type": "String",
                                                                              "EnumValues": [[1]]}]]


def test_any_malformed_definition_is_a_definition_error_never_a_crash():
    """Random damage to the Abalone definition: parse answers DefinitionError (a 400), never another exception."""
    def places(value, path=()):
        yield path
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in children:
            yield from places(child, path + (key,))

    everywhere = [path for path in places(ABALONE) if path]
    rng = random.Random(5)
    for _ in range(600):
        document = copy.deepcopy(ABALONE)
        for _ in range(rng.randint(1, 3)):
            *parents, last = rng.choice(everywhere)
            target = document
            try:
                for key in parents:
                    target = target[key]
                target[last] = copy.deepcopy(rng.choice(ODD_VALUES))
            except (KeyError, IndexError, TypeError):
                pass  # an earlier change removed this place
        try:
            parse(json.dumps(document))
        except DefinitionError:
            pass


def test_a_condition_reading_its_own_branch_is_a_cycle():
    def change(d):
        d["Steps"][3]["Arguments"]["Conditions"][0]["RightValue"] = {
            "Get": "Steps.AbaloneCreateModel-CreateModel.ModelName"}
    with pytest.raises(DefinitionError, match="'AbaloneMSECond' -> 'AbaloneCreateModel-CreateModel' -> 'AbaloneMSECond'"):
        parse(mutated(change))


def test_a_long_chain_parses_without_recursion_limits():
    steps = [{"Name": f"S{i}", "Type": "Fail", "Arguments": {}, **({"DependsOn": [f"S{i - 1}"]} if i else {})}
             for i in range(3000)]
    definition = parse(json.dumps({"Version": "2020-12-01", "Steps": steps}))
    assert definition.steps["S2999"].depends_on == {"S2998"}


def test_callback_steps_declare_queue_and_outputs():
    callback = {"Name": "Wait", "Type": "Callback", "Arguments": {"x": {"Get": "Parameters.P"}},
                "SqsQueueUrl": "http://localhost/123456789012/q",
                "OutputParameters": [{"OutputName": "verdict", "OutputType": "String"}]}
    use = {"Name": "Use", "Type": "Fail", "Arguments": {"ErrorMessage": {"Get": "Steps.Wait.OutputParameters['verdict']"}}}
    document = {"Version": "2020-12-01", "Parameters": [{"Name": "P", "Type": "String"}], "Steps": [callback, use]}
    assert parse(json.dumps(document)).steps["Use"].depends_on == {"Wait"}
    use["Arguments"]["ErrorMessage"]["Get"] = "Steps.Wait.OutputParameters['other']"
    with pytest.raises(DefinitionError, match=r"the Callback step declares no output parameter 'other' \(declared: verdict\)"):
        parse(json.dumps(document))
    use["Arguments"]["ErrorMessage"]["Get"] = "Steps.Wait.Status"
    with pytest.raises(DefinitionError, match=r"a Callback step's properties are OutputParameters\['<name>'\]"):
        parse(json.dumps(document))
    del callback["SqsQueueUrl"]
    with pytest.raises(DefinitionError, match="Step 'Wait': a Callback step needs SqsQueueUrl"):
        parse(json.dumps(document))
    callback["SqsQueueUrl"] = "http://q"
    callback["OutputParameters"][0]["OutputType"] = "Json"
    with pytest.raises(DefinitionError, match=r"OutputParameters\[0\].OutputType must be one of"):
        parse(json.dumps(document))


# ---- paths ----------------------------------------------------------------------------------------------

DESCRIBE_PROCESSING = {
    "ProcessingJobName": "pipelines-2drr2511ngo3-AbaloneProcess-x1",
    "ProcessingInputs": [{"InputName": "input-1", "S3Input": {"S3Uri": "s3://my-bucket/abalone/abalone.csv"}}],
    "ProcessingOutputConfig": {"Outputs": [
        {"OutputName": "train", "S3Output": {"S3Uri": "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/train"}},
        {"OutputName": "validation", "S3Output": {
            "S3Uri": "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/validation"}},
        {"OutputName": "test", "S3Output": {"S3Uri": "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/test"}}]},
    "Environment": {"SM_OUTPUT_NOTEBOOK_NAME": "out.ipynb"},
}
DESCRIBE_TRAINING = {
    "TrainingJobName": "pipelines-2drr2511ngo3-AbaloneTrain-x2",
    "ModelArtifacts": {"S3ModelArtifacts": "s3://my-bucket/AbaloneTrain/2DRR2511NGO3/model.tar.gz"},
    "HyperParameters": {"num_round": "50"},
    "FinalMetricDataList": [{"MetricName": "validation:rmse", "Value": 2.1}, {"MetricName": "val:acc", "Value": 0.93}],
}


@pytest.mark.parametrize("document, path, expected", [
    (DESCRIBE_TRAINING, "ModelArtifacts.S3ModelArtifacts", "s3://my-bucket/AbaloneTrain/2DRR2511NGO3/model.tar.gz"),
    (DESCRIBE_PROCESSING, "ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri",
     "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/test"),
    (DESCRIBE_PROCESSING, "ProcessingOutputConfig.Outputs[0].OutputName", "train"),
    (DESCRIBE_PROCESSING, "ProcessingInputs['input-1'].S3Input.S3Uri", "s3://my-bucket/abalone/abalone.csv"),
    (DESCRIBE_PROCESSING, "Environment['SM_OUTPUT_NOTEBOOK_NAME']", "out.ipynb"),
    (DESCRIBE_TRAINING, "FinalMetricDataList['val:acc'].Value", 0.93),
    (DESCRIBE_TRAINING, 'FinalMetricDataList["validation:rmse"].Value', 2.1),
    (DESCRIBE_TRAINING, "HyperParameters", {"num_round": "50"}),
    ({"TrainingJobSummaries": [{"TrainingJobName": "t-1"}]}, "TrainingJobSummaries[0].TrainingJobName", "t-1"),
    ({"OutputParameters": [{"Name": "verdict", "Value": "ok"}]}, "OutputParameters['verdict']", {"Name": "verdict", "Value": "ok"}),
    ({"Return": [1, {"k.with.dots": "v"}]}, "Return[1]['k.with.dots']", "v"),
    ({"regression_metrics": {"mse": {"value": 4.2}}}, "regression_metrics.mse.value", 4.2),
    ([[1, 2], [3, 4]], "[1][0]", 3),
])
def test_lookup_resolves_members_indexes_and_names(document, path, expected):
    assert lookup(document, path) == expected


@pytest.mark.parametrize("document, path, message", [
    (DESCRIBE_TRAINING, "ModelArtifact.S3ModelArtifacts", r"ModelArtifact is not there \(members: TrainingJobName, ModelArtifacts"),
    (DESCRIBE_PROCESSING, "ProcessingOutputConfig.Outputs['eval'].S3Output.S3Uri",
     r"Outputs\['eval'\]: no item named 'eval' in the list \(names: train, validation, test\)"),
    (DESCRIBE_PROCESSING, "ProcessingOutputConfig.Outputs[5]", r"Outputs\[5\] is out of range \(the list has 3 items\)"),
    (DESCRIBE_TRAINING, "ModelArtifacts.S3ModelArtifacts.Bucket", "cannot be read from a string"),
    (DESCRIBE_TRAINING, "FinalMetricDataList.Value", "cannot be read from a list"),
    (DESCRIBE_TRAINING, "Model..Artifacts", "expected a member name"),
    (DESCRIBE_TRAINING, "ModelArtifacts.", "ends with a dot"),
])
def test_lookup_failures_say_where_the_path_breaks(document, path, message):
    with pytest.raises(PropertyError, match=message):
        lookup(document, path)


# ---- expressions ----------------------------------------------------------------------------------------


@pytest.fixture
def scope():
    return FakeScope(
        parameters={"ProcessingInstanceCount": 2, "TrainingInstanceType": "ml.m5.xlarge", "MseThreshold": 6.0,
                    "UseGpu": False, "ModelApprovalStatus": "Approved", "InputData": "s3://my-bucket/in.csv"},
        properties={"AbaloneProcess": DESCRIBE_PROCESSING, "AbaloneTrain": DESCRIBE_TRAINING,
                    "AbaloneCreateModel-CreateModel": {"ModelName": "pipelines-2drr2511ngo3-model"}},
        files={("AbaloneEval", "EvaluationReport"): {"regression_metrics": {"mse": {"value": 4.2}}}},
        objects={"s3://my-bucket/2DRR2511NGO3/fn/results.json": {"Return": [10, {"k": "v"}]}},
    )


def test_evaluate_replaces_every_expression_and_leaves_the_definition_alone(abalone, scope):
    arguments = abalone.steps["AbaloneProcess"].arguments
    before = copy.deepcopy(arguments)
    resolved = evaluate(arguments, scope)
    assert arguments == before
    assert resolved["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2
    assert resolved["ProcessingInputs"][0]["S3Input"]["S3Uri"] == "s3://my-bucket/in.csv"
    assert resolved["ProcessingOutputConfig"]["Outputs"][1]["S3Output"]["S3Uri"] == \
        "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/validation"
    training = evaluate(abalone.steps["AbaloneTrain"].arguments, scope)
    assert training["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].endswith("/AbaloneProcess/output/train")
    assert training["OutputDataConfig"]["S3OutputPath"] == "s3://my-bucket/AbaloneTrain/2DRR2511NGO3"
    transform = evaluate(abalone.steps["AbaloneTransform"].arguments, scope)
    assert transform["ModelName"] == "pipelines-2drr2511ngo3-model"
    fail = evaluate(abalone.steps["AbaloneMSEFail"].arguments, scope)
    assert fail == {"ErrorMessage": "Execution failed due to MSE > 6.0"}
    assert evaluate(abalone.experiment_config, scope) == {"ExperimentName": "AbalonePipeline", "TrialName": "2DRR2511NGO3"}
    assert evaluate({"Get": "PipelineExperimentConfig.TrialName"}, scope) == "2DRR2511NGO3"


def test_join_formats_values_as_the_sdk_local_executor(scope):
    joined = {"Std:Join": {"On": ",", "Values": ["a", 1, 2.5, True, {"Get": "Parameters.UseGpu"}]}}
    assert evaluate(joined, scope) == "a,1,2.5,True,False"
    with pytest.raises(EvaluationError, match="Std:Join cannot join"):
        evaluate({"Std:Join": {"On": "", "Values": [{"Get": "Steps.AbaloneTrain.HyperParameters"}]}}, scope)


def test_json_get_reads_property_files_and_s3_objects(scope):
    from_file = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"},
                                 "Path": "regression_metrics.mse.value"}}
    assert evaluate(from_file, scope) == 4.2
    delayed_return = {"Std:JsonGet": {"S3Uri": {"Std:Join": {"On": "/", "Values": [
        "s3://my-bucket", EXECUTION_ID, "fn", "results.json"]}}, "Path": "Return[1]['k']"}}
    assert evaluate(delayed_return, scope) == "v"
    missing = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"},
                               "Path": "regression_metrics.rmse.value"}}
    with pytest.raises(PropertyError, match="Std:JsonGet on property file EvaluationReport of step AbaloneEval: path 'regression_metrics.rmse.value' does not resolve: regression_metrics.rmse is not there"):
        evaluate(missing, scope)


def test_malformed_expressions_and_scope_errors_at_evaluation(scope):
    with pytest.raises(EvaluationError, match="Invalid expression .*unknown function Std:Split"):
        evaluate({"Std:Split": {}}, scope)
    with pytest.raises(EvaluationError, match="Invalid expression .*Std:Join takes"):
        evaluate({"Std:Join": {"Values": 1}}, scope)

    class Refusing(FakeScope):
        def parameter(self, name):
            raise ValueError(f"no value for {name}")
    with pytest.raises(ValueError, match="no value for P") as raised:  # the engine's own errors pass through
        evaluate({"Get": "Parameters.P"}, Refusing())
    assert not isinstance(raised.value, EvaluationError)


def test_unresolvable_property_names_the_reference(scope):
    with pytest.raises(PropertyError, match=r"^Steps.AbaloneTrain.ModelArtifacts.S3Model does not resolve: ModelArtifacts.S3Model is not there"):
        evaluate({"Get": "Steps.AbaloneTrain.ModelArtifacts.S3Model"}, scope)


def test_references_finds_steps_in_nested_expressions():
    value = {"a": [{"Std:Join": {"On": "/", "Values": [{"Get": "Steps.A.X"}, {"Get": "Parameters.P"}]}}],
             "b": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.B.PropertyFiles.F"}, "Path": "x"}},
             "c": {"Std:JsonGet": {"S3Uri": {"Std:Join": {"On": "/", "Values": [{"Get": "Steps.C.Y"}]}}, "Path": "x"}},
             "d": {"Get": "Execution.PipelineExecutionId"}, "e": "Steps.D.Z"}
    assert references(value) == {"A", "B", "C"}


# ---- conditions -----------------------------------------------------------------------------------------


def test_abalone_condition_takes_either_branch(abalone, scope):
    conditions = abalone.steps["AbaloneMSECond"].arguments["Conditions"]
    assert condition_holds(conditions, scope) is True  # mse 4.2 <= 6.0
    scope.files[("AbaloneEval", "EvaluationReport")] = {"regression_metrics": {"mse": {"value": 7.5}}}
    assert condition_holds(conditions, scope) is False


def _cmp(kind, left, right):
    return {"Type": kind, "LeftValue": left, "RightValue": right}


@pytest.mark.parametrize("condition, expected", [
    (_cmp("Equals", 1, 1.0), True),
    (_cmp("Equals", "a", "a"), True),
    (_cmp("Equals", True, True), True),
    (_cmp("Equals", {"Get": "Parameters.UseGpu"}, False), True),
    (_cmp("GreaterThan", 3, 2.5), True),
    (_cmp("GreaterThanOrEqualTo", 3, 3), True),
    (_cmp("LessThan", "abc", "abd"), True),
    (_cmp("LessThanOrEqualTo", 4.2, {"Get": "Parameters.MseThreshold"}), True),
    (_cmp("GreaterThan", "0.93", 0.9), True),  # a numeric string read from a JSON file
    ({"Type": "In", "QueryValue": 2, "Values": [1, 2.0, 3]}, True),
    ({"Type": "In", "QueryValue": "x", "Values": [1, "y"]}, False),
    ({"Type": "In", "QueryValue": True, "Values": [1]}, False),  # a boolean is not the number 1
    ({"Type": "Not", "Condition": _cmp("Equals", 1, 2)}, True),
    ({"Type": "Or", "Conditions": [_cmp("Equals", 1, 2), _cmp("Equals", 2, 2)]}, True),
    ({"Type": "Or", "Conditions": []}, False),
])
def test_conditions(condition, expected, scope):
    assert condition_holds([condition], scope) is expected


def test_conditions_are_an_implicit_and(scope):
    assert condition_holds([], scope) is True
    assert condition_holds([_cmp("Equals", 1, 1), _cmp("Equals", 1, 2)], scope) is False


@pytest.mark.parametrize("condition, message", [
    (_cmp("GreaterThan", True, False), "GreaterThan cannot compare boolean True with boolean False"),
    (_cmp("Equals", "abc", 1), "Equals cannot compare string 'abc' with number 1"),
    (_cmp("LessThan", None, 1), "LessThan cannot compare null None with number 1"),
])
def test_incomparable_operands_fail_the_condition(condition, message, scope):
    with pytest.raises(ConditionError, match=message):
        condition_holds([condition], scope)


# ---- parameters -----------------------------------------------------------------------------------------


def test_cast_parameters_from_start_pipeline_execution_strings(abalone):
    given = [{"Name": "ProcessingInstanceCount", "Value": "3"}, {"Name": "MseThreshold", "Value": "7"},
             {"Name": "UseGpu", "Value": "True"}, {"Name": "ModelApprovalStatus", "Value": "Approved"}]
    assert cast_parameters(abalone, given) == {
        "ProcessingInstanceCount": 3, "TrainingInstanceType": "ml.m5.xlarge", "ModelApprovalStatus": "Approved",
        "InputData": "s3://my-bucket/abalone/abalone.csv", "MseThreshold": 7.0, "UseGpu": True}
    values = cast_parameters(abalone, [{"Name": "UseGpu", "Value": "false"}, {"Name": "ProcessingInstanceCount", "Value": "6.0"}])
    assert values["UseGpu"] is False and values["ProcessingInstanceCount"] == 6
    assert cast_parameters(abalone, None)["MseThreshold"] == 6.0


@pytest.mark.parametrize("given, message", [
    ([{"Name": "ProcessingInstanceCount", "Value": "two"}], "Parameter 'ProcessingInstanceCount' is of type Integer: 'two' is not"),
    ([{"Name": "ProcessingInstanceCount", "Value": "1.5"}], "is of type Integer: '1.5' is not"),
    ([{"Name": "MseThreshold", "Value": "nan"}], "is of type Float"),
    ([{"Name": "UseGpu", "Value": "yes"}], "Parameter 'UseGpu' is of type Boolean: 'yes' is not"),
    ([{"Name": "ModelApprovalStatus", "Value": "Rejected"}], r"'Rejected' is not one of \['PendingManualApproval', 'Approved'\]"),
    ([{"Name": "Nope", "Value": "1"}], "Parameter 'Nope' is not declared by the pipeline"),
    ([{"Name": "UseGpu", "Value": "true"}, {"Name": "UseGpu", "Value": "false"}], "Parameter 'UseGpu' is given twice"),
])
def test_bad_parameter_values_are_refused(abalone, given, message):
    with pytest.raises(ParameterError, match=message):
        cast_parameters(abalone, given)


def test_a_parameter_without_default_must_be_given():
    definition = parse(json.dumps({"Version": "2020-12-01", "Parameters": [{"Name": "Input", "Type": "String"}],
                                   "Steps": []}))
    with pytest.raises(ParameterError, match="Parameter 'Input' has no default value and must be given"):
        cast_parameters(definition, [])
    assert cast_parameters(definition, [{"Name": "Input", "Value": " s3://b/k "}]) == {"Input": " s3://b/k "}


# ---- policies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("PT1H", 3600), ("P30D", 30 * 86400), ("30d", 30 * 86400), ("1h", 3600), ("T16m", 960), ("PT16M", 960),
    ("30dT5h", 30 * 86400 + 5 * 3600), ("P1W", 7 * 86400), ("5y", 5 * 365 * 86400), ("P1M", 30 * 86400),
    ("PT0.5S", 0.5), ("p1dt1h1m1s", 86400 + 3661),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "1x", "1H2D", "an hour", "-1d"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_cache_config_helpers():
    assert caching({"Enabled": True, "ExpireAfter": "PT1H"}) and not caching({"Enabled": False}) and not caching(None)
    assert cache_expiry({"Enabled": True, "ExpireAfter": "P1D"}) == 86400
    assert cache_expiry({"Enabled": True}) is None


def test_retry_delays_back_off_until_max_attempts():
    policies = ABALONE["Steps"][1]["RetryPolicies"]
    delays = [retry_delay(policies, "Step.THROTTLING", attempt, 0, 0) for attempt in range(1, 6)]
    assert delays == [10.0, 20.0, 40.0, None, None]  # MaxAttempts 3: three retries after the first attempt
    assert retry_delay(policies, "SageMaker.CAPACITY_ERROR", 5, 0, 0) == 16.0
    assert retry_delay(policies, "SageMaker.CAPACITY_ERROR", 6, 0, 0) is None
    assert retry_delay(policies, "SageMaker.JOB_INTERNAL_ERROR", 1, 0, 0) is None  # not listed
    assert retry_delay([], "Step.SERVICE_FAULT", 1, 0, 0) is None


def test_retry_expire_after_min_bounds_the_time_since_the_first_failure():
    policies = [{"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 5, "BackoffRate": 1.0,
                 "ExpireAfterMin": 2}]
    assert retry_delay(policies, "SageMaker.JOB_INTERNAL_ERROR", 7, first_failure=1000, now=1100) == 5.0
    assert retry_delay(policies, "SageMaker.JOB_INTERNAL_ERROR", 2, first_failure=1000, now=1120) is None


def test_cache_key_follows_the_documented_key_attributes(abalone, scope):
    process = abalone.steps["AbaloneProcess"]
    resolved = evaluate(process.arguments, scope)
    key = cache_key(process, resolved)
    assert key == cache_key(process, json.loads(json.dumps(resolved)))  # stable, order-free
    elsewhere = copy.deepcopy(resolved)
    elsewhere["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] = "s3://my-bucket/other-execution/train"
    assert cache_key(process, elsewhere) == key  # outputs under a per-execution prefix still hit
    changed = copy.deepcopy(resolved)
    changed["ProcessingInputs"][0]["S3Input"]["S3Uri"] = "s3://my-bucket/other.csv"
    assert cache_key(process, changed) != key
    train = abalone.steps["AbaloneTrain"]
    arguments = evaluate(train.arguments, scope)
    other_run = copy.deepcopy(arguments)
    other_run["DebugHookConfig"]["S3OutputPath"] = other_run["OutputDataConfig"]["S3OutputPath"] = "s3://x/OTHER"
    assert cache_key(train, other_run) == cache_key(train, arguments)
    other_run["HyperParameters"]["eta"] = "0.3"
    assert cache_key(train, other_run) != cache_key(train, arguments)
    model = abalone.steps["AbaloneCreateModel-CreateModel"]
    assert cache_key(model, {"A": 1}) != cache_key(model, {"A": 2})  # types without a documented key: all arguments


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
    assert set(steps) == {"AbaloneProcess", "AbaloneTrain", "AbaloneEval", "AbaloneMSECond",
                          "AbaloneRegisterModel-RegisterModel", "AbaloneCreateModel-CreateModel", "AbaloneTransform",
                          "AbaloneMSEFail"}
    assert {name: step.type for name, step in steps.items()} == {
        "AbaloneProcess": "Processing", "AbaloneTrain": "Training", "AbaloneEval": "Processing",
        "AbaloneMSECond": "Condition", "AbaloneRegisterModel-RegisterModel": "RegisterModel",
        "AbaloneCreateModel-CreateModel": "Model", "AbaloneTransform": "Transform", "AbaloneMSEFail": "Fail"}
    assert steps["AbaloneTrain"].depends_on == {"AbaloneProcess"}
    assert steps["AbaloneEval"].depends_on == {"AbaloneProcess", "AbaloneTrain"}
    assert steps["AbaloneMSECond"].depends_on == {"AbaloneEval"}
    assert steps["AbaloneRegisterModel-RegisterModel"].depends_on == {"AbaloneTrain", "AbaloneEval"}
    assert steps["AbaloneTransform"].depends_on == {"AbaloneCreateModel-CreateModel"}
    assert steps["AbaloneTransform"].branch == ("AbaloneMSECond", True)
    assert steps["AbaloneMSEFail"].branch == ("AbaloneMSECond", False)
    assert steps["AbaloneEval"].property_files == (
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"},)
    assert [p["MaxAttempts"] for p in steps["AbaloneTrain"].retry_policies] == [3, 5]
    assert definition.parameters["MseThreshold"].default == 6.0 and definition.parameters["UseGpu"].default is False


def test_the_sdk_v2_classic_pipeline_evaluates(sdk_v2_definition):
    definition = parse(sdk_v2_definition)
    values = cast_parameters(definition, [{"Name": "MseThreshold", "Value": "5.0"}, {"Name": "UseGpu", "Value": "True"}])
    scope = FakeScope(
        parameters=values,
        properties={"AbaloneProcess": DESCRIBE_PROCESSING, "AbaloneTrain": DESCRIBE_TRAINING,
                    "AbaloneEval": {"ProcessingOutputConfig": {"Outputs": [
                        {"OutputName": "evaluation", "S3Output": {"S3Uri": "s3://b/eval"}}]}},
                    "AbaloneCreateModel-CreateModel": {"ModelName": "pipelines-2drr2511ngo3-model"}},
        files={("AbaloneEval", "EvaluationReport"): {"regression_metrics": {"mse": {"value": 4.2}}}})
    training = evaluate(definition.steps["AbaloneTrain"].arguments, scope)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in training["InputDataConfig"]}
    assert channels["validation"].endswith("/AbaloneProcess/output/validation")
    assert training["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    register = evaluate(definition.steps["AbaloneRegisterModel-RegisterModel"].arguments, scope)
    assert register["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == "s3://b/eval/evaluation.json"
    assert register["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == DESCRIBE_TRAINING["ModelArtifacts"]["S3ModelArtifacts"]
    assert evaluate(definition.steps["AbaloneTransform"].arguments, scope)["ModelName"] == "pipelines-2drr2511ngo3-model"
    conditions = definition.steps["AbaloneMSECond"].arguments["Conditions"]
    assert condition_holds(conditions, scope) is True  # 4.2 <= 5.0, and the instance type is in the list
    scope.files[("AbaloneEval", "EvaluationReport")] = {"regression_metrics": {"mse": {"value": 5.5}}}
    assert condition_holds(conditions, scope) is False
    assert evaluate(definition.steps["AbaloneMSEFail"].arguments, scope) == {
        "ErrorMessage": "Execution failed due to MSE > 5.0"}


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
        "Prep": ("Processing", frozenset(), None), "Train": ("Training", {"Prep"}, None),
        "Evaluate": ("Processing", {"Prep", "Train"}, None), "Gate": ("Condition", {"Evaluate"}, None),
        "TooInaccurate": ("Fail", frozenset(), ("Gate", False))}
    values = cast_parameters(definition, [{"Name": "AccuracyThreshold", "Value": "0.9"},
                                          {"Name": "Strict", "Value": "False"}, {"Name": "InstanceCount", "Value": "3"}])
    scope = FakeScope(parameters=values, properties={"Prep": {"ProcessingOutputConfig": {"Outputs": [
        {"OutputName": "train", "S3Output": {"S3Uri": "s3://b/2DRR2511NGO3/Prep/train"}}]}}},
        files={("Evaluate", "Metrics"): {"metrics": {"accuracy": {"value": 0.95}}}})
    training = evaluate(steps["Train"].arguments, scope)
    assert training["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/2DRR2511NGO3/Prep/train"
    assert evaluate(steps["Prep"].arguments, scope)["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3
    conditions = steps["Gate"].arguments["Conditions"]
    assert condition_holds(conditions, scope) is False  # not strict, and 3 instances is not in [1, 2]
    scope.parameters["InstanceCount"] = 2
    assert condition_holds(conditions, scope) is True
    assert evaluate(steps["TooInaccurate"].arguments, scope) == {"ErrorMessage": "accuracy below 0.9"}
