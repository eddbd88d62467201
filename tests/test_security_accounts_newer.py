"""Security: the newer families keep the account wall (the older ones are tests/test_security_accounts*.py).

B makes algorithms, tuning jobs, notebook lifecycle configurations and Git repositories, a compilation job,
a device fleet with a device, and a project; A then names each by name and by ARN in every operation that
takes it (Describe, Update, Stop, Delete, and the operations that use another resource: a training or tuning
job on B's algorithm, a warm start from B's tuning job, a notebook instance on B's configuration or
repository, a packaging job of B's compilation, a deployment plan or a device in B's fleet, the edge data
plane as B's device), and finds them with neither List nor Search. Each attack is refused as AWS refuses it
and changes nothing of B's; the same call works on A's own, so the refusal is the wall.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from support.accounts import NOT_FOUND, ROLE, A, B, accounts_server, arn_of, until
from support.accounts import refused as refused_with
from support.pipelines import IMAGE

# What a refusal of another account's resource says: it is not there (or, for an ARN where the operation takes
# names only, that the name is malformed), never some other complaint that would hide a missing wall.
ABSENT = (
    "does not exist",
    "not found",
    "can't find",
    "Cannot find",
    "Could not find",
    "is not registered",
    "failed to satisfy constraint",
    "bucket of another account",
)


def refused(call, *codes: str, **kwargs) -> str:
    message = refused_with(call, *codes, **kwargs)
    assert any(words in message for words in ABSENT), f"{call.__name__}: {message}"
    return message


pytestmark = pytest.mark.both_databases

srv, as_ = accounts_server("accounts-newer", A, B)

MISSING = (*NOT_FOUND, "ResourceNotFoundException", "ValidationError")
METRICS = [{"Name": "objective", "Regex": r"objective=([-0-9.e]+)"}]


def _training_spec() -> dict:
    return {
        "TrainingImage": IMAGE,
        "SupportedHyperParameters": [
            {
                "Name": "x",
                "Type": "Continuous",
                "Range": {"ContinuousParameterRangeSpecification": {"MinValue": "0", "MaxValue": "1"}},
                "IsTunable": True,
            }
        ],
        "SupportedTrainingInstanceTypes": ["ml.m5.large"],
        "TrainingChannels": [{"Name": "train", "SupportedContentTypes": ["text/csv"], "SupportedInputModes": ["File"]}],
        "MetricDefinitions": METRICS,
        "SupportedTuningJobObjectiveMetrics": [{"Type": "Maximize", "MetricName": "objective"}],
    }


def _definition(who, bucket: str, algorithm: str | None = None) -> dict:
    spec = {"TrainingInputMode": "File"}
    spec.update({"AlgorithmName": algorithm} if algorithm else {"TrainingImage": IMAGE, "MetricDefinitions": METRICS})
    return {
        "AlgorithmSpecification": spec,
        "RoleArn": ROLE.format(account=who.account),
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


def _tuning(name: str, definition: dict, **config) -> dict:
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "objective"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
            "ParameterRanges": {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
        },
        "TrainingJobDefinition": definition,
        **config,
    }


def _bucket(as_, who, unique) -> str:
    bucket = unique(f"{who.account[:1]}-newer")
    as_(who, "s3").create_bucket(Bucket=bucket)
    return bucket


def _searched(sm, resource: str, name_member: str, name: str) -> list:
    return sm.search(
        Resource=resource, SearchExpression={"Filters": [{"Name": name_member, "Operator": "Equals", "Value": name}]}
    )["Results"]


# -- algorithms and tuning ----------------------------------------------------------------------------------------


def _stop(client, name: str) -> None:
    """Stop a tuning job the owner made, unless it has already ended (its trials may fail at once)."""
    try:
        client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except ClientError as err:
        if "only a job in progress can be stopped" not in err.response["Error"]["Message"]:
            raise


def test_algorithms_and_tuning_jobs_stay_in_their_account(as_, unique):
    a, b = as_(A), as_(B)
    a_bucket, b_bucket = _bucket(as_, A, unique), _bucket(as_, B, unique)
    algorithm = unique("b-algo")
    algorithm_arn = b.create_algorithm(AlgorithmName=algorithm, TrainingSpecification=_training_spec())["AlgorithmArn"]
    tuning = unique("b-tune")[:32]
    b.create_hyper_parameter_tuning_job(**_tuning(tuning, _definition(B, b_bucket)))
    tuning_arn = arn_of(B, f"hyper-parameter-tuning-job/{tuning}")

    for reference in (algorithm, algorithm_arn):
        refused(a.describe_algorithm, *MISSING, AlgorithmName=reference)
        refused(a.delete_algorithm, *MISSING, AlgorithmName=reference)
        refused(
            a.create_training_job,
            *MISSING,
            TrainingJobName=unique("a-on-b-algo"),
            **_definition(A, a_bucket, reference),
        )
        refused(
            a.create_hyper_parameter_tuning_job,
            *MISSING,
            **_tuning(unique("a-tune")[:32], _definition(A, a_bucket, reference)),
        )
    assert algorithm not in {
        s["AlgorithmName"] for s in a.list_algorithms(NameContains=algorithm)["AlgorithmSummaryList"]
    }

    for reference in (tuning, tuning_arn):
        refused(a.describe_hyper_parameter_tuning_job, *MISSING, HyperParameterTuningJobName=reference)
        refused(a.stop_hyper_parameter_tuning_job, *MISSING, HyperParameterTuningJobName=reference)
        refused(a.delete_hyper_parameter_tuning_job, *MISSING, HyperParameterTuningJobName=reference)
        refused(a.list_training_jobs_for_hyper_parameter_tuning_job, *MISSING, HyperParameterTuningJobName=reference)
    warm = {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": tuning}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }
    refused(
        a.create_hyper_parameter_tuning_job,
        *MISSING,
        **_tuning(unique("a-warm")[:32], _definition(A, a_bucket), WarmStartConfig=warm),
    )
    listed = a.list_hyper_parameter_tuning_jobs(NameContains=tuning)["HyperParameterTuningJobSummaries"]
    assert listed == []
    assert _searched(a, "HyperParameterTuningJob", "HyperParameterTuningJobName", tuning) == []
    assert _searched(a, "TrainingJob", "TuningJobArn", tuning_arn) == []

    # B's are whole: the algorithm there, the tuning job never stopped by A.
    assert b.describe_algorithm(AlgorithmName=algorithm)["AlgorithmStatus"] == "Completed"
    status = b.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning)["HyperParameterTuningJobStatus"]
    assert status in ("InProgress", "Completed", "Failed")
    assert len(_searched(b, "HyperParameterTuningJob", "HyperParameterTuningJobName", tuning)) == 1
    _stop(b, tuning)

    # Positive control: A's own algorithm, by ARN, and a warm start from A's own tuning job.
    mine = a.create_algorithm(AlgorithmName=unique("a-algo"), TrainingSpecification=_training_spec())["AlgorithmArn"]
    assert a.describe_algorithm(AlgorithmName=mine)["AlgorithmArn"] == mine
    parent = unique("a-parent")[:32]
    a.create_hyper_parameter_tuning_job(**_tuning(parent, _definition(A, a_bucket, mine)))
    _stop(a, parent)
    until(
        lambda: (
            a.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=parent)["HyperParameterTuningJobStatus"]
            in ("Stopped", "Completed", "Failed")
        ),
        120,
        "A's tuning job to stop",
    )
    own_warm = {**warm, "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": parent}]}
    child = unique("a-child")[:32]
    a.create_hyper_parameter_tuning_job(**_tuning(child, _definition(A, a_bucket, mine), WarmStartConfig=own_warm))
    _stop(a, child)


# -- notebooks ----------------------------------------------------------------------------------------------------


def test_notebook_configurations_and_repositories_stay_in_their_account(as_, unique):
    a, b = as_(A), as_(B)
    config, repository = unique("b-lcc"), unique("b-repo")
    script = [{"Content": "ZWNobyBi"}]  # "echo b"
    config_arn = b.create_notebook_instance_lifecycle_config(
        NotebookInstanceLifecycleConfigName=config, OnCreate=script
    )["NotebookInstanceLifecycleConfigArn"]
    repository_arn = b.create_code_repository(
        CodeRepositoryName=repository, GitConfig={"RepositoryUrl": "https://example.com/b/secret.git"}
    )["CodeRepositoryArn"]

    for reference in (config, config_arn):
        refused(a.describe_notebook_instance_lifecycle_config, *MISSING, NotebookInstanceLifecycleConfigName=reference)
        refused(
            a.update_notebook_instance_lifecycle_config,
            *MISSING,
            NotebookInstanceLifecycleConfigName=reference,
            OnStart=[{"Content": "cGxhbnRlZA=="}],
        )
        refused(a.delete_notebook_instance_lifecycle_config, *MISSING, NotebookInstanceLifecycleConfigName=reference)
    for reference in (repository, repository_arn):
        refused(a.describe_code_repository, *MISSING, CodeRepositoryName=reference)
        refused(
            a.update_code_repository,
            *MISSING,
            CodeRepositoryName=reference,
            GitConfig={"SecretArn": f"arn:aws:secretsmanager:us-east-1:{A.account}:secret:x-AbCdEf"},
        )
        refused(a.delete_code_repository, *MISSING, CodeRepositoryName=reference)
    instance = {"InstanceType": "ml.t3.medium", "RoleArn": ROLE.format(account=A.account)}
    refused(
        a.create_notebook_instance,
        *MISSING,
        NotebookInstanceName=unique("a-nb"),
        LifecycleConfigName=config,
        **instance,
    )
    for reference in (repository, repository_arn):
        refused(
            a.create_notebook_instance,
            *MISSING,
            NotebookInstanceName=unique("a-nb"),
            DefaultCodeRepository=reference,
            **instance,
        )
    assert a.list_notebook_instance_lifecycle_configs(NameContains=config)["NotebookInstanceLifecycleConfigs"] == []
    assert a.list_code_repositories(NameContains=repository)["CodeRepositorySummaryList"] == []
    assert a.list_notebook_instances(NotebookInstanceLifecycleConfigNameContains=config)["NotebookInstances"] == []

    # B's are as B made them.
    found = b.describe_notebook_instance_lifecycle_config(NotebookInstanceLifecycleConfigName=config)
    assert found["OnCreate"] == script and not found.get("OnStart")
    described = b.describe_code_repository(CodeRepositoryName=repository)["GitConfig"]
    assert described == {"RepositoryUrl": "https://example.com/b/secret.git"}
    # Positive control: A's own configuration of the same name answers A.
    a.create_notebook_instance_lifecycle_config(NotebookInstanceLifecycleConfigName=config, OnCreate=[])
    assert a.describe_notebook_instance_lifecycle_config(NotebookInstanceLifecycleConfigName=config).get(
        "OnCreate"
    ) in (None, [])


# -- compilation and Edge Manager ---------------------------------------------------------------------------------


def test_compilation_jobs_and_device_fleets_stay_in_their_account(as_, unique):
    a, b, a_edge = as_(A), as_(B), as_(A, "sagemaker-edge")
    a_bucket, b_bucket = _bucket(as_, A, unique), _bucket(as_, B, unique)
    compilation = unique("b-compile")
    b.create_compilation_job(
        CompilationJobName=compilation,
        RoleArn=ROLE.format(account=B.account),
        InputConfig={"S3Uri": f"s3://{b_bucket}/none.tar.gz", "Framework": "ONNX", "DataInputConfig": '{"x": [1, 2]}'},
        OutputConfig={"S3OutputLocation": f"s3://{b_bucket}/out", "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    fleet, device = unique("b-fleet"), "b-camera"
    b.create_device_fleet(DeviceFleetName=fleet, OutputConfig={"S3OutputLocation": f"s3://{b_bucket}/f"})
    fleet_arn = b.describe_device_fleet(DeviceFleetName=fleet)["DeviceFleetArn"]
    b.register_devices(DeviceFleetName=fleet, Devices=[{"DeviceName": device, "Description": "b one"}])

    for reference in (compilation, arn_of(B, f"compilation-job/{compilation}")):
        refused(a.describe_compilation_job, *MISSING, CompilationJobName=reference)
        refused(a.stop_compilation_job, *MISSING, CompilationJobName=reference)
        refused(a.delete_compilation_job, *MISSING, CompilationJobName=reference)
    refused(
        a.create_edge_packaging_job,
        *MISSING,
        EdgePackagingJobName=unique("a-pack"),
        CompilationJobName=compilation,
        ModelName="m",
        ModelVersion="1.0",
        RoleArn=ROLE.format(account=A.account),
        OutputConfig={"S3OutputLocation": f"s3://{a_bucket}/packages"},
    )
    assert a.list_compilation_jobs(NameContains=compilation)["CompilationJobSummaries"] == []

    for reference in (fleet, fleet_arn):
        refused(a.describe_device_fleet, *MISSING, DeviceFleetName=reference)
        refused(a.get_device_fleet_report, *MISSING, DeviceFleetName=reference)
        refused(
            a.update_device_fleet,
            *MISSING,
            DeviceFleetName=reference,
            OutputConfig={"S3OutputLocation": f"s3://{a_bucket}/stolen"},
        )
        refused(a.delete_device_fleet, *MISSING, DeviceFleetName=reference)
    refused(a.register_devices, *MISSING, DeviceFleetName=fleet, Devices=[{"DeviceName": "planted"}])
    refused(a.update_devices, *MISSING, DeviceFleetName=fleet, Devices=[{"DeviceName": device, "Description": "a"}])
    refused(a.deregister_devices, *MISSING, DeviceFleetName=fleet, DeviceNames=[device])
    refused(a.describe_device, *MISSING, DeviceFleetName=fleet, DeviceName=device)
    refused(
        a.create_edge_deployment_plan,
        *MISSING,
        EdgeDeploymentPlanName=unique("a-plan"),
        ModelConfigs=[{"ModelHandle": "m", "EdgePackagingJobName": "none"}],
        DeviceFleetName=fleet,
    )
    assert a.list_devices(DeviceFleetName=fleet)["DeviceSummaries"] == []
    assert a.list_device_fleets(NameContains=fleet)["DeviceFleetSummaries"] == []
    # The data plane, signed as A, speaking as B's device.
    registration = a_edge.get_device_registration(DeviceName=device, DeviceFleetName=fleet)
    assert registration["DeviceRegistration"] == "NOT_FOUND"
    refused(
        a_edge.send_heartbeat, "AccessDeniedException", AgentVersion="1.0", DeviceName=device, DeviceFleetName=fleet
    )
    refused(a_edge.get_deployments, "AccessDeniedException", DeviceName=device, DeviceFleetName=fleet)

    # B's are whole; the compilation ends as it would have (no model), never stopped by A.
    b_fleet = b.describe_device_fleet(DeviceFleetName=fleet)
    assert b_fleet["OutputConfig"]["S3OutputLocation"] == f"s3://{b_bucket}/f"
    assert b.describe_device(DeviceFleetName=fleet, DeviceName=device)["Description"] == "b one"
    assert [d["DeviceName"] for d in b.list_devices(DeviceFleetName=fleet)["DeviceSummaries"]] == [device]
    ended = until(
        lambda: (
            (d := b.describe_compilation_job(CompilationJobName=compilation))["CompilationJobStatus"]
            not in ("INPROGRESS", "STARTING")
            and d
        ),
        180,
        "B's compilation to end",
    )
    assert ended["CompilationJobStatus"] == "FAILED" and "S3 object does not exist" in ended["FailureReason"]
    # Positive control: A's own fleet, by name, in A's own bucket.
    a.create_device_fleet(DeviceFleetName=fleet, OutputConfig={"S3OutputLocation": f"s3://{a_bucket}/f"})
    a.register_devices(DeviceFleetName=fleet, Devices=[{"DeviceName": device}])
    assert a_edge.get_device_registration(DeviceName=device, DeviceFleetName=fleet)["DeviceRegistration"] != "NOT_FOUND"
    refused(
        a.create_device_fleet,
        "ValidationException",
        DeviceFleetName=unique("a-fleet"),
        OutputConfig={"S3OutputLocation": f"s3://{b_bucket}/stolen"},
    )


# -- projects -----------------------------------------------------------------------------------------------------


def test_projects_stay_in_their_account(as_, unique):
    a, b, b_sc, a_sc = as_(A), as_(B), as_(B, "servicecatalog"), as_(A, "servicecatalog")
    b.enable_sagemaker_servicecatalog_portfolio()
    a.enable_sagemaker_servicecatalog_portfolio()
    found = b_sc.search_products(Filters={"FullTextSearch": ["sagemaker:studio-visibility"]})["ProductViewSummaries"]
    product = found[0]["ProductId"]
    project = unique("b-prj")[:32]
    b.create_project(ProjectName=project, ServiceCatalogProvisioningDetails={"ProductId": product})
    described = until(
        lambda: (
            (d := b.describe_project(ProjectName=project))["ProjectStatus"] not in ("Pending", "CreateInProgress") and d
        ),
        180,
        "B's project",
    )
    provisioned = described["ServiceCatalogProvisionedProductDetails"]["ProvisionedProductId"]

    refused(a.describe_project, *MISSING, ProjectName=project)
    refused(a.update_project, *MISSING, ProjectName=project, ProjectDescription="planted")
    refused(a.delete_project, *MISSING, ProjectName=project)
    assert a.list_projects(NameContains=project)["ProjectSummaryList"] == []
    assert _searched(a, "Project", "ProjectName", project) == []
    refused(
        a.create_project,
        *MISSING,
        "InvalidParametersException",
        ProjectName=unique("a-prj")[:32],
        ServiceCatalogProvisioningDetails={"ProductId": product},
    )
    refused(a_sc.describe_provisioned_product, "ResourceNotFoundException", Id=provisioned)
    refused(
        a_sc.terminate_provisioned_product,
        "ResourceNotFoundException",
        ProvisionedProductId=provisioned,
        TerminateToken="t",
    )

    # B's project is whole.
    assert b.describe_project(ProjectName=project)["ProjectStatus"] == described["ProjectStatus"]
    assert b.describe_project(ProjectName=project).get("ProjectDescription") is None
    assert len(_searched(b, "Project", "ProjectName", project)) == 1
