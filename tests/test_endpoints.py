"""Endpoint configurations and endpoints through boto3: validation, creation, serving, capacity, deletion, restart.

The models are tiny: a real XGBoost booster for the built-in image's default
handlers, and models made of an inference.py alone (in the same runtime) whose
answers name their version, so a test sees which fleet answered.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from support.endpoints import (
    BUCKET,
    IMAGE,
    Models,
    deploy,
    error_of,
    invoke,
    variant,
    versioned_archive,
    wait_gone,
    wait_status,
    xgboost_model_archive,
)
from support.jobs import tar_gz
from support.server import ACCOUNT
from support.waiting import wait_for


@pytest.fixture(scope="module")
def models(server, tmp_path_factory):
    return Models(server, tmp_path_factory.mktemp("endpoint-models"))


@pytest.fixture(scope="module")
def xgboost_model(models):
    return models.create("ep-xgboost", xgboost_model_archive(models.tmp))


# -- EndpointConfig --------------------------------------------------------------------------------------


def test_endpoint_config_validation(sm, models, unique):
    model = models.versioned(unique("cfg-model"))
    name = unique("cfg")
    bad = {
        "duplicate variant names": dict(ProductionVariants=[variant(model, "A"), variant(model, "A")]),
        "shadow with the name of a production variant": dict(
            ProductionVariants=[variant(model, "A")], ShadowProductionVariants=[variant(model, "A")]
        ),
        "two production variants with a shadow": dict(
            ProductionVariants=[variant(model, "A"), variant(model, "B")],
            ShadowProductionVariants=[variant(model, "S")],
        ),
        "a model that does not exist": dict(ProductionVariants=[variant("no-such-model")]),
        "no instances": dict(ProductionVariants=[{"VariantName": "A", "ModelName": model}]),
        "serverless and instances": dict(
            ProductionVariants=[variant(model, ServerlessConfig={"MemorySizeInMB": 2048, "MaxConcurrency": 2})]
        ),
        "inference components": dict(
            ProductionVariants=[{"VariantName": "A", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]
        ),
        "asynchronous inference": dict(
            ProductionVariants=[variant(model)], AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://b/out"}}
        ),
        "zero total weight": dict(ProductionVariants=[variant(model, weight=0.0)]),
        "serverless memory between sizes": dict(
            ProductionVariants=[
                {
                    "VariantName": "A",
                    "ModelName": model,
                    "ServerlessConfig": {"MemorySizeInMB": 1111, "MaxConcurrency": 1},
                }
            ]
        ),
    }
    messages = {}
    for case, request in bad.items():
        code, messages[case] = error_of(sm.create_endpoint_config, EndpointConfigName=name, **request)
        assert code == "ValidationException", case
    assert "not unique" in messages["duplicate variant names"]
    assert (
        messages["a model that does not exist"]
        == f'Could not find model "arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/no-such-model".'
    )
    assert "inference components" in messages["inference components"]
    assert "asynchronous inference" in messages["asynchronous inference"]
    assert (
        "MemorySizeInMB 1111 is not one of the allowed sizes (1024, 2048" in messages["serverless memory between sizes"]
    )
    assert error_of(sm.describe_endpoint_config, EndpointConfigName=name)[0] == "ValidationException"

    multi = models.create(unique("multi"), versioned_archive("m"), Mode="MultiModel")
    code, message = error_of(sm.create_endpoint_config, EndpointConfigName=name, ProductionVariants=[variant(multi)])
    assert code == "ValidationException" and "multi-model endpoints" in message

    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 50,
        "DestinationS3Uri": f"s3://{BUCKET}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    arn = sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[variant(model, "A", count=2)],
        ShadowProductionVariants=[variant(model, "S", weight=0.5)],
        DataCaptureConfig=capture,
        Tags=[{"Key": "team", "Value": "ml"}],
    )["EndpointConfigArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/{name}"
    described = sm.describe_endpoint_config(EndpointConfigName=name)
    assert described["ProductionVariants"] == [variant(model, "A", count=2)]
    assert described["ShadowProductionVariants"] == [variant(model, "S", weight=0.5)]
    assert described["DataCaptureConfig"] == capture
    code, message = error_of(sm.create_endpoint_config, EndpointConfigName=name, ProductionVariants=[variant(model)])
    assert code == "ValidationException" and "already existing" in message
    listed = sm.list_endpoint_configs(NameContains=name)["EndpointConfigs"]
    assert [c["EndpointConfigName"] for c in listed] == [name]
    sm.delete_endpoint_config(EndpointConfigName=name)
    assert sm.list_endpoint_configs(NameContains=name)["EndpointConfigs"] == []


# -- Endpoint --------------------------------------------------------------------------------------------


def test_xgboost_endpoint_lifecycle(sm, client, xgboost_model, unique):
    runtime = client("sagemaker-runtime")
    name = unique("xgb")
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant(xgboost_model)])
    arn = sm.create_endpoint(EndpointName=name, EndpointConfigName=name)["EndpointArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{name}"
    creating = sm.describe_endpoint(EndpointName=name)
    if creating["EndpointStatus"] == "Creating":
        pending = creating["PendingDeploymentSummary"]
        assert pending["EndpointConfigName"] == name
        assert pending["ProductionVariants"][0]["VariantStatus"][0]["Status"] == "Creating"
        assert pending["ProductionVariants"][0]["DesiredInstanceCount"] == 1
        code, message = error_of(runtime.invoke_endpoint, EndpointName=name, Body="1,2", ContentType="text/csv")
        assert code == "ValidationError"
    code, message = error_of(sm.create_endpoint, EndpointName=name, EndpointConfigName=name)
    assert code == "ValidationException" and "already existing" in message

    described = wait_status(sm, name)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert "PendingDeploymentSummary" not in described
    [summary] = described["ProductionVariants"]
    assert summary["VariantName"] == "AllTraffic"
    assert (summary["CurrentWeight"], summary["DesiredWeight"]) == (1.0, 1.0)
    assert (summary["CurrentInstanceCount"], summary["DesiredInstanceCount"]) == (1, 1)
    assert summary["DeployedImages"][0]["SpecifiedImage"] == IMAGE
    assert summary["VariantStatus"] == []

    answer = runtime.invoke_endpoint(EndpointName=name, Body="3,1\n5,2", ContentType="text/csv", Accept="text/csv")
    predictions = [float(x) for x in answer["Body"].read().decode().replace(",", " ").split()]
    assert len(predictions) == 2 and abs(predictions[0] - 7) < 0.5 and abs(predictions[1] - 12) < 0.5
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    # The AWS container's CSV: a non-numeric field is the model's 415 (a ModelError), an empty one is missing.
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=name, Body="3,abc", ContentType="text/csv", Accept="text/csv")
    assert err.value.response["Error"]["Code"] == "ModelError" and err.value.response["OriginalStatusCode"] == 415
    assert runtime.invoke_endpoint(EndpointName=name, Body="3,", ContentType="text/csv")["Body"].read()

    found = sm.search(
        Resource="Endpoint",
        SearchExpression={"Filters": [{"Name": "EndpointName", "Operator": "Equals", "Value": name}]},
    )["Results"]
    assert [(r["Endpoint"]["EndpointName"], r["Endpoint"]["EndpointStatus"]) for r in found] == [(name, "InService")]
    listed = sm.list_endpoints(NameContains=name, StatusEquals="InService")["Endpoints"]
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed] == [(name, "InService")]
    assert sm.list_endpoints(NameContains=name, StatusEquals="Creating")["Endpoints"] == []

    sm.delete_endpoint(EndpointName=name)
    code, message = error_of(runtime.invoke_endpoint, EndpointName=name, Body="1,2", ContentType="text/csv")
    assert code == "ValidationError"
    wait_gone(sm, name)
    assert sm.list_endpoints(NameContains=name)["Endpoints"] == []
    code, message = error_of(sm.describe_endpoint, EndpointName=name)
    assert message == f'Could not find endpoint "{arn}".'


def test_list_endpoints_filters_and_sorts(sm, models, unique):
    model = models.versioned(unique("list-model"))
    prefix = unique("lst")
    sm.create_endpoint_config(EndpointConfigName=prefix, ProductionVariants=[variant(model)])
    names = [f"{prefix}-{c}" for c in "bca"]
    for name in names:
        sm.create_endpoint(EndpointName=name, EndpointConfigName=prefix)
    by_name = sm.list_endpoints(NameContains=prefix, SortBy="Name", SortOrder="Ascending")["Endpoints"]
    assert [e["EndpointName"] for e in by_name] == sorted(names)
    by_time = sm.list_endpoints(NameContains=prefix, SortBy="CreationTime", SortOrder="Ascending")["Endpoints"]
    assert [e["EndpointName"] for e in by_time] == names
    page = sm.list_endpoints(NameContains=prefix, SortBy="Name", MaxResults=2)
    rest = sm.list_endpoints(NameContains=prefix, SortBy="Name", MaxResults=2, NextToken=page["NextToken"])
    assert [e["EndpointName"] for e in page["Endpoints"] + rest["Endpoints"]] == sorted(names, reverse=True)
    for name in names:
        wait_status(sm, name)
    for name in names:
        sm.delete_endpoint(EndpointName=name)
    for name in names:
        wait_gone(sm, name)


def test_a_model_that_cannot_load_fails_the_endpoint(sm, models, unique):
    broken = models.create(
        unique("broken"),
        tar_gz({"code/inference.py": b"def model_fn(d):\n    raise RuntimeError('no weights here')\n"}),
    )
    name = unique("broken-ep")
    described = deploy(sm, name, [variant(broken)])
    assert described["EndpointStatus"] == "Failed"
    assert "no weights here" in described["FailureReason"]
    assert "ProductionVariants" not in described
    code, message = error_of(sm.update_endpoint, EndpointName=name, EndpointConfigName=name)
    assert code == "ValidationException" and "Failed" in message
    sm.delete_endpoint(EndpointName=name)
    wait_gone(sm, name)


def test_variants_target_variant_weights_and_capacities(sm, client, models, unique):
    runtime = client("sagemaker-runtime")
    a, b = models.versioned(unique("wa")), models.versioned(unique("wb"))
    name = unique("weights")
    capture = {
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": f"s3://{BUCKET}/capture",
        "CaptureOptions": [{"CaptureMode": "InputAndOutput"}],
    }
    described = deploy(sm, name, [variant(a, "A", weight=1.0), variant(b, "B", weight=0.0)], DataCaptureConfig=capture)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert described["DataCaptureConfig"] == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 20,
        "DestinationS3Uri": f"s3://{BUCKET}/capture",
        "KmsKeyId": "",
    }
    assert {invoke(runtime, name)[1] for _ in range(20)} == {"A"}  # B has weight 0
    assert invoke(runtime, name, "hi", TargetVariant="B") == (f"{b}:hi", "B")
    code, message = error_of(runtime.invoke_endpoint, EndpointName=name, Body="x", TargetVariant="C")
    assert code == "ValidationError"

    code, message = error_of(
        sm.update_endpoint_weights_and_capacities,
        EndpointName=name,
        DesiredWeightsAndCapacities=[{"VariantName": "C", "DesiredWeight": 1.0}],
    )
    assert code == "ValidationException" and "C" in message
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "A", "DesiredWeight": 0.0},
            {"VariantName": "B", "DesiredWeight": 1.0, "DesiredInstanceCount": 2},
        ],
    )
    updating = sm.describe_endpoint(EndpointName=name)
    if updating["EndpointStatus"] == "Updating":
        b_summary = updating["ProductionVariants"][1]
        assert (b_summary["DesiredWeight"], b_summary["DesiredInstanceCount"]) == (1.0, 2)
        assert b_summary["VariantStatus"][0]["Status"] == "Updating"
        code, message = error_of(sm.update_endpoint, EndpointName=name, EndpointConfigName=name)
        assert code == "ValidationException" and "in-progress" in message
    described = wait_status(sm, name, until=("InService",))
    summaries = {v["VariantName"]: v for v in described["ProductionVariants"]}
    assert (summaries["A"]["CurrentWeight"], summaries["B"]["CurrentWeight"]) == (0.0, 1.0)
    assert (summaries["B"]["CurrentInstanceCount"], summaries["B"]["DesiredInstanceCount"]) == (2, 2)
    assert {invoke(runtime, name)[1] for _ in range(20)} == {"B"}

    # RetainAllVariantProperties keeps the weights and counts set since, unless excluded.
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-2", ProductionVariants=[variant(a, "A", weight=1.0), variant(b, "B", weight=0.0)]
    )
    code, message = error_of(
        sm.update_endpoint,
        EndpointName=name,
        EndpointConfigName=f"{name}-2",
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredWeight"}],
    )
    assert code == "ValidationException"
    sm.update_endpoint(
        EndpointName=name,
        EndpointConfigName=f"{name}-2",
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredWeight"}],
    )
    described = wait_status(sm, name, until=("InService",))
    summaries = {v["VariantName"]: v for v in described["ProductionVariants"]}
    assert described["EndpointConfigName"] == f"{name}-2"
    assert (summaries["A"]["CurrentWeight"], summaries["B"]["CurrentWeight"]) == (1.0, 0.0)
    assert summaries["B"]["CurrentInstanceCount"] == 2
    assert described["DataCaptureConfig"]["CurrentSamplingPercentage"] == 20  # retained too
    assert {invoke(runtime, name)[1] for _ in range(10)} == {"A"}
    sm.delete_endpoint(EndpointName=name)


def test_serverless_and_shadow_variants(sm, client, models, unique):
    runtime = client("sagemaker-runtime")
    model, shadow = models.versioned(unique("prod")), models.versioned(unique("shadow"))
    name = unique("serverless")
    serverless = {"MemorySizeInMB": 2048, "MaxConcurrency": 4}
    described = deploy(sm, name, [{"VariantName": "Lambda", "ModelName": model, "ServerlessConfig": serverless}])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    [summary] = described["ProductionVariants"]
    assert summary["CurrentServerlessConfig"] == summary["DesiredServerlessConfig"] == serverless
    assert "CurrentInstanceCount" not in summary
    assert invoke(runtime, name, "s") == (f"{model}:s", "Lambda")
    code, message = error_of(
        sm.update_endpoint_weights_and_capacities,
        EndpointName=name,
        DesiredWeightsAndCapacities=[{"VariantName": "Lambda", "DesiredInstanceCount": 2}],
    )
    assert code == "ValidationException" and "serverless" in message
    sm.delete_endpoint(EndpointName=name)

    name = unique("shadowed")
    described = deploy(sm, name, [variant(model, "Prod")], ShadowProductionVariants=[variant(shadow, "Shadow")])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    [summary] = described["ShadowProductionVariants"]
    assert (summary["VariantName"], summary["CurrentInstanceCount"], summary["CurrentWeight"]) == ("Shadow", 1, 1.0)
    assert {invoke(runtime, name, "p") for _ in range(5)} == {(f"{model}:p", "Prod")}  # shadows never answer
    sm.delete_endpoint(EndpointName=name)


def test_deleting_an_endpoint_mid_deployment_stops_both_fleets(server, sm, models, unique):
    name = unique("deldeploy")
    v1, v2 = models.versioned(f"{name}-v1"), models.versioned(f"{name}-v2")
    assert deploy(sm, name, [variant(v1)])["EndpointStatus"] == "InService"
    sm.create_endpoint_config(EndpointConfigName=f"{name}-2", ProductionVariants=[variant(v2)])
    sm.update_endpoint(
        EndpointName=name,
        EndpointConfigName=f"{name}-2",
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
            }
        },
    )
    # until the new fleet serves (and bakes for ten minutes)
    wait_for(
        lambda: sm.describe_endpoint(EndpointName=name).get("PendingDeploymentSummary", {}),
        lambda pending: pending and pending["ProductionVariants"][0]["VariantStatus"][0]["Status"] == "Baking",
        interval=0.05,
        what="the new fleet to bake",
    )
    sm.delete_endpoint(EndpointName=name)
    wait_gone(sm, name)
    leftovers = list((server.data_dir / "endpoints").glob(f"*/*/*{name}*"))
    assert leftovers == []


def test_five_endpoints_serve_at_once(sm, client, models, unique):
    runtime = client("sagemaker-runtime")
    names = [unique("five") for _ in range(5)]
    for name in names:
        model = models.versioned(f"{name}-m")
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant(model)])
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    for name in names:
        assert wait_status(sm, name)["EndpointStatus"] == "InService"

    def call(i: int) -> str:
        name = names[i % 5]
        return invoke(runtime, name, str(i))[0] == f"{name}-m:{i}"

    with ThreadPoolExecutor(10) as pool:
        assert all(pool.map(call, range(100)))
    for name in names:
        sm.delete_endpoint(EndpointName=name)


def test_endpoints_survive_a_restart(make_server, client, tmp_path):
    srv = make_server("endpoint-restart").start()
    models = Models(srv, tmp_path)
    sm, runtime = models.sm, client("sagemaker-runtime", srv)
    model = models.versioned("restart-model")
    described = deploy(models.sm, "survivor", [variant(model, count=2)])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")

    def answers() -> bool:
        return (
            wait_for(
                lambda: invoke(runtime, "survivor", "again")[0], ignore=(ClientError,), what="the endpoint to answer"
            )
            == "restart-model:again"
        )

    for stop in (srv.stop, srv.kill):  # a clean stop stops the instances; a crash leaves them serving
        stop()
        srv.start()
        described = sm.describe_endpoint(EndpointName="survivor")
        assert described["EndpointStatus"] == "InService"
        assert described["ProductionVariants"][0]["DesiredInstanceCount"] == 2
        assert answers()
    assert wait_status(sm, "survivor")["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    sm.delete_endpoint(EndpointName="survivor")
    wait_gone(sm, "survivor")
