"""The web console in a real browser: headless Chromium (Selenium, Debian's chromedriver) at 1280 px over a
real server with real data made through the API.

(Pipeline graphs: tests/test_console_browser_graphs.py.) A training job with metric
definitions shows its final metrics and its logs. A model package is approved by clicking, and
DescribeModelPackage says so. Two runs of an experiment show their parameters and metrics, and their curves
overlaid. Every page loads without a browser console error; each is kept as tests/artifacts/console-*.png
(docs/console.md shows them).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from support import tuning
from support.browser import WIDTH, chromium, console_errors, keep_page, open_page, run_script
from support.clients import make_client
from support.pipelines import IMAGE, ROLE, entrypoint, runtimes_config
from support.waiting import status_in, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    driver = chromium(width=WIDTH, height=900)  # before the server: a skip costs nothing
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(make_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-browser")
    # The pipelines' image and the tuning tests' (a trial whose objective is a known function of x and y).
    config = json.loads(Path(runtimes_config(tmp)).read_text())
    config["images"].update(json.loads(Path(tuning.runtimes_config(tmp)).read_text())["images"])
    (tmp / "runtimes.json").write_text(json.dumps(config))
    return make_server("console-browser", env={"SELFMAKER_RUNTIMES_CONFIG": str(tmp / "runtimes.json")}).start()


@pytest.fixture(scope="module")
def sm(server):
    return make_client("sagemaker", server.url)


def test_a_training_job_shows_its_metrics_and_logs(browser, server, sm):
    name = f"console-train-{uuid.uuid4().hex[:6]}"
    bucket = f"console-{uuid.uuid4().hex[:8]}"
    make_client("s3", server.url).create_bucket(Bucket=bucket)
    script = "for step in range(3):\n    print(f'step={step} loss={1 - step / 4}', flush=True)\n"
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": entrypoint(script),
            "MetricDefinitions": [{"Name": "train:loss", "Regex": r"loss=([0-9.]+)"}],
        },
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 120},
    )
    described = wait_for(
        lambda: sm.describe_training_job(TrainingJobName=name),
        status_in("TrainingJobStatus", {"Completed", "Failed", "Stopped"}),
        timeout=300,
        what=f"{name} to end",
    )
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    open_page(browser, server, f"/console/jobs/training/{name}", "console-training-job")
    metrics = browser.find_element("id", "final-metrics").text
    assert "train:loss" in metrics and "0.5" in metrics
    run_script(browser, "return document.getElementById('log').dataset.complete", lambda v: v == "true", "all logs")
    assert "step=2 loss=0.5" in browser.find_element("id", "log").text
    keep_page(browser, "console-training-job")
    # Its lineage: the job's trial component stands for it, with the job's data and model artifacts around.
    browser.find_element("link text", "lineage").click()
    run_script(browser, "return window.consoleGraph ? window.consoleGraph.nodes().length : 0", lambda n: n >= 2, "it")
    start = browser.execute_script("return window.consoleGraph.nodes('[?start]').id()")
    assert start.endswith(f"/{name}-aws-training-job")
    entities = browser.find_element("id", "entities").text
    assert "model.tar.gz" in entities and "Model" in entities and "Image" in entities
    keep_page(browser, "console-training-lineage")
    assert console_errors(browser) == []
    open_page(
        browser, server, "/console/jobs/training?status=Completed&sort=Name&order=Ascending", "console-training-jobs"
    )
    assert name in browser.find_element("css selector", "table.list").text
    assert console_errors(browser) == []


def test_a_model_package_is_approved_by_clicking(browser, server, sm):
    group = f"console-models-{uuid.uuid4().hex[:6]}"
    sm.create_model_package_group(ModelPackageGroupName=group, ModelPackageGroupDescription="churn models")
    for _ in range(2):
        sm.create_model_package(
            ModelPackageGroupName=group,
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://models/churn/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            CustomerMetadataProperties={"auc": "0.91"},
        )
    open_page(browser, server, f"/console/models/{group}", "console-model-group")
    assert browser.find_element("css selector", "table.list").text.count("PendingManualApproval") == 2
    open_page(browser, server, f"/console/models/{group}/2", "console-model-version")
    browser.find_element("name", "comment").send_keys("AUC above the bar")
    browser.find_element("id", "approve").click()
    run_script(
        browser, "return document.getElementById('approval-status').textContent", lambda t: "Approved" in t, "it"
    )
    described = sm.describe_model_package(ModelPackageName=f"{group}/2")
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == ("Approved", "AUC above the bar")
    assert sm.describe_model_package(ModelPackageName=f"{group}/1")["ModelApprovalStatus"] == "PendingManualApproval"
    keep_page(browser, "console-model-approved")
    assert console_errors(browser) == []
    open_page(browser, server, "/console/models", "console-models")


def test_runs_of_an_experiment_are_compared_with_their_curves(browser, server, sm):
    metrics = make_client("sagemaker-metrics", server.url)
    experiment = f"console-exp-{uuid.uuid4().hex[:6]}"
    sm.create_experiment(ExperimentName=experiment)
    trial = f"{experiment}-trial"
    sm.create_trial(TrialName=trial, ExperimentName=experiment)
    base = int(time.time()) - 100
    for index, rate in enumerate((0.1, 0.01)):
        run = f"{experiment}-run{index}"
        sm.create_trial_component(TrialComponentName=run, Parameters={"learning_rate": {"NumberValue": rate}})
        sm.associate_trial_component(TrialComponentName=run, TrialName=trial)
        points = [
            {"MetricName": "loss", "Timestamp": base + step, "Step": step, "Value": 1 / (1 + step * rate * 10)}
            for step in range(8)
        ]
        assert "Errors" not in metrics.batch_put_metrics(TrialComponentName=run, MetricData=points)
    open_page(browser, server, f"/console/experiments/{experiment}", "console-experiment")
    table = browser.find_element("id", "runs-table").text
    assert "learning_rate" in table and "0.01" in table and "loss" in table
    for box in browser.find_elements("css selector", "#runs-table input[type=checkbox]"):
        box.click()
    browser.find_element("id", "compare").click()
    run_script(browser, "return document.querySelectorAll('.uplot').length", lambda n: n == 1, "one chart (loss)")
    # Two lines overlaid on it, one per run (uPlot's legend lists the x series and then each line).
    legend = browser.execute_script("return [...document.querySelectorAll('.u-legend .u-series')].length")
    assert legend == 3
    keep_page(browser, "console-runs-compared")
    assert console_errors(browser) == []
    open_page(browser, server, f"/console/experiments/{experiment}/trials/{trial}", "console-trial")
    open_page(browser, server, "/console/experiments", "console-experiments")
    open_page(browser, server, "/console/", "console-overview")


def test_the_pages_work_from_the_keyboard(browser, server):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server, "/console/", "console-overview")
    body = browser.find_element("tag name", "body")
    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    # Through the header to the navigation: each entry is reachable and opens its page with Enter.
    for _ in range(10):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.text == "Model registry":
            break
    assert browser.switch_to.active_element.text == "Model registry"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    run_script(browser, "return location.pathname", lambda p: p == "/console/models", "the registry page")


def test_an_endpoint_with_traffic_shows_its_variants_and_live_metric_charts(browser, server, sm):
    from support.endpoints import deploy, variant, versioned_archive

    name = f"console-ep-{uuid.uuid4().hex[:6]}"
    bucket = f"console-{uuid.uuid4().hex[:8]}"
    s3 = make_client("s3", server.url)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="model.tar.gz", Body=versioned_archive("v1"))
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/model.tar.gz"},
    )
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 50,
        "DestinationS3Uri": f"s3://{bucket}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    described = deploy(sm, name, [variant(name)], DataCaptureConfig=capture)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    runtime = make_client("sagemaker-runtime", server.url)

    def traffic(calls: int) -> None:
        for _ in range(calls):
            runtime.invoke_endpoint(EndpointName=name, Body="x", ContentType="text/plain")

    traffic(6)
    time.sleep(10.5)  # the rest in the chart's next 10-second period: a line, not a point
    traffic(6)

    open_page(browser, server, f"/console/endpoints/{name}", "console-endpoint")
    variants = browser.find_element("id", "variants").text
    assert "AllTraffic" in variants and name in variants and "1 / 1" in variants and "ml.m5.large" in variants
    assert f"s3://{bucket}/capture" in browser.find_element("id", "data-capture").text
    assert "AllTraffic" in browser.find_element("id", "instances").text
    assert browser.execute_script("return document.querySelectorAll('#metric-charts .uplot').length") == 4
    invocations = (
        "const p = window.consoleCharts.get('Invocations').plot;return p.data[1].reduce((sum, v) => sum + (v || 0), 0)"
    )
    # The invocations recorded reach the chart (the metric store folds them within a second or two).
    run_script(browser, invocations, lambda n: n >= 12, "the invocations on the chart", timeout=30)
    before = browser.execute_script(invocations)
    traffic(5)
    # The chart updates by itself, over the page's event stream: no reload.
    browser.execute_script("document.body.dataset.loadedOnce = 'yes'")
    run_script(browser, invocations, lambda n: n >= before + 5, "the new invocations on the chart", timeout=30)
    assert browser.execute_script("return document.body.dataset.loadedOnce") == "yes"
    # Latency percentiles, answered by CloudWatch from each period's distribution: p50 <= p90 <= p99.
    latency = browser.execute_script(
        "const c = window.consoleCharts.get('Model latency (ms)');"
        "const i = c.plot.data[1].findIndex((v) => v !== null);"
        "return [c.plot.series.slice(1).map((s) => s.label), [1, 2, 3].map((k) => c.plot.data[k][i])]"
    )
    assert latency[0] == ["AllTraffic p50", "AllTraffic p90", "AllTraffic p99"]
    assert 0 < latency[1][0] <= latency[1][1] <= latency[1][2], latency
    assert browser.execute_script("return window.consoleCharts.get('Overhead latency (ms)').plot.series.length") == 4
    keep_page(browser, "console-endpoint")
    browser.execute_script("document.getElementById('metric-charts').scrollIntoView()")
    keep_page(browser, "console-endpoint-metrics")
    assert console_errors(browser) == []
    open_page(browser, server, "/console/endpoints?status=InService", "console-endpoints")
    assert name in browser.find_element("css selector", "table.list").text

    # A blue/green deployment in progress: its stage (baking, with the canary's share) and the new fleet.
    s3.put_object(Bucket=bucket, Key="model-v2.tar.gz", Body=versioned_archive("v2"))
    sm.create_model(
        ModelName=f"{name}-v2",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/model-v2.tar.gz"},
    )
    sm.create_endpoint_config(EndpointConfigName=f"{name}-v2", ProductionVariants=[variant(f"{name}-v2")])
    canary = {"Type": "CANARY", "WaitIntervalInSeconds": 600, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50}}
    sm.update_endpoint(
        EndpointName=name,
        EndpointConfigName=f"{name}-v2",
        DeploymentConfig={"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": canary}},
    )
    wait_for(
        lambda: sm.describe_endpoint(EndpointName=name).get("PendingDeploymentSummary", {}),
        lambda pending: any(
            s["Status"] == "Baking" for v in pending.get("ProductionVariants", []) for s in v.get("VariantStatus", [])
        ),
        timeout=120,
        what="the canary to bake",
    )
    open_page(browser, server, f"/console/endpoints/{name}", "console-endpoint-deployment")
    deployment = browser.find_element("id", "deployment").text
    assert f"{name}-v2" in deployment and "Baking" in deployment and "50%" in deployment
    assert f"{name}-v2" in browser.find_element("id", "pending-variants").text
    assert "canary" in browser.find_element("css selector", "dl.pairs").text


def test_a_feature_group_shows_its_schema_a_record_and_an_offline_query(browser, server, sm):
    from support.featurestore import create_group, ensure_bucket, record

    name = f"console-fg-{uuid.uuid4().hex[:6]}"
    bucket = ensure_bucket(make_client("s3", server.url), f"console-{uuid.uuid4().hex[:8]}")
    create_group(
        sm,
        name,
        {"customer": "String", "et": "Fractional", "spend": "Fractional"},
        record_id="customer",
        offline=f"s3://{bucket}/offline",
    )
    runtime = make_client("sagemaker-featurestore-runtime", server.url)
    for index, spend in enumerate((12.5, 40.0, 7.25)):
        runtime.put_record(
            FeatureGroupName=name, Record=record(customer=f"c{index}", et=1700000000 + index, spend=spend)
        )

    open_page(browser, server, f"/console/featurestore/{name}", "console-feature-group")
    schema = browser.find_element("id", "schema").text
    assert "customer" in schema and "record identifier" in schema and "Fractional" in schema
    browser.find_element("name", "record").send_keys("c1")
    browser.find_element("id", "lookup").click()
    run_script(
        browser, "return document.getElementById('record')?.textContent || ''", lambda t: "40" in t, "the record"
    )
    assert "c1" in browser.find_element("id", "record").text
    keep_page(browser, "console-feature-record")

    sql = browser.find_element("name", "sql")
    sql.clear()
    table = sm.describe_feature_group(FeatureGroupName=name)["OfflineStoreConfig"]["DataCatalogConfig"]["TableName"]
    sql.send_keys(f'SELECT customer, spend FROM "{table}" WHERE spend > 10 ORDER BY spend DESC')
    browser.find_element("id", "run-query").click()
    run_script(browser, "return document.getElementById('results')?.innerText || ''", lambda t: "c1" in t, "the rows")
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#results tbody tr')].map((r) => r.innerText.split('\\t'))"
    )
    assert rows == [["c1", "40.0"], ["c0", "12.5"]]
    keep_page(browser, "console-feature-query")
    assert console_errors(browser) == []

    # Athena's guards hold on the page: an output location that is not an S3 URI is refused, the query kept.
    open_page(browser, server, f"/console/featurestore/{name}", "console-feature-group")
    output = browser.find_element("name", "output")
    output.clear()
    output.send_keys("/tmp/results")
    browser.find_element("id", "run-query").click()
    run_script(
        browser, "return document.getElementById('query-error')?.textContent || ''", lambda t: "s3://" in t, "it"
    )
    browser.get_log("browser")  # the refused form's 400 is logged as a failed load: expected here
    open_page(browser, server, "/console/featurestore", "console-feature-groups")
    assert name in browser.find_element("css selector", "table.list").text


def test_a_lineage_graph_grows_upstream_and_downstream_on_click(browser, server, sm):
    tag = uuid.uuid4().hex[:6]
    endpoint_arn = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/console-lin-{tag}"

    def artifact(uri: str, kind: str) -> str:
        return sm.create_artifact(Source={"SourceUri": uri}, ArtifactType=kind)["ArtifactArn"]

    raw = artifact(f"s3://lineage-{tag}/raw/data.csv", "DataSet")
    train = artifact(f"s3://lineage-{tag}/train/train.csv", "DataSet")
    model = artifact(f"s3://lineage-{tag}/output/model.tar.gz", "Model")
    action = sm.create_action(
        ActionName=f"console-train-{tag}", Source={"SourceUri": "training"}, ActionType="ModelTraining"
    )["ActionArn"]
    context = sm.create_context(
        ContextName=f"console-ep-{tag}", Source={"SourceUri": endpoint_arn}, ContextType="Endpoint"
    )["ContextArn"]
    for source, destination, kind in (
        (raw, train, "DerivedFrom"),
        (train, action, "ContributedTo"),
        (action, model, "Produced"),
        (model, context, "ContributedTo"),
    ):
        sm.add_association(SourceArn=source, DestinationArn=destination, AssociationType=kind)

    # From the endpoint's ARN: its context stands for it, and shows the model next to it.
    open_page(browser, server, f"/console/lineage?arn={endpoint_arn}", "console-lineage-start")
    count = "return window.consoleGraph.nodes().length"
    assert browser.execute_script(count) == 2
    # A click on the model grows the graph by one association: the training action.
    browser.execute_script("window.consoleGraph.getElementById(arguments[0]).emit('tap')", model)
    run_script(browser, count, lambda n: n == 3, "the model's neighbours")
    assert browser.execute_script("return window.consoleGraph.getElementById(arguments[0]).nonempty()", action)
    # From the keyboard's table: the action, then upstream only (its training data, not beyond).
    browser.find_element("css selector", f"#entities tr[data-arn='{action}'] button").click()
    run_script(browser, count, lambda n: n == 4, "the action's neighbours")
    browser.find_element("css selector", f"#entities tr[data-arn='{train}'] button").click()
    run_script(browser, count, lambda n: n == 5, "the training data's neighbours")
    edge = browser.execute_script(
        "return window.consoleGraph.edges().filter((e) => e.source().id() === arguments[0])[0].data('kind')", raw
    )
    assert edge == "DerivedFrom"
    assert "train.csv" in browser.find_element("id", "entity-panel").text
    assert browser.execute_script("return window.consoleGraph.edges().length") == 4
    keep_page(browser, "console-lineage")
    assert console_errors(browser) == []


def test_a_tuning_job_shows_its_trials_objectives_and_the_best(browser, server, sm):
    name = f"console-hpo-{uuid.uuid4().hex[:6]}"
    s3 = make_client("s3", server.url)
    try:
        s3.create_bucket(Bucket=tuning.BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    request = tuning.request(name, most=3, parallel=2)
    request["TrainingJobDefinition"]["StaticHyperParameters"] = {"sleep": "4"}  # long enough to watch it run
    sm.create_hyper_parameter_tuning_job(**request)
    # Opened while it runs: the trials table follows the job over its event stream, without a reload (the
    # third trial starts only when one of the first two has ended, so a completed row shows while it runs).
    browser.get(f"{server.url}/console/tuning/{name}")
    browser.execute_script("document.body.dataset.loadedOnce = 'yes'")
    completed_row_live = (
        "return document.body.dataset.loadedOnce === 'yes' && Number(document.body.dataset.trialsUpdated || 0) > 0"
        " && [...document.querySelectorAll('#trials tbody tr[data-trial]')].some((r) => r.textContent.includes('Completed'))"
        " && document.getElementById('trial-counters').textContent.includes('Completed')"
    )
    run_script(browser, completed_row_live, lambda v: v, "a completed trial on the page, live", timeout=300)
    assert console_errors(browser) == []
    keep_page(browser, "console-tuning-job-live")
    described = wait_for(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        status_in("HyperParameterTuningJobStatus", {"Completed", "Failed", "Stopped"}),
        timeout=300,
        what=f"{name} to end",
    )
    assert described["HyperParameterTuningJobStatus"] == "Completed", described.get("FailureReason")
    best = described["BestTrainingJob"]
    open_page(browser, server, f"/console/tuning/{name}", "console-tuning-job")
    rows = browser.find_elements("css selector", "#trials tbody tr")
    assert len(rows) == 3 and all("Completed" in row.text for row in rows)
    best_row = browser.find_element("css selector", "#trials tr.best")
    assert best_row.get_attribute("data-trial") == best["TrainingJobName"]
    value = best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    assert f"{value:g}" in best_row.text and f"{value:g}" in browser.find_element("id", "best").text
    assert "x" in browser.find_element("css selector", "#trials thead").text
    assert browser.execute_script("return window.consoleObjective.data[1].length") == 3
    # Sorted by the objective, as the API sorts: the best first when descending.
    open_page(
        browser,
        server,
        f"/console/tuning/{name}?sort=FinalObjectiveMetricValue&order=Descending",
        "console-tuning-sorted",
    )
    first = browser.find_element("css selector", "#trials tbody tr")
    assert first.get_attribute("data-trial") == best["TrainingJobName"]
    open_page(browser, server, "/console/tuning?status=Completed", "console-tuning-jobs")
    assert name in browser.find_element("css selector", "table.list").text


def test_notebook_instance_pages_load(browser, server, sm):
    name = f"console-nb-{uuid.uuid4().hex[:6]}"
    sm.create_notebook_instance(NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn=ROLE)
    open_page(browser, server, f"/console/notebooks/{name}", "console-notebook")
    assert "ml.t3.medium" in browser.find_element("css selector", "dl.pairs").text
    status = sm.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceStatus"]
    assert browser.find_element("id", "open-lab").is_enabled() == (status == "InService")
    # Stopped through the API while the page is open: the page follows it, and then offers Start.
    sm.stop_notebook_instance(NotebookInstanceName=name)
    wait_for(
        lambda: sm.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceStatus"],
        lambda status: status == "Stopped",
        timeout=480,  # the first notebook of a run builds the runtime, and its Stop waits for that build
        what="the instance to stop",
    )
    run_script(browser, "return document.getElementById('start') !== null", lambda v: v, "Start", timeout=15)
    assert "Stopped" in browser.find_element("id", "notebook-status").text
    assert console_errors(browser) == []
    open_page(browser, server, "/console/notebooks", "console-notebooks")
    assert name in browser.find_element("css selector", "table.list").text


def test_a_shadow_test_compares_its_variants_and_is_ended_from_its_page(browser, server, sm):
    from support.endpoints import deploy, variant, versioned_archive
    from support.shadow_tests import experiment, wait_experiment

    tag = uuid.uuid4().hex[:6]
    bucket, endpoint, name = f"console-{tag}", f"console-shadow-ep-{tag}", f"console-shadow-{tag}"
    s3 = make_client("s3", server.url)
    s3.create_bucket(Bucket=bucket)
    models = []
    for version in ("base", "cand"):
        s3.put_object(Bucket=bucket, Key=f"{version}.tar.gz", Body=versioned_archive(version))
        model = f"{name}-{version}"
        sm.create_model(
            ModelName=model,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/{version}.tar.gz"},
        )
        models.append(model)
    assert deploy(sm, endpoint, [variant(models[0], "Prod")])["EndpointStatus"] == "InService"
    sm.create_inference_experiment(**experiment(name, endpoint, models[0], models[1], sampling=100))
    assert wait_experiment(sm, name, ("Running", "Cancelled", "Completed"))["Status"] == "Running"
    runtime = make_client("sagemaker-runtime", server.url)
    for _ in range(6):
        runtime.invoke_endpoint(EndpointName=endpoint, Body="x", ContentType="text/plain")

    open_page(browser, server, f"/console/shadow-tests/{name}", "console-shadow-test")
    rows = browser.find_element("id", "test-variants").text
    assert "production" in rows and "shadow, 100 % of requests copied" in rows and models[1] in rows
    # Both variants on the same charts: the shadow got a copy of every request.
    shadow_calls = (
        "const p = window.consoleCharts.get('Invocations').plot;"
        "const i = p.series.findIndex((s) => s.label === 'Shadow');"
        "return i < 0 ? -1 : p.data[i].reduce((sum, v) => sum + (v || 0), 0)"
    )
    run_script(browser, shadow_calls, lambda n: n >= 6, "the shadow's invocations on the chart", timeout=30)
    keep_page(browser, "console-shadow-test")
    assert console_errors(browser) == []

    # Keep production: the shadow is removed, as StopInferenceExperiment with Retain/Remove does.
    browser.find_element("id", "keep").click()
    browser.switch_to.alert.accept()
    assert wait_experiment(sm, name, ("Completed", "Cancelled"))["Status"] == "Completed"
    wait_for(
        lambda: sm.describe_endpoint(EndpointName=endpoint),
        lambda d: d["EndpointStatus"] == "InService" and "ShadowProductionVariants" not in d,
        timeout=120,
        what="the endpoint without its shadow",
    )
    open_page(browser, server, "/console/shadow-tests", "console-shadow-tests")
    assert name in browser.find_element("css selector", "table.list").text


def test_a_project_shows_what_its_template_provisioned(browser, server, sm):
    sc = make_client("servicecatalog", server.url)
    sm.enable_sagemaker_servicecatalog_portfolio()
    found = sc.search_products(Filters={"FullTextSearch": ["sagemaker:studio-visibility"]})["ProductViewSummaries"]
    template = next(p for p in found if p["Name"] == "MLOps template for model building, training, and deployment")
    name = f"console-prj-{uuid.uuid4().hex[:6]}"
    project_id = sm.create_project(
        ProjectName=name,
        ProjectDescription="made for the console",
        ServiceCatalogProvisioningDetails={"ProductId": template["ProductId"]},
    )["ProjectId"]
    # Opened while it is provisioned: the page follows its status until it settles.
    browser.get(f"{server.url}/console/projects/{name}")
    run_script(
        browser,
        "return document.getElementById('project-status').textContent",
        lambda s: "CreateCompleted" in s,
        "the project to be created, on its page",
        timeout=180,
    )
    open_page(browser, server, f"/console/projects/{name}", "console-project")
    group = f"{name}-{project_id}"
    assert "AVAILABLE" in browser.find_element("id", "provisioned-products").text
    pipelines = browser.find_element("id", "project-pipelines").text
    assert group in pipelines and f"{group}-deploy" in pipelines
    assert group in browser.find_element("id", "project-model-groups").text
    link = browser.find_element("css selector", "#project-model-groups a")
    link.click()
    run_script(browser, "return location.pathname", lambda p: p == f"/console/models/{group}", "the model group's page")

    open_page(browser, server, f"/console/projects?name={name}", "console-projects")
    rows = browser.find_elements("css selector", "table.list tbody tr")
    assert len(rows) == 1 and project_id in rows[0].text and "made for the console" in rows[0].text
    assert browser.find_element("css selector", "nav a[href='/console/projects']").get_attribute("aria-current")


LIST_PAGES = (
    "/console/pipelines",
    "/console/jobs/training",
    "/console/jobs/processing",
    "/console/jobs/transform",
    "/console/experiments",
    "/console/models",
    "/console/endpoints",
    "/console/shadow-tests",
    "/console/featurestore",
    "/console/tuning",
    "/console/notebooks",
    "/console/projects",
)


def _rgb(css: str) -> tuple[float, ...]:
    return tuple(float(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


def _contrast(one: str, other: str) -> float:
    """The WCAG contrast ratio of two CSS rgb() colours."""

    def luminance(rgb):
        linear = [(c / 255) / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(_rgb(one)), luminance(_rgb(other))), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_list_page_filters_sorts_and_pages_from_the_keyboard(browser, server, sm):
    from selenium.webdriver.common.keys import Keys

    # 27 experiments whose names sort first ("0..."), so the first page by name is 25 of them.
    prefix = f"0-pages-{uuid.uuid4().hex[:6]}"
    for index in range(27):
        sm.create_experiment(ExperimentName=f"{prefix}-{index:02d}")

    for path in LIST_PAGES:
        open_page(browser, server, path, "console-list-" + path.rsplit("/", 1)[-1])
        form = browser.find_element("css selector", "form.filters")
        assert form.find_elements("css selector", "input[name=after]") and form.find_elements("css selector", "button")
        # Sorting by a column, from the keyboard: its header link, then Enter; the page comes back sorted by it.
        header = browser.find_element("css selector", "th[aria-sort] a")
        column = header.text.rstrip(" ▲▼")
        header.send_keys(Keys.ENTER)
        run_script(browser, "return location.search", lambda q: "sort=" in q, f"{path} sorted by {column}", timeout=30)
        sorted_by = browser.execute_script(
            "return [...document.querySelectorAll('th[aria-sort]')]"
            ".find((th) => th.textContent.trim().replace(/ [▲▼]$/, '') === arguments[0]).getAttribute('aria-sort')",
            column,
        )
        assert sorted_by in ("ascending", "descending"), (path, column, sorted_by)
        assert console_errors(browser) == []

    # Server-side pages: 25 rows, then the next page from its link (keyboard again), and a way back.
    open_page(browser, server, "/console/experiments?sort=Name&order=Ascending", "console-experiments-page-1")
    rows = [r.text for r in browser.find_elements("css selector", "table.list tbody tr")]
    assert len(rows) == 25 and all(r.startswith(prefix) for r in rows)
    browser.find_element("css selector", "a[rel=next]").send_keys(Keys.ENTER)
    run_script(browser, "return location.search", lambda q: "token=" in q, "the next page", timeout=30)
    rows = [r.text for r in browser.find_elements("css selector", "table.list tbody tr")]
    assert rows[0].startswith(f"{prefix}-25") and rows[1].startswith(f"{prefix}-26")
    assert browser.find_element("link text", "First page")

    # A date filter is the API's CreatedAfter: nothing was created after tomorrow.
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    open_page(browser, server, f"/console/experiments?after={tomorrow}", "console-experiments-filtered")
    assert "match these filters" in browser.find_element("css selector", "table.list tbody").text

    # Times in the reader's time zone, UTC on hover (the title).
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Kolkata"})
    try:
        open_page(browser, server, "/console/experiments?sort=Name&order=Ascending", "console-experiments-kolkata")
        shown = browser.execute_script(
            "const t = document.querySelector('table.list tbody time');"
            "return [t.textContent, t.title, t.getAttribute('datetime')]"
        )
    finally:
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})
    text, title, iso = shown
    moment = time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")
    utc = time.strftime("%Y-%m-%d %H:%M:%S UTC", moment)
    local = time.gmtime(time.mktime(moment) - time.mktime(time.gmtime(0)) + 5.5 * 3600)
    assert title == utc
    assert "GMT+5:30" in text and time.strftime("%M:%S", local) in text, shown

    # Both themes readable: the body's text against its background, as WCAG AA asks (4.5:1).
    for theme in ("light", "dark"):
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": theme}]}
        )
        open_page(browser, server, "/console/experiments", f"console-experiments-{theme}")
        colours = browser.execute_script(
            "const s = getComputedStyle(document.body); return [s.color, s.backgroundColor,"
            " getComputedStyle(document.querySelector('table.list a')).color]"
        )
        background = sum(_rgb(colours[1]))
        assert (background > 600) if theme == "light" else (background < 200), (theme, colours)
        assert _contrast(colours[0], colours[1]) >= 4.5 and _contrast(colours[2], colours[1]) >= 4.5, (theme, colours)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
