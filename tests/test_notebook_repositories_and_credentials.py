"""Notebook instances on a strict-auth server: Git repositories cloned into the volume at creation, and the
kernel calling SelfMaker as the owning account with a key of its own, revoked at Stop and new at Start.

The repositories come from a Git server on loopback (https, a self-signed certificate the SelfMaker server
trusts through GIT_SSL_CAINFO): there is no internet.
"""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from support.accounts import SECRET, A, B, credentials_file
from support.clients import make_client
from support.git_server import GitServer
from support.notebooks import execute, open_instance, start_kernel, wait

pytest.importorskip("websockets.sync.client")

ROLE = f"arn:aws:iam::{A.account}:role/notebooks"
VOLUMES = "notebooks/{account}/us-east-1/{name}/volume"


@pytest.fixture(scope="module")
def git(tmp_path_factory):
    server = GitServer(tmp_path_factory.mktemp("git-server"))
    server.repository("analysis", {"main": {"README.md": "on main\n"}, "feature": {"feature.txt": "on feature\n"}})
    server.repository("extras", {"main": {"extra.txt": "extra\n"}})
    yield server
    server.close()


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory, git):
    credentials = credentials_file(tmp_path_factory.mktemp("nb-strict"), A, B)
    return make_server(
        "notebooks-strict",
        ["--auth", "strict", "--credentials-file", str(credentials)],
        env={"GIT_SSL_CAINFO": str(git.certificate)},
    ).start()


def connect(srv, who=A, service: str = "sagemaker"):
    return make_client(service, srv.url, access_key=who.key, secret_key=SECRET)


@pytest.fixture(scope="module")
def instance(srv, git):
    """An instance of account A with a CodeRepository (on a branch) as its default and a URL as additional."""
    sm = connect(srv)
    sm.create_code_repository(
        CodeRepositoryName="analysis", GitConfig={"RepositoryUrl": git.url("analysis"), "Branch": "feature"}
    )
    name = f"nb-git-{uuid.uuid4().hex[:4]}"
    sm.create_notebook_instance(
        NotebookInstanceName=name,
        InstanceType="ml.t3.medium",
        RoleArn=ROLE,
        DefaultCodeRepository="analysis",
        AdditionalCodeRepositories=[git.url("extras")],
    )
    described = wait(sm, name, "InService")
    assert described["NotebookInstanceStatus"] == "InService", described.get("FailureReason")
    return name


def test_repositories_are_cloned_into_the_volume(srv, git, instance):
    volume = srv.data_dir / VOLUMES.format(account=A.account, name=instance)
    assert (volume / "analysis" / "feature.txt").read_text() == "on feature\n"  # the repository's Branch
    assert (volume / "analysis" / "README.md").read_text() == "on main\n"
    assert (volume / "extras" / "extra.txt").read_text() == "extra\n"
    assert (volume / "analysis" / ".git").is_dir()  # a real clone: git pull works from a terminal
    sm = connect(srv)
    described = sm.describe_notebook_instance(NotebookInstanceName=instance)
    assert described["DefaultCodeRepository"] == "analysis"
    assert described["AdditionalCodeRepositories"] == [git.url("extras")]
    by_default = sm.list_notebook_instances(DefaultCodeRepositoryContains="analy")["NotebookInstances"]
    by_additional = sm.list_notebook_instances(AdditionalCodeRepositoryEquals=git.url("extras"))["NotebookInstances"]
    assert [n["NotebookInstanceName"] for n in by_default + by_additional] == [instance, instance]
    # Account B sees neither the instance nor the code repository.
    other = connect(srv, B)
    assert other.list_notebook_instances()["NotebookInstances"] == []
    with pytest.raises(ClientError):
        other.describe_code_repository(CodeRepositoryName="analysis")


def test_a_clone_that_fails_fails_the_instance(srv, git):
    sm = connect(srv)
    name = f"nb-nogit-{uuid.uuid4().hex[:4]}"
    sm.create_notebook_instance(
        NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn=ROLE, DefaultCodeRepository=git.url("missing")
    )
    failed = wait(sm, name, "InService", 120)
    assert failed["NotebookInstanceStatus"] == "Failed"
    assert f"Unable to clone code repository {git.url('missing')}" in failed["FailureReason"]
    assert not (srv.data_dir / VOLUMES.format(account=A.account, name=name) / "missing").exists()
    sm.delete_notebook_instance(NotebookInstanceName=name)


def test_repositories_git_must_not_be_handed_are_refused(srv, git):
    sm, other = connect(srv), connect(srv, B)
    other.create_code_repository(CodeRepositoryName="theirs", GitConfig={"RepositoryUrl": git.url("extras")})
    secret = f"arn:aws:secretsmanager:us-east-1:{A.account}:secret:git"
    with pytest.raises(ClientError, match="SecretArn is not supported"):
        sm.create_code_repository(
            CodeRepositoryName="secret", GitConfig={"RepositoryUrl": git.url("extras"), "SecretArn": secret}
        )
    refusals = [
        ({"DefaultCodeRepository": "file:///etc/passwd"}, "regular expression pattern"),
        ({"DefaultCodeRepository": "http://127.0.0.1/plain.git"}, "regular expression pattern"),
        ({"DefaultCodeRepository": "https://127.0.0.1/a/.."}, "not a directory name"),
        ({"DefaultCodeRepository": "https://127.0.0.1/-upload-pack=touch.git"}, "not a directory name"),
        ({"DefaultCodeRepository": "https://127.0.0.1/x y.git"}, "Invalid repository URL"),
        ({"DefaultCodeRepository": "theirs"}, "Cannot find CodeRepository"),  # another account's
        (
            {"DefaultCodeRepository": git.url("extras"), "AdditionalCodeRepositories": ["https://other.host/extras"]},
            "would both be cloned into /home/ec2-user/SageMaker/extras",
        ),
    ]
    for extra, message in refusals:
        with pytest.raises(ClientError, match=message):
            sm.create_notebook_instance(
                NotebookInstanceName="refused", InstanceType="ml.t3.medium", RoleArn=ROLE, **extra
            )
    with pytest.raises(ClientError, match="RecordNotFound"):
        sm.describe_notebook_instance(NotebookInstanceName="refused")


# boto3 and the SageMaker Python SDK, unchanged: the kernel's environment points them at SelfMaker.
KERNEL_CODE = """
import json, os, boto3, sagemaker
session = sagemaker.Session()
print(json.dumps({
    "account": boto3.client("sts").get_caller_identity()["Account"],
    "experiments": [e["ExperimentName"] for e in boto3.client("sagemaker").list_experiments()["ExperimentSummaries"]],
    "sdk": [e["ExperimentName"] for e in session.sagemaker_client.list_experiments()["ExperimentSummaries"]],
    "endpoint": os.environ["AWS_ENDPOINT_URL"],
    "region": os.environ["AWS_DEFAULT_REGION"],
    "key": [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]],
}))
"""


def _in_kernel(srv, name: str, kernel: str | None = None) -> tuple[dict, str]:
    browser, base = open_instance(connect(srv), name)
    kernel = kernel or start_kernel(browser, base)
    out = execute(browser, base, kernel, KERNEL_CODE)
    assert out["error"] is None, out
    return json.loads(out["stdout"].strip().splitlines()[-1]), kernel  # the SDK logs its config lines first


def test_the_kernel_calls_selfmaker_as_the_owning_account(srv, instance):
    mine, theirs = f"exp-a-{uuid.uuid4().hex[:4]}", f"exp-b-{uuid.uuid4().hex[:4]}"
    connect(srv).create_experiment(ExperimentName=mine)
    connect(srv, B).create_experiment(ExperimentName=theirs)
    seen, kernel = _in_kernel(srv, instance)
    assert seen["account"] == A.account
    assert mine in seen["experiments"] and theirs not in seen["experiments"]
    assert seen["sdk"] == seen["experiments"]
    assert seen["endpoint"].startswith("http://127.0.0.1:") and seen["region"] == "us-east-1"
    key, secret = seen["key"]
    assert key not in (A.key, "selfmaker")

    srv.kill()  # a crash: JupyterLab and its kernel live on, and the next server knows their key again
    srv.start()
    again, _ = _in_kernel(srv, instance, kernel)
    assert again["key"] == seen["key"] and mine in again["experiments"]

    sm = connect(srv)
    sm.stop_notebook_instance(NotebookInstanceName=instance)
    assert wait(sm, instance, "Stopped", 60)["NotebookInstanceStatus"] == "Stopped"
    stale = make_client("sts", srv.url, access_key=key, secret_key=secret)
    with pytest.raises(ClientError) as revoked:
        stale.get_caller_identity()
    assert revoked.value.response["Error"]["Code"] == "InvalidClientTokenId"

    sm.start_notebook_instance(NotebookInstanceName=instance)
    assert wait(sm, instance, "InService", 120)["NotebookInstanceStatus"] == "InService"
    restarted, _ = _in_kernel(srv, instance)
    assert restarted["key"][0] != key and restarted["account"] == A.account


def test_git_url_checks_behind_the_model_patterns():
    # What the service model's patterns let through, SelfMaker's own check still refuses.
    from selfmaker.server.errors import AWSError
    from selfmaker.services.notebooks import git_urls

    for url in (
        "https:///no-host.git",
        "https://127.0.0.1:99999/bad-port.git",
        "https://127.0.0.1/back\\slash.git",
        "https://127.0.0.1/tab\t.git",
        "https://127.0.0.1/.hidden.git",
        "https://127.0.0.1/",
    ):
        with pytest.raises(AWSError):
            git_urls.check_url(url)
    for branch in ("--upload-pack=touch", "a..b", "with space"):
        with pytest.raises(AWSError):
            git_urls.check_branch(branch)
    assert git_urls.directory("https://host/team/analysis.git/") == "analysis"
    git_urls.check_url("https://user@host:8443/team/analysis")
