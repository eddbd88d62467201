"""`selfmaker ps`, `logs` and `doctor` as a user runs them: the real CLI in a subprocess, with an account's own
keys, against a strict-mode server running real jobs, a pipeline and an endpoint; and against a stopped server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import tuning
from support.accounts import REGION, ROLE, SECRET, A, B, credentials_file
from support.clients import make_client
from support.jobs import tar_gz
from support.pipelines import IMAGE, definition, entrypoint, runtimes_config
from support.pipelines import processing as processing_step
from support.pipelines import start as start_execution
from support.pipelines import wait as wait_execution
from support.server import free_port
from support.waiting import wait_for

METRICS_TOKEN = "cli-workloads-metrics"


def api_calls(srv, operation: str) -> float:
    """How many sagemaker ``operation`` requests the server has answered (its /metrics)."""
    request = urllib.request.Request(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "selfmaker_api_request_duration_seconds_count"
        and sample.labels.get("service") == "sagemaker"
        and sample.labels.get("operation") == operation
    )


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory):
    """A strict-mode server (every signature verified) of accounts A and B, its jobs on the host's Python."""
    tmp = tmp_path_factory.mktemp("cli-workloads")
    return make_server(
        "cli-workloads",
        ["--auth", "strict", "--credentials-file", str(credentials_file(tmp, A, B)), "--metrics-token", METRICS_TOKEN],
        env={"SELFMAKER_RUNTIMES_CONFIG": _runtimes_config(tmp)},
    ).start()


def _runtimes_config(tmp) -> str:
    """The pipelines' image (the host's Python) and the tuning tests' (a tiny trial), in one file."""
    (tmp / "pipelines").mkdir()
    (tmp / "tuning").mkdir()
    images = {}
    for path in (runtimes_config(tmp / "pipelines"), tuning.runtimes_config(tmp / "tuning")):
        images.update(json.loads(open(path).read())["images"])
    (tmp / "runtimes.json").write_text(json.dumps({"images": images}))
    return str(tmp / "runtimes.json")


MODEL_CODE = b"""
print("model server loading", flush=True)

def model_fn(model_dir):
    return "ready"

def transform_fn(model, data, content_type, accept):
    return "ok", "text/plain"
"""


def cli(*args: str, who=A, url: str | None = None, secret: str = SECRET, timeout: float = 120):
    """`python -m selfmaker.cli ARGS` with ``who``'s keys and the server in the usual AWS variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=who.key,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    if url:
        env["AWS_ENDPOINT_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "selfmaker.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def script_lines(stdout: str) -> list[str]:
    """The lines a job's own code wrote (SelfMaker's lines about the instance left out)."""
    return [line for line in stdout.splitlines() if "SelfMaker: " not in line]


def one_line_error(result) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _client(srv, service: str, who=A):
    return make_client(service, srv.url, access_key=who.key, secret_key=SECRET)


def _processing(sm, name: str, script: str) -> None:
    sm.create_processing_job(
        ProcessingJobName=name,
        RoleArn=ROLE.format(account=A.account),
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}},
        AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": entrypoint(script)},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )


def _ended(sm, name: str) -> dict:
    return wait_for(
        lambda: sm.describe_processing_job(ProcessingJobName=name),
        lambda d: d["ProcessingJobStatus"] in ("Completed", "Failed", "Stopped"),
        timeout=300,
        what=f"processing job {name} to end",
    )


@pytest.fixture(scope="module")
def work(srv):
    """Account A's jobs (one completed, one failed), a failed pipeline execution and an endpoint; B's job."""
    sm, s3 = _client(srv, "sagemaker"), _client(srv, "s3")
    b_sm = _client(srv, "sagemaker", B)
    tag = uuid.uuid4().hex[:6]
    names = dict(
        ok=f"cli-ok-{tag}",
        bad=f"cli-bad-{tag}",
        pipeline=f"cli-pipe-{tag}",
        endpoint=f"cli-ep-{tag}",
        tuning=f"cli-tune-{tag}",
        b_job=f"cli-b-{tag}",
    )
    _processing(sm, names["ok"], "print('hello from ok')")
    _processing(sm, names["bad"], "import sys; print('about to fail', flush=True); sys.exit(3)")
    b_sm.create_processing_job(
        ProcessingJobName=names["b_job"],
        RoleArn=ROLE.format(account=B.account),
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}},
        AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": entrypoint("print('b')")},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    greet = processing_step("Greet", "print('hello from the step')")
    greet["Arguments"]["RoleArn"] = ROLE.format(account=A.account)
    stop = {"Name": "Stop", "Type": "Fail", "DependsOn": ["Greet"], "Arguments": {"ErrorMessage": "on purpose"}}
    sm.create_pipeline(
        PipelineName=names["pipeline"],
        RoleArn=ROLE.format(account=A.account),
        PipelineDefinition=definition([greet, stop], experiment=False),
    )
    execution = start_execution(sm, names["pipeline"])
    s3.create_bucket(Bucket=f"cli-{tag}")
    s3.put_object(Bucket=f"cli-{tag}", Key="model.tar.gz", Body=tar_gz({"code/inference.py": MODEL_CODE}))
    sm.create_model(
        ModelName=names["endpoint"],
        ExecutionRoleArn=ROLE.format(account=A.account),
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://cli-{tag}/model.tar.gz"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=names["endpoint"],
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": names["endpoint"],
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName=names["endpoint"], EndpointConfigName=names["endpoint"])
    s3.create_bucket(Bucket=tuning.BUCKET)
    search = tuning.request(names["tuning"], most=2, parallel=2)
    search["TrainingJobDefinition"]["RoleArn"] = ROLE.format(account=A.account)
    sm.create_hyper_parameter_tuning_job(**search)
    assert _ended(sm, names["ok"])["ProcessingJobStatus"] == "Completed"
    assert _ended(sm, names["bad"])["ProcessingJobStatus"] == "Failed"
    assert wait_execution(sm, execution)["PipelineExecutionStatus"] == "Failed"
    wait_for(
        lambda: sm.describe_endpoint(EndpointName=names["endpoint"])["EndpointStatus"],
        lambda status: status in ("InService", "Failed"),
        timeout=300,
        what="the endpoint",
    )
    assert tuning.wait(sm, names["tuning"])["HyperParameterTuningJobStatus"] == "Completed"
    names["execution"] = f"{names['pipeline']}/{execution.rsplit('/', 1)[-1]}"
    names["execution_arn"] = execution
    return names


def test_ps_shows_what_runs_and_what_failed_for_the_callers_account(srv, work):
    def ps(*args: str) -> dict[str, dict]:
        result = cli("ps", "--json", *args, url=srv.url)
        assert result.returncode == 0, result.stderr
        return {row["name"]: row for row in json.loads(result.stdout)}

    shown = ps()  # active whatever their age, failures of the last day
    assert shown[work["endpoint"]]["kind"] == "endpoint" and shown[work["endpoint"]]["status"] == "InService"
    bad = shown[work["bad"]]
    assert (bad["kind"], bad["status"]) == ("processing", "Failed") and "exit" in bad["detail"].lower()
    failed_run = shown[work["execution"]]
    assert failed_run["kind"] == "pipeline" and failed_run["status"] == "Failed"
    assert failed_run["arn"] == work["execution_arn"]
    assert work["ok"] not in shown  # completed: neither running nor failed
    assert work["b_job"] not in ps("--all")  # another account's job is not the caller's business
    assert {work["ok"], work["bad"], work["endpoint"], work["execution"]} <= set(ps("--all"))
    assert work["endpoint"] not in ps("--failed") and work["bad"] in ps("--failed")
    assert set(ps("--kind", "endpoint")) == {work["endpoint"]}
    search = ps("--all", "--kind", "tuning")[work["tuning"]]
    assert (search["status"], search["detail"]) == ("Completed", "training jobs: 2 completed, 0 running")
    assert work["bad"] not in ps("--failed", "--since", "1s")  # it failed longer ago than that
    assert all(row["age_seconds"] >= 0 and row["created"] for row in ps("--all").values())

    # Every pipeline's executions come from one Search, not a ListPipelineExecutions per pipeline.
    sm = _client(srv, "sagemaker")
    for extra in range(3):
        sm.create_pipeline(
            PipelineName=f"{work['pipeline']}-idle-{extra}",
            RoleArn=ROLE.format(account=A.account),
            PipelineDefinition=definition([processing_step("Idle", "print(1)")], experiment=False),
        )
    before = {op: api_calls(srv, op) for op in ("ListPipelineExecutions", "ListPipelines", "Search")}
    runs = ps("--all", "--kind", "pipeline")
    assert set(runs) == {work["execution"]} and runs[work["execution"]]["arn"] == work["execution_arn"]
    assert "on purpose" in ps("--kind", "pipeline")[work["execution"]]["detail"]  # its FailureReason
    assert work["execution"] not in ps("--kind", "pipeline", "--since", "1s")  # it ended longer ago than that
    after = {op: api_calls(srv, op) for op in before}
    assert (after["ListPipelineExecutions"], after["ListPipelines"]) == (
        before["ListPipelineExecutions"],
        before["ListPipelines"],
    )
    assert after["Search"] - before["Search"] == 3  # one page each

    table = cli("ps", url=srv.url)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["KIND", "NAME", "STATUS", "AGE", "DETAIL"]
    assert any(line.split()[:3] == ["processing", work["bad"], "Failed"] for line in lines)


def test_logs_of_a_job_an_endpoint_and_a_pipeline_step(srv, work):
    ok = cli("logs", work["ok"], url=srv.url)
    assert ok.returncode == 0, ok.stderr
    assert script_lines(ok.stdout) == ["hello from ok"] and ok.stdout.startswith("SelfMaker: starting algo-1 ")
    assert ok.stderr.strip() == f"processing job {work['ok']}: Completed"
    bad = cli("logs", work["bad"], url=srv.url)
    assert bad.returncode == 3 and "about to fail" in bad.stdout  # a failed job: exit status 3

    endpoint = cli("logs", work["endpoint"], url=srv.url)
    assert endpoint.returncode == 0, endpoint.stderr
    lines = [line for line in endpoint.stdout.splitlines() if "model server loading" in line]
    assert lines and lines[0].startswith("[AllTraffic/")  # one stream per instance, labelled with it
    assert cli("logs", work["endpoint"], "--variant", "Other", url=srv.url).stdout == ""
    instance = lines[0][1:].split("]")[0].split("/", 1)[1]
    only = cli("logs", work["endpoint"], "--instance", instance, url=srv.url)
    assert only.returncode == 0 and only.stdout == endpoint.stdout  # the one instance, found under its variant

    search = cli("logs", work["tuning"], url=srv.url)
    assert search.returncode == 0, search.stderr
    trials = {line.split("] ")[0][1:] for line in script_lines(search.stdout)}
    assert len(trials) == 2 and all(t.startswith(work["tuning"]) for t in trials)  # each line names its trial
    assert len([line for line in search.stdout.splitlines() if "objective=" in line]) == 2

    step = cli("logs", work["execution"], "--step", "Greet", url=srv.url)
    assert step.returncode == 3, step.stderr  # the execution failed (its Fail step)
    assert script_lines(step.stdout) == ["[Greet] hello from the step"]
    as_json = cli("logs", work["execution_arn"], "--json", url=srv.url)
    event = json.loads(script_lines(as_json.stdout)[0])
    assert event["message"] == "hello from the step" and event["source"] == "Greet"
    assert event["logGroupName"] == "/aws/sagemaker/ProcessingJobs" and event["timestamp"] > 0

    assert "is a Fail step: it runs no job" in one_line_error(
        cli("logs", work["execution"], "--step", "Stop", url=srv.url)
    )
    assert "has no step named 'Nope' (its steps: Greet, Stop)" in one_line_error(
        cli("logs", work["execution"], "--step", "Nope", url=srv.url)
    )
    assert one_line_error(cli("logs", work["b_job"], url=srv.url)) == (
        f"selfmaker: no job or endpoint named {work['b_job']!r} at {srv.url}"
    )
    assert "--step is for a pipeline execution" in one_line_error(cli("logs", work["ok"], "--step", "x", url=srv.url))


def test_logs_follow_a_running_job_until_it_ends(srv, unique):
    sm = _client(srv, "sagemaker")
    name = unique("cli-follow")
    _processing(sm, name, "import time; print('first', flush=True); time.sleep(4); print('second', flush=True)")
    wait_for(
        lambda: sm.describe_processing_job(ProcessingJobName=name)["ProcessingJobStatus"],
        lambda status: status == "InProgress",
        what=f"{name} to start",
    )
    followed = cli("logs", "-f", name, url=srv.url, timeout=300)
    assert followed.returncode == 0, followed.stderr
    assert script_lines(followed.stdout) == ["first", "second"]  # both, the second written after it started
    assert followed.stderr.strip() == f"processing job {name}: Completed"


def test_refused_keys_and_a_stopped_server_are_one_line(srv, tmp_path):
    refused = one_line_error(cli("ps", url=srv.url, secret="wrong"))
    assert refused.startswith(f"selfmaker: the server at {srv.url} refused the credentials (access key {A.key})")
    bad_since = cli("ps", "--since", "soon", url=srv.url)
    assert bad_since.returncode == 2 and "'soon' is not a duration such as 30m, 2h, 3d or 1w" in bad_since.stderr
    stopped = f"http://127.0.0.1:{free_port()}"
    for args in (["ps"], ["logs", "some-job"], ["logs", "-f", "pipe/exec"]):
        assert one_line_error(cli(*args, url=stopped)) == (
            f"selfmaker: cannot reach the SelfMaker server at {stopped}: is `selfmaker serve` running there? "
            "(choose another with --endpoint-url or AWS_ENDPOINT_URL)"
        )


def test_doctor_checks_the_machine_and_the_server(srv, tmp_path):
    data = str(tmp_path / "data")
    result = cli("doctor", "--json", "--data-dir", data, url=srv.url)
    assert result.returncode == 0, result.stdout
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert {checks[n]["status"] for n in ("sandbox", "user namespaces", "database", "object store")} == {"pass"}
    assert "bwrap at /" in checks["sandbox"]["detail"]
    assert "not created yet" in checks["database"]["detail"] and not (tmp_path / "data").exists()  # creates nothing
    assert checks["server"]["status"] == "pass" and "auth strict" in checks["server"]["detail"]
    assert checks["credentials"] == {
        "name": "credentials",
        "status": "pass",
        "detail": f"access key {A.key} is account {A.account}",
        "fix": "",
    }
    assert checks["version: botocore"]["status"] == "info"

    # The server's own data: its database is reachable and at this version's schema.
    served = cli("doctor", "--local", "--data-dir", str(srv.data_dir))
    assert served.returncode == 0, served.stdout
    assert "reachable, schema current" in served.stdout and "all checks passed" in served.stdout

    stopped = f"http://127.0.0.1:{free_port()}"
    broken = cli(
        "doctor", "--data-dir", data, "--database-url", f"postgresql://nobody@127.0.0.1:{free_port()}/x", url=stopped
    )
    assert broken.returncode == 1 and "Traceback" not in broken.stdout + broken.stderr
    lines = broken.stdout.splitlines()
    assert any(line.startswith("FAIL  database") for line in lines)
    assert any(line.startswith("FAIL  server") and stopped in line for line in lines)
    assert "fix: start it with `selfmaker serve`" in broken.stdout and "2 failed" in broken.stdout
    refused = json.loads(cli("doctor", "--json", "--data-dir", data, url=srv.url, secret="wrong").stdout)
    assert [c["status"] for c in refused if c["name"] == "credentials"] == ["fail"]
