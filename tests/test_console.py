"""The web console over plain HTTP: where a browser lands, who it is, and what it may do.

Open mode opens as the default account; `GET /` from a browser leads to /console while signed API requests
to the same paths stay the API's. Strict mode: sign-in against the credentials file (a wrong secret or an
unknown key refused), a new session id at sign-in, every action refused without the session's CSRF token or
from another origin, another account's resources neither listed nor shown, sessions that expire when idle,
and no redirect out of the console after sign-in. Browser behaviour (graphs, live views, clicks) is in
test_console_browser.py.
"""

from __future__ import annotations

import html
import json
import re
import time
import uuid

import pytest

from support.accounts import SECRET, A, B, credentials_file
from support.console import ConsoleBrowser
from support.graphviz import overlapping, require_dot
from support.pipelines import create, processing
from support.server import ACCOUNT
from support.waiting import wait_for

SESSION_SECONDS = 4


@pytest.fixture(scope="module")
def strict(make_server, tmp_path_factory):
    credentials = credentials_file(tmp_path_factory.mktemp("console-strict"), A, B)
    return make_server(
        "console-strict",
        [
            *("--auth", "strict", "--credentials-file", str(credentials)),
            *("--console-session-seconds", str(SESSION_SECONDS)),
            *("--graphviz-dot", ""),  # pipeline graphs laid out by the browser: the fallback's checks
        ],
    ).start()


@pytest.fixture
def as_(client, strict):
    return lambda who, service="sagemaker": client(service, srv=strict, access_key=who.key, secret_key=SECRET)


def _package(sm, group: str) -> str:
    sm.create_model_package_group(ModelPackageGroupName=group)
    return sm.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]


# -- open mode, and the API beside the console ------------------------------------------------------------------


def test_a_browser_at_the_root_is_sent_to_the_console_and_signed_clients_are_not(server, client):
    browser = ConsoleBrowser(server.url)
    landing = browser.get("/")
    assert (landing.status, landing.location) == (302, "/console/")
    # Signed, `/` is still S3's ListBuckets, and `/console` a bucket of that name (path-style S3).
    s3 = client("s3")
    s3.create_bucket(Bucket="console")
    s3.put_object(Bucket="console", Key="page.html", Body=b"not the console")
    assert "console" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_object(Bucket="console", Key="page.html")["Body"].read() == b"not the console"
    # Unsigned but not asking for HTML (an anonymous S3 client): not redirected.
    assert browser.get("/", Accept="*/*").status != 302


def test_open_mode_opens_the_console_as_the_default_account(server, client):
    sm = client("sagemaker")
    group = f"console-open-{uuid.uuid4().hex[:6]}"
    sm.create_model_package_group(ModelPackageGroupName=group)
    browser = ConsoleBrowser(server.url)
    home = browser.get("/console/")
    assert home.status == 200 and f"account {ACCOUNT}" in home.text
    assert "HttpOnly" in home.headers["Set-Cookie"] and "SameSite=Strict" in home.headers["Set-Cookie"]
    assert "script-src 'self'" in home.headers["Content-Security-Policy"]
    listed = browser.get(f"/console/models?name={group}")
    assert listed.status == 200 and f"/console/models/{group}" in listed.text
    assert browser.get("/console/models/no-such-group").status == 404
    assert browser.get("/console/static/../app.py").status == 404


def test_list_filters_and_sort_are_the_apis_own(server, client):
    sm = client("sagemaker")
    prefix = f"console-sort-{uuid.uuid4().hex[:6]}"
    for suffix in ("b", "a", "c"):
        sm.create_model_package_group(ModelPackageGroupName=f"{prefix}-{suffix}")
    browser = ConsoleBrowser(server.url)
    page = browser.get(f"/console/models?name={prefix}&sort=Name&order=Ascending")
    positions = [page.text.index(f'/console/models/{prefix}-{s}"') for s in ("a", "b", "c")]
    assert positions == sorted(positions)
    refused = browser.get("/console/models?sort=Size")
    assert refused.status == 400 and "sortBy" in refused.text and "enum value set" in refused.text


def test_the_pipeline_graph_has_the_engines_dependencies_and_condition_branches(server, client):
    sm = client("sagemaker")
    name = f"console-graph-{uuid.uuid4().hex[:6]}"
    condition = {
        "Name": "Good",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {"Type": "GreaterThanOrEqualTo", "LeftValue": {"Get": "Parameters.Score"}, "RightValue": 0.5}
            ],
            "IfSteps": [processing("Register", "print('ok')")],
            "ElseSteps": [{"Name": "TooLow", "Type": "Fail", "Arguments": {"ErrorMessage": "too low"}}],
        },
        "DependsOn": ["Train"],
    }
    create(
        sm,
        name,
        [processing("Prepare", "print(1)"), processing("Train", "print(2)", DependsOn=["Prepare"]), condition],
        parameters=[{"Name": "Score", "Type": "Float", "DefaultValue": 0.9}],
    )
    page = ConsoleBrowser(server.url).get(f"/console/pipelines/{name}")
    assert page.status == 200
    graph = _graph(page)
    assert {n["id"]: n["type"] for n in graph["nodes"]} == {
        "Prepare": "Processing",
        "Train": "Processing",
        "Good": "Condition",
        "Register": "Processing",
        "TooLow": "Fail",
    }
    edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
    assert edges == {
        ("Prepare", "Train", "depends"),
        ("Train", "Good", "depends"),
        ("Good", "Register", "if"),
        ("Good", "TooLow", "else"),
    }
    # The start form offers the definition's parameters with their defaults.
    assert 'name="param:Score" value="0.9"' in page.text

    # This first view came laid out by the server (Graphviz): every step placed, in layers left to right, no two
    # overlapping; nothing for the browser to lay out. A later view gets the same, kept.
    require_dot()
    positions = graph["positions"]
    assert set(positions) == {"Prepare", "Train", "Good", "Register", "TooLow"} and "layout" not in graph
    assert all(positions[target][0] > positions[source][0] for source, target, _ in edges)
    sizes = {n["id"]: (110, 60) if n["type"] == "Condition" else (150, 44) for n in graph["nodes"]}
    assert overlapping(positions, sizes) == []
    assert _graph(ConsoleBrowser(server.url).get(f"/console/pipelines/{name}"))["positions"] == positions


def test_without_graphviz_the_browser_lays_out_and_what_it_posts_is_checked(strict, as_):
    """The strict server runs without dot (--graphviz-dot ''): the page asks the browser to post dagre's
    positions, checked against the graph it was sent: its steps exactly, finite numbers, this graph only; a
    refusal keeps nothing."""
    name = f"console-dagre-{uuid.uuid4().hex[:6]}"
    steps = ("Prepare", "Train", "Evaluate")
    create(as_(A), name, [processing(step, "print(1)") for step in steps])
    visitor = ConsoleBrowser(strict.url)
    visitor.sign_in(A.key, SECRET)
    graph = _graph(visitor.get(f"/console/pipelines/{name}"))
    layout = graph["layout"]
    assert layout["url"] == "/console/pipelines/layout" and "positions" not in graph
    placed = {step: [10.0 * i, 5.0] for i, step in enumerate(steps)}

    def post(key: str, positions) -> int:
        form = {"csrf": layout["csrf"], "key": key, "positions": json.dumps(positions)}
        return visitor.post(layout["url"], form).status

    assert post("0" * 64, placed) == 400  # a graph never sent
    assert post(layout["key"], {**placed, "Extra": [0, 0]}) == 400
    assert post(layout["key"], {**placed, "Train": [float("nan"), 0]}) == 400
    assert post(layout["key"], {**placed, "Train": ["1", 0]}) == 400
    assert visitor.post(layout["url"], {"key": layout["key"], "positions": json.dumps(placed)}).status == 403
    assert "positions" not in _graph(visitor.get(f"/console/pipelines/{name}"))
    assert post(layout["key"], placed) == 200
    # From now on the graph comes with its positions (on the execution pages of this definition too).
    kept = _graph(visitor.get(f"/console/pipelines/{name}"))
    assert kept["positions"] == placed and "layout" not in kept


def _graph(page) -> dict:
    data = re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page.text, re.S)
    return json.loads(html.unescape(data.group(1)))


# -- strict mode ---------------------------------------------------------------------------------------------


def test_strict_mode_asks_for_a_key_and_refuses_a_wrong_secret(strict):
    browser = ConsoleBrowser(strict.url)
    first = browser.get("/console/pipelines")
    assert (first.status, first.location) == (303, "/console/login?next=/console/pipelines")
    form = browser.get("/console/login")
    assert form.status == 200 and 'name="secret_key"' in form.text
    for key, secret in ((A.key, "not-the-secret"), ("AKIANOSUCHKEY0000001", SECRET), (A.key, "")):
        refused = browser.post(
            "/console/login", {"csrf": form.csrf, "access_key": key, "secret_key": secret, "next": "/console/"}
        )
        assert refused.status == 401 and "wrong" in refused.text
    assert browser.get("/console/").status == 303  # still not signed in


def test_signing_in_gives_a_new_session_and_never_leaves_the_console(strict):
    browser = ConsoleBrowser(strict.url)
    before = browser.get("/console/login")
    anonymous = browser.cookie
    signed = browser.post(
        "/console/login", {"csrf": before.csrf, "access_key": A.key, "secret_key": SECRET, "next": "//evil.example/"}
    )
    assert (signed.status, signed.location) == (303, "/console/")
    assert browser.cookie != anonymous
    home = browser.get("/console/")
    assert home.status == 200 and f"account {A.account}" in home.text
    # The session planted before sign-in (fixation) is not the signed-in one.
    planted = ConsoleBrowser(strict.url)
    planted.cookie = anonymous
    assert planted.get("/console/").status == 303


def test_every_action_needs_the_sessions_csrf_token_and_this_origin(strict, as_):
    sm = as_(A)
    group = f"console-csrf-{uuid.uuid4().hex[:6]}"
    _package(sm, group)
    browser = ConsoleBrowser(strict.url)
    browser.sign_in(A.key, SECRET)
    page = browser.get(f"/console/models/{group}/1")
    decision = {"decision": "Approved", "comment": "ok"}
    assert browser.post(f"/console/models/{group}/1/approval", decision).status == 403
    assert browser.post(f"/console/models/{group}/1/approval", {**decision, "csrf": "forged"}).status == 403
    cross_site = browser.post(
        f"/console/models/{group}/1/approval", {**decision, "csrf": page.csrf}, Origin="http://evil.example"
    )
    assert cross_site.status == 403
    described = sm.describe_model_package(ModelPackageName=f"{group}/1")
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    # With the token, from this origin: the API's own UpdateModelPackage runs.
    done = browser.post(
        f"/console/models/{group}/1/approval",
        {**decision, "csrf": page.csrf},
        Origin=strict.url,
    )
    assert (done.status, done.location) == (303, f"/console/models/{group}/1")
    described = sm.describe_model_package(ModelPackageName=f"{group}/1")
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == ("Approved", "ok")


def test_another_accounts_resources_are_invisible(strict, as_):
    theirs = f"console-theirs-{uuid.uuid4().hex[:6]}"
    _package(as_(B), theirs)
    browser = ConsoleBrowser(strict.url)
    browser.sign_in(A.key, SECRET)
    filtered = browser.get(f"/console/models?name={theirs}").text
    assert f'/console/models/{theirs}"' not in filtered and "No model package groups match" in filtered
    assert browser.get(f"/console/models/{theirs}").status == 404
    assert browser.get(f"/console/models/{theirs}/1").status == 404
    page = browser.get("/console/models")
    refused = browser.post(f"/console/models/{theirs}/1/approval", {"decision": "Approved", "csrf": page.csrf})
    assert refused.status == 404
    assert as_(B).describe_model_package(ModelPackageName=f"{theirs}/1")["ModelApprovalStatus"] == (
        "PendingManualApproval"
    )


def test_a_session_expires_when_idle_and_ends_at_sign_out(strict):
    browser = ConsoleBrowser(strict.url)
    browser.sign_in(A.key, SECRET)
    assert browser.get("/console/").status == 200
    time.sleep(SESSION_SECONDS + 1)
    expired = browser.get("/console/")
    assert (expired.status, expired.location) == (303, "/console/login?next=/console/")

    browser.sign_in(A.key, SECRET)
    home = browser.get("/console/")
    kept = browser.cookie
    out = browser.post("/console/logout", {"csrf": home.csrf})
    assert (out.status, out.location) == (303, "/console/login")
    replayed = ConsoleBrowser(strict.url)
    replayed.cookie = kept
    assert wait_for(
        lambda: replayed.get("/console/").status, lambda s: s == 303, timeout=5, what="a signed-out session"
    )


def test_feature_store_pages_run_athena_and_the_runtime_as_the_api_does(server, client):
    from support.featurestore import create_group, ensure_bucket, record

    sm = client("sagemaker")
    name = f"console-fg-{uuid.uuid4().hex[:6]}"
    bucket = ensure_bucket(client("s3"), f"console-{uuid.uuid4().hex[:8]}")
    create_group(sm, name, {"id": "String", "et": "Fractional"}, offline=f"s3://{bucket}/offline")
    client("sagemaker-featurestore-runtime").put_record(FeatureGroupName=name, Record=record(id="a<b>", et=1.5))
    browser = ConsoleBrowser(server.url)
    page = browser.get(f"/console/featurestore/{name}?record=a%3Cb%3E")
    assert page.status == 200 and "a&lt;b&gt;" in page.text and "<b>" not in page.text
    assert "No record nope" in browser.get(f"/console/featurestore/{name}?record=nope").text
    # Athena's guards: an output location that is no S3 URI is refused up front, the query kept in the form...
    form = {"csrf": page.csrf, "sql": "SELECT 1", "output": "/tmp/results"}
    refused = browser.post(f"/console/featurestore/{name}/queries", form)
    assert refused.status == 400 and "InvalidRequestException" in refused.text and "SELECT 1" in refused.text
    # ...and a bucket that does not exist fails the query, with Athena's reason on its page.
    missing = browser.post(f"/console/featurestore/{name}/queries", {**form, "output": "s3://no-such-bucket-x1/r/"})
    failed = wait_for(lambda: browser.get(missing.location), lambda p: "FAILED" in p.text, what="the failure")
    assert "no-such-bucket-x1" in failed.text
    # Without the token nothing runs.
    assert browser.post(f"/console/featurestore/{name}/queries", {**form, "csrf": ""}).status == 403
    started = browser.post(f"/console/featurestore/{name}/queries", {**form, "output": f"s3://{bucket}/results/"})
    assert started.status == 303 and "/queries/" in started.location
    shown = wait_for(lambda: browser.get(started.location), lambda p: "SUCCEEDED" in p.text, what="the query")
    assert 'id="results"' in shown.text
    assert browser.get("/console/featurestore/no-such-group").status == 404
    assert browser.get("/console/endpoints/no-such-endpoint").status == 404
    assert browser.get("/console/endpoints").status == 200


def test_a_notebook_instance_page_opens_jupyterlab_through_a_presigned_url(server, client):
    sm = client("sagemaker")
    name = f"console-nb-{uuid.uuid4().hex[:6]}"
    sm.create_notebook_instance(
        NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn=f"arn:aws:iam::{ACCOUNT}:role/notebooks"
    )
    wait_for(  # the first notebook of a run builds the JupyterLab runtime; a Stop waits for that build to end
        lambda: sm.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceStatus"],
        lambda s: s in ("InService", "Failed"),
        timeout=600,
        what="the instance to be InService",
    )
    browser = ConsoleBrowser(server.url)
    page = browser.get(f"/console/notebooks/{name}")
    assert page.status == 200 and "ml.t3.medium" in page.text
    assert name in browser.get("/console/notebooks?sort=Name&order=Ascending").text
    # Open: the API's presigned URL for this instance, where the browser is sent.
    opened = browser.post(f"/console/notebooks/{name}/open", {"csrf": page.csrf})
    assert opened.status == 303
    location = opened.location
    assert f"/_selfmaker/notebooks/{ACCOUNT}/" in location and f"/{name}" in location and "authToken=" in location
    assert browser.post(f"/console/notebooks/{name}/open", {"csrf": "forged"}).status == 403
    assert browser.get("/console/notebooks/no-such-notebook").status == 404
    # Stop, from the page: the API stops it.
    assert browser.post(f"/console/notebooks/{name}/stop", {"csrf": page.csrf}).status == 303
    stopped = wait_for(
        lambda: sm.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceStatus"],
        lambda s: s == "Stopped",
        timeout=60,
        what="the instance to stop",
    )
    assert stopped == "Stopped"
    assert 'id="start"' in browser.get(f"/console/notebooks/{name}").text


def test_lineage_pages_start_only_from_the_callers_entities(server, client):
    browser = ConsoleBrowser(server.url)
    assert browser.get("/console/lineage").status == 200
    assert browser.get("/console/lineage?arn=not-an-arn").status == 400
    unknown = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/none-{uuid.uuid4().hex[:6]}/1"
    assert browser.get(f"/console/lineage?arn={unknown}").status == 404
    answer = browser.get(f"/console/lineage/expand?arn={unknown}&direction=Sideways")
    assert answer.status == 400


def test_the_new_pages_keep_the_account_wall(strict, as_):
    """Feature groups, lineage entities, tuning jobs and notebooks of another account: not found, and Athena
    refuses to write results into another account's bucket."""
    from support.featurestore import create_group, ensure_bucket

    theirs = f"console-theirs-{uuid.uuid4().hex[:6]}"
    bucket = ensure_bucket(as_(B, "s3"), theirs)
    create_group(as_(B), theirs, {"id": "String", "et": "Fractional"}, offline=f"s3://{bucket}/offline")
    artifact = as_(B).create_artifact(Source={"SourceUri": f"s3://{bucket}/data"}, ArtifactType="DataSet")
    browser = ConsoleBrowser(strict.url)
    browser.sign_in(A.key, SECRET)
    assert browser.get(f"/console/featurestore/{theirs}").status == 404
    assert browser.get(f"/console/featurestore/{theirs}?record=x").status == 404
    assert f'/console/featurestore/{theirs}"' not in browser.get(f"/console/featurestore?name={theirs}").text
    assert browser.get(f"/console/lineage?arn={artifact['ArtifactArn']}").status == 404
    expanded = browser.get(f"/console/lineage/expand?arn={artifact['ArtifactArn']}")
    assert expanded.status == 404 and "ArtifactArn" not in expanded.text
    assert browser.get(f"/console/tuning/{theirs}").status in (400, 404)
    assert browser.get(f"/console/notebooks/{theirs}").status == 404
    assert browser.get(f"/console/shadow-tests/{theirs}").status == 404
    assert browser.get("/console/shadow-tests").status == 200
    # A's own group, but results into B's bucket: Athena's guard, on the page.
    mine = f"console-mine-{uuid.uuid4().hex[:6]}"
    create_group(
        as_(A), mine, {"id": "String", "et": "Fractional"}, offline=f"s3://{ensure_bucket(as_(A, 's3'), mine)}/o"
    )
    page = browser.get(f"/console/featurestore/{mine}")
    form = {"csrf": page.csrf, "sql": "SELECT 1", "output": f"s3://{bucket}/stolen/"}
    refused = browser.post(f"/console/featurestore/{mine}/queries", form)
    assert refused.status == 400 and f"Unable to verify/create output bucket {bucket}" in refused.text
    assert "Contents" not in as_(B, "s3").list_objects_v2(Bucket=bucket, Prefix="stolen/")
    ended = browser.post(f"/console/shadow-tests/{theirs}/stop", {"csrf": page.csrf, "decision": "keep"})
    assert ended.status == 404


def test_projects_and_kept_layouts_keep_the_account_wall(strict, as_):
    """B's project is not A's to see (nor listed); a graph layout A posts is kept for A only, and B cannot
    post one for a graph it was never sent."""
    theirs = f"console-prj-{uuid.uuid4().hex[:6]}"
    as_(B).enable_sagemaker_servicecatalog_portfolio()
    found = as_(B, "servicecatalog").search_products(Filters={"FullTextSearch": ["sagemaker:studio-visibility"]})
    product = found["ProductViewSummaries"][0]["ProductId"]
    as_(B).create_project(ProjectName=theirs, ServiceCatalogProvisioningDetails={"ProductId": product})
    a, b = ConsoleBrowser(strict.url), ConsoleBrowser(strict.url)
    a.sign_in(A.key, SECRET)
    b.sign_in(B.key, SECRET)
    assert a.get(f"/console/projects/{theirs}").status == 404
    assert a.get(f"/console/projects/{theirs}/events").status == 404
    assert f'/console/projects/{theirs}"' not in a.get(f"/console/projects?name={theirs}").text
    assert f'/console/projects/{theirs}"' in b.get(f"/console/projects?name={theirs}").text

    name = f"console-wall-{uuid.uuid4().hex[:6]}"
    create(as_(A), name, [processing("Only", "print(1)")])
    layout = _graph(a.get(f"/console/pipelines/{name}"))["layout"]
    stolen = {"csrf": b.get("/console/pipelines").csrf, "key": layout["key"], "positions": '{"Only": [1, 2]}'}
    assert b.post(layout["url"], stolen).status == 400  # B was never sent this graph
    kept = {"csrf": layout["csrf"], "key": layout["key"], "positions": '{"Only": [1, 2]}'}
    assert a.post(layout["url"], kept).status == 200
    assert _graph(a.get(f"/console/pipelines/{name}"))["positions"] == {"Only": [1.0, 2.0]}
