"""STS: who a key is (the account and principal GetCallerIdentity names), through boto3 and the AWS CLI; what
belongs to each account of a credentials file."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from support.clients import error_of

pytestmark = pytest.mark.both_databases

ACCOUNT = "123456789012"


def test_get_caller_identity(client):
    identity = client("sts").get_caller_identity()
    assert identity["Account"] == ACCOUNT
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert identity["UserId"] == ACCOUNT


def test_get_caller_identity_with_the_aws_cli(server):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        ["aws", "sts", "get-caller-identity", "--endpoint-url", server.url, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"UserId": ACCOUNT, "Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:root"}


@pytest.fixture(scope="module")
def accounts_server(make_server, tmp_path_factory):
    """A server whose credentials file maps keys to two accounts, one key to a named IAM user."""
    path = tmp_path_factory.mktemp("aws-services") / "credentials.ini"
    path.write_text(
        "[AKIDALICE]\nsecret_access_key = a\naccount_id = 111111111111\nuser_name = alice\n"
        "[AKIDBOB]\nsecret_access_key = b\naccount_id = 222222222222\n"
    )
    return make_server("aws-services-accounts", ["--credentials-file", str(path)]).start()


def test_get_caller_identity_names_the_keys_user_and_account(client, accounts_server):
    alice = client("sts", srv=accounts_server, access_key="AKIDALICE", secret_key="a").get_caller_identity()
    assert alice["Account"] == "111111111111" and alice["Arn"] == "arn:aws:iam::111111111111:user/alice"
    assert alice["UserId"].startswith("AIDA") and len(alice["UserId"]) == 21
    bob = client("sts", srv=accounts_server, access_key="AKIDBOB", secret_key="b").get_caller_identity()
    assert bob == {**bob, "Account": "222222222222", "Arn": "arn:aws:iam::222222222222:root", "UserId": "222222222222"}


def test_roles_and_log_groups_belong_to_their_account(client, accounts_server, unique):
    alice, bob = (
        {"srv": accounts_server, "access_key": key, "secret_key": secret}
        for key, secret in (("AKIDALICE", "a"), ("AKIDBOB", "b"))
    )
    assert client("iam", **alice).get_role(RoleName="R")["Role"]["Arn"] == "arn:aws:iam::111111111111:role/R"
    assert (
        error_of(
            lambda: client("iam", **bob).simulate_principal_policy(
                PolicySourceArn="arn:aws:iam::111111111111:role/R", ActionNames=["s3:GetObject"]
            )
        )[0]
        == "NoSuchEntity"
    )
    group = unique("/mine")
    client("logs", **alice).create_log_group(logGroupName=group)
    bobs_logs = client("logs", **bob)
    assert bobs_logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []
    bobs_logs.create_log_group(logGroupName=group)  # the same name is free in another account
    arn = f"arn:aws:logs:us-east-1:111111111111:log-group:{group}"
    assert error_of(lambda: bobs_logs.describe_log_streams(logGroupIdentifier=arn))[0] == "ResourceNotFoundException"
