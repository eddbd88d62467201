"""The pipeline language (selfmaker/engines/pipeline_language): property paths, expressions, conditions, parameters
and step policies (retry, caching), evaluated against a stand-in scope."""

from __future__ import annotations

import copy
import json
import re

import pytest

from selfmaker.engines.pipeline_language import (
    ConditionError,
    EvaluationError,
    ParameterError,
    PropertyError,
    cache_key,
    cast_parameters,
    condition_holds,
    evaluate,
    lookup,
    parse,
    parse_duration,
    references,
    retry_delay,
)
from selfmaker.engines.pipeline_language.policies import cache_expiry, caching
from support.pipeline_definitions import ABALONE, DESCRIBE_PROCESSING, DESCRIBE_TRAINING, EXECUTION_ID, FakeScope


@pytest.fixture(scope="module")
def abalone():
    return parse(json.dumps(ABALONE))


# ---- paths ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document, path, expected",
    [
        (DESCRIBE_TRAINING, "ModelArtifacts.S3ModelArtifacts", "s3://my-bucket/AbaloneTrain/2DRR2511NGO3/model.tar.gz"),
        (
            DESCRIBE_PROCESSING,
            "ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri",
            "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/test",
        ),
        (DESCRIBE_PROCESSING, "ProcessingOutputConfig.Outputs[0].OutputName", "train"),
        (DESCRIBE_PROCESSING, "ProcessingInputs['input-1'].S3Input.S3Uri", "s3://my-bucket/abalone/abalone.csv"),
        (DESCRIBE_PROCESSING, "Environment['SM_OUTPUT_NOTEBOOK_NAME']", "out.ipynb"),
        (DESCRIBE_TRAINING, "FinalMetricDataList['val:acc'].Value", 0.93),
        (DESCRIBE_TRAINING, 'FinalMetricDataList["validation:rmse"].Value', 2.1),
        (DESCRIBE_TRAINING, "HyperParameters", {"num_round": "50"}),
        ({"TrainingJobSummaries": [{"TrainingJobName": "t-1"}]}, "TrainingJobSummaries[0].TrainingJobName", "t-1"),
        (
            {"OutputParameters": [{"Name": "verdict", "Value": "ok"}]},
            "OutputParameters['verdict']",
            {"Name": "verdict", "Value": "ok"},
        ),
        ({"Return": [1, {"k.with.dots": "v"}]}, "Return[1]['k.with.dots']", "v"),
        ({"regression_metrics": {"mse": {"value": 4.2}}}, "regression_metrics.mse.value", 4.2),
        ([[1, 2], [3, 4]], "[1][0]", 3),
    ],
)
def test_lookup_resolves_members_indexes_and_names(document, path, expected):
    assert lookup(document, path) == expected


@pytest.mark.parametrize(
    "document, path, message",
    [
        (
            DESCRIBE_TRAINING,
            "ModelArtifact.S3ModelArtifacts",
            r"ModelArtifact is not there \(members: TrainingJobName, ModelArtifacts",
        ),
        (
            DESCRIBE_PROCESSING,
            "ProcessingOutputConfig.Outputs['eval'].S3Output.S3Uri",
            r"Outputs\['eval'\]: no item named 'eval' in the list \(names: train, validation, test\)",
        ),
        (
            DESCRIBE_PROCESSING,
            "ProcessingOutputConfig.Outputs[5]",
            r"Outputs\[5\] is out of range \(the list has 3 items\)",
        ),
        (DESCRIBE_TRAINING, "ModelArtifacts.S3ModelArtifacts.Bucket", "cannot be read from a string"),
        (DESCRIBE_TRAINING, "FinalMetricDataList.Value", "cannot be read from a list"),
        (DESCRIBE_TRAINING, "Model..Artifacts", "expected a member name"),
        (DESCRIBE_TRAINING, "ModelArtifacts.", "ends with a dot"),
    ],
)
def test_lookup_failures_say_where_the_path_breaks(document, path, message):
    with pytest.raises(PropertyError, match=message):
        lookup(document, path)


# ---- expressions ----------------------------------------------------------------------------------------


@pytest.fixture
def scope():
    return FakeScope(
        parameters={
            "ProcessingInstanceCount": 2,
            "TrainingInstanceType": "ml.m5.xlarge",
            "MseThreshold": 6.0,
            "UseGpu": False,
            "ModelApprovalStatus": "Approved",
            "InputData": "s3://my-bucket/in.csv",
        },
        properties={
            "AbaloneProcess": DESCRIBE_PROCESSING,
            "AbaloneTrain": DESCRIBE_TRAINING,
            "AbaloneCreateModel-CreateModel": {"ModelName": "pipelines-2drr2511ngo3-model"},
        },
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
    assert (
        resolved["ProcessingOutputConfig"]["Outputs"][1]["S3Output"]["S3Uri"]
        == "s3://my-bucket/AbalonePipeline/2DRR2511NGO3/AbaloneProcess/output/validation"
    )
    training = evaluate(abalone.steps["AbaloneTrain"].arguments, scope)
    assert training["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].endswith(
        "/AbaloneProcess/output/train"
    )
    assert training["OutputDataConfig"]["S3OutputPath"] == "s3://my-bucket/AbaloneTrain/2DRR2511NGO3"
    transform = evaluate(abalone.steps["AbaloneTransform"].arguments, scope)
    assert transform["ModelName"] == "pipelines-2drr2511ngo3-model"
    fail = evaluate(abalone.steps["AbaloneMSEFail"].arguments, scope)
    assert fail == {"ErrorMessage": "Execution failed due to MSE > 6.0"}
    assert evaluate(abalone.experiment_config, scope) == {
        "ExperimentName": "AbalonePipeline",
        "TrialName": "2DRR2511NGO3",
    }
    assert evaluate({"Get": "PipelineExperimentConfig.TrialName"}, scope) == "2DRR2511NGO3"


def test_join_formats_values_as_the_sdk_local_executor(scope):
    joined = {"Std:Join": {"On": ",", "Values": ["a", 1, 2.5, True, {"Get": "Parameters.UseGpu"}]}}
    assert evaluate(joined, scope) == "a,1,2.5,True,False"
    with pytest.raises(EvaluationError, match="Std:Join cannot join"):
        evaluate({"Std:Join": {"On": "", "Values": [{"Get": "Steps.AbaloneTrain.HyperParameters"}]}}, scope)


def test_json_get_reads_property_files_and_s3_objects(scope):
    from_file = {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"},
            "Path": "regression_metrics.mse.value",
        }
    }
    assert evaluate(from_file, scope) == 4.2
    delayed_return = {
        "Std:JsonGet": {
            "S3Uri": {"Std:Join": {"On": "/", "Values": ["s3://my-bucket", EXECUTION_ID, "fn", "results.json"]}},
            "Path": "Return[1]['k']",
        }
    }
    assert evaluate(delayed_return, scope) == "v"
    missing = {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"},
            "Path": "regression_metrics.rmse.value",
        }
    }
    with pytest.raises(
        PropertyError,
        match=re.escape(
            "Std:JsonGet on property file EvaluationReport of step AbaloneEval: path 'regression_metrics.rmse.value' does not resolve: regression_metrics.rmse is not there"
        ),
    ):
        evaluate(missing, scope)


def test_malformed_expressions_and_scope_errors_at_evaluation(scope):
    with pytest.raises(EvaluationError, match=r"Invalid expression .*unknown function Std:Split"):
        evaluate({"Std:Split": {}}, scope)
    with pytest.raises(EvaluationError, match=r"Invalid expression .*Std:Join takes"):
        evaluate({"Std:Join": {"Values": 1}}, scope)

    class Refusing(FakeScope):
        def parameter(self, name):
            raise ValueError(f"no value for {name}")

    with pytest.raises(ValueError, match="no value for P") as raised:  # the engine's own errors pass through
        evaluate({"Get": "Parameters.P"}, Refusing())
    assert not isinstance(raised.value, EvaluationError)


def test_unresolvable_property_names_the_reference(scope):
    with pytest.raises(
        PropertyError,
        match=r"^Steps.AbaloneTrain.ModelArtifacts.S3Model does not resolve: ModelArtifacts.S3Model is not there",
    ):
        evaluate({"Get": "Steps.AbaloneTrain.ModelArtifacts.S3Model"}, scope)


def test_references_finds_steps_in_nested_expressions():
    value = {
        "a": [{"Std:Join": {"On": "/", "Values": [{"Get": "Steps.A.X"}, {"Get": "Parameters.P"}]}}],
        "b": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.B.PropertyFiles.F"}, "Path": "x"}},
        "c": {"Std:JsonGet": {"S3Uri": {"Std:Join": {"On": "/", "Values": [{"Get": "Steps.C.Y"}]}}, "Path": "x"}},
        "d": {"Get": "Execution.PipelineExecutionId"},
        "e": "Steps.D.Z",
    }
    assert references(value) == {"A", "B", "C"}


# ---- conditions -----------------------------------------------------------------------------------------


def test_abalone_condition_takes_either_branch(abalone, scope):
    conditions = abalone.steps["AbaloneMSECond"].arguments["Conditions"]
    assert condition_holds(conditions, scope) is True  # mse 4.2 <= 6.0
    scope.files[("AbaloneEval", "EvaluationReport")] = {"regression_metrics": {"mse": {"value": 7.5}}}
    assert condition_holds(conditions, scope) is False


def _cmp(kind, left, right):
    return {"Type": kind, "LeftValue": left, "RightValue": right}


@pytest.mark.parametrize(
    "condition, expected",
    [
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
    ],
)
def test_conditions(condition, expected, scope):
    assert condition_holds([condition], scope) is expected


def test_conditions_are_an_implicit_and(scope):
    assert condition_holds([], scope) is True
    assert condition_holds([_cmp("Equals", 1, 1), _cmp("Equals", 1, 2)], scope) is False


@pytest.mark.parametrize(
    "condition, message",
    [
        (_cmp("GreaterThan", True, False), "GreaterThan cannot compare boolean True with boolean False"),
        (_cmp("Equals", "abc", 1), "Equals cannot compare string 'abc' with number 1"),
        (_cmp("LessThan", None, 1), "LessThan cannot compare null None with number 1"),
    ],
)
def test_incomparable_operands_fail_the_condition(condition, message, scope):
    with pytest.raises(ConditionError, match=message):
        condition_holds([condition], scope)


# ---- parameters -----------------------------------------------------------------------------------------


def test_cast_parameters_from_start_pipeline_execution_strings(abalone):
    given = [
        {"Name": "ProcessingInstanceCount", "Value": "3"},
        {"Name": "MseThreshold", "Value": "7"},
        {"Name": "UseGpu", "Value": "True"},
        {"Name": "ModelApprovalStatus", "Value": "Approved"},
    ]
    assert cast_parameters(abalone, given) == {
        "ProcessingInstanceCount": 3,
        "TrainingInstanceType": "ml.m5.xlarge",
        "ModelApprovalStatus": "Approved",
        "InputData": "s3://my-bucket/abalone/abalone.csv",
        "MseThreshold": 7.0,
        "UseGpu": True,
    }
    values = cast_parameters(
        abalone, [{"Name": "UseGpu", "Value": "false"}, {"Name": "ProcessingInstanceCount", "Value": "6.0"}]
    )
    assert values["UseGpu"] is False and values["ProcessingInstanceCount"] == 6
    assert cast_parameters(abalone, None)["MseThreshold"] == 6.0


@pytest.mark.parametrize(
    "given, message",
    [
        (
            [{"Name": "ProcessingInstanceCount", "Value": "two"}],
            "Parameter 'ProcessingInstanceCount' is of type Integer: 'two' is not",
        ),
        ([{"Name": "ProcessingInstanceCount", "Value": "1.5"}], "is of type Integer: '1.5' is not"),
        ([{"Name": "MseThreshold", "Value": "nan"}], "is of type Float"),
        ([{"Name": "UseGpu", "Value": "yes"}], "Parameter 'UseGpu' is of type Boolean: 'yes' is not"),
        (
            [{"Name": "ModelApprovalStatus", "Value": "Rejected"}],
            r"'Rejected' is not one of \['PendingManualApproval', 'Approved'\]",
        ),
        ([{"Name": "Nope", "Value": "1"}], "Parameter 'Nope' is not declared by the pipeline"),
        (
            [{"Name": "UseGpu", "Value": "true"}, {"Name": "UseGpu", "Value": "false"}],
            "Parameter 'UseGpu' is given twice",
        ),
    ],
)
def test_bad_parameter_values_are_refused(abalone, given, message):
    with pytest.raises(ParameterError, match=message):
        cast_parameters(abalone, given)


def test_a_parameter_without_default_must_be_given():
    definition = parse(
        json.dumps({"Version": "2020-12-01", "Parameters": [{"Name": "Input", "Type": "String"}], "Steps": []})
    )
    with pytest.raises(ParameterError, match="Parameter 'Input' has no default value and must be given"):
        cast_parameters(definition, [])
    assert cast_parameters(definition, [{"Name": "Input", "Value": " s3://b/k "}]) == {"Input": " s3://b/k "}


# ---- policies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("PT1H", 3600),
        ("P30D", 30 * 86400),
        ("30d", 30 * 86400),
        ("1h", 3600),
        ("T16m", 960),
        ("PT16M", 960),
        ("30dT5h", 30 * 86400 + 5 * 3600),
        ("P1W", 7 * 86400),
        ("5y", 5 * 365 * 86400),
        ("P1M", 30 * 86400),
        ("PT0.5S", 0.5),
        ("p1dt1h1m1s", 86400 + 3661),
    ],
)
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
    policies = [
        {
            "ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"],
            "IntervalSeconds": 5,
            "BackoffRate": 1.0,
            "ExpireAfterMin": 2,
        }
    ]
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
