"""Multi-instance training jobs: the SageMaker cluster contract inside each instance, and the built-in XGBoost
trained distributed across instances (Rabit) giving the model one instance trains on the same data."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from support import xgboost_runtime
from support.jobs import ROLE, code_archive, log_lines, training_request, wait

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
GROUP = "/aws/sagemaker/TrainingJobs"

# y = 3a + 2b + a little noise, in two objects of unequal size (120 and 80 rows) so shards are told apart.
ROWS = [(3 * a + 2 * b + ((7 * a + 3 * b) % 5) / 10, a, b) for a in range(20) for b in range(10)]
PARTS = {"part-0.csv": ROWS[0::5] + ROWS[1::5] + ROWS[2::5], "part-1.csv": ROWS[3::5] + ROWS[4::5]}


@pytest.fixture
def bucket(client, unique):
    name = unique("dist")
    client("s3").create_bucket(Bucket=name)
    return name


def _xgboost_job(name: str, bucket: str, count: int, distribution: str, prefix: str = "train") -> dict:
    return {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"num_round": "12", "max_depth": "3", "eta": "0.4", "tree_method": "hist"},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "ContentType": "text/csv",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{bucket}/{prefix}/",
                        "S3DataDistributionType": distribution,
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": count, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def _predictions(s3, bucket: str, job: dict, tmp_path) -> list[float]:
    """The job's model.tar.gz (it must hold the model alone) loaded by xgboost, predicting every (a, b)."""
    key = job["ModelArtifacts"]["S3ModelArtifacts"].split(f"s3://{bucket}/", 1)[1]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames() == ["xgboost-model"]
        model = tmp_path / job["TrainingJobName"]
        model.write_bytes(tar.extractfile("xgboost-model").read())
    script = (
        "import json, sys, numpy as np, xgboost as xgb; b = xgb.Booster(); b.load_model(sys.argv[1]); "
        "x = np.array([[a, b] for a in range(20) for b in range(10)], dtype='float32'); "
        "print(json.dumps(b.predict(xgb.DMatrix(x)).tolist()))"
    )
    done = subprocess.run([xgboost_runtime.python(), "-c", script, str(model)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_xgboost_trains_distributed_and_equals_one_instance(client, sm, bucket, unique, tmp_path):
    s3, logs = client("s3"), client("logs")
    for key, rows in PARTS.items():
        s3.put_object(Bucket=bucket, Key=f"train/{key}", Body="".join(f"{y},{a},{b}\n" for y, a, b in rows))
    s3.put_object(Bucket=bucket, Key="whole/all.csv", Body="".join(f"{y},{a},{b}\n" for y, a, b in ROWS))
    jobs = {
        "single": _xgboost_job(unique("xgb-one"), bucket, 1, "FullyReplicated"),
        "replicated": _xgboost_job(unique("xgb-rep"), bucket, 2, "FullyReplicated"),
        "sharded": _xgboost_job(unique("xgb-shard"), bucket, 2, "ShardedByS3Key"),
        # One object for two instances: algo-2 gets none, says so in the first round and ends; algo-1 trains.
        "one_object": _xgboost_job(unique("xgb-lone"), bucket, 2, "ShardedByS3Key", prefix="whole"),
    }
    for request in jobs.values():
        sm.create_training_job(**request)
    ended = {kind: wait(sm, "training", request["TrainingJobName"]) for kind, request in jobs.items()}
    for kind, job in ended.items():
        assert job["TrainingJobStatus"] == "Completed", (kind, job.get("FailureReason"))

    single = _predictions(s3, bucket, ended["single"], tmp_path)
    for kind in ("replicated", "sharded", "one_object"):
        distributed = _predictions(s3, bucket, ended[kind], tmp_path)
        assert max(abs(p - q) for p, q in zip(single, distributed)) < 1e-4, kind
    assert sum(abs(p - y) for p, (y, _, _) in zip(single, ROWS)) / len(ROWS) < 2  # it learnt (y spans 0..75)

    def rows_seen(kind: str) -> dict[str, str]:
        lines = log_lines(logs, GROUP, jobs[kind]["TrainingJobName"])
        streams = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=jobs[kind]["TrainingJobName"])
        assert sorted(s["logStreamName"].split("/")[1].rsplit("-", 1)[0] for s in streams["logStreams"]) == (
            ["algo-1", "algo-2"] if kind != "single" else ["algo-1"]
        )
        return [line.split("] ", 1)[1] for line in lines if "Train matrix has" in line or "Rabit started" in line]

    # Sharded: each instance reads its object (120 and 80 rows); replicated: each its half of all 200 rows.
    assert sorted(rows_seen("sharded")) == sorted(
        ["Train matrix has 120 rows and 2 columns", "Train matrix has 80 rows and 2 columns"]
        + [f"Rabit started: rank {r} of 2" for r in (0, 0, 1, 1)]
    )
    assert sorted(rows_seen("replicated")) == sorted(
        ["Train matrix has 100 rows and 2 columns"] * 2 + [f"Rabit started: rank {r} of 2" for r in (0, 0, 1, 1)]
    )
    assert rows_seen("single") == ["Train matrix has 200 rows and 2 columns"]
    assert sorted(rows_seen("one_object")) == sorted(
        ["Rabit started: rank 0 of 2", "Rabit started: rank 1 of 2"]
        + ["Rabit started: rank 0 of 1", "Train matrix has 200 rows and 2 columns"]
    )
    lone = log_lines(logs, GROUP, jobs["one_object"]["TrainingJobName"])
    assert any("Host algo-2 has no training data: it ends without training." in line for line in lone)
    assert ended["sharded"]["BillableTimeInSeconds"] == 2 * ended["sharded"]["TrainingTimeInSeconds"]


CONTRACT_SCRIPT = """
    import json, os, socket, sys, time
    config = json.load(open("/opt/ml/input/config/resourceconfig.json"))
    me, hosts = config["current_host"], config["hosts"]
    addresses = {h: socket.gethostbyname(h) for h in hosts}
    print("CONTRACT " + json.dumps({"config": config, "sm_hosts": json.loads(os.environ["SM_HOSTS"]),
          "sm_current_host": os.environ["SM_CURRENT_HOST"], "hostname": socket.gethostname(),
          "addresses": addresses, "data": sorted(os.listdir("/opt/ml/input/data/train"))}), flush=True)
    # Every instance binds the same port on its own address (no collision), then algo-2 talks to algo-1.
    server = socket.create_server((addresses[me], 47901))
    if me == "algo-1":
        server.settimeout(300)
        peer, _ = server.accept()
        print("GOT " + peer.recv(100).decode(), flush=True)
    else:
        for _ in range(600):
            try:
                with socket.create_connection((addresses["algo-1"], 47901), timeout=5) as c:
                    c.sendall(("hello from " + me).encode())
                break
            except OSError:
                time.sleep(0.5)
"""


def test_instances_find_each_other_by_name_with_the_sagemaker_contract(client, sm, bucket, unique):
    s3, logs = client("s3"), client("logs")
    s3.put_object(Bucket=bucket, Key="code/contract.tar.gz", Body=code_archive({"train.py": CONTRACT_SCRIPT}))
    for key in ("a.csv", "b.csv", "c.csv"):
        s3.put_object(Bucket=bucket, Key=f"data/{key}", Body=b"1,2\n")
    name = unique("contract")
    request = training_request(name, bucket, "code/contract.tar.gz", channels={"train": f"s3://{bucket}/data/"})
    request["ResourceConfig"]["InstanceCount"] = 2
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    sm.create_training_job(**request)
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = log_lines(logs, GROUP, name)
    seen = {
        c["config"]["current_host"]: c
        for c in (json.loads(x.split("CONTRACT ", 1)[1]) for x in lines if "CONTRACT" in x)
    }
    assert sorted(seen) == ["algo-1", "algo-2"]
    assert seen["algo-1"]["addresses"] == seen["algo-2"]["addresses"]
    addresses = seen["algo-1"]["addresses"]
    assert len(set(addresses.values())) == 2 and all(a.startswith("127.") for a in addresses.values())
    for host, contract in seen.items():
        assert contract["config"]["hosts"] == ["algo-1", "algo-2"]
        assert contract["sm_hosts"] == ["algo-1", "algo-2"] and contract["sm_current_host"] == host
        assert contract["hostname"] == host
        assert contract["config"]["network_interface_name"] == "lo"
    # ShardedByS3Key: instance i of n gets every n-th key.
    assert seen["algo-1"]["data"] == ["a.csv", "c.csv"] and seen["algo-2"]["data"] == ["b.csv"]
    assert "GOT hello from algo-2" in lines


TORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.13.0-cpu-py311"
ALLREDUCE_SCRIPT = """
    import os, torch, torch.distributed as dist
    dist.init_process_group("gloo")  # torchrun's MASTER_ADDR/PORT, RANK, WORLD_SIZE
    total = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(total)
    print(f"RANK {dist.get_rank()} OF {dist.get_world_size()} ON {os.environ['SM_CURRENT_HOST']} SUM {total.item()}")
    dist.destroy_process_group()
"""


@pytest.mark.skipif(
    not any(Path("/opt/wheels").glob("torch-2.13.0+cpu-*.whl")) and not os.environ.get("CI"),
    reason="torch 2.13.0's CPU build is not on this machine's disk (/opt/wheels)",
)
def test_torch_distributed_runs_torchrun_across_instances(client, sm, bucket, unique):
    s3, logs = client("s3"), client("logs")
    s3.put_object(Bucket=bucket, Key="code/ddp.tar.gz", Body=code_archive({"train.py": ALLREDUCE_SCRIPT}))
    name = unique("torchrun")
    request = training_request(
        name, bucket, "code/ddp.tar.gz", hyperparameters={"sagemaker_torch_distributed_enabled": "true"}
    )
    request["AlgorithmSpecification"]["TrainingImage"] = TORCH_IMAGE
    request["ResourceConfig"]["InstanceCount"] = 2
    request["StoppingCondition"]["MaxRuntimeInSeconds"] = 900
    sm.create_training_job(**request)
    job = wait(sm, "training", name, timeout=1200)  # the first run builds the torch runtime
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = [line for line in log_lines(logs, GROUP, name) if line.startswith("RANK ")]
    assert sorted(lines) == ["RANK 0 OF 2 ON algo-1 SUM 3.0", "RANK 1 OF 2 ON algo-2 SUM 3.0"]


def test_torch_distributed_without_torch_fails_naming_torchrun(client, sm, bucket, unique):
    client("s3").put_object(Bucket=bucket, Key="code/t.tar.gz", Body=code_archive({"train.py": "print('never')\n"}))
    name = unique("no-torch")
    sm.create_training_job(
        **training_request(
            name, bucket, "code/t.tar.gz", hyperparameters={"sagemaker_torch_distributed_enabled": "true"}
        )
    )
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: distribution torch_distributed launches torchrun")


@pytest.mark.parametrize(
    "hyperparameter, named",
    [
        ("sagemaker_mpi_enabled", "mpirun"),
        ("sagemaker_pytorch_ddp_enabled", "mpirun"),
        ("sagemaker_distributed_dataparallel_enabled", "smddp"),
        ("sagemaker_parameter_server_enabled", "parameter_server"),
    ],
)
def test_launchers_that_cannot_run_are_refused(sm, bucket, unique, hyperparameter, named):
    name = unique("refused")
    request = training_request(name, bucket, "code/t.tar.gz", hyperparameters={hyperparameter: "true"})
    with pytest.raises(ClientError) as raised:
        sm.create_training_job(**request)
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException" and named in error["Message"] and hyperparameter in error["Message"]
    with pytest.raises(ClientError, match="Requested resource not found"):
        sm.describe_training_job(TrainingJobName=name)
