"""The job sandbox door: a job sees only an allow-list of the host, as an unprivileged user.

A strict-auth server keeps its data directory and credentials file under /var/tmp (not /tmp, which every
sandbox replaces with its own: there they would be hidden whatever the allow-list). Processing jobs then try
to read the host's secrets and report who they run as; every attempt must find nothing.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath

import pytest

from support.clients import make_client
from support.jobs import log_lines, processing_request, s3_input, s3_output, wait
from support.server import Server

ACCOUNT, KEY, SECRET = "444444444444", "AKIASANDBOXOWNER0001", "secret-of-the-sandbox-owner"
GROUP = "/aws/sagemaker/ProcessingJobs"
# What /etc may hold inside (docs/jobs.md, "The sandbox"): the generated identity files and the allow-list.
ETC_ALLOWED = {
    "passwd",
    "group",
    "hosts",
    "resolv.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "pki",
    "ca-certificates",
    "ca-certificates.conf",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "mime.types",
    "pip.conf",
    "xdg",
}

PROBE = """\
import getpass, json, os, sys
report = {}
for path in PATHS:
    try:
        report[path] = sorted(os.listdir(path)) if os.path.isdir(path) else "read " + open(path).read(64)
    except FileNotFoundError:
        report[path] = "absent"
    except PermissionError:
        report[path] = "refused"
status = dict(line.rstrip("\\n").split(":\\t", 1) for line in open("/proc/self/status") if ":\\t" in line)
report.update(uid=os.getuid(), gid=os.getgid(), user=getpass.getuser(), etc=sorted(os.listdir("/etc")),
              ssl=sorted(os.listdir("/etc/ssl")) if os.path.isdir("/etc/ssl") else [],
              resolv=os.path.exists("/etc/resolv.conf"),
              **{key: status[key] for key in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs")})
os.makedirs("/opt/ml/processing/output", exist_ok=True)
with open("/opt/ml/processing/output/report.json", "w") as f:  # the server must still read what the job wrote
    json.dump(report, f)
print("REPORT", json.dumps(report))
"""


@pytest.fixture(scope="module")
def strict():
    root = Path(tempfile.mkdtemp(prefix="selfmaker-sandbox-", dir="/var/tmp"))
    credentials = root / "credentials"
    credentials.write_text(f"[{KEY}]\nsecret_access_key = {SECRET}\naccount_id = {ACCOUNT}\n")
    server = Server(root / "data", None, ["--auth", "strict", "--credentials-file", str(credentials)]).start()
    yield server, credentials
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def connect(server, service: str):
    return make_client(service, server.url, access_key=KEY, secret_key=SECRET)


def run_probe(server, name: str, paths: list[str], **extra) -> dict:
    s3, sm = connect(server, "s3"), connect(server, "sagemaker")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="probe.py", Body=f"PATHS = {json.dumps(paths)}\n{PROBE}".encode())
    request = processing_request(
        name,
        ["python3", "/opt/ml/processing/code/probe.py"],
        inputs=[s3_input("code", f"s3://{name}/probe.py", "/opt/ml/processing/code")],
        outputs=[s3_output("report", f"s3://{name}/report", "/opt/ml/processing/output")],
        **extra,
    )
    request["RoleArn"] = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
    sm.create_processing_job(**request)
    job = wait(sm, "processing", name)
    assert job["ProcessingJobStatus"] == "Completed", (
        job.get("FailureReason"),
        log_lines(connect(server, "logs"), GROUP, name),
    )
    return json.loads(s3.get_object(Bucket=name, Key="report/report.json")["Body"].read())


def interpreter_path(top: str) -> dict[str, list[str]]:
    """What the sandbox may show under ``top`` (/root, /home): only the way down to the runtime's base Python
    (this interpreter's, the one runtimes are built from), one entry per level; {top: absent} otherwise."""
    base = PurePosixPath(sys.base_prefix)
    if top not in map(str, base.parents):
        return {top: "absent"}
    levels = [p for p in reversed(base.parents) if str(p).startswith(top)]
    return {str(level): [base.parts[len(level.parts)]] for level in levels}


def test_a_job_sees_no_host_secrets_and_runs_unprivileged(strict, unique):
    server, credentials = strict
    expected = {
        "/etc/shadow": "absent",
        "/etc/gshadow": "absent",
        "/etc/ssl/private": "absent",
        str(server.data_dir): "absent",
        str(server.data_dir / "metadata.db"): "absent",
        str(credentials): "absent",
        str(credentials.parent): "absent",
        "/var": "absent",
        "/srv": "absent",
        "/mnt": "absent",
        **interpreter_path("/root"),
        **interpreter_path("/home"),
    }
    assert (server.data_dir / "metadata.db").exists() and credentials.exists()  # they are there, on the host
    report = run_probe(server, unique("sandbox"), list(expected))
    assert {path: report[path] for path in expected} == expected
    assert report["uid"] != 0 and report["gid"] != 0
    assert report["user"] == "sagemaker-user"  # the generated /etc/passwd names it
    assert int(report["CapEff"], 16) == int(report["CapPrm"], 16) == int(report["CapBnd"], 16) == 0
    assert report["NoNewPrivs"] == "1"
    assert set(report["etc"]) <= ETC_ALLOWED, set(report["etc"]) - ETC_ALLOWED
    assert {"passwd", "group", "ld.so.cache"} <= set(report["etc"])
    assert "private" not in report["ssl"]
    assert report["resolv"] == Path("/etc/resolv.conf").exists()  # the job has network: it may resolve names


def test_an_isolated_job_gets_no_resolver_configuration(strict, unique):
    server, _ = strict
    report = run_probe(
        server, unique("sandbox-isolated"), ["/etc/shadow"], NetworkConfig={"EnableNetworkIsolation": True}
    )
    assert report["/etc/shadow"] == "absent"
    assert not report["resolv"] and "resolv.conf" not in report["etc"]
    assert report["uid"] != 0 and int(report["CapEff"], 16) == 0 and report["NoNewPrivs"] == "1"
