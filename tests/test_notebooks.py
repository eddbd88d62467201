"""Notebook instances: a real JupyterLab per instance, in the sandbox, opened through the server's proxy.

One module-scoped server; the notebook runtime (JupyterLab) is built once per test run in the shared runtimes
directory. The proxy is checked over HTTP (Jupyter's /api, a file through the contents API) and over
WebSocket (a kernel's channels execute ``1+1``); without the URL's token, or with a forged one, it refuses.
"""

from __future__ import annotations

import base64
import json
import signal
import uuid
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.notebooks import Browser, execute, open_instance, start_kernel, wait
from support.server import ACCOUNT
from support.waiting import wait_for

websockets_sync = pytest.importorskip("websockets.sync.client")

ROLE = f"arn:aws:iam::{ACCOUNT}:role/notebooks"


@pytest.fixture(scope="module")
def server(make_server):
    return make_server("notebooks").start()


@pytest.fixture(scope="module")
def sm(server):
    return make_client("sagemaker", server.url)


def _status(sm, name: str) -> str:
    return sm.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceStatus"]


@pytest.fixture(scope="module")
def notebook(sm):
    name = f"nb-{uuid.uuid4().hex[:6]}"
    sm.create_notebook_instance(NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn=ROLE)
    described = wait(sm, name, "InService")
    assert described["NotebookInstanceStatus"] == "InService", described.get("FailureReason")
    return name


def test_create_describe_list(sm, notebook):
    described = sm.describe_notebook_instance(NotebookInstanceName=notebook)
    assert described["InstanceType"] == "ml.t3.medium"
    assert described["DirectInternetAccess"] == "Enabled" and described["RootAccess"] == "Enabled"
    assert described["Url"].endswith(f"/{notebook}/")
    listed = sm.list_notebook_instances(NameContains=notebook, StatusEquals="InService")["NotebookInstances"]
    assert [n["NotebookInstanceName"] for n in listed] == [notebook]
    assert sm.list_notebook_instances(NameContains=notebook, StatusEquals="Stopped")["NotebookInstances"] == []
    with pytest.raises(ClientError) as err:
        sm.create_notebook_instance(NotebookInstanceName=notebook, InstanceType="ml.t3.medium", RoleArn=ROLE)
    assert "duplicate" in err.value.response["Error"]["Message"]


def test_proxy_http_and_kernel_websocket(sm, server, notebook):
    browser, base = open_instance(sm, notebook)
    status, body, _ = browser.get(f"{base}api")
    assert status == 200 and "version" in json.loads(body)
    kernel = start_kernel(browser, base)
    assert execute(browser, base, kernel, "1+1")["result"] == "2"


def test_proxy_refuses_without_a_valid_token(sm, server, notebook):
    base = f"{server.url}/_selfmaker/notebooks/{ACCOUNT}/us-east-1/{notebook}/"
    stranger = Browser()
    assert stranger.get(f"{base}api")[0] == 403
    assert stranger.get(f"{base}?authToken=forged")[0] == 403
    url = sm.create_presigned_notebook_instance_url(NotebookInstanceName=notebook)["AuthorizedUrl"]
    other = url.replace(f"/{notebook}/", "/someone-else/")
    assert stranger.get(other)[0] == 403  # a token names its instance
    refused = pytest.importorskip("websockets.exceptions").InvalidStatus
    ws_url = f"ws://{urlsplit(base).netloc}{urlsplit(base).path}api/kernels/x/channels"
    with pytest.raises(refused), websockets_sync.connect(ws_url):  # no cookie: the upgrade is refused
        pass


def test_tokens_expire():
    from selfmaker.services.notebooks import proxy

    class Resources:
        def unsign(self, token):
            return json.loads(token)

    class Backends:
        resources = Resources()

    arn = "arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/a"
    token = json.dumps({"nb": "session", "arn": arn, "exp": 100.0})
    assert proxy.check(Backends, token, "session", arn, 99.0)
    assert proxy.check(Backends, token, "session", arn, 101.0) is None  # expired
    assert proxy.check(Backends, token, "url", arn, 99.0) is None  # a session is not a URL token


def test_stop_start_keeps_the_volume_and_delete_removes_it(sm, server, notebook):
    browser, base = open_instance(sm, notebook)
    content = {"type": "file", "format": "text", "content": "kept across stop and start"}
    status, _ = browser.send("PUT", f"{base}api/contents/kept.txt", content)
    assert status in (200, 201)
    with pytest.raises(ClientError, match="not in"):
        sm.update_notebook_instance(NotebookInstanceName=notebook, InstanceType="ml.t3.large")
    sm.stop_notebook_instance(NotebookInstanceName=notebook)
    assert wait(sm, notebook, "Stopped", 60)["NotebookInstanceStatus"] == "Stopped"
    assert browser.get(f"{base}api")[0] == 503
    sm.update_notebook_instance(NotebookInstanceName=notebook, InstanceType="ml.t3.large")
    assert wait(sm, notebook, "Stopped", 30)["InstanceType"] == "ml.t3.large"
    sm.start_notebook_instance(NotebookInstanceName=notebook)
    assert wait(sm, notebook, "InService", 120)["NotebookInstanceStatus"] == "InService"
    browser, base = open_instance(sm, notebook)
    status, body, _ = browser.get(f"{base}api/contents/kept.txt?content=1")
    assert status == 200 and json.loads(body)["content"] == "kept across stop and start"
    with pytest.raises(ClientError, match="not in"):
        sm.delete_notebook_instance(NotebookInstanceName=notebook)
    sm.stop_notebook_instance(NotebookInstanceName=notebook)
    wait(sm, notebook, "Stopped", 60)
    sm.delete_notebook_instance(NotebookInstanceName=notebook)
    volume = server.data_dir / "notebooks" / ACCOUNT / "us-east-1" / notebook
    wait_for(lambda: not volume.exists(), timeout=30, what="the volume to be removed")
    with pytest.raises(ClientError, match="RecordNotFound"):
        wait_for(lambda: _status(sm, notebook), lambda s: False, timeout=30, what="the record to go")


def test_lifecycle_configs_and_validation(sm):
    script = base64.b64encode(b"#!/bin/bash\necho hello\n").decode()
    sm.create_notebook_instance_lifecycle_config(
        NotebookInstanceLifecycleConfigName="lc-one", OnStart=[{"Content": script}]
    )
    described = sm.describe_notebook_instance_lifecycle_config(NotebookInstanceLifecycleConfigName="lc-one")
    assert described["OnStart"] == [{"Content": script}]
    sm.update_notebook_instance_lifecycle_config(
        NotebookInstanceLifecycleConfigName="lc-one", OnCreate=[{"Content": script}]
    )
    listed = sm.list_notebook_instance_lifecycle_configs(NameContains="lc-")["NotebookInstanceLifecycleConfigs"]
    assert [c["NotebookInstanceLifecycleConfigName"] for c in listed] == ["lc-one"]
    with pytest.raises(ClientError, match="base64"):
        sm.create_notebook_instance_lifecycle_config(
            NotebookInstanceLifecycleConfigName="lc-bad", OnStart=[{"Content": "not base64!"}]
        )
    refusals = [
        ({"AcceleratorTypes": ["ml.eia2.medium"]}, "Elastic Inference"),
        ({"DefaultCodeRepository": "missing"}, "Cannot find CodeRepository"),
        ({"LifecycleConfigName": "missing"}, "does not exist"),
    ]
    for extra, message in refusals:
        with pytest.raises(ClientError, match=message):
            sm.create_notebook_instance(
                NotebookInstanceName="refused", InstanceType="ml.t3.medium", RoleArn=ROLE, **extra
            )
    with pytest.raises(ClientError, match="RecordNotFound"):
        sm.describe_notebook_instance(NotebookInstanceName="refused")
    with pytest.raises(ClientError, match="RecordNotFound"):
        sm.start_notebook_instance(NotebookInstanceName="refused")
    listed = sm.list_notebook_instances(NotebookInstanceLifecycleConfigNameContains="lc")["NotebookInstances"]
    assert listed == []
    sm.delete_notebook_instance_lifecycle_config(NotebookInstanceLifecycleConfigName="lc-one")


def test_lifecycle_scripts_run_in_the_sandbox_and_log_to_cloudwatch(sm, server):
    def encoded(text: str) -> list[dict]:
        return [{"Content": base64.b64encode(text.encode()).decode()}]

    sm.create_notebook_instance_lifecycle_config(
        NotebookInstanceLifecycleConfigName="lc-works",
        OnCreate=encoded("echo created > $HOME/SageMaker/created.txt; echo on-create ran as $(id -un)"),
        OnStart=encoded("echo on-start ran in $PWD"),
    )
    sm.create_notebook_instance_lifecycle_config(
        NotebookInstanceLifecycleConfigName="lc-fails", OnStart=encoded("echo about to fail; exit 3")
    )
    name, failing = f"nb-lc-{uuid.uuid4().hex[:4]}", f"nb-bad-{uuid.uuid4().hex[:4]}"
    for instance, config in ((name, "lc-works"), (failing, "lc-fails")):
        sm.create_notebook_instance(
            NotebookInstanceName=instance, InstanceType="ml.t3.medium", RoleArn=ROLE, LifecycleConfigName=config
        )
    assert wait(sm, name, "InService", 120)["NotebookInstanceLifecycleConfigName"] == "lc-works"
    volume = server.data_dir / "notebooks" / ACCOUNT / "us-east-1" / name / "volume"
    assert (volume / "created.txt").read_text() == "created\n"
    logs = make_client("logs", server.url)
    group = "/aws/sagemaker/NotebookInstances"
    events = logs.get_log_events(logGroupName=group, logStreamName=f"{name}/LifecycleConfigOnStart")["events"]
    assert [e["message"] for e in events] == ["on-start ran in /home/ec2-user/SageMaker"]
    failed = wait(sm, failing, "InService", 120)
    assert failed["NotebookInstanceStatus"] == "Failed"
    assert "failed (OnStart, exit code 3)" in failed["FailureReason"]
    events = logs.get_log_events(logGroupName=group, logStreamName=f"{failing}/LifecycleConfigOnStart")["events"]
    assert [e["message"] for e in events] == ["about to fail"]
    listed = sm.list_notebook_instances(NotebookInstanceLifecycleConfigNameContains="works")["NotebookInstances"]
    assert [n["NotebookInstanceName"] for n in listed] == [name]
    sm.update_notebook_instance(NotebookInstanceName=failing, DisassociateLifecycleConfig=True)
    described = wait(sm, failing, "Stopped", 30)
    assert "NotebookInstanceLifecycleConfigName" not in described
    sm.stop_notebook_instance(NotebookInstanceName=name)
    wait(sm, name, "Stopped", 60)
    for instance in (name, failing):
        sm.delete_notebook_instance(NotebookInstanceName=instance)


def test_a_restarted_server_reattaches_or_restarts_jupyter(sm, server):
    name = f"nb-restart-{uuid.uuid4().hex[:4]}"
    sm.create_notebook_instance(NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn=ROLE)
    assert wait(sm, name, "InService", 120)["NotebookInstanceStatus"] == "InService"
    pid_file = server.data_dir / "notebooks" / ACCOUNT / "us-east-1" / name / "state" / "pid"
    first = pid_file.read_text()
    server.stop(signal.SIGKILL)  # a crash: Jupyter lives on, and the next server re-attaches to it
    server.start()
    assert _status(sm, name) == "InService"
    open_instance(sm, name)
    assert pid_file.read_text() == first
    server.stop()  # a clean stop ends Jupyter; the next server starts it again
    server.start()
    assert wait(sm, name, "InService", 120)["NotebookInstanceStatus"] == "InService"
    browser, base = open_instance(sm, name)
    assert browser.get(f"{base}api")[0] == 200
    assert pid_file.read_text() != first
    sm.stop_notebook_instance(NotebookInstanceName=name)
    wait(sm, name, "Stopped", 60)
    sm.delete_notebook_instance(NotebookInstanceName=name)
