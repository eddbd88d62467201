"""Endpoints on a Ray cluster (docs/scale-out.md, "Endpoints on a Ray cluster").

A cluster of a head with no CPUs and two worker nodes on this machine (as tests/test_ray.py), and a server with
``--executor ray``. Through boto3: an endpoint of two instances, one on each node, each a model server in the
node's sandbox listening on TCP on the node's address, answers InvokeEndpoint; one worker node is lost (removed
from the cluster, and its model server killed as the machine's loss would): every request still answers (the
router retries on the other instance), and the lost instance is replaced on the node that is left. Two servers
on one PostgreSQL and the same cluster: an endpoint created through one answers InvokeEndpoint through the
other, which stops routing to it soon after its deletion.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from support import ray_cluster
from support.clients import make_client
from support.endpoints import (
    Load,
    Models,
    canary,
    deploy,
    error_of,
    errors_alarm,
    invoke,
    variant,
    versioned_archive,
    wait_status,
)
from support.jobs import tar_gz
from support.pipelines import IMAGE
from support.ray_cluster import NODE_LINE, two_worker_cluster
from support.waiting import wait_for

ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")  # CI installs it: never skip

pytestmark = pytest.mark.ray

# Answers with the instance that served it (the sandbox's hostname is the instance id).
WHO = """
    import socket
    def model_fn(model_dir):
        return None
    def transform_fn(model, data, content_type, accept):
        return socket.gethostname(), "text/plain"
"""


@pytest.fixture(scope="module")
def cluster():
    with two_worker_cluster() as made:
        yield made


@pytest.fixture(scope="module")
def ray_server(cluster, tmp_path_factory):
    with ray_cluster.ray_server(cluster[0].address, tmp_path_factory.mktemp("ray-endpoints")) as srv:
        yield srv


def instance_nodes(logs, endpoint: str) -> dict[str, str]:
    """Instance id -> the Ray node it runs on, from each instance's log stream."""
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    found = {}
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True)
        text = "\n".join(e["message"] for e in events["events"])
        if match := NODE_LINE.search(text):
            found[stream["logStreamName"].split("/")[-1]] = match.group(1)
    return found


def serving(runtime, endpoint: str, tries: int = 40) -> list[str]:
    """The instance ids that answered ``tries`` invocations (each must succeed)."""
    return [
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"1", ContentType="text/csv")["Body"].read().decode()
        for _ in range(tries)
    ]


def kill_model_server(data_dir: Path, instance_id: str) -> None:
    """End an instance's sandbox on its node, as losing the machine would (removing a node from a cluster on
    one machine leaves the processes it started running)."""
    from selfmaker.engines.executor.ray_cluster import actor_name
    from selfmaker.engines.executor.ray_node import node_dir

    (state,) = data_dir.glob(f"endpoints/*/*/*/{instance_id}/state")
    (pid_file,) = node_dir().glob(f"*/{actor_name(state)}/state/pid")  # under its node agent's home
    pid = int(pid_file.read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)  # bwrap leads its session; the sandbox dies with it (--die-with-parent)


def test_an_endpoint_on_two_nodes_survives_the_loss_of_one(ray_server, cluster, tmp_path):
    sm, logs = make_client("sagemaker", ray_server.url), make_client("logs", ray_server.url)
    runtime = make_client("sagemaker-runtime", ray_server.url)
    models = Models(ray_server, tmp_path)
    models.create("who", tar_gz({"code/inference.py": textwrap.dedent(WHO).encode()}), Image=IMAGE)
    described = deploy(sm, "on-ray", [variant("who", count=2)])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")

    answered = serving(runtime, "on-ray")
    nodes = wait_for(  # the instances' logs come back from their nodes as they run, then ship to CloudWatch Logs
        lambda: instance_nodes(logs, "on-ray"),
        lambda found: len(found) == 2,
        timeout=120,
        ignore=(Exception,),
        what="both instances' logs to name their nodes",
    )
    assert set(answered) == set(nodes) and len(nodes) == 2, (answered, nodes)
    assert len(set(nodes.values())) == 2, f"the two instances share a node: {nodes}"
    made, workers = cluster
    assert set(nodes.values()) == {w.node_id for w in workers}

    lost_instance, lost_node = next(iter(nodes.items()))
    made.remove_node(next(w for w in workers if w.node_id == lost_node), allow_graceful=False)
    kill_model_server(ray_server.data_dir, lost_instance)
    # Every request answers: one sent to the lost instance is retried on the other.
    answered = serving(runtime, "on-ray", tries=60)
    assert lost_instance not in answered[-20:], "requests still reach the lost instance"

    def replaced() -> dict[str, str]:
        now = instance_nodes(logs, "on-ray")
        return {i: n for i, n in now.items() if i != lost_instance}

    now = wait_for(
        replaced,
        lambda found: len(found) == 2,
        timeout=300,
        ignore=(Exception,),
        what="the lost instance's replacement",
    )
    survivor = next(w.node_id for w in workers if w.node_id != lost_node)
    assert set(now.values()) == {survivor}, now
    wait_for(
        lambda: set(serving(runtime, "on-ray", tries=20)),
        lambda seen: seen == set(now),
        timeout=300,
        what="both instances (the replacement too) to answer",
    )
    assert sm.describe_endpoint(EndpointName="on-ray")["EndpointStatus"] == "InService"
    sm.delete_endpoint(EndpointName="on-ray")


def test_blue_green_and_an_alarm_rollback_on_the_cluster_fail_no_request(ray_server, tmp_path):
    """UpdateEndpoint on Ray instances as on one machine: an all-at-once blue/green switch to a new fleet
    started on the nodes, then a canary rolled back by its alarm, under a steady stream of requests."""
    sm, cloudwatch = make_client("sagemaker", ray_server.url), make_client("cloudwatch", ray_server.url)
    models = Models(ray_server, tmp_path)
    for version in ("v1", "v2", "v3"):
        models.create(f"bg-{version}", versioned_archive(f"bg-{version}"), Image=IMAGE)
        sm.create_endpoint_config(EndpointConfigName=f"bg-{version}", ProductionVariants=[variant(f"bg-{version}")])
    sm.create_endpoint(EndpointName="bg", EndpointConfigName="bg-v1")
    assert wait_status(sm, "bg")["EndpointStatus"] == "InService"
    errors_alarm(cloudwatch, "bg-errors", "bg")
    all_at_once = {
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 1}}
    }
    with Load(ray_server.url, "bg") as load:
        load.wait_for("bg-v1", timeout=120)
        sm.update_endpoint(EndpointName="bg", EndpointConfigName="bg-v2", DeploymentConfig=all_at_once)
        load.wait_for("bg-v2", timeout=300)
        described = wait_status(sm, "bg")
        assert described["EndpointConfigName"] == "bg-v2", described.get("FailureReason")
        switched = load.answers["bg-v1"]
        time.sleep(0.5)
        assert load.answers["bg-v1"] == switched, "the old fleet still answers after the switch"

        sm.update_endpoint(EndpointName="bg", EndpointConfigName="bg-v3", DeploymentConfig=canary(600, "bg-errors"))
        load.wait_for("bg-v3", timeout=300)  # the canary takes its share, then bakes for ten minutes
        cloudwatch.set_alarm_state(AlarmName="bg-errors", StateValue="ALARM", StateReason="test")
        described = wait_for(
            lambda: sm.describe_endpoint(EndpointName="bg"),
            lambda d: d["EndpointStatus"] == "InService" and "PendingDeploymentSummary" not in d,
            timeout=120,
            what="the canary's rollback",
        )
        canaried = load.answers["bg-v3"]
        time.sleep(0.5)
        assert load.answers["bg-v3"] == canaried, "the rolled-back canary still answers"
    assert load.errors == []
    assert described["EndpointConfigName"] == "bg-v2" and "bg-errors" in described["FailureReason"]
    sm.delete_endpoint(EndpointName="bg")


@pytest.fixture(scope="module")
def two_servers(cluster, postgres, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray-two-servers")
    with ray_cluster.two_ray_servers(cluster[0].address, postgres, tmp, "selfmaker_ray_two_servers") as pair:
        yield pair


def test_any_server_answers_for_an_endpoint_another_drives(two_servers, tmp_path):
    a, b = two_servers
    sm = make_client("sagemaker", a.url)
    Models(a, tmp_path).create("blue", versioned_archive("blue"), Image=IMAGE)
    described = deploy(sm, "anywhere", [variant("blue")])  # driven by A, whose CreateEndpoint took it
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")

    through_b = make_client("sagemaker-runtime", b.url)
    assert [invoke(through_b, "anywhere", str(i)) for i in range(5)] == [(f"blue:{i}", "AllTraffic") for i in range(5)]
    assert invoke(make_client("sagemaker-runtime", a.url), "anywhere", "a") == ("blue:a", "AllTraffic")
    # B finds the endpoint by the caller's own scope (account and region), as the server driving it does.
    elsewhere = make_client("sagemaker-runtime", b.url, region="eu-west-1")
    assert error_of(elsewhere.invoke_endpoint, EndpointName="anywhere", Body=b"x")[0] == "ValidationError"

    sm.delete_endpoint(EndpointName="anywhere")
    deleted = time.monotonic()

    def answer_of_b() -> str:
        try:
            invoke(through_b, "anywhere")
            return "answered"
        except ClientError as err:
            return err.response["Error"]["Code"]

    wait_for(answer_of_b, lambda code: code == "ValidationError", timeout=30, interval=0.1, what="B to refuse")
    assert time.monotonic() - deleted < 10, "B routed to a deleted endpoint for long"
