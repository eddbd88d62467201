"""Security of the web console on a strict server, attacked over plain HTTP as a hostile page or visitor would.

Every state-changing route refuses a form without the session's own CSRF token (or from another origin);
nothing below the sign-in page answers a visitor who has not signed in; the sign-in's ``next`` never leads out
of the console; a workload's own key (a job's AKIASMJOB...) opens no console session, whose life would outlast
the key; visitors cannot push a signed-in session out of the server's memory; and what callers name and
describe (descriptions, approval comments, a failed step's message) reaches a page escaped, never as markup.
Reading another account's pages, streams and kept layouts is in tests/test_console.py.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from selfmaker.console import sessions
from selfmaker.console.app import ROUTES
from support.accounts import SECRET, A, B, credentials_file
from support.clients import make_client
from support.console import ConsoleBrowser
from support.pipelines import IMAGE, entrypoint, runtimes_config
from support.pipelines import create as create_pipeline
from support.pipelines import start as start_pipeline
from support.pipelines import wait as wait_pipeline
from support.waiting import wait_for

# Markup a hostile caller plants in whatever text a page shows.
PAYLOAD = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'"


@pytest.fixture(scope="module")
def strict(make_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-security")
    return make_server(
        "console-security",
        ["--auth", "strict", "--credentials-file", str(credentials_file(tmp, A, B)), "--graphviz-dot", ""],
        env={"SELFMAKER_RUNTIMES_CONFIG": runtimes_config(tmp)},
    ).start()


def connect(strict, service: str, key: str = A.key, secret: str = SECRET):
    return make_client(service, strict.url, access_key=key, secret_key=secret)


def signed_in(strict, who=A) -> ConsoleBrowser:
    browser = ConsoleBrowser(strict.url)
    assert browser.sign_in(who.key, SECRET).status == 303
    return browser


def concrete(pattern: str) -> str:
    """A route's path with each label filled in (the job family with a real one)."""
    return "/console" + re.sub(r"\{(\w+)\}", lambda m: "training" if m.group(1) == "family" else "x1", pattern)


POSTS = [concrete(route.pattern) for route in ROUTES if route.method == "POST"] + ["/console/logout"]


# -- CSRF, and who may ask at all ---------------------------------------------------------------------------------


def test_every_action_refuses_a_form_without_this_sessions_token_or_from_another_origin(strict):
    a, b = signed_in(strict, A), signed_in(strict, B)
    mine, theirs = a.get("/console/").csrf, b.get("/console/").csrf
    assert len(POSTS) >= 10  # every POST route of every page module
    for path in POSTS:
        for form in ({}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": theirs}):
            refused = a.post(path, {**form, "decision": "Approved", "sql": "SELECT 1"})
            assert refused.status == 403 and "CSRF" in refused.text, (path, form, refused.status)
        cross_site = a.post(path, {"csrf": mine}, Origin="http://evil.example")
        assert cross_site.status == 403 and "Cross-site" in cross_site.text, path
    # A JSON or multipart body is no form: refused before any route runs.
    wrong_type = a.request("POST", POSTS[0], headers={"Content-Type": "text/plain"})
    assert wrong_type.status == 400
    # The session was never ended by the forged logouts: A is still signed in, and its token works.
    assert a.get("/console/").status == 200
    assert a.post("/console/logout", {"csrf": mine}).status == 303
    assert a.get("/console/").status == 303


def test_a_visitor_who_has_not_signed_in_gets_only_the_sign_in_page(strict):
    visitor = ConsoleBrowser(strict.url)
    for route in ROUTES:
        path = concrete(route.pattern)
        if route.method == "GET":
            answer = visitor.get(path)
            assert answer.status == 303 and answer.location.startswith("/console/login?next="), path
        else:  # with the visitor's own (valid) token: still no action before sign-in
            answer = visitor.post(path, {"csrf": visitor.get("/console/login").csrf})
            assert answer.status == 401, (path, answer.status)


def test_sign_in_never_redirects_out_of_the_console_or_into_a_header(strict):
    for hostile in (
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/console\\@evil.example",
        "/console/x\r\nSet-Cookie: planted=1",
        "javascript:alert(1)",
        "/other",
    ):
        browser = ConsoleBrowser(strict.url)
        form = browser.get(f"/console/login?next={quote(hostile)}")
        assert form.status == 200
        answer = browser.post(
            "/console/login", {"csrf": form.csrf, "access_key": A.key, "secret_key": SECRET, "next": hostile}
        )
        assert answer.status == 303 and answer.location == "/console/", (hostile, answer.location)
        assert "planted" not in (answer.headers.get("Set-Cookie") or "")
    cookie = answer.headers["Set-Cookie"]
    assert all(flag in cookie for flag in ("HttpOnly", "SameSite=Strict", "Path=/console"))


# -- a workload's key ---------------------------------------------------------------------------------------------

SHOW_KEY = """
import os, sys, time
print("KEY", os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], flush=True)
time.sleep(300)
"""


def test_a_jobs_own_key_opens_no_console_session(strict, unique):
    sm, logs = connect(strict, "sagemaker"), connect(strict, "logs")
    job = unique("key-holder")
    sm.create_processing_job(
        ProcessingJobName=job,
        RoleArn=f"arn:aws:iam::{A.account}:role/SageMakerRole",
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}},
        AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": entrypoint(SHOW_KEY)},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )

    def printed_key():
        try:
            streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/ProcessingJobs", logStreamNamePrefix=job)
        except logs.exceptions.ResourceNotFoundException:
            return None
        for stream in streams["logStreams"]:
            events = logs.get_log_events(
                logGroupName="/aws/sagemaker/ProcessingJobs", logStreamName=stream["logStreamName"]
            )["events"]
            for event in events:
                if event["message"].startswith("KEY "):
                    return event["message"].split()[1:]
        return None

    try:
        key, secret = wait_for(printed_key, timeout=120, what="the job's key in its log")
        # The key is live (the job runs): it signs API calls as A...
        assert connect(strict, "sts", key, secret).get_caller_identity()["Account"] == A.account
        # ...but it is no person's key: the console refuses it as it refuses a wrong secret.
        browser = ConsoleBrowser(strict.url)
        refused = browser.sign_in(key, secret)
        assert refused.status == 401 and "The access key or secret is wrong." in refused.text
        assert browser.get("/console/").status == 303
    finally:
        sm.stop_processing_job(ProcessingJobName=job)


# -- sessions in memory -------------------------------------------------------------------------------------------


def test_visitors_cannot_push_a_signed_in_session_out():
    store = sessions.SessionStore(lifetime=600)
    person = store.new(account_id=A.account, access_key=A.key)
    for _ in range(sessions.MAX_SESSIONS + 10):  # one per unauthenticated request, from anyone
        store.new()
    assert store.get(person.id) is person
    oldest_visitor = store.new()
    for _ in range(sessions.MAX_VISITORS):
        store.new()
    assert store.get(oldest_visitor.id) is None  # visitors are still bounded


# -- what callers wrote, on the pages -----------------------------------------------------------------------------


def assert_escaped(answer, where: str) -> None:
    assert answer.status == 200, (where, answer.status, answer.text[:300])
    assert "<script>alert" not in answer.text and "<img src=x" not in answer.text, where
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text, f"{where}: the text is not shown at all"


def test_what_callers_write_reaches_pages_escaped(strict, unique):
    sm = connect(strict, "sagemaker")
    browser = signed_in(strict)

    experiment = unique("xss-exp")
    sm.create_experiment(ExperimentName=experiment, Description=PAYLOAD)
    assert_escaped(browser.get(f"/console/experiments/{experiment}"), "experiment description")

    group = unique("xss-group")
    sm.create_model_package_group(ModelPackageGroupName=group, ModelPackageGroupDescription=PAYLOAD)
    sm.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=PAYLOAD,
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )
    assert_escaped(browser.get(f"/console/models?name={group}"), "registry list")
    assert_escaped(browser.get(f"/console/models/{group}"), "model package group")
    version = browser.get(f"/console/models/{group}/1")
    assert_escaped(version, "model package")
    decided = browser.post(
        f"/console/models/{group}/1/approval", {"csrf": version.csrf, "decision": "Approved", "comment": PAYLOAD}
    )
    assert decided.status == 303
    assert_escaped(browser.get(f"/console/models/{group}/1"), "approval comment")

    pipeline = unique("xss-pipe")
    create_pipeline(
        sm,
        pipeline,
        [{"Name": "Stop", "Type": "Fail", "Arguments": {"ErrorMessage": PAYLOAD}}],
        PipelineDescription=PAYLOAD,
    )
    assert_escaped(browser.get(f"/console/pipelines/{pipeline}"), "pipeline description")
    execution = start_pipeline(sm, pipeline)
    assert wait_pipeline(sm, execution, timeout=120)["PipelineExecutionStatus"] == "Failed"
    page = browser.get(f"/console/pipelines/{pipeline}/executions/{execution.rsplit('/', 1)[-1]}")
    assert page.status == 200 and "<script>alert" not in page.text and "<img src=x" not in page.text
