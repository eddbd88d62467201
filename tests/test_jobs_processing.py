"""Processing jobs through boto3: inputs, outputs, instances and shards, continuous uploads, the sandbox."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from support.jobs import log_lines, processing_request, s3_input, s3_output, wait
from support.waiting import wait_for

GROUP = "/aws/sagemaker/ProcessingJobs"

REPORT = """\
import json, os, socket, sys
root = "/opt/ml/processing"
report = {
    "host": socket.gethostname(), "argv": sys.argv[1:],
    "inputs": {d: sorted(os.listdir(os.path.join(root, "input", d))) for d in sorted(os.listdir(root + "/input"))},
    "config": json.load(open("/opt/ml/config/processingjobconfig.json"))["ProcessingJobName"],
    "resource": json.load(open("/opt/ml/config/resourceconfig.json")),
    "env": os.environ.get("MY_SETTING"),
}
print("report", json.dumps(report))
os.makedirs(root + "/output", exist_ok=True)
with open(f"{root}/output/{report['host']}.json", "w") as f:
    json.dump(report, f)
"""


@pytest.fixture
def bucket(client, unique):
    name = unique("jobs-proc")
    client("s3").create_bucket(Bucket=name)
    return name


def run_script(
    client, sm, bucket: str, name: str, script: str, *, inputs=(), outputs=(), instances: int = 1, args=(), **extra
) -> dict:
    client("s3").put_object(Bucket=bucket, Key=f"code/{name}.py", Body=script.encode())
    request = processing_request(
        name,
        ["python3", f"/opt/ml/processing/code/{name}.py"],
        inputs=[s3_input("code", f"s3://{bucket}/code/{name}.py", "/opt/ml/processing/code"), *inputs],
        outputs=list(outputs),
        instances=instances,
        **extra,
    )
    if args:
        request["AppSpecification"]["ContainerArguments"] = list(args)
    sm.create_processing_job(**request)
    return wait(sm, "processing", name)


def test_inputs_outputs_config_and_shards(client, sm, bucket, unique):
    s3 = client("s3")
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"data/part-{i}.csv", Body=f"{i}\n".encode())
    s3.put_object(Bucket=bucket, Key="listed/a.txt", Body=b"a")
    s3.put_object(Bucket=bucket, Key="listed/b.txt", Body=b"b")
    s3.put_object(
        Bucket=bucket, Key="manifest.json", Body=json.dumps([{"prefix": f"s3://{bucket}/listed/"}, "b.txt"]).encode()
    )
    name = unique("proc")
    job = run_script(
        client,
        sm,
        bucket,
        name,
        REPORT,
        instances=2,
        args=["--mode", "fast"],
        inputs=[
            s3_input(
                "shards",
                f"s3://{bucket}/data",
                "/opt/ml/processing/input/shards",
                S3DataDistributionType="ShardedByS3Key",
            ),
            s3_input("all", f"s3://{bucket}/data", "/opt/ml/processing/input/all"),
            s3_input(
                "manifest",
                f"s3://{bucket}/manifest.json",
                "/opt/ml/processing/input/manifest",
                S3DataType="ManifestFile",
            ),
        ],
        outputs=[s3_output("reports", f"s3://{bucket}/reports", "/opt/ml/processing/output")],
        Environment={"MY_SETTING": "on"},
    )
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ProcessingStartTime"] <= job["ProcessingEndTime"]
    reports = {}
    for host in ("algo-1", "algo-2"):
        body = s3.get_object(Bucket=bucket, Key=f"reports/{host}.json")["Body"].read()
        reports[host] = json.loads(body)
    assert reports["algo-1"]["inputs"]["shards"] == ["part-0.csv", "part-2.csv"]
    assert reports["algo-2"]["inputs"]["shards"] == ["part-1.csv", "part-3.csv"]
    for host, report in reports.items():
        assert report["host"] == host
        assert report["argv"] == ["--mode", "fast"]
        assert report["inputs"]["all"] == [f"part-{i}.csv" for i in range(4)]
        assert report["inputs"]["manifest"] == ["b.txt"]
        assert report["config"] == name and report["env"] == "on"
        assert report["resource"]["current_host"] == host
        assert report["resource"]["hosts"] == ["algo-1", "algo-2"]
    streams = client("logs").describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    epoch = int(job["CreationTime"].timestamp())
    assert sorted(s["logStreamName"] for s in streams) == [f"{name}/algo-1-{epoch}", f"{name}/algo-2-{epoch}"]
    assert any(line.startswith("report ") for line in log_lines(client("logs"), GROUP, name))
    assert sm.list_processing_jobs(NameContains=name)["ProcessingJobSummaries"][0]["ProcessingJobStatus"] == "Completed"


def test_continuous_outputs_appear_while_the_job_runs(client, sm, bucket, unique):
    s3 = client("s3")
    name = unique("proc")
    script = """\
        import time
        open("/opt/ml/processing/output/early.txt", "w").write("early")
        time.sleep(4)
        """
    s3.put_object(Bucket=bucket, Key=f"code/{name}.py", Body=script.replace("        ", "").encode())
    sm.create_processing_job(
        **processing_request(
            name,
            ["python3", f"/opt/ml/processing/code/{name}.py"],
            inputs=[s3_input("code", f"s3://{bucket}/code/{name}.py", "/opt/ml/processing/code")],
            outputs=[s3_output("out", f"s3://{bucket}/continuous", "/opt/ml/processing/output", mode="Continuous")],
        )
    )
    wait_for(
        lambda: "Contents" in s3.list_objects_v2(Bucket=bucket, Prefix="continuous/"),
        timeout=600,
        interval=0.2,
        what="a continuous upload",
    )
    assert sm.describe_processing_job(ProcessingJobName=name)["ProcessingJobStatus"] == "InProgress"
    assert wait(sm, "processing", name)["ProcessingJobStatus"] == "Completed"


def test_an_isolated_job_cannot_open_a_socket(client, sm, bucket, unique, server):
    script = f"""\
import socket, sys
try:
    socket.create_connection(("127.0.0.1", {server.port}), timeout=3).close()
    print("connected")
except OSError as err:
    print("refused", err)
    sys.exit(7)
"""
    isolated = run_script(client, sm, bucket, unique("proc"), script, NetworkConfig={"EnableNetworkIsolation": True})
    assert isolated["ProcessingJobStatus"] == "Failed"
    assert "exit code 7" in isolated["FailureReason"]
    open_job = run_script(client, sm, bucket, unique("proc"), script)
    assert open_job["ProcessingJobStatus"] == "Completed", open_job.get("FailureReason")


def test_a_job_reaches_s3_through_the_endpoint_it_is_given(client, sm, bucket, unique):
    script = f"""\
import boto3
boto3.client("s3").put_object(Bucket="{bucket}", Key="from-job.txt", Body=b"hi")
"""
    job = run_script(client, sm, bucket, unique("proc"), script)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert client("s3").get_object(Bucket=bucket, Key="from-job.txt")["Body"].read() == b"hi"


def test_a_job_cannot_read_another_jobs_files(client, sm, bucket, unique, server):
    first = unique("proc")
    job = run_script(client, sm, bucket, first, "open('/opt/ml/processing/secret.txt', 'w').write('secret')\n")
    assert job["ProcessingJobStatus"] == "Completed"
    secret = next(server.data_dir.glob(f"jobs/*/*/processing-job/{first}/algo-1/ml/processing/secret.txt"))
    assert secret.read_text() == "secret"  # it is there, on the host
    probe = f"""\
import os, sys
for path in [{str(secret)!r}, {str(server.data_dir)!r} + "/metadata.db"]:
    try:
        open(path).read()
        print("read", path)
        sys.exit(1)
    except OSError as err:
        print("cannot read", path, type(err).__name__)
print("data dir holds", os.listdir({str(server.data_dir)!r}) if os.path.isdir({str(server.data_dir)!r}) else None)
"""
    second = unique("proc")
    job = run_script(client, sm, bucket, second, probe)
    assert job["ProcessingJobStatus"] == "Completed", log_lines(client("logs"), GROUP, second)


def test_stop_and_bad_requests(client, sm, bucket, unique):
    name = unique("proc")
    client("s3").put_object(Bucket=bucket, Key=f"code/{name}.py", Body=b"import time\ntime.sleep(60)\n")
    sm.create_processing_job(
        **processing_request(
            name,
            ["python3", f"/opt/ml/processing/code/{name}.py"],
            inputs=[s3_input("code", f"s3://{bucket}/code/{name}.py", "/opt/ml/processing/code")],
        )
    )
    wait(sm, "processing", name, until={"InProgress"})
    sm.stop_processing_job(ProcessingJobName=name)
    assert wait(sm, "processing", name)["ProcessingJobStatus"] == "Stopped"

    bad = unique("bad")
    cases = [
        ([s3_input("x", f"s3://{bucket}/data", "/data/x")], "must be an absolute path under /opt/ml/processing/"),
        ([s3_input("x", f"s3://{bucket}/data", "/opt/ml/processing/../x")], "must be an absolute path"),
        ([s3_input("x", f"s3://{bucket}/data", "/opt/ml/processing/x", S3InputMode="Pipe")], "Pipe input mode"),
        ([s3_input("x", f"s3://{bucket}/data", "/opt/ml/processing/x", S3CompressionType="Gzip")], "Gzip"),
        (
            [
                s3_input("x", f"s3://{bucket}/d", "/opt/ml/processing/x"),
                s3_input("y", f"s3://{bucket}/e", "/opt/ml/processing/x"),
            ],
            "used by another input",
        ),
    ]
    for inputs, message in cases:
        with pytest.raises(ClientError) as err:
            sm.create_processing_job(**processing_request(bad, ["true"], inputs=inputs))
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert message in err.value.response["Error"]["Message"]
    assert sm.list_processing_jobs(NameContains=bad)["ProcessingJobSummaries"] == []
    with pytest.raises(ClientError) as err:
        sm.describe_processing_job(ProcessingJobName=bad)
    assert err.value.response["Error"]["Code"] == "ValidationException"
