"""Several servers on one PostgreSQL and one Ray cluster: a server taking over a dead server's work re-attaches
to its Ray instances (docs/scale-out.md, "Several servers" and "Jobs on a Ray cluster").

A cluster of a head with no CPUs and two worker nodes on this machine (as tests/test_ray.py) and two servers
with ``--executor ray`` on one database and one object store. A training job started through server A runs on a
node; A is SIGKILLed; B takes the job's lease over and follows the same sandbox through A's agent (a detached
actor that outlived A): the job completes with its model, its log stream has every line once, another job
taken over stops when asked through B, and A's agents end once nothing of A's is left on their nodes. A paused
past its lease (SIGSTOP) and resumed while B drives its job does not drive it too (every line still once). An endpoint created through A, A SIGKILLed: B serves it through
the same instance (same id, same log stream, never started again) and ends A's agents once it is deleted.
"""

from __future__ import annotations

import hashlib
import os
import signal
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


def script(ticks: int) -> str:
    """A job printing ``ticks`` lines, one every half second (its server dies among them), then saving its model."""
    return f"""
import time
print("before the takeover", flush=True)
for i in range({ticks}):
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
    with ray_cluster.two_ray_servers(cluster[0].address, postgres, tmp_path, "selfmaker_ray_takeover") as pair:
        yield pair


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


def start_through(server, name: str, ticks: int) -> None:
    sm, s3 = make_client("sagemaker", server.url), make_client("s3", server.url)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"code/{name}.tar.gz", Body=code_archive({"train.py": script(ticks)}))
    request = training_request(name, BUCKET, f"code/{name}.tar.gz")
    request["AlgorithmSpecification"]["TrainingImage"] = IMAGE
    sm.create_training_job(**request)  # through this server, which so holds its lease and drives it


def running(logs, name: str, line: str = "tick 2") -> None:
    wait_for(
        lambda: stream_text(logs, name),
        lambda text: line in text,
        timeout=300,
        ignore=(Exception,),
        what=f"{name}'s log to say {line!r}",
    )


def completed_once(server, name: str, ticks: int) -> str:
    """The job Completed with its model, and its log stream has every line once: none lost, none repeated across
    the takeover; it ran on in one sandbox, never started again. Its log."""
    job = wait(make_client("sagemaker", server.url), "training", name, timeout=300)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert s3_b_model(server, name) == {"model.txt": b"done"}
    text = stream_text(make_client("logs", server.url), name)
    lines = text.splitlines()
    assert lines.count("before the takeover") == 1 and lines.count("after the takeover") == 1, text
    assert [line for line in lines if line.startswith("tick ")] == [f"tick {i}" for i in range(ticks)], text
    assert "follows it now" in text, text  # the server that took it over says so
    assert len(set(NODE_LINE.findall(text))) == 1, text  # one sandbox on one node
    return text


def test_a_server_taking_over_a_job_follows_its_instance_on_the_node(two_servers, cluster):
    a, b = two_servers
    logs_b = make_client("logs", b.url)
    start_through(a, "takeover", 30)
    start_through(a, "takeover-stop", 600)
    running(logs_b, "takeover")
    running(logs_b, "takeover-stop")
    assert agents_of(a.data_dir, cluster[0].address), "A started no agent"
    a.kill()

    completed_once(b, "takeover", 30)
    # Stop reaches a job taken over: through the dead server's agent, its sandbox gets SIGTERM.
    running(logs_b, "takeover-stop", "follows it now")
    sm_b = make_client("sagemaker", b.url)
    sm_b.stop_training_job(TrainingJobName="takeover-stop")
    assert wait(sm_b, "training", "takeover-stop", timeout=120)["TrainingJobStatus"] == "Stopped"
    # A's agents end once no instance of A's is left on their nodes.
    wait_for(
        lambda: agents_of(a.data_dir, cluster[0].address),
        lambda left: left == [],
        timeout=120,
        what="the agents of the dead server to end",
    )


def test_a_server_paused_past_its_lease_does_not_drive_the_job_once_it_resumes(two_servers):
    a, b = two_servers
    start_through(a, "paused", 80)
    running(make_client("logs", b.url), "paused")
    a.proc.send_signal(signal.SIGSTOP)  # past its lease: B takes the job over
    try:
        running(make_client("logs", b.url), "paused", "follows it now")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    # A resumes while the job runs: it neither stops it, nor ships its lines again, nor collects it.
    completed_once(b, "paused", 80)


def s3_b_model(server, name: str) -> dict[str, bytes]:
    import io
    import tarfile

    s3 = make_client("s3", server.url)
    body = s3.get_object(Bucket=BUCKET, Key=f"output/{name}/output/model.tar.gz")["Body"].read()
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
    text = streams[serving.decode()]
    assert text.count(f"SelfMaker: starting {serving.decode()}") == 1, text  # started once, by A
    assert text.count("this server follows it now") == 1, text

    make_client("sagemaker", b.url).delete_endpoint(EndpointName="taken-over")
    wait_gone(make_client("sagemaker", b.url), "taken-over", timeout=120)
    wait_for(
        lambda: agents_of(a.data_dir, cluster[0].address),
        lambda left: left == [],
        timeout=120,
        what="the agents of the dead server to end",
    )


def test_a_server_paused_past_its_lease_lets_go_of_the_endpoint_another_took_over(two_servers, tmp_path):
    a, b = two_servers
    sm_a, sm_b = make_client("sagemaker", a.url), make_client("sagemaker", b.url)
    runtime_b, logs_b = make_client("sagemaker-runtime", b.url), make_client("logs", b.url)
    Models(a, tmp_path).create("who-paused", tar_gz({"code/inference.py": textwrap.dedent(WHO).encode()}), Image=IMAGE)
    described = deploy(sm_a, "paused-endpoint", [variant("who-paused")])  # driven by A
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    serving = wait_for(
        lambda: runtime_b.invoke_endpoint(EndpointName="paused-endpoint", Body=b"1")["Body"].read().decode(),
        lambda answer: answer.startswith("i-"),
        timeout=60,
        ignore=(Exception,),
        what="an answer through B",
    )
    a.proc.send_signal(signal.SIGSTOP)  # past its lease: B takes the endpoint over
    try:
        wait_for(
            lambda: endpoint_streams(logs_b, "paused-endpoint").get(serving, ""),
            lambda text: "this server follows it now" in text,
            timeout=120,
            ignore=(Exception,),
            what="B to take the instance over",
        )
        sm_b.delete_endpoint(EndpointName="paused-endpoint")  # B stops the instance A had started
        wait_gone(sm_b, "paused-endpoint", timeout=120)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    # A resumes and finds the instance it kept ended: another server drove it, so A lets go of it instead of
    # starting a replacement that nobody would drive.
    wait_for(
        lambda: list(a.data_dir.glob("endpoints/*/*/*/i-*")),
        lambda left: left == [],
        timeout=60,
        what="A to let go of the instance",
    )
    time.sleep(5)
    streams = endpoint_streams(logs_b, "paused-endpoint")
    assert list(streams) == [serving], f"an instance was started after the takeover: {streams}"
    assert "replacing it" not in streams[serving], streams[serving]
    assert list(a.data_dir.glob("endpoints/*/*/*/i-*")) == []
