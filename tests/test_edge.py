"""Edge Manager: fleets, devices, packaging, staged deployments to three real agents, rollback, the report.

The whole path is real: a tiny ONNX graph (y = x * scale, one per model version) compiled by
CreateCompilationJob in the selfmaker-neo runtime (built once per test run, in the run's shared
runtimes directory: conftest.py), packaged and signed by CreateEdgePackagingJob, deployed by staged
plans to agents in their own processes, which load the compiled artifact as an endpoint would.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.edge import AgentProcess, scaling_onnx
from support.jobs import FIRST_JOB_SECONDS, neo_python, tar_gz
from support.server import ACCOUNT
from support.waiting import status_in, wait_for

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

BUCKET = "edge-models"
FLEET = "factory"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/edge"
TTL = 3
ROWS = [[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]]
# Run in the compilation runtime: a tiny XGBoost model, and what XGBoost itself predicts for ROWS.
MAKE_BOOSTER = """
import json, sys, numpy as np, xgboost as xgb
x = np.random.RandomState(0).rand(100, 2).astype("float32")
booster = xgb.train({"max_depth": 2, "objective": "binary:logistic"}, xgb.DMatrix(x, label=x[:, 0] > 0.5), 5)
booster.save_model(sys.argv[1] + "/xgboost-model")
print(json.dumps(booster.predict(xgb.DMatrix(np.array(json.loads(sys.argv[2]), dtype="float32"))).tolist()))
"""
VERSIONS = {"scorer-v1": 2.0, "scorer-v2": 3.0, "scorer-v3": 4.0}  # compilation job compile-<name>: y = x * scale


@pytest.fixture(scope="module")
def edge_server(make_server):
    server = make_server("edge", ["--edge-cache-ttl", str(TTL)]).start()
    return server, server.database_url or f"sqlite:///{server.data_dir / 'metadata.db'}"


@pytest.fixture(scope="module")
def sm(edge_server):
    return make_client("sagemaker", edge_server[0].url)


@pytest.fixture(scope="module")
def key_file(edge_server, tmp_path_factory):
    """The account's package-signing key, as an operator hands it to devices (``selfmaker edge-signing-key``)."""
    server, database_url = edge_server
    key = subprocess.run(
        [sys.executable, "-m", "selfmaker.cli", "edge-signing-key", "--account", ACCOUNT,
         "--data-dir", str(server.data_dir), "--database-url", database_url],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    path = tmp_path_factory.mktemp("edge-key") / "signing.key"
    path.write_text(key)
    return path


@pytest.fixture(scope="module")
def s3(edge_server):
    client = make_client("s3", edge_server[0].url)
    client.create_bucket(Bucket=BUCKET)
    return client


def _compile(sm, name: str, key: str, framework: str = "ONNX") -> None:
    shape = {"DataInputConfig": '{"x": [1, 2]}'} if framework == "ONNX" else {}  # XGBoost's is derived
    sm.create_compilation_job(
        CompilationJobName=name,
        RoleArn=ROLE,
        InputConfig={"S3Uri": f"s3://{BUCKET}/{key}", "Framework": framework, **shape},
        OutputConfig={
            "S3OutputLocation": f"s3://{BUCKET}/compiled/{name}",
            "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"},
        },
        StoppingCondition={"MaxRuntimeInSeconds": 900},
    )


@pytest.fixture(scope="module")
def compiled(sm, s3, tmp_path_factory):
    """The scorer's versions compiled for real (all at once), an XGBoost model compiled to a native library
    (its own predictions of ROWS under "booster-predictions"), and one compilation that FAILED (no model).

    Packaging a compilation still running is refused (a sandboxed compilation takes seconds, not milliseconds)."""
    for name, scale in VERSIONS.items():
        s3.put_object(
            Bucket=BUCKET, Key=f"models/{name}/model.tar.gz", Body=tar_gz({"model.onnx": scaling_onnx(scale)})
        )
        _compile(sm, f"compile-{name}", f"models/{name}/model.tar.gz")
    with pytest.raises(ClientError) as err:
        _package(sm, "scorer-v1", "0.1")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert re.match(
        r"Compilation job compile-scorer-v1 is (STARTING|INPROGRESS): ", err.value.response["Error"]["Message"]
    )
    _compile(sm, "compile-missing", "models/missing/model.tar.gz")
    _compile(sm, "compile-replaced", "models/scorer-v1/model.tar.gz")
    out = tmp_path_factory.mktemp("booster")
    made = subprocess.run(
        [neo_python(), "-c", MAKE_BOOSTER, str(out), json.dumps(ROWS)], capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr
    booster = tar_gz({"xgboost-model": (out / "xgboost-model").read_bytes()})
    s3.put_object(Bucket=BUCKET, Key="models/booster/model.tar.gz", Body=booster)
    _compile(sm, "compile-booster", "models/booster/model.tar.gz", "XGBOOST")
    done = {
        name: wait_for(
            lambda name=name: sm.describe_compilation_job(CompilationJobName=name),
            status_in("CompilationJobStatus", ("COMPLETED", "FAILED", "STOPPED")),
            timeout=FIRST_JOB_SECONDS,  # the run's first compilation builds the selfmaker-neo runtime
            what=f"compilation job {name}",
        )
        for name in [f"compile-{n}" for n in VERSIONS] + ["compile-missing", "compile-booster", "compile-replaced"]
    }
    for name in [*VERSIONS, "booster", "replaced"]:
        assert done[f"compile-{name}"]["CompilationJobStatus"] == "COMPLETED", done[f"compile-{name}"]
    return {**done, "booster-predictions": json.loads(made.stdout.strip().splitlines()[-1])}


def _package(sm, name: str, version: str, model: str = "scorer") -> dict:
    sm.create_edge_packaging_job(
        EdgePackagingJobName=name,
        CompilationJobName=f"compile-{name}",
        ModelName=model,
        ModelVersion=version,
        RoleArn=ROLE,
        OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/packages"},
    )
    return wait_for(
        lambda: sm.describe_edge_packaging_job(EdgePackagingJobName=name),
        lambda d: d["EdgePackagingJobStatus"] in ("COMPLETED", "FAILED"),
        what=f"packaging job {name} to end",
    )


def _stage(sm, plan: str, stage: str) -> dict:
    stages = sm.describe_edge_deployment_plan(EdgeDeploymentPlanName=plan)["Stages"]
    return next(s for s in stages if s["StageName"] == stage)["DeploymentStatus"]


def _wait_stage(sm, plan: str, stage: str, status: str) -> dict:
    return wait_for(
        lambda: _stage(sm, plan, stage),
        lambda s: s["StageStatus"] in (status, "FAILED", "DEPLOYED"),
        timeout=60,
        what=f"stage {plan}/{stage} to be {status}",
    )


def test_packaging_needs_a_completed_compilation(sm, s3, compiled):
    assert compiled["compile-missing"]["CompilationJobStatus"] == "FAILED"
    refusals = {
        "compile-missing": "Compilation job compile-missing is FAILED: an edge packaging job needs a COMPLETED",
        "no-such-compilation": "Compilation job no-such-compilation does not exist.",
    }
    for job, message in refusals.items():
        with pytest.raises(ClientError) as err:
            sm.create_edge_packaging_job(
                EdgePackagingJobName="refused", CompilationJobName=job, ModelName="scorer", ModelVersion="0.1",
                RoleArn=ROLE, OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/packages"},
            )  # fmt: skip
        assert err.value.response["Error"]["Code"] == "ValidationException"
        assert err.value.response["Error"]["Message"].startswith(message)
    with pytest.raises(ClientError) as err:
        sm.describe_edge_packaging_job(EdgePackagingJobName="refused")
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"
    # A compiled archive replaced in S3 after its job completed is not packaged: its digest is not the job's.
    replaced = compiled["compile-replaced"]["ModelArtifacts"]["S3ModelArtifacts"].removeprefix(f"s3://{BUCKET}/")
    other = compiled["compile-scorer-v2"]["ModelArtifacts"]["S3ModelArtifacts"].removeprefix(f"s3://{BUCKET}/")
    s3.copy_object(Bucket=BUCKET, Key=replaced, CopySource=f"{BUCKET}/{other}")
    failed = _package(sm, "replaced", "0.1")
    assert failed["EdgePackagingJobStatus"] == "FAILED"
    assert "BLAKE2b digest differs" in failed["EdgePackagingJobStatusMessage"], failed


def test_control_plane_errors(sm, s3):
    sm.create_device_fleet(DeviceFleetName="errors", OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/e"})
    with pytest.raises(ClientError) as err:
        sm.create_device_fleet(DeviceFleetName="errors", OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/e"})
    assert err.value.response["Error"]["Code"] == "ResourceInUse"
    with pytest.raises(ClientError) as err:
        sm.describe_device_fleet(DeviceFleetName="nope")
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"
    sm.register_devices(DeviceFleetName="errors", Devices=[{"DeviceName": "cam-1"}])
    with pytest.raises(ClientError) as err:
        sm.register_devices(DeviceFleetName="errors", Devices=[{"DeviceName": "cam-1"}])
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        sm.delete_device_fleet(DeviceFleetName="errors")
    assert err.value.response["Error"]["Code"] == "ResourceInUse"
    with pytest.raises(ClientError) as err:
        sm.create_edge_deployment_plan(
            EdgeDeploymentPlanName="p", ModelConfigs=[{"ModelHandle": "m", "EdgePackagingJobName": "none"}],
            DeviceFleetName="errors",
        )  # fmt: skip
    assert err.value.response["Error"]["Code"] == "ValidationException"
    sm.deregister_devices(DeviceFleetName="errors", DeviceNames=["cam-1"])
    sm.delete_device_fleet(DeviceFleetName="errors")
    assert sm.list_device_fleets(NameContains="errors")["DeviceFleetSummaries"] == []


def test_staged_deployments_to_three_agents(sm, s3, edge_server, compiled, key_file, tmp_path):
    server = edge_server[0]
    edge = make_client("sagemaker-edge", server.url)
    sm.create_device_fleet(
        DeviceFleetName=FLEET, RoleArn=ROLE, OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/fleet"},
        EnableIotRoleAlias=True,
    )  # fmt: skip
    assert sm.describe_device_fleet(DeviceFleetName=FLEET)["IotRoleAlias"].endswith("rolealias/SageMakerEdge-factory")
    devices = ["dev-1", "dev-2", "dev-3"]
    sm.register_devices(DeviceFleetName=FLEET, Devices=[{"DeviceName": d} for d in devices])

    v1 = _package(sm, "scorer-v1", "1.0")
    assert _package(sm, "scorer-v2", "2.0")["EdgePackagingJobStatus"] == "COMPLETED"
    assert v1["EdgePackagingJobStatus"] == "COMPLETED", v1
    assert v1["ModelArtifact"] == f"s3://{BUCKET}/packages/scorer-1.0.tar.gz"
    assert v1["ModelSignature"].startswith("HMAC-SHA256:")
    # The package holds the compilation's output as it is (what the agent loads), the manifest and its signature.
    package = s3.get_object(Bucket=BUCKET, Key="packages/scorer-1.0.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(package)) as tar:
        members = sorted(tar.getnames())
    assert members == ["compiled.meta", "edge-manifest.json", "edge-manifest.sig", "model.onnx"], members

    agents = {d: AgentProcess(server.url, FLEET, d, tmp_path / d, key_file) for d in devices}
    try:
        for agent in agents.values():
            wait_for(
                lambda a=agent: a.get("/health"), lambda r: r[1].get("Registered"), ignore=(OSError,), what="agent"
            )

        # Plan 1: version 1 on one device, then the rest.
        sm.create_edge_deployment_plan(
            EdgeDeploymentPlanName="rollout-v1",
            ModelConfigs=[{"ModelHandle": "scorer", "EdgePackagingJobName": "scorer-v1"}],
            DeviceFleetName=FLEET,
            Stages=[
                {
                    "StageName": "canary",
                    "DeviceSelectionConfig": {"DeviceSubsetType": "SELECTION", "DeviceNames": ["dev-1"]},
                },
                {
                    "StageName": "rest",
                    "DeviceSelectionConfig": {"DeviceSubsetType": "NAMECONTAINS", "DeviceNameContains": "dev"},
                },
            ],
        )
        assert _stage(sm, "rollout-v1", "canary")["StageStatus"] == "READYTODEPLOY"
        sm.start_edge_deployment_stage(EdgeDeploymentPlanName="rollout-v1", StageName="canary")
        assert _wait_stage(sm, "rollout-v1", "canary", "DEPLOYED")["StageStatus"] == "DEPLOYED"
        status, answer = agents["dev-1"].predict("scorer", [[1.0, 2.0]])
        assert status == 200 and answer["predictions"] == [[2.0, 4.0]] and answer["ModelVersion"] == "1.0"
        assert agents["dev-2"].predict("scorer", [[1.0, 2.0]])[0] == 404

        # dev-3 is deregistered mid-way: the rest of the fleet is dev-2 alone (dev-1 deployed in the canary).
        sm.deregister_devices(DeviceFleetName=FLEET, DeviceNames=["dev-3"])
        sm.start_edge_deployment_stage(EdgeDeploymentPlanName="rollout-v1", StageName="rest")
        assert _wait_stage(sm, "rollout-v1", "rest", "DEPLOYED")["StageStatus"] == "DEPLOYED"
        listed = sm.list_stage_devices(EdgeDeploymentPlanName="rollout-v1", StageName="rest")[
            "DeviceDeploymentSummaries"
        ]
        assert [(d["DeviceName"], d["DeviceDeploymentStatus"]) for d in listed] == [("dev-2", "DEPLOYED")]
        assert agents["dev-2"].predict("scorer", [[1.0, 1.0]])[1]["predictions"] == [[2.0, 2.0]]
        assert agents["dev-3"].predict("scorer", [[1.0, 1.0]])[0] == 404
        # The agent learns it was deregistered at its next poll (GetDeployments refused), not at once.
        wait_for(
            lambda: agents["dev-3"].get("/health"),
            lambda r: r[1]["Registered"] is False,
            timeout=30,
            what="dev-3's agent to know it is deregistered",
        )
        with pytest.raises(ClientError):
            edge.get_deployments(DeviceName="dev-3", DeviceFleetName=FLEET)

        # Plan 2 replaces version 1 with version 2 on every registered device.
        sm.create_edge_deployment_plan(
            EdgeDeploymentPlanName="rollout-v2",
            ModelConfigs=[{"ModelHandle": "scorer", "EdgePackagingJobName": "scorer-v2"}],
            DeviceFleetName=FLEET,
            Stages=[
                {"StageName": "all", "DeviceSelectionConfig": {"DeviceSubsetType": "PERCENTAGE", "Percentage": 100}}
            ],
        )
        sm.start_edge_deployment_stage(EdgeDeploymentPlanName="rollout-v2", StageName="all")
        assert _wait_stage(sm, "rollout-v2", "all", "DEPLOYED")["EdgeDeploymentSuccessInStage"] == 2
        for name in ("dev-1", "dev-2"):
            assert agents[name].predict("scorer", [[1.0, 2.0]])[1]["predictions"] == [[3.0, 6.0]]
        wait_for(
            lambda: sm.describe_device(DeviceName="dev-1", DeviceFleetName=FLEET)["Models"],
            lambda m: [(x["ModelName"], x["ModelVersion"]) for x in m] == [("scorer", "2.0")],
            what="dev-1's heartbeat to report version 2",
        )

        # A corrupted archive fails dev-1's deployment; under ROLLBACK_ON_FAILURE version 2 keeps serving.
        v3 = _package(sm, "scorer-v3", "3.0")
        s3.put_object(Bucket=BUCKET, Key="packages/scorer-3.0.tar.gz", Body=b"not the package that was signed")
        sm.create_edge_deployment_plan(
            EdgeDeploymentPlanName="rollout-v3",
            ModelConfigs=[{"ModelHandle": "scorer", "EdgePackagingJobName": v3["EdgePackagingJobName"]}],
            DeviceFleetName=FLEET,
            Stages=[
                {
                    "StageName": "one",
                    "DeviceSelectionConfig": {"DeviceSubsetType": "SELECTION", "DeviceNames": ["dev-1"]},
                    "DeploymentConfig": {"FailureHandlingPolicy": "ROLLBACK_ON_FAILURE"},
                }
            ],
        )
        sm.start_edge_deployment_stage(EdgeDeploymentPlanName="rollout-v3", StageName="one")
        failed = _wait_stage(sm, "rollout-v3", "one", "FAILED")
        assert failed["StageStatus"] == "FAILED" and failed["EdgeDeploymentFailedInStage"] == 1
        (device,) = sm.list_stage_devices(EdgeDeploymentPlanName="rollout-v3", StageName="one")[
            "DeviceDeploymentSummaries"
        ]
        assert device["DeviceDeploymentStatus"] == "FAILED" and "checksum" in device["DeviceDeploymentStatusMessage"]
        assert agents["dev-1"].predict("scorer", [[1.0, 2.0]])[1]["predictions"] == [[3.0, 6.0]]
        plan = sm.describe_edge_deployment_plan(EdgeDeploymentPlanName="rollout-v3")
        assert (plan["EdgeDeploymentSuccess"], plan["EdgeDeploymentFailed"]) == (0, 1)

        # The report, from the heartbeats; a silent agent is offline after the CacheTTL.
        for name in ("dev-1", "dev-2"):  # active: a prediction within the TTL, as the next heartbeat tells
            agents[name].predict("scorer", [[0.0, 0.0]])
        report = wait_for(
            lambda: sm.get_device_fleet_report(DeviceFleetName=FLEET),
            lambda r: r["ModelStats"] and r["ModelStats"][0]["ActiveDeviceCount"] == 2,
            what="both devices to report an inference",
        )
        assert report["DeviceStats"] == {"ConnectedDeviceCount": 2, "RegisteredDeviceCount": 2}
        assert report["AgentVersions"] == [{"Version": "1.0.0", "AgentCount": 2}]
        (stats,) = report["ModelStats"]
        assert (stats["ModelVersion"], stats["ConnectedDeviceCount"], stats["ActiveDeviceCount"]) == ("2.0", 2, 2)
        listed = sm.list_devices(DeviceFleetName=FLEET, ModelName="scorer")["DeviceSummaries"]
        assert sorted(d["DeviceName"] for d in listed) == ["dev-1", "dev-2"]

        # The heartbeats' agent and model metrics are in CloudWatch, per device (docs/edge.md).
        cloudwatch = make_client("cloudwatch", edge_server[0].url)
        device = [{"Name": "DeviceFleetName", "Value": FLEET}, {"Name": "DeviceName", "Value": "dev-1"}]
        wait_for(
            lambda: cloudwatch.get_metric_statistics(
                Namespace="/aws/sagemaker/EdgeDevices",
                MetricName="InferenceCount",
                Dimensions=[
                    *device,
                    {"Name": "ModelName", "Value": "scorer"},
                    {"Name": "Dimension", "Value": "scorer"},
                ],
                StartTime=datetime.now(UTC) - timedelta(minutes=10),
                EndTime=datetime.now(UTC) + timedelta(minutes=1),
                Period=60,
                Statistics=["Maximum"],
            )["Datapoints"],
            lambda points: points and max(p["Maximum"] for p in points) >= 1,
            what="dev-1's model metrics in CloudWatch",
        )
        uptime = cloudwatch.list_metrics(Namespace="/aws/sagemaker/EdgeDevices", MetricName="UptimeSeconds")
        reporting = {d["Value"] for m in uptime["Metrics"] for d in m["Dimensions"] if d["Name"] == "DeviceName"}
        assert {"dev-1", "dev-2"} <= reporting
        agents["dev-2"].stop()
        report = wait_for(
            lambda: sm.get_device_fleet_report(DeviceFleetName=FLEET),
            lambda r: r["DeviceStats"]["ConnectedDeviceCount"] == 1,
            timeout=TTL + 10,
            what="dev-2 to count as disconnected",
        )
        assert report["ModelStats"][0]["OfflineDeviceCount"] == 1
    finally:
        for agent in agents.values():
            agent.stop()


def test_a_compiled_tree_library_on_an_agent(sm, edge_server, compiled, key_file, tmp_path):
    """XGBoost compiled to compiled.so: the agent loads it through ctypes (no tl2cgen on the device) and
    answers as XGBoost itself does."""
    booster = _package(sm, "booster", "1.0", model="booster")
    assert booster["EdgePackagingJobStatus"] == "COMPLETED", booster
    sm.create_device_fleet(DeviceFleetName="trees", OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/trees"})
    sm.register_devices(DeviceFleetName="trees", Devices=[{"DeviceName": "tree-1"}])
    agent = AgentProcess(edge_server[0].url, "trees", "tree-1", tmp_path / "tree-1", key_file)
    try:
        wait_for(lambda: agent.get("/health"), lambda r: r[1].get("Registered"), ignore=(OSError,), what="agent")
        sm.create_edge_deployment_plan(
            EdgeDeploymentPlanName="trees-all",
            ModelConfigs=[{"ModelHandle": "booster", "EdgePackagingJobName": "booster"}],
            DeviceFleetName="trees",
            Stages=[
                {"StageName": "all", "DeviceSelectionConfig": {"DeviceSubsetType": "PERCENTAGE", "Percentage": 100}}
            ],
        )
        sm.start_edge_deployment_stage(EdgeDeploymentPlanName="trees-all", StageName="all")
        assert _wait_stage(sm, "trees-all", "all", "DEPLOYED")["StageStatus"] == "DEPLOYED"
        assert agent.get("/models/booster")[1]["Backend"] == "tl2cgen"
        status, answer = agent.predict("booster", ROWS)
        assert status == 200, answer
        assert answer["predictions"] == pytest.approx(compiled["booster-predictions"], abs=1e-6)
    finally:
        agent.stop()
