"""The pipeline language (selfmaker/engines/pipeline_language): parsing and validating definitions.

Pure and fast: definitions are JSON written from the SageMaker SDK v2's output (sdk-contract 5.6).
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from selfmaker.engines.pipeline_language import DefinitionError, parse
from support.pipeline_definitions import ABALONE, mutated, step_of


@pytest.fixture(scope="module")
def abalone():
    return parse(json.dumps(ABALONE))


# ---- parsing --------------------------------------------------------------------------------------------


def test_every_property_path_the_sdk_writes_is_accepted():
    reads = [
        "ModelArtifacts.S3ModelArtifacts",
        "FinalMetricDataList['val:acc'].Value",
        "HyperParameters",
        "HyperParameters['eta']",
        "OutputDataConfig.S3OutputPath",
        "TrainingJobName",
        "Environment['X']",
        "AlgorithmSpecification.ContainerEntrypoint[0]",
    ]
    steps = [
        {"Name": "T", "Type": "Training", "Arguments": {}},
        {"Name": "R", "Type": "RegisterModel", "Arguments": {}},
        {"Name": "M", "Type": "Model", "Arguments": {}},
        {"Name": "X", "Type": "Transform", "Arguments": {}},
        {"Name": "H", "Type": "Tuning", "Arguments": {}},
        {"Name": "C", "Type": "Condition", "Arguments": {"Conditions": [], "IfSteps": [], "ElseSteps": []}},
        {
            "Name": "Use",
            "Type": "Processing",
            "Arguments": {
                "Reads": [
                    *({"Get": f"Steps.T.{path}"} for path in reads),
                    {"Get": "Steps.R.ModelPackageArn"},
                    {"Get": "Steps.M.ModelName"},
                    {"Get": "Steps.C.Outcome"},
                    {"Get": "Steps.X.TransformOutput.S3OutputPath"},
                    {"Get": "Steps.M.PrimaryContainer.ModelDataUrl"},
                    # A Tuning step: its job's Describe output and its best trials (get_top_model_s3_uri)
                    {"Get": "Steps.H.TrainingJobSummaries[0].TrainingJobName"},
                    {"Get": "Steps.H.BestTrainingJob.FinalHyperParameterTuningJobObjectiveMetric.Value"},
                ]
            },
        },
    ]
    definition = parse(json.dumps({"Version": "2020-12-01", "Steps": steps}))
    assert definition.steps["Use"].depends_on == {"T", "R", "M", "X", "H", "C"}


def test_parse_flattens_condition_children_in_definition_order(abalone):
    assert list(abalone.steps) == [
        "AbaloneProcess",
        "AbaloneTrain",
        "AbaloneEval",
        "AbaloneMSECond",
        "AbaloneRegisterModel-RegisterModel",
        "AbaloneCreateModel-CreateModel",
        "AbaloneTransform",
        "AbaloneMSEFail",
    ]
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
    assert (
        parameters["ProcessingInstanceCount"].type == "Integer" and parameters["ProcessingInstanceCount"].default == 1
    )
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

    with pytest.raises(
        DefinitionError, match=r"'AbaloneEval' -> 'AbaloneMSECond' -> 'AbaloneEval' form a dependency cycle"
    ):
        parse(mutated(change))

    def itself(d):
        d["Steps"][0]["DependsOn"] = ["AbaloneProcess"]

    with pytest.raises(DefinitionError, match="Step 'AbaloneProcess' depends on itself"):
        parse(mutated(itself))

    def explicit(d):
        d["Steps"][0]["DependsOn"] = []
        step_of(d, "AbaloneMSEFail")["DependsOn"] = ["AbaloneTrain"]

    assert parse(mutated(explicit)).steps["AbaloneMSEFail"].depends_on == {"AbaloneTrain"}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(Version="2021-01-01"), "Version must be '2020-12-01'"),
        (lambda d: d.update(Extra=1), "unknown member Extra"),
        (
            lambda d: d["Steps"].append(copy.deepcopy(d["Steps"][0])),
            "Step name 'AbaloneProcess' is used by more than one step",
        ),
        (
            lambda d: step_of(d, "AbaloneMSECond")["Arguments"]["ElseSteps"][0].update(Name="AbaloneTrain"),
            "Step name 'AbaloneTrain' is used by more than one step",
        ),
        (lambda d: d["Steps"][0].update(Name="has space"), r"Steps\[0\]: Name must be 1 to 64 letters"),
        (
            lambda d: d["Steps"][1].update(Type="Lambda"),
            "Step 'AbaloneTrain': step type Lambda is not supported by SelfMaker yet",
        ),
        (lambda d: d["Steps"][1].update(Type="AutoML"), "Step 'AbaloneTrain': step type AutoML is not supported"),
        (lambda d: d["Steps"][1].update(Type="EMR"), "step type EMR is not supported"),
        (lambda d: d["Steps"][1].update(Type="EndpointConfig"), "step type EndpointConfig is not supported"),
        (lambda d: d["Steps"][1].update(Type="ForEach"), "step type ForEach is not supported"),
        (lambda d: d["Steps"][1].update(Type="Trainning"), "Step 'AbaloneTrain': unknown step type 'Trainning'"),
        (
            lambda d: d["Steps"][1].update(DependsOn=["Prep"]),
            "Step 'AbaloneTrain': DependsOn names unknown step 'Prep'",
        ),
        (lambda d: d["Steps"][1].update(Properties={}), "Step 'AbaloneTrain': unknown member Properties"),
        (
            lambda d: d["Steps"][1].update(PropertyFiles=[]),
            "Step 'AbaloneTrain': unknown member PropertyFiles for a Training step",
        ),
        (
            lambda d: d["Steps"][1]["Arguments"]["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(
                S3Uri={"Get": "Steps.Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}
            ),
            r"Step 'AbaloneTrain' \(Arguments.InputDataConfig\[0\].DataSource.S3DataSource.S3Uri\): references unknown step 'Prep'",
        ),
        (
            lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(InstanceType={"Get": "Parameters.Nope"}),
            r"Step 'AbaloneTrain' \(Arguments.ResourceConfig.InstanceType\): references undeclared parameter 'Nope'",
        ),
        (
            lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(InstanceType={"Get": "Execution.Nope"}),
            "'Execution.Nope' names no execution variable",
        ),
        (
            lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(InstanceType={"Get": "Nowhere.X"}),
            "'Nowhere.X' is not a reference",
        ),
        (
            lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(InstanceType={"Get": "Steps.AbaloneTrain.X"}),
            "a step cannot read its own properties",
        ),
        (
            lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(
                InstanceType={"Get": "Steps.AbaloneProcess.ProcessingOutputConfig.Outputs[train]"}
            ),
            "bad accessor",
        ),
        (
            lambda d: d["Steps"][3]["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"].update(
                PropertyFile={"Get": "Steps.AbaloneEval.PropertyFiles.Missing"}
            ),
            r"Step 'AbaloneMSECond' \(Arguments.Conditions\[0\].LeftValue\): step 'AbaloneEval' has no property file 'Missing'",
        ),
        (
            lambda d: d["Steps"][3]["Arguments"]["Conditions"][0].update(
                LeftValue={"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"}
            ),
            "can only be read with Std:JsonGet",
        ),
        (
            lambda d: d["Steps"][3]["Arguments"]["Conditions"][0].update(
                LeftValue={
                    "Std:JsonGet": {"S3Uri": {"Get": "Steps.AbaloneEval.PropertyFiles.EvaluationReport"}, "Path": "a"}
                }
            ),
            "can only be read with Std:JsonGet",
        ),
        (
            lambda d: d["Steps"][3]["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"].update(S3Uri="s3://b/k"),
            "exactly one of PropertyFile and S3Uri",
        ),
        (
            lambda d: d["Steps"][3]["Arguments"]["Conditions"][0].update(Type="Bigger"),
            r"Step 'AbaloneMSECond': Conditions\[0\]: Type must be one of",
        ),
        (
            lambda d: d["Steps"][3]["Arguments"]["Conditions"][1]["Conditions"][0].update(Condition=[]),
            r"Conditions\[1\].Conditions\[0\].Condition: Type must be one of",
        ),
        (
            lambda d: d["Steps"][3]["Arguments"]["Conditions"][1]["Conditions"][1].pop("Values"),
            r"Conditions\[1\].Conditions\[1\]: a In condition has exactly QueryValue, Values",
        ),
        (
            lambda d: d["Steps"][2]["PropertyFiles"][0].update(OutputName="report"),
            "property file 'EvaluationReport' reads output 'report', which is not among the step's outputs",
        ),
        (
            lambda d: d["Steps"][0]["CacheConfig"].update(ExpireAfter="an hour"),
            "CacheConfig.ExpireAfter: 'an hour' is not a duration",
        ),
        (
            lambda d: d["Steps"][1]["RetryPolicies"][0].update(ExceptionType=["Step.OOPS"]),
            r"RetryPolicies\[0\].ExceptionType",
        ),
        (
            lambda d: d["Steps"][1]["RetryPolicies"][1].update(ExpireAfterMin=5),
            "MaxAttempts or ExpireAfterMin, not both",
        ),
        (
            lambda d: d["Steps"][1]["RetryPolicies"][1].update(MaxAttempts=0),
            "MaxAttempts must be a number from 1 to 20",
        ),
        (lambda d: d["Parameters"].append({"Name": "N", "Type": "Decimal"}), "Parameter 'N': Type must be one of"),
        (
            lambda d: d["Parameters"].append({"Name": "N", "Type": "Integer", "DefaultValue": "1"}),
            "Parameter 'N': DefaultValue '1' is not a Integer",
        ),
        (
            lambda d: d["Parameters"].append({"Name": "N", "Type": "Boolean", "DefaultValue": 0}),
            "Parameter 'N': DefaultValue 0 is not a Boolean",
        ),
        (
            lambda d: d["Parameters"][2].update(DefaultValue="Rejected"),
            "DefaultValue 'Rejected' is not one of EnumValues",
        ),
        (
            lambda d: d["Parameters"].append(dict(d["Parameters"][0])),
            "Parameter 'ProcessingInstanceCount' is declared twice",
        ),
        (
            lambda d: d.update(PipelineExperimentConfig={"ExperimentName": {"Get": "Steps.AbaloneTrain.X"}}),
            "may read only parameters and execution variables",
        ),
        (
            lambda d: step_of(d, "AbaloneMSEFail")["Arguments"].update(Other=1),
            "a Fail step's only argument is ErrorMessage",
        ),
        (
            lambda d: step_of(d, "AbaloneMSEFail")["Arguments"].update(ErrorMessage=["x"]),
            "Step 'AbaloneMSEFail': ErrorMessage must be a string or an expression",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Get": "Steps.AbaloneMSEFail.X"}),
            "'AbaloneMSEFail' is a Fail step, which has no properties",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(
                ModelName={"Std:Join": {"On": "", "Values": [{"a": 1}]}}
            ),
            "Std:Join joins strings",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(
                ModelName={"Get": "Steps.AbaloneTrain.ModelArtifact.S3ModelArtifacts"}
            ),
            r"Step 'AbaloneTransform' \(Arguments.ModelName\): Steps.AbaloneTrain.ModelArtifact.S3ModelArtifacts: a Training step's"
            r" properties \(DescribeTrainingJobResponse\) have no member 'ModelArtifact'",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(
                ModelName={"Get": "Steps.AbaloneTrain.ModelArtifacts.S3Uri"}
            ),
            "have no member 'S3Uri' in ModelArtifacts",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(
                ModelName={"Get": "Steps.AbaloneTrain.ModelArtifacts.S3ModelArtifacts.Key"}
            ),
            "ModelArtifacts.S3ModelArtifacts is a string: it has no Key",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(
                ModelName={"Get": "Steps.AbaloneProcess.ProcessingOutputConfig.Outputs.train"}
            ),
            r"ProcessingOutputConfig.Outputs is a list: read an item with \[index\] or \['name'\], not .train",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(
                ModelName={"Get": "Steps.AbaloneProcess.Environment[0]"}
            ),
            r"Environment is a map: read an entry with \['key'\], not \[0\]",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(
                ModelName={"Get": "Steps.AbaloneTrain.Outcome"}
            ),
            "have no member 'Outcome'",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(
                ModelName={"Get": "Steps.AbaloneMSECond.Result"}
            ),
            "a Condition step's only property is Outcome, not 'Result'",
        ),
        (
            lambda d: step_of(d, "AbaloneTransform")["Arguments"].update(ModelName={"Std:Split": {}}),
            r"Step 'AbaloneTransform' \(Arguments.ModelName\): unknown function Std:Split",
        ),
    ],
)
def test_invalid_definitions_say_what_and_where(change, message):
    with pytest.raises(DefinitionError, match=message):
        parse(mutated(change))


def test_malformed_json_and_top_level():
    with pytest.raises(DefinitionError, match="not valid JSON"):
        parse("{")
    with pytest.raises(DefinitionError, match="not valid JSON: NaN is not a JSON value"):
        parse(
            '{"Version": "2020-12-01", "Steps": [], "Parameters": [{"Name": "F", "Type": "Float", "DefaultValue": NaN}]}'
        )
    for not_an_object in ("[]", "not json", ' "{}"'):  # AWS's words when the text does not open an object
        with pytest.raises(
            DefinitionError, match=r"^Unable to parse pipeline definition\. Expecting start of Json Object\.$"
        ):
            parse(not_an_object)
    with pytest.raises(DefinitionError, match="Steps must be a list"):
        parse(json.dumps({"Version": "2020-12-01"}))
    for depth in (900, 5000):  # deep enough for the walk over arguments, then for the JSON decoder
        deep = (
            '{"Version": "2020-12-01", "Steps": [{"Name": "S", "Type": "Model", "Arguments": '
            + '{"x": [' * depth
            + "1"
            + "]}" * depth
            + "}]}"
        )
        with pytest.raises(DefinitionError, match="PipelineDefinition is nested too deeply"):
            parse(deep)


ODD_VALUES = [
    None,
    1,
    1.5,
    True,
    "x",
    "",
    [],
    {},
    [None],
    {"a": 1},
    {"Get": 1},
    {"Get": "Steps"},
    {"Std:Join": 1},
    {"Std:JsonGet": {"Path": 1}},
    {"Type": "Or", "Conditions": 1},
    {"Type": "Not", "Condition": 1},
    [{"ExceptionType": ["Step.THROTTLING"], "MaxAttempts": "1"}],
    {"Enabled": True, "ExpireAfter": 1},
    [{"PropertyFileName": 1, "OutputName": [], "FilePath": "x"}],
    [{"Name": "P", "Type": "String", "EnumValues": [[1]]}],
]


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
            "Get": "Steps.AbaloneCreateModel-CreateModel.ModelName"
        }

    with pytest.raises(
        DefinitionError, match="'AbaloneMSECond' -> 'AbaloneCreateModel-CreateModel' -> 'AbaloneMSECond'"
    ):
        parse(mutated(change))


def test_a_long_chain_parses_without_recursion_limits():
    steps = [
        {"Name": f"S{i}", "Type": "Fail", "Arguments": {}, **({"DependsOn": [f"S{i - 1}"]} if i else {})}
        for i in range(3000)
    ]
    definition = parse(json.dumps({"Version": "2020-12-01", "Steps": steps}))
    assert definition.steps["S2999"].depends_on == {"S2998"}


def test_callback_steps_declare_queue_and_outputs():
    callback = {
        "Name": "Wait",
        "Type": "Callback",
        "Arguments": {"x": {"Get": "Parameters.P"}},
        "SqsQueueUrl": "http://localhost/123456789012/q",
        "OutputParameters": [{"OutputName": "verdict", "OutputType": "String"}],
    }
    use = {
        "Name": "Use",
        "Type": "Fail",
        "Arguments": {"ErrorMessage": {"Get": "Steps.Wait.OutputParameters['verdict']"}},
    }
    document = {"Version": "2020-12-01", "Parameters": [{"Name": "P", "Type": "String"}], "Steps": [callback, use]}
    assert parse(json.dumps(document)).steps["Use"].depends_on == {"Wait"}
    use["Arguments"]["ErrorMessage"]["Get"] = "Steps.Wait.OutputParameters['other']"
    with pytest.raises(
        DefinitionError, match=r"the Callback step declares no output parameter 'other' \(declared: verdict\)"
    ):
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


@pytest.mark.parametrize(
    "path, message",
    [
        ("Nope", r"a Tuning step's properties \(DescribeHyperParameterTuningJobResponse\) have no member 'Nope'"),
        ("TrainingJobSummaries.TrainingJobName", "TrainingJobSummaries is a list"),
        ("TrainingJobSummaries[0].ModelArtifacts", "have no member 'ModelArtifacts'"),
    ],
)
def test_a_tuning_steps_properties_are_its_describe_output_and_its_trials(path, message):
    steps = [
        {"Name": "H", "Type": "Tuning", "Arguments": {}},
        {"Name": "Use", "Type": "Model", "Arguments": {"X": {"Get": f"Steps.H.{path}"}}},
    ]
    with pytest.raises(DefinitionError, match=message):
        parse(json.dumps({"Version": "2020-12-01", "Steps": steps}))
