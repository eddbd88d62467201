"""Several servers on one PostgreSQL and one Ray cluster: a server taking over a dead server's work re-attaches
to its Ray instances (docs/scale-out.md, "Several servers" and "Jobs on a Ray cluster").

A cluster of a head with no CPUs and two worker nodes on this machine (as tests/test_ray.py) and two servers
with ``--executor ray`` on one database and one object store. A training job started through server A runs on a
node; A is SIGKILLed; B takes the job's lease over and follows the same sandbox through A's agent (a detached
actor that outlived A): the job completes with its model, its log stream has every line once, and A's agents
end once nothing of A's is left on their nodes. An endpoint created through A, A SIGKILLed: B serves it through
the same instance (same id, same log stream, never started again) and ends A's agents once it is deleted.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from support import ray_cluster
from support.clients import make_client
from support.endpoints import Models, deploy, variant, wait_gone
from support.jobs import code_archive, tar_gz, training_request, wait
from support.pipelines import IMAGE
from support.ray_cluster import NODE_LINE, two_worker_cluster
from support.waiting import wait_for

ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")  # CI installs it: never skip

pytestmark = pytest.mark.ray

BUCKET = "ray-takeover"
TICKS = 30  # lines the job prints, one every half second: A dies among them

TRAIN = f"""
import time
print("before the takeover", flush=True)
for i in range({TICKS}):
    print(f"tick {{i}}", flush=True)
    time.sleep(0.5)
open("/opt/ml/model/model.txt", "w").write("done")
print("after the takeover", flush=True)
"""


@pytest.fixture(scope="module")
def cluster():
    with two_worker_cluster() as made:
        yield made


@pytest.fixture
def two_servers(cluster, postgres, tmp_path):
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "selfmaker_ray_takeover"')
        conn.execute('CREATE DATABASE "selfmaker_ray_takeover"')
    database = postgres.rsplit("/", 1)[0] + "/selfmaker_ray_takeover"
    objects = ("--object-store-url", (tmp_path / "objects").as_uri())
    address = cluster[0].address
    with (
        ray_cluster.ray_server(address, tmp_path / "a", *objects, database=database) as a,
        ray_cluster.ray_server(address, tmp_path / "b", *objects, database=database) as b,
    ):
        yield a, b


def stream_text(logs, name: str) -> str:
    group = "/aws/sagemaker/TrainingJobs"
    (stream,) = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True)
    return "\n".join(e["message"] for e in events["events"])


def agents_of(data_dir, address: str) -> list[str]:
    """The names of the live agents the server on ``data_dir`` started on the cluster's nodes (asked from a
    driver of its own: a killed actor's name is free again)."""
    home = hashlib.sha256(f"{socket.gethostname()}:{data_dir.resolve()}".encode()).hexdigest()[:12]
    probe = f"""
import ray
ray.init(address={address!r}, namespace="selfmaker", log_to_driver=False)
for node in ray.nodes():
    try:
        ray.get_actor("selfmaker-agent-{home}-" + node["NodeID"])
        print(node["NodeID"])
    except ValueError:
        pass
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.split()


def test_a_server_taking_over_a_job_follows_its_instance_on_the_node(two_servers, cluster):
    a, b = two_servers
    sm_a, s3 = make_client("sagemaker", a.url), make_client("s3", a.url)
    sm_b, logs_b = make_client("sagemaker", b.url), make_client("logs", b.url)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="code/takeover.tar.gz", Body=code_archive({"train.py": TRAIN}))
    request = training_request("takeover", BUCKET, "code/takeover.tar.gz")
    request["AlgorithmSpecification"]["TrainingImage"] = IMAGE
    sm_a.create_training_job(**request)  # A creates it, so A holds its lease and drives it
    wait_for(
        lambda: stream_text(logs_b, "takeover"),
        lambda text: "tick 2" in text,
        timeout=300,
        ignore=(Exception,),
        what="the job to be running on a node",
    )
    assert agents_of(a.data_dir, cluster[0].address), "A started no agent"
    a.kill()

    job = wait(sm_b, "training", "takeover", timeout=300)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    body = s3_b_model(b)
    assert body == {"model.txt": b"done"}
    text = stream_text(logs_b, "takeover")
    lines = text.splitlines()
    # Every line of the job once: none lost, none repeated across the takeover; it ran on, never started again.
    assert lines.count("before the takeover") == 1 and lines.count("after the takeover") == 1, text
    assert [line for line in lines if line.startswith("tick ")] == [f"tick {i}" for i in range(TICKS)], text
    assert "follows it now" in text, text  # B says it took the instance over
    assert len(set(NODE_LINE.findall(text))) == 1, text  # one sandbox on one node
    # A's agents end once no instance of A's is left on their nodes.
    wait_for(
        lambda: agents_of(a.data_dir, cluster[0].address),
        lambda left: left == [],
        timeout=120,
        what="the agents of the dead server to end",
    )


def s3_b_model(server) -> dict[str, bytes]:
    import io
    import tarfile

    s3 = make_client("s3", server.url)
    body = s3.get_object(Bucket=BUCKET, Key="output/takeover/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


# Answers with the instance that served it (the sandbox's hostname is the instance id).
WHO = """
    import socket
    def model_fn(model_dir):
        return None
    def transform_fn(model, data, content_type, accept):
        return socket.gethostname(), "text/plain"
"""


def endpoint_streams(logs, endpoint: str) -> dict[str, str]:
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    found = {}
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True)
        found[stream["logStreamName"].split("/")[-1]] = "\n".join(e["message"] for e in events["events"])
    return found


def test_a_server_taking_over_an_endpoint_serves_through_its_instances_on_the_nodes(two_servers, cluster, tmp_path):
    a, b = two_servers
    sm_a = make_client("sagemaker", a.url)
    runtime_b, logs_b = make_client("sagemaker-runtime", b.url), make_client("logs", b.url)
    Models(a, tmp_path).create("who", tar_gz({"code/inference.py": textwrap.dedent(WHO).encode()}), Image=IMAGE)
    described = deploy(sm_a, "taken-over", [variant("who")])  # driven by A, whose CreateEndpoint took it
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")

    def who() -> str:
        return runtime_b.invoke_endpoint(EndpointName="taken-over", Body=b"1", ContentType="text/csv")["Body"].read()

    serving = wait_for(who, lambda answer: answer.startswith(b"i-"), timeout=60, ignore=(Exception,), what="B")
    a.kill()
    wait_for(
        lambda: endpoint_streams(logs_b, "taken-over").get(serving.decode(), ""),
        lambda text: "this server follows it now" in text,
        timeout=120,
        ignore=(Exception,),
        what="B to take the instance over",
    )
    # B serves through the same instance, kept by its health checks; none is started in its place.
    time.sleep(10)
    assert {who() for _ in range(10)} == {serving}
    streams = endpoint_streams(logs_b, "taken-over")
    assert list(streams) == [serving.decode()], list(streams)
    assert streams[serving.decode()].count("is ready: it answered /ping") == 1, streams

    make_client("sagemaker", b.url).delete_endpoint(EndpointName="taken-over")
    wait_gone(make_client("sagemaker", b.url), "taken-over", timeout=120)
    wait_for(
        lambda: agents_of(a.data_dir, cluster[0].address),
        lambda left: left == [],
        timeout=120,
        what="the agents of the dead server to end",
    )
