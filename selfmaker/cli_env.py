"""`selfmaker env`: what a shell, a script or the SageMaker SDK needs to talk to a SelfMaker server.

It asks the server who the caller is (so the printed values are known to work, and the SDK config names a
role in the caller's account), prints the exports (`eval "$(selfmaker env)"`) or, with --json, one JSON
object, and with --write-sdk-config writes the SageMaker SDK's own config file (role, default bucket,
telemetry off) and makes its bucket. The file is the SDK's documented user config, selected by
SAGEMAKER_USER_CONFIG_OVERRIDE, so nothing is written over the config the user has for real AWS.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .config import Settings

OPEN_KEY = "selfmaker"  # any key works in open mode; `selfmaker serve` prints this one
ROLE_NAME = "SageMakerRole"
MARKER = "# Written by `selfmaker env --write-sdk-config`"
# The SDK config entries that name the role a resource runs as (the SDK fills them in when code omits them);
# only keys of the SDK's config schema (it refuses a file with any other).
ROLE_KEYS = {
    "TrainingJob": "RoleArn",
    "ProcessingJob": "RoleArn",
    "Model": "ExecutionRoleArn",
    "Pipeline": "RoleArn",
    "FeatureGroup": "RoleArn",
    "CompilationJob": "RoleArn",
    "EdgePackagingJob": "RoleArn",
}


class EnvError(Exception):
    """A one-line reason `selfmaker env` cannot answer."""


def default_sdk_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "selfmaker" / "sagemaker-config.yaml"


def sdk_config(role: str, bucket: str) -> str:
    lines = [
        MARKER,
        "# for the SageMaker Python SDK (v2 and v3), selected by SAGEMAKER_USER_CONFIG_OVERRIDE.",
        "SchemaVersion: '1.0'",
        "SageMaker:",
        "  PythonSDK:",
        "    Modules:",
        "      TelemetryOptOut: true",
        "      Session:",
        f"        DefaultS3Bucket: {bucket}",
    ]
    lines += [f"  {kind}:\n    {key}: '{role}'" for kind, key in ROLE_KEYS.items()]
    return "\n".join(lines) + "\n"


def _health(endpoint: str) -> dict:
    try:
        with urllib.request.urlopen(f"{endpoint.rstrip('/')}/_selfmaker/health", timeout=5) as answer:
            text = answer.read()
    except urllib.error.HTTPError as err:
        raise EnvError(f"{endpoint} answers HTTP {err.code}, not as a SelfMaker server") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise EnvError(
            f"no SelfMaker server answers at {endpoint} ({reason}): start one with `selfmaker serve`, "
            "or name it with --endpoint-url or AWS_ENDPOINT_URL"
        ) from None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") != "ok":
        raise EnvError(f"{endpoint} answers, but not as a healthy SelfMaker server")
    return body


def _client(service: str, values: dict):
    import boto3

    return boto3.client(
        service,
        endpoint_url=values["endpoint_url"],
        region_name=values["region"],
        aws_access_key_id=values["access_key"],
        aws_secret_access_key=values["secret_key"],
    )


def _account(values: dict) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _client("sts", values).get_caller_identity()["Account"]
    except ClientError as err:
        raise EnvError(
            f"the server refused access key {values['access_key']}: {err.response['Error'].get('Message')}"
        ) from None
    except BotoCoreError as err:
        raise EnvError(f"cannot ask {values['endpoint_url']} who the caller is: {err}") from None


def _make_bucket(values: dict, bucket: str) -> None:
    from botocore.exceptions import ClientError

    s3 = _client("s3", values)
    args: dict = {"Bucket": bucket}
    if values["region"] != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": values["region"]}
    try:
        s3.create_bucket(**args)
    except ClientError as err:
        if err.response["Error"].get("Code") != "BucketAlreadyOwnedByYou":
            raise EnvError(f"cannot make the default bucket {bucket}: {err.response['Error'].get('Message')}") from None


def _write(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force and not path.read_text(errors="replace").startswith(MARKER):
        raise EnvError(f"{path} exists and was not written by selfmaker: pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def resolve(args) -> dict:
    """Everything `env` reports, asking the server for what only it knows."""
    settings = Settings()
    values = {
        "endpoint_url": args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or settings.endpoint_url,
        "access_key": os.environ.get("AWS_ACCESS_KEY_ID") or OPEN_KEY,
        "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY") or OPEN_KEY,
        "region": args.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or settings.region,
    }
    parts = urllib.parse.urlsplit(values["endpoint_url"])
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EnvError(f"{values['endpoint_url']!r} is not a server URL: expected http://host:port")
    health = _health(values["endpoint_url"])
    account = _account(values)
    path = Path(args.sdk_config).expanduser() if args.sdk_config else default_sdk_config_path()
    role = args.role or f"arn:aws:iam::{account}:role/{ROLE_NAME}"
    bucket = args.bucket or f"sagemaker-{values['region']}-{account}"  # the SDK's own default name
    written = False
    if args.write_sdk_config:
        _make_bucket(values, bucket)
        _write(path, sdk_config(role, bucket), args.force)
        written = True
    return {
        **values,
        "version": health.get("version"),
        "auth": health.get("auth"),
        "account": account,
        "sdk_config": {"path": str(path), "exists": path.exists(), "written": written, "role": role, "bucket": bucket},
    }


def exports(found: dict) -> dict[str, str]:
    region = found["region"]
    environment = {
        "AWS_ENDPOINT_URL": found["endpoint_url"],
        "AWS_ACCESS_KEY_ID": found["access_key"],
        "AWS_SECRET_ACCESS_KEY": found["secret_key"],
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,  # boto3 reads either; some SDK code paths read only this one
    }
    # Only an existing file: the SDK refuses to start when this variable names a missing one.
    if found["sdk_config"]["exists"]:
        environment["SAGEMAKER_USER_CONFIG_OVERRIDE"] = found["sdk_config"]["path"]
    return environment


def main(args) -> int:
    try:
        found = resolve(args)
    except EnvError as err:
        print(f"selfmaker env: {err}", file=sys.stderr)
        return 1
    environment = exports(found)
    if args.json:
        print(json.dumps({**{k: v for k, v in found.items() if k != "secret_key"}, "environment": environment}))
        return 0
    config = found["sdk_config"]
    print(
        f"# SelfMaker {found['version']} at {found['endpoint_url']} (auth {found['auth']}, account {found['account']})"
    )
    for name, value in environment.items():
        print(f"export {name}={shlex.quote(value)}")
    if config["written"]:
        print(f"# wrote the SageMaker SDK config {config['path']} (role {config['role']}, bucket {config['bucket']})")
    elif not config["exists"]:
        print("# the SageMaker SDK config is not written yet: run `selfmaker env --write-sdk-config`")
    return 0


def add_parser(sub) -> None:
    env = sub.add_parser(
        "env",
        help='print the exports (and the SageMaker SDK config path) for a SelfMaker server: eval "$(selfmaker env)"',
    )
    env.add_argument("--endpoint-url", help="the server (default $AWS_ENDPOINT_URL, else this machine's serve port)")
    env.add_argument("--region", help="default $AWS_REGION, $AWS_DEFAULT_REGION, $SELFMAKER_REGION, else us-east-1")
    env.add_argument("--json", action="store_true", help="one JSON object for scripts")
    env.add_argument(
        "--write-sdk-config",
        action="store_true",
        help="write the SageMaker SDK config (role, default bucket, telemetry off) and make its bucket",
    )
    env.add_argument("--sdk-config", help=f"its path (default {default_sdk_config_path()})")
    env.add_argument("--role", help=f"the execution role it names (default arn:aws:iam::<account>:role/{ROLE_NAME})")
    env.add_argument("--bucket", help="its default bucket (default sagemaker-<region>-<account>, the SDK's own)")
    env.add_argument("--force", action="store_true", help="replace a config file selfmaker did not write")
    env.set_defaults(func=main)
