"""UpdateEndpoint deployments through boto3, each under a steady stream of requests that must all succeed:
blue/green all at once, canary rolled back by an alarm, linear, rolling, a failing new fleet, a restart mid-way;
and the plans' arithmetic (steps, batches).
"""

from __future__ import annotations

import time

import pytest

from selfmaker.server.errors import AWSError
from selfmaker.services.hosting import deployments
from selfmaker.services.hosting.router import choose
from selfmaker.store.resources import Record
from support.endpoints import Load, Models, canary, deploy, error_of, errors_alarm, variant, wait_status
from support.jobs import tar_gz
from support.waiting import wait_for

ALL_AT_ONCE = {
    "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 1}}
}


@pytest.fixture(scope="module")
def models(server, tmp_path_factory):
    return Models(server, tmp_path_factory.mktemp("deployment-models"))


def watch_statuses(
    sm, name: str, until: tuple[str, ...] = ("InService", "Failed", "UpdateRollbackFailed"), timeout: float = 300
) -> tuple[dict, list[dict]]:
    """(the final description, every distinct one seen on the way), polling fast."""
    seen = []

    def describe() -> dict:
        described = sm.describe_endpoint(EndpointName=name)
        if not seen or {k: v for k, v in described.items() if k != "ResponseMetadata"} != seen[-1]:
            seen.append({k: v for k, v in described.items() if k != "ResponseMetadata"})
        return described

    described = wait_for(
        describe,
        lambda d: d["EndpointStatus"] in until,
        timeout=timeout,
        interval=0.05,
        what=f"endpoint {name} to be {'/'.join(until)}",
    )
    return described, seen


def pending_statuses(seen: list[dict]) -> list[str]:
    """The new fleet's VariantStatus values in the order they appeared."""
    found = []
    for described in seen:
        for v in described.get("PendingDeploymentSummary", {}).get("ProductionVariants", []):
            for status in v.get("VariantStatus", []):
                if not found or found[-1] != status["Status"]:
                    found.append(status["Status"])
    return found


def new_config(sm, name: str, model: str, count: int = 1) -> str:
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant(model, count=count)])
    return name


def fleet_of(key: str, count: int) -> dict:
    return {"variants": [{"key": key, "name": "AllTraffic", "count": count}], "shadows": []}


@pytest.mark.parametrize(
    "config, steps",
    [
        (None, [1.0]),
        (
            {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "CANARY",
                        "WaitIntervalInSeconds": 0,
                        "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                    }
                }
            },
            [0.25, 1.0],
        ),
        (
            {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "LINEAR",
                        "WaitIntervalInSeconds": 0,
                        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 30},
                    }
                }
            },
            [0.3, 0.6, 0.9, 1.0],
        ),
    ],
)
def test_blue_green_plans(config, steps):
    plan = deployments.plan(config, fleet_of("blue", 4), fleet_of("green", 4))
    assert plan["strategy"] == "blue_green"
    assert plan["steps"] == pytest.approx(steps)


def test_rolling_plan_replaces_a_batch_at_a_time():
    blue, green = fleet_of("blue", 3), fleet_of("green", 3)
    plan = deployments.plan(
        {
            "RollingUpdatePolicy": {
                "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                "WaitIntervalInSeconds": 0,
            }
        },
        blue,
        green,
    )
    counts = []
    for step in range(len(plan["steps"])):
        provisioning = {**plan, "step": step, "phase": "provision"}
        baking = {**plan, "step": step, "phase": "bake"}
        counts.append(
            (
                deployments.green_counts(green, baking)["green"],
                deployments.blue_counts(blue, provisioning)["blue"],
                deployments.blue_counts(blue, baking)["blue"],
            )
        )
    # (new instances, old ones while the batch starts, old ones once it takes traffic) per step
    assert counts == [(1, 3, 2), (2, 2, 1), (3, 1, 0)]
    rollback = {**plan, "step": 1, "phase": "rollback"}
    assert deployments.blue_counts(blue, rollback)["blue"] == 3  # a rollback makes the old fleet whole


def test_another_server_routes_by_the_addresses_in_the_record():
    """What a server that does not drive an endpoint routes to: the record's TCP addresses, as its shares say."""
    blue, green = fleet_of("blue", 2), fleet_of("green", 1)
    for release, config in ((blue, "blue-config"), (green, "green-config")):
        release.update(config=config, capture=None)
        release["variants"][0]["weight"] = 1.0
    data = {
        "_live": blue,
        "_next": green,
        "_deploy": {"strategy": "blue_green", "share": 0.25},
        # blue's third address is an instance about to stop (beyond its count): no traffic
        "_addresses": {"blue": ["10.0.0.5:4101", "10.0.0.6:4102", "10.0.0.6:4103"], "green": ["10.0.0.7:4104"]},
    }
    arn = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e"
    record = Record(1, "Endpoint", arn, "e", "123456789012", "us-east-1", None, "Updating", 0.0, 0.0, data)
    route = deployments.shared_route(None, record)
    assert route is not None and route.endpoint_arn == arn
    assert [(share, [(t.variant, t.sockets, t.config_name) for t in targets]) for share, targets in route.traffic] == [
        (0.75, [("AllTraffic", ("10.0.0.5:4101", "10.0.0.6:4102"), "blue-config")]),
        (0.25, [("AllTraffic", ("10.0.0.7:4104",), "green-config")]),
    ]
    del data["_addresses"]  # instances on Unix sockets: none reachable from another server
    unreachable = deployments.shared_route(None, record)
    assert unreachable is not None and not unreachable.open_traffic
    with pytest.raises(AWSError) as refused:
        choose(unreachable, None)
    assert refused.value.code == "ServiceUnavailable"
    record.status = "Deleting"
    assert deployments.shared_route(None, record) is None


def test_all_at_once_switches_every_request_with_none_failing(server, sm, models, unique):
    name = unique("aao")
    v1, v2 = models.versioned(f"{name}-v1"), models.versioned(f"{name}-v2")
    assert deploy(sm, name, [variant(v1)])["EndpointStatus"] == "InService"
    with Load(server.url, name) as load:
        load.wait_for(v1)
        sm.update_endpoint(
            EndpointName=name, EndpointConfigName=new_config(sm, f"{name}-2", v2), DeploymentConfig=ALL_AT_ONCE
        )
        code, message = error_of(sm.update_endpoint, EndpointName=name, EndpointConfigName=f"{name}-2")
        assert code == "ValidationException" and "in-progress" in message
        described, seen = watch_statuses(sm, name)
        load.wait_for(v2)
        assert described["EndpointStatus"] == "InService" and "FailureReason" not in described
        assert described["EndpointConfigName"] == f"{name}-2"
        assert described["LastDeploymentConfig"] == ALL_AT_ONCE
        assert "PendingDeploymentSummary" not in described
        assert {s["EndpointStatus"] for s in seen} == {"Updating", "InService"}
        assert pending_statuses(seen)[:2] == ["Creating", "Baking"]
        updating = next(s for s in seen if s["EndpointStatus"] == "Updating")
        assert updating["EndpointConfigName"] == name  # the old configuration serves until the end
        assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == f"{name}-2"
        # After the switch only the new model answers.
        answers = load.answers[v1]
        time.sleep(0.3)
        assert load.answers[v1] == answers

        # Back to the first configuration with the same deployment configuration, retained.
        sm.update_endpoint(EndpointName=name, EndpointConfigName=name, RetainDeploymentConfig=True)
        described, seen = watch_statuses(sm, name)
        assert described["EndpointConfigName"] == name and described["LastDeploymentConfig"] == ALL_AT_ONCE
        assert any(
            "Baking for 1 seconds with 100% of the traffic" in v["VariantStatus"][0].get("StatusMessage", "")
            for s in seen
            for v in s.get("PendingDeploymentSummary", {}).get("ProductionVariants", [])
            if v["VariantStatus"]
        )
        answers = load.answers[v1]
        load.wait_for(v1, after=answers)
    assert load.errors == []
    sm.delete_endpoint(EndpointName=name)


def test_linear_and_rolling_deployments_shift_in_steps(server, sm, models, unique):
    name = unique("steps")
    v1, v2, v3 = (models.versioned(f"{name}-v{i}") for i in (1, 2, 3))
    assert deploy(sm, name, [variant(v1, count=2)])["EndpointStatus"] == "InService"
    linear = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 1,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            }
        }
    }
    rolling = {
        "RollingUpdatePolicy": {"MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1}, "WaitIntervalInSeconds": 1}
    }
    with Load(server.url, name) as load:
        load.wait_for(v1)
        sm.update_endpoint(
            EndpointName=name, EndpointConfigName=new_config(sm, f"{name}-2", v2, 2), DeploymentConfig=linear
        )
        described, seen = watch_statuses(sm, name)
        assert described["EndpointConfigName"] == f"{name}-2", described.get("FailureReason")
        messages = [
            v["VariantStatus"][0].get("StatusMessage", "")
            for s in seen
            for v in s.get("PendingDeploymentSummary", {}).get("ProductionVariants", [])
            if v["VariantStatus"]
        ]
        assert any("50% of the traffic (step 1 of 2)" in m for m in messages)
        assert any("100% of the traffic (step 2 of 2)" in m for m in messages)

        sm.update_endpoint(
            EndpointName=name, EndpointConfigName=new_config(sm, f"{name}-3", v3, 2), DeploymentConfig=rolling
        )
        described, seen = watch_statuses(sm, name)
        load.wait_for(v3)
    assert load.errors == []
    assert described["EndpointConfigName"] == f"{name}-3", described.get("FailureReason")
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    # Rolling: the first batch replaced one old instance of two, so the old fleet shrank to one.
    assert any(
        s["EndpointStatus"] == "Updating"
        and s["ProductionVariants"][0].get("CurrentInstanceCount") == 2
        and s.get("PendingDeploymentSummary", {}).get("ProductionVariants", [{}])[0].get("DesiredInstanceCount") == 1
        for s in seen
    )
    assert set(load.answers) == {v1, v2, v3}
    sm.delete_endpoint(EndpointName=name)


def test_a_new_fleet_that_cannot_start_is_rolled_back(server, sm, models, unique):
    name = unique("badnew")
    v1 = models.versioned(f"{name}-v1")
    broken = models.create(
        f"{name}-broken", tar_gz({"code/inference.py": b"def model_fn(d):\n    raise RuntimeError('cannot load')\n"})
    )
    assert deploy(sm, name, [variant(v1)])["EndpointStatus"] == "InService"
    with Load(server.url, name) as load:
        load.wait_for(v1)
        sm.update_endpoint(EndpointName=name, EndpointConfigName=new_config(sm, f"{name}-2", broken))
        described, seen = watch_statuses(sm, name)
    assert load.errors == [] and set(load.answers) == {v1}
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == name
    assert "cannot load" in described["FailureReason"]
    assert "RollingBack" in {s["EndpointStatus"] for s in seen}
    sm.delete_endpoint(EndpointName=name)


def test_deployment_config_validation(sm, models, unique):
    name = unique("dcv")
    v1 = models.versioned(f"{name}-v1")
    rolling = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            "WaitIntervalInSeconds": 0,
        }
    }
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant(v1, count=2)])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name, DeploymentConfig=rolling)
    described = wait_status(sm, name)
    assert described["EndpointStatus"] == "InService" and described["LastDeploymentConfig"] == rolling
    new_config(sm, f"{name}-2", v1, 2)

    def sized(value: int, kind: str = "INSTANCE_COUNT") -> dict:
        return {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 0,
                    "CanarySize": {"Type": kind, "Value": value},
                }
            }
        }

    bad = [
        {"DeploymentConfig": sized(2)},  # 2 of 2 instances is over 50 %
        {"DeploymentConfig": sized(60, "CAPACITY_PERCENT")},
        {
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 0}}
            }
        },
        {"DeploymentConfig": sized(1), "RetainDeploymentConfig": True},
        {
            "DeploymentConfig": {
                **sized(1),
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                    "WaitIntervalInSeconds": 0,
                },
            }
        },
    ]
    for request in bad:
        code, _ = error_of(sm.update_endpoint, EndpointName=name, EndpointConfigName=f"{name}-2", **request)
        assert code == "ValidationException", request
    code, message = error_of(sm.update_endpoint, EndpointName=name, EndpointConfigName="no-such-config")
    assert code == "ValidationException" and "no-such-config" in message
    code, message = error_of(sm.update_endpoint, EndpointName="no-such-endpoint", EndpointConfigName=name)
    assert message.startswith('Could not find endpoint "arn:aws:sagemaker:us-east-1:')
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"  # nothing changed
    sm.delete_endpoint(EndpointName=name)


def test_a_restart_mid_deployment_resumes_it(make_server, tmp_path):
    srv = make_server("deployment-restart").start()
    models = Models(srv, tmp_path)
    sm = models.sm
    v1, v2 = models.versioned("resume-v1"), models.versioned("resume-v2")
    assert deploy(sm, "resume", [variant(v1)])["EndpointStatus"] == "InService"
    baking = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 4,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            }
        }
    }
    sm.update_endpoint(
        EndpointName="resume", EndpointConfigName=new_config(sm, "resume-2", v2), DeploymentConfig=baking
    )
    wait_for(
        lambda: pending_statuses([sm.describe_endpoint(EndpointName="resume")]),
        lambda statuses: "Baking" in statuses,
        timeout=120,
        interval=0.05,
        what="the canary to bake",
    )
    srv.kill()  # the instances go on serving; the new server re-attaches and publishes the Route again
    srv.start()
    with Load(srv.url, "resume") as load:
        wait_for(
            lambda: (sum(load.answers.values()), load.errors[-1:]),
            lambda seen: seen[0] > 0,
            timeout=30,
            interval=0.01,
            what="a first answer after the restart",
        )
        load.errors.clear()  # before the new server's first step, the endpoint is not routed yet
        described, _ = watch_statuses(sm, "resume")
        load.wait_for(v2)
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == "resume-2"
    assert load.errors == []
    sm.delete_endpoint(EndpointName="resume")


def assert_rolled_back(described: dict, seen: list[dict], load: Load, old_config: str, old: str, new: str) -> None:
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == old_config
    assert "PendingDeploymentSummary" not in described
    assert "RollingBack" in {s["EndpointStatus"] for s in seen}
    assert "Baking" in pending_statuses(seen)
    assert load.errors == []
    assert load.answers[new] > 0  # the canary took traffic before the alarm
    before = load.answers[new]
    time.sleep(0.5)
    assert load.answers[new] == before  # and takes none since


def test_canary_rolled_back_by_an_alarm_with_no_request_failing(server, sm, client, models, unique):
    cloudwatch = client("cloudwatch")
    name = unique("canary")
    v1, v2 = models.versioned(f"{name}-v1"), models.versioned(f"{name}-v2")
    assert deploy(sm, name, [variant(v1)])["EndpointStatus"] == "InService"
    errors_alarm(cloudwatch, f"{name}-errors", name)
    code, message = error_of(
        sm.update_endpoint, EndpointName=name, EndpointConfigName=name, DeploymentConfig=canary(60, "no-such-alarm")
    )
    assert code == "ValidationException" and "no-such-alarm" in message
    with Load(server.url, name) as load:
        load.wait_for(v1)
        sm.update_endpoint(
            EndpointName=name,
            EndpointConfigName=new_config(sm, f"{name}-2", v2),
            DeploymentConfig=canary(600, f"{name}-errors"),
        )
        load.wait_for(v2)  # the canary's share goes to the new fleet, which bakes for ten minutes
        baking = sm.describe_endpoint(EndpointName=name)
        assert pending_statuses([baking]) == ["Baking"]
        cloudwatch.set_alarm_state(AlarmName=f"{name}-errors", StateValue="ALARM", StateReason="test")
        described, seen = watch_statuses(sm, name, timeout=30)
        assert_rolled_back(described, [baking] + seen, load, name, v1, v2)
    assert f"{name}-errors" in described["FailureReason"]
    assert described["LastDeploymentConfig"] == canary(600, f"{name}-errors")
    sm.delete_endpoint(EndpointName=name)


def test_canary_rolled_back_by_a_latency_alarm_on_the_new_fleet(server, sm, client, models, unique):
    cloudwatch = client("cloudwatch")
    name = unique("slow")
    v1, slow = models.versioned(f"{name}-v1"), models.versioned(f"{name}-slow", delay=0.3)
    assert deploy(sm, name, [variant(v1)])["EndpointStatus"] == "InService"
    # The new configuration's own latency (the dimension only its fleet's requests carry), over 10 s periods.
    cloudwatch.put_metric_alarm(
        AlarmName=f"{name}-latency",
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Statistic="Maximum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=200_000,
        ComparisonOperator="GreaterThanThreshold",
        Dimensions=[
            {"Name": "EndpointName", "Value": name},
            {"Name": "VariantName", "Value": "AllTraffic"},
            {"Name": "EndpointConfigName", "Value": f"{name}-2"},
        ],
        TreatMissingData="notBreaching",
    )
    with Load(server.url, name) as load:
        load.wait_for(v1)
        sm.update_endpoint(
            EndpointName=name,
            EndpointConfigName=new_config(sm, f"{name}-2", slow),
            DeploymentConfig=canary(600, f"{name}-latency"),
        )
        described, seen = watch_statuses(sm, name, timeout=120)
        assert_rolled_back(described, seen, load, name, v1, slow)
    assert f"{name}-latency" in described["FailureReason"]
    sm.delete_endpoint(EndpointName=name)


def test_scaling_in_drains_before_stopping(server, sm, models, unique):
    name = unique("scalein")
    v1 = models.versioned(f"{name}-v1")
    assert deploy(sm, name, [variant(v1, count=3)])["EndpointStatus"] == "InService"
    with Load(server.url, name) as load:
        load.wait_for(v1)
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}]
        )
        described, _ = watch_statuses(sm, name)
        assert described["ProductionVariants"][0]["DesiredInstanceCount"] == 1
        assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
        # the extra instances stop once drained
        wait_for(
            lambda: len(list((server.data_dir / "endpoints").glob(f"*/*/*{name}*/i-*"))) == 1,
            timeout=30,
            what="one instance left",
        )
        answers = load.answers[v1]
        load.wait_for(v1, after=answers)
    assert load.errors == []
    sm.delete_endpoint(EndpointName=name)
