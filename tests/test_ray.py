"""Jobs on a Ray cluster (docs/scale-out.md, "Jobs on a Ray cluster").

One Ray cluster for the module, on this machine (a head with no CPUs, so every instance lands on one of two
worker nodes), and a strict-mode server with ``--executor ray`` on its own object store. Through boto3: a training
job (its log streams to CloudWatch Logs while it runs, its model comes back from the node), the nodes fetching a
sharded input and uploading the model themselves (none of it on the server's disk), a node's reads refused past
the account wall, a job whose account lost its bucket failing with AccessDenied, a processing job
(an S3 input in, an output out), a 20-step fan-out pipeline whose steps run on both nodes, the built-in XGBoost trained by two instances on the
two nodes (Rabit) giving the model one instance trains, a graceful stop,
MaxRuntimeInSeconds, a server SIGKILLed and restarted while a job runs on a node (it re-attaches), a node's
agent killed mid-job (Ray restarts it and the job finishes), a node lost mid-job (the job fails saying so), and
GPU instance types: on CPUs on this GPU-less cluster, then on a node added declaring a GPU (its id and count in the
instance's environment), and refused when no node has enough.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import time
from types import SimpleNamespace

import pytest

from support import ray_cluster
from support.clients import ACCESS_KEY, SECRET_KEY, make_client
from support.jobs import code_archive, processing_request, s3_input, training_request, wait
from support.pipelines import IMAGE, create, entrypoint, processing, start, steps
from support.pipelines import wait as wait_pipeline
from support.ray_cluster import NODE_LINE, two_worker_cluster
from support.waiting import wait_for

ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")  # CI installs it: never skip

pytestmark = pytest.mark.ray

BUCKET = "ray-jobs"
OTHER = SimpleNamespace(key="AKIDRAYOTHERACCOUNT1", secret="other-secret", account="222222222222")


@pytest.fixture(scope="module")
def cluster():
    with two_worker_cluster() as made:
        yield made


@pytest.fixture(scope="module")
def ray_server(cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    keys = tmp / "credentials"  # strict: every signature verified, the nodes' (the jobs' keys) too
    keys.write_text(
        f"[{ACCESS_KEY}]\nsecret_access_key = {SECRET_KEY}\naccount_id = 123456789012\n"
        f"[{OTHER.key}]\nsecret_access_key = {OTHER.secret}\naccount_id = {OTHER.account}\n"
    )
    strict = ("--auth", "strict", "--credentials-file", str(keys))
    with ray_cluster.ray_server(cluster[0].address, tmp, "--stop-grace-seconds", "20", *strict) as srv:
        yield srv


@pytest.fixture(scope="module")
def clients(ray_server):
    sm = make_client("sagemaker", ray_server.url)
    s3 = make_client("s3", ray_server.url)
    logs = make_client("logs", ray_server.url)
    s3.create_bucket(Bucket=BUCKET)
    return sm, s3, logs


def log_text(logs, group: str, prefix: str) -> str:
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=prefix)["logStreams"]
    return "\n".join(
        e["message"]
        for s in streams
        for e in logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True)["events"]
    )


def training(clients, name: str, script: str, **extra) -> None:
    sm, s3, _ = clients
    s3.put_object(Bucket=BUCKET, Key=f"code/{name}.tar.gz", Body=code_archive({"train.py": script}))
    request = training_request(name, BUCKET, f"code/{name}.tar.gz", **extra)
    request["AlgorithmSpecification"]["TrainingImage"] = IMAGE
    sm.create_training_job(**request)


def refused(clients, name: str, instance_type: str, count: int = 1) -> str:
    """The FailureReason of a job of that size, which must fail without running."""
    resources = {"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 1}
    training(clients, name, "print('never')\n", ResourceConfig=resources)
    job = wait(clients[0], "training", name, timeout=120)
    assert job["TrainingJobStatus"] == "Failed"
    return job["FailureReason"]


def model_files(s3, name: str) -> dict[str, bytes]:
    body = s3.get_object(Bucket=BUCKET, Key=f"output/{name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_a_training_job_runs_on_a_node_its_log_streams_and_its_model_comes_back(clients, cluster):
    sm, s3, logs = clients
    training(
        clients,
        "ray-train",
        """
        import os, socket
        print("training on", socket.gethostname(), os.environ["SM_CURRENT_HOST"], flush=True)
        with open("/opt/ml/model/model.txt", "w") as f:
            f.write("weights")
        """,
    )
    job = wait(sm, "training", "ray-train")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert model_files(s3, "ray-train") == {"model.txt": b"weights"}
    text = log_text(logs, "/aws/sagemaker/TrainingJobs", "ray-train/")
    assert "training on algo-1 algo-1" in text
    nodes = {n.node_id for n in cluster[1]}
    assert set(NODE_LINE.findall(text)) <= nodes and NODE_LINE.search(text)


def test_the_nodes_fetch_their_shards_and_upload_the_model_themselves(clients, ray_server):
    """A two-instance ShardedByS3Key job: each node copies its own disjoint shard from the object store and the
    model goes up from the node; none of the data or the model is ever on the server's disk."""
    sm, s3, logs = clients
    for part in "abcd":
        s3.put_object(Bucket=BUCKET, Key=f"shards/{part}.csv", Body=f"row {part}\n".encode())
    channel = {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/shards", "S3DataDistributionType": "ShardedByS3Key"}
    training(
        clients,
        "ray-shards",
        """
        import os
        here = "/opt/ml/input/data/train"
        got = sorted(os.listdir(here))
        assert all(open(f"{here}/{n}").read() == f"row {n[0]}\\n" for n in got)
        print("SHARD", os.environ["SM_CURRENT_HOST"], ",".join(got), flush=True)
        if os.environ["SM_CURRENT_HOST"] == "algo-1":
            open("/opt/ml/model/model.txt", "w").write(",".join(got))
        """,
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
        InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": channel}}],
    )
    job = wait(sm, "training", "ray-shards", timeout=600)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/output/ray-shards/output/model.tar.gz"
    shards = {}
    for host in ("algo-1", "algo-2"):
        text = log_text(logs, "/aws/sagemaker/TrainingJobs", f"ray-shards/{host}-")
        shards[host] = re.search(rf"SHARD {host} (\S+)", text).group(1).split(",")
        assert "SelfMaker: fetched 3 object(s)" in text  # its shard (2) and the code, by the node itself
    assert shards == {"algo-1": ["a.csv", "c.csv"], "algo-2": ["b.csv", "d.csv"]}  # every 2nd key, disjoint
    assert model_files(s3, "ray-shards") == {"model.txt": b"a.csv,c.csv"}
    assert "uploaded s3://ray-jobs/output/ray-shards/output/model.tar.gz from this node" in log_text(
        logs, "/aws/sagemaker/TrainingJobs", "ray-shards/algo-1-"
    )
    # The server only listed and decided: no input byte, no model byte ever landed in its instance directories
    # (the archive it ships carries the config; the data went node <-> object store).
    job_dir = next(ray_server.data_dir.glob("jobs/*/*/training-job/ray-shards"))
    on_server = {p.relative_to(job_dir).as_posix() for p in job_dir.glob("algo-*/ml/**/*") if p.is_file()}
    assert not [p for p in on_server if "/input/data/" in p or "/model/" in p], on_server
    assert "algo-1/ml/input/config/inputdataconfig.json" in on_server  # what the server did write came back


def test_a_node_reads_nothing_the_jobs_account_cannot(clients, ray_server):
    """The node's copier goes through the server's S3 API as the key it is given: another account's object is
    AccessDenied there, whatever path it was told, and a key climbing out of its directory lands nowhere."""
    from selfmaker.engines.executor import node_transfer

    s3 = make_client("s3", ray_server.url, access_key=OTHER.key, secret_key=OTHER.secret)
    s3.create_bucket(Bucket="ray-other")
    s3.put_object(Bucket="ray-other", Key="secret.csv", Body=b"not yours")
    store = {"endpoint": ray_server.url, "region": "us-east-1", "access_key": ACCESS_KEY, "secret_key": SECRET_KEY}
    root = ray_server.data_dir.parent / "node-files"
    root.mkdir(exist_ok=True)
    roots, copier = {"m0": root}, node_transfer.client(store)
    denied = {"bucket": "ray-other", "key": "secret.csv", "mount": "m0", "relative": "secret.csv"}
    with pytest.raises(node_transfer.TransferFailed) as caught:
        node_transfer.fetch_all(copier, [denied], roots, root)
    assert str(caught.value).startswith("ClientError: cannot read s3://ray-other/secret.csv: AccessDenied: ")
    climbing = {"bucket": BUCKET, "key": "shards/a.csv", "mount": "m0", "relative": "../../escaped.csv"}
    with pytest.raises(node_transfer.TransferFailed, match="would land outside its directory"):
        node_transfer.fetch_all(copier, [climbing], roots, root)
    assert not list(root.parent.parent.glob("escaped.csv")) and not list(root.iterdir())


def test_a_job_whose_account_lost_its_bucket_fails_with_access_denied(clients):
    """Strict mode: the bucket is deleted and made again by another account after the Create, while the job waits
    for room on the cluster (a job filling a node holds it); the job then fails with AccessDenied, reading nothing."""
    sm, s3, _ = clients
    s3.create_bucket(Bucket="ray-swapped")
    s3.put_object(Bucket="ray-swapped", Key="data/a.csv", Body=b"1\n")
    whole_node = {"InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 1}  # 4 CPUs, 16 GiB: a worker node each
    training(
        clients,
        "ray-holder",
        "print('HOLDING', flush=True)\nimport time\ntime.sleep(600)\n",
        ResourceConfig={**whole_node, "InstanceCount": 1},
    )
    wait_for(
        lambda: log_text(clients[2], "/aws/sagemaker/TrainingJobs", "ray-holder/"),
        lambda text: "HOLDING" in text,
        timeout=300,
        ignore=(Exception,),
        what="the job holding a node to be running",
    )
    training(
        clients,
        "ray-swapped",
        "print('never reached')\n",
        ResourceConfig={**whole_node, "InstanceCount": 2},  # both nodes at once: waits for the holder to end
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://ray-swapped/data"}},
            }
        ],
    )
    s3.delete_object(Bucket="ray-swapped", Key="data/a.csv")
    s3.delete_bucket(Bucket="ray-swapped")
    other = make_client("s3", clients[1].meta.endpoint_url, access_key=OTHER.key, secret_key=OTHER.secret)
    other.create_bucket(Bucket="ray-swapped")
    other.put_object(Bucket="ray-swapped", Key="data/b.csv", Body=b"the other account's\n")
    sm.stop_training_job(TrainingJobName="ray-holder")
    assert wait(sm, "training", "ray-holder")["TrainingJobStatus"] == "Stopped"
    job = wait(sm, "training", "ray-swapped", timeout=300)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: ") and "AccessDenied" in job["FailureReason"], job


def test_logs_stream_while_the_job_runs_and_a_stop_is_graceful(clients):
    sm, s3, logs = clients
    training(
        clients,
        "ray-stop",
        """
        import signal, sys, time
        def save(*_):
            open("/opt/ml/model/checkpoint.txt", "w").write("saved on SIGTERM")
            sys.exit(0)
        signal.signal(signal.SIGTERM, save)
        print("READY", flush=True)
        time.sleep(600)
        """,
    )
    wait_for(
        lambda: log_text(logs, "/aws/sagemaker/TrainingJobs", "ray-stop/"),
        lambda text: "READY" in text,
        timeout=300,
        ignore=(Exception,),
        what="the running job's log line in CloudWatch Logs",
    )
    assert sm.describe_training_job(TrainingJobName="ray-stop")["TrainingJobStatus"] == "InProgress"
    sm.stop_training_job(TrainingJobName="ray-stop")
    job = wait(sm, "training", "ray-stop")
    assert job["TrainingJobStatus"] == "Stopped", job.get("FailureReason")
    assert model_files(s3, "ray-stop") == {"checkpoint.txt": b"saved on SIGTERM"}


def test_max_runtime_stops_the_job_on_its_node(clients):
    sm, _, _ = clients
    training(clients, "ray-max", "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n", max_runtime=15)
    job = wait(sm, "training", "ray-max")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")


def test_a_processing_job_reads_its_input_and_writes_its_output_from_the_node(clients, ray_server):
    sm, s3, _ = clients
    s3.put_object(Bucket=BUCKET, Key="in/numbers.txt", Body=b"1\n2\n3\n")
    request = processing_request(
        "ray-process",
        entrypoint(
            """
            numbers = open("/opt/ml/processing/input/numbers.txt").read().split()
            with open("/opt/ml/processing/output/sum.txt", "w") as f:
                f.write(str(sum(map(int, numbers))))
            """
        ),
        inputs=[s3_input("numbers", f"s3://{BUCKET}/in", "/opt/ml/processing/input")],
        outputs=[
            {
                "OutputName": "sum",
                "S3Output": {
                    "S3Uri": f"s3://{BUCKET}/out",
                    "LocalPath": "/opt/ml/processing/output",
                    "S3UploadMode": "EndOfJob",
                },
            }
        ],
    )
    request["AppSpecification"]["ImageUri"] = IMAGE
    sm.create_processing_job(**request)
    job = wait(sm, "processing", "ray-process")
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert s3.get_object(Bucket=BUCKET, Key="out/sum.txt")["Body"].read() == b"6"
    ml = next(ray_server.data_dir.glob("jobs/*/*/processing-job/ray-process/algo-1/ml"))
    assert not [p for p in ml.rglob("*") if p.is_file() and "processing" in p.parts]  # node <-> store only


def test_a_20_step_fan_out_pipeline_runs_on_both_nodes(clients, cluster):
    sm, _, logs = clients
    create(sm, "ray-fan-out", [processing(f"step-{i}", "print('step done', flush=True)") for i in range(20)])
    execution = wait_pipeline(sm, start(sm, "ray-fan-out"), timeout=900)
    failed = {n: s.get("FailureReason") for n, s in steps(sm, execution["PipelineExecutionArn"]).items()}
    assert execution["PipelineExecutionStatus"] == "Succeeded", {n: r for n, r in failed.items() if r}
    used = set()
    for step in steps(sm, execution["PipelineExecutionArn"]).values():
        job = step["Metadata"]["ProcessingJob"]["Arn"].rsplit("/", 1)[1]
        used |= set(NODE_LINE.findall(log_text(logs, "/aws/sagemaker/ProcessingJobs", f"{job}/")))
    assert used == {n.node_id for n in cluster[1]}  # spread over both worker nodes


def test_the_builtin_xgboost_trains_on_two_instances_on_two_nodes_as_on_one(clients, cluster, tmp_path):
    from test_jobs_distributed import PARTS, _predictions, _xgboost_job

    sm, s3, logs = clients
    for key, rows in PARTS.items():
        s3.put_object(Bucket=BUCKET, Key=f"xgb/{key}", Body="".join(f"{y},{a},{b}\n" for y, a, b in rows))
    jobs = {
        "single": _xgboost_job("ray-xgb-one", BUCKET, 1, "FullyReplicated", prefix="xgb"),
        "sharded": _xgboost_job("ray-xgb-two", BUCKET, 2, "ShardedByS3Key", prefix="xgb"),
    }
    for request in jobs.values():
        sm.create_training_job(**request)
    ended = {kind: wait(sm, "training", request["TrainingJobName"], timeout=900) for kind, request in jobs.items()}
    for kind, job in ended.items():
        assert job["TrainingJobStatus"] == "Completed", (kind, job.get("FailureReason"))
    single, distributed = (_predictions(s3, BUCKET, ended[kind], tmp_path) for kind in ("single", "sharded"))
    assert max(abs(p - q) for p, q in zip(single, distributed)) < 1e-4
    nodes = {}
    for host in ("algo-1", "algo-2"):
        text = log_text(logs, "/aws/sagemaker/TrainingJobs", f"ray-xgb-two/{host}-")
        assert "Rabit started: rank" in text and " of 2" in text
        nodes[host] = NODE_LINE.search(text).group(1)
    assert set(nodes.values()) == {n.node_id for n in cluster[1]}  # one instance on each worker node


def _running_across(clients, name: str, event: str, seconds: int) -> None:
    """Start a job that prints "before EVENT", sleeps, prints "after EVENT" and saves its model; return once the
    first line is in its log (the test then makes EVENT happen)."""
    training(
        clients,
        name,
        f"""
        import time
        print("before {event}", flush=True)
        time.sleep({seconds})
        print("after {event}", flush=True)
        open("/opt/ml/model/model.txt", "w").write("done")
        """,
    )
    wait_for(
        lambda: log_text(clients[2], "/aws/sagemaker/TrainingJobs", f"{name}/"),
        lambda text: f"before {event}" in text,
        timeout=300,
        ignore=(Exception,),
        what="the job to be running",
    )
    # Past the shipper's note of what it shipped: a kill between a batch's append and that note repeats the
    # batch (logship.py documents it), which would read here as the job having started again.
    time.sleep(1)


def _finished_across(clients, name: str, event: str) -> None:
    """The job completed with its model, and its log has each line once: it ran on, never started again."""
    sm, s3, logs = clients
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert model_files(s3, name) == {"model.txt": b"done"}
    text = log_text(logs, "/aws/sagemaker/TrainingJobs", f"{name}/")
    assert text.count(f"before {event}") == 1 and f"after {event}" in text


def test_a_restarted_server_reattaches_to_a_job_running_on_a_node(clients, ray_server):
    _running_across(clients, "ray-restart", "the restart", 25)
    ray_server.kill()
    ray_server.start()
    _finished_across(clients, "ray-restart", "the restart")


def test_a_job_outlives_its_node_agent_dying_and_instances_share_one_agent_per_node(clients, cluster):
    _running_across(clients, "ray-agent", "the agent died", 20)
    ray.init(address=cluster[0].address, namespace="selfmaker", log_to_driver=False)
    try:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
        agents = [n for n in names if n.startswith("selfmaker-agent-")]
        # One agent per worker node, whatever the number of instances run so far; no actor per instance.
        assert len(agents) == len(cluster[1]) and len(names) == len(agents), names
        for name in agents:  # Ray restarts them; the new agent answers from the node's disk
            ray.kill(ray.get_actor(name), no_restart=False)
    finally:
        ray.shutdown()
    _finished_across(clients, "ray-agent", "the agent died")


def test_a_lost_node_fails_its_job_with_a_clear_reason(clients, cluster):
    sm, _, logs = clients
    training(clients, "ray-lost", "import time\nprint('RUNNING', flush=True)\ntime.sleep(600)\n")
    text = wait_for(
        lambda: log_text(logs, "/aws/sagemaker/TrainingJobs", "ray-lost/"),
        lambda text: "RUNNING" in text,
        timeout=300,
        ignore=(Exception,),
        what="the job to be running",
    )
    node_id = NODE_LINE.search(text).group(1)
    made, workers = cluster
    made.remove_node(next(n for n in workers if n.node_id == node_id), allow_graceful=False)
    try:
        job = wait(sm, "training", "ray-lost", timeout=300)
    finally:  # on one machine the node's sandbox runs on (detached from its agent): end it as the machine's loss would
        ray_cluster.end_sandboxes_of(node_id)
    assert job["TrainingJobStatus"] == "Failed"
    assert "InternalServerError" in job["FailureReason"] and "Ray node" in job["FailureReason"]


def test_an_instance_type_no_node_can_hold_fails_at_once_saying_so(clients):
    reason = refused(clients, "ray-too-big", "ml.m5.24xlarge")
    assert reason.startswith("ClientError: no live node of the Ray cluster has 96 CPUs")


def test_a_multi_instance_job_the_nodes_cannot_hold_at_once_fails_at_once_saying_so(clients):
    # A worker node of 4 CPUs holds two ml.m5.large (2 CPUs) at once: a fifth instance could never be placed.
    reason = refused(clients, "ray-five", "ml.m5.large", count=5)
    matched = re.match(
        r"ClientError: a job of 5 instances of 2 CPUs and 8\.0 GiB cannot be placed: the live nodes of the Ray "
        r"cluster hold at most (\d+) at once; use InstanceCount \1 or add nodes$",
        reason,
    )
    assert matched and matched.group(1) in ("2", "4"), reason  # 2 once a node was lost (above)


GPU_SCRIPT = """
import os
print("GPUS", os.environ["SM_NUM_GPUS"], "VISIBLE", repr(os.environ.get("CUDA_VISIBLE_DEVICES")), flush=True)
open("/opt/ml/model/gpus.txt", "w").write(os.environ["SM_NUM_GPUS"])
"""
G4DN_XLARGE = {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1}  # 4 CPUs, 16 GiB, 1 GPU


def test_a_gpu_type_on_a_cluster_without_gpus_runs_on_cpus_saying_so(clients):
    sm, s3, logs = clients
    training(clients, "ray-gpu-none", GPU_SCRIPT, ResourceConfig=G4DN_XLARGE)
    job = wait(sm, "training", "ray-gpu-none")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert model_files(s3, "ray-gpu-none") == {"gpus.txt": b"0"}
    text = log_text(logs, "/aws/sagemaker/TrainingJobs", "ray-gpu-none/")
    assert text.count("the Ray cluster has no GPU") == 1 and "GPUS 0 VISIBLE None" in text


@pytest.fixture
def gpu_node(cluster):
    """A third worker node declaring one GPU, for this test only (the others expect two CPU-only workers)."""
    made = cluster[0]
    node = made.add_node(**ray_cluster.GPU_NODE)
    made.wait_for_nodes()
    try:
        yield node
    finally:
        made.remove_node(node)
        ray_cluster.end_sandboxes_of(node.node_id)


def test_a_gpu_type_lands_on_the_gpu_node_and_sees_its_gpu_and_one_needing_more_fails_at_once(clients, gpu_node):
    sm, s3, logs = clients
    training(clients, "ray-gpu-one", GPU_SCRIPT, ResourceConfig=G4DN_XLARGE)
    job = wait(sm, "training", "ray-gpu-one")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert model_files(s3, "ray-gpu-one") == {"gpus.txt": b"1"}
    text = log_text(logs, "/aws/sagemaker/TrainingJobs", "ray-gpu-one/")
    assert NODE_LINE.findall(text) == [gpu_node.node_id]  # the only node with a GPU
    assert "GPUS 1 VISIBLE '0'" in text and "1 GPU)" in text and "has no GPU" not in text

    # 4 GPUs (and 48 CPUs): the GPUs are what no node has, and the reason says so.
    reason = refused(clients, "ray-gpu-four", "ml.g4dn.12xlarge")
    assert reason.startswith(
        "ClientError: no live node of the Ray cluster has 4 GPUs for the instance type (the most on one node is 1)"
    ), reason

    assert refused(
        clients, "ray-gpu-two", "ml.g4dn.xlarge", count=2
    ) == (  # GPUs count in how many instances the nodes hold at once
        "ClientError: a job of 2 instances of 4 CPUs, 1 GPUs and 16.0 GiB cannot be placed: the live nodes of the "
        "Ray cluster hold at most 1 at once; use InstanceCount 1 or add nodes"
    )


def test_the_ray_executor_needs_the_cluster_address(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "selfmaker.cli", "serve", "--executor", "ray", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--executor ray needs --ray-address" in done.stderr
