"""Pipeline graphs in the web console, in a real browser (headless Chromium, as tests/test_console_browser.py).

A pipeline runs with a step that fails: the execution page, opened while it runs, follows it over
server-sent events until the graph shows the failed step in the failed colour. A first view of a fresh
graph comes laid out by the server (Graphviz); a server without Graphviz lets the browser lay it out once.
"""

from __future__ import annotations

import uuid

import pytest

from support.browser import WIDTH, chromium, console_errors, keep_page, open_page, run_script
from support.clients import make_client
from support.graphviz import overlapping, require_dot
from support.pipelines import create, processing, runtimes_config, start
from support.pipelines import wait as wait_pipeline
from support.waiting import wait_for

pytestmark = pytest.mark.browser

FAILED_COLOUR = "rgb(217,58,58)"  # console.css --failed (light theme), as Cytoscape reports it


@pytest.fixture(scope="module")
def browser():
    driver = chromium(width=WIDTH, height=900)  # before the server: a skip costs nothing
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(make_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-graphs")
    return make_server("console-graphs", env={"SELFMAKER_RUNTIMES_CONFIG": runtimes_config(tmp)}).start()


@pytest.fixture(scope="module")
def no_graphviz(make_server):
    """A server whose pipeline graphs the browser lays out (dagre), as where Graphviz is not installed."""
    return make_server("console-no-graphviz", ["--graphviz-dot", ""]).start()


@pytest.fixture(scope="module")
def sm(server):
    return make_client("sagemaker", server.url)


def test_a_pipeline_with_a_failing_step_is_followed_live_to_the_failed_colour(browser, server, sm):
    name = f"console-pipe-{uuid.uuid4().hex[:6]}"
    create(
        sm,
        name,
        [
            processing("Prepare", "import time; print('preparing'); time.sleep(4)"),
            processing("Evaluate", "raise SystemExit('the model is not good enough')", DependsOn=["Prepare"]),
        ],
        parameters=[{"Name": "Threshold", "Type": "Float", "DefaultValue": 0.5}],
    )
    arn = start(sm, name)
    execution = arn.rsplit("/", 1)[-1]
    path = f"/console/pipelines/{name}/executions/{execution}"
    browser.get(server.url + path)
    assert browser.execute_script("return document.getElementById('live').dataset.events") != ""

    node_colour = "return window.consoleGraph.getElementById('Evaluate').style('background-color').replace(/ /g, '')"
    run_script(browser, node_colour, lambda c: c == FAILED_COLOUR, "the failed step in the failed colour")
    # The colour came by the live stream, which then ended with the execution.
    run_script(browser, "return document.body.dataset.liveEnded", lambda v: v == "true", "the live stream's end")
    assert wait_pipeline(sm, arn)["PipelineExecutionStatus"] == "Failed"
    prepare = browser.execute_script(
        "return window.consoleGraph.getElementById('Prepare').style('background-color').replace(/ /g, '')"
    )
    assert prepare != FAILED_COLOUR
    row = browser.find_element("css selector", "#steps-table tr[data-step='Evaluate']")
    assert "Failed" in row.text
    # The step's details: its job and its failure reason.
    row.find_element("css selector", "button.step-link").click()
    panel = browser.find_element("id", "step-panel")
    assert "Failure reason" in panel.text and "Job" in panel.text
    assert not browser.find_element("id", "retry").get_attribute("disabled")
    keep_page(browser, "console-pipeline-execution")
    assert console_errors(browser) == []

    # Dark theme, as a reader whose system prefers it sees the same page.
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    open_page(browser, server, path, "console-pipeline-execution-dark")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    open_page(browser, server, f"/console/pipelines/{name}", "console-pipeline")
    assert browser.execute_script("return window.consoleGraph.nodes().length") == 2
    assert browser.execute_script("return window.consoleGraph.edges().length") == 1
    assert console_errors(browser) == []
    open_page(browser, server, "/console/pipelines", "console-pipelines")
    assert name in browser.find_element("css selector", "table.list").text

    # Start from the page, with a parameter: the API has a second execution with that value.
    open_page(browser, server, f"/console/pipelines/{name}", "console-pipeline")
    field = browser.find_element("name", "param:Threshold")
    field.clear()
    field.send_keys("0.75")
    field.submit()
    run_script(browser, "return location.pathname", lambda p: "/executions/" in p and execution not in p, "the new run")
    second = f"{arn.rsplit('/', 1)[0]}/{browser.execute_script('return location.pathname').rsplit('/', 1)[-1]}"
    parameters = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=second)
    assert {"Name": "Threshold", "Value": "0.75"} in parameters["PipelineParameters"]
    # Stop it from its page while its first step still runs.
    browser.find_element("id", "stop").click()
    assert wait_pipeline(sm, second)["PipelineExecutionStatus"] == "Stopped"

    # Retry the failed one: its failed step runs again, as a second attempt.
    browser.get(server.url + path)
    browser.find_element("id", "retry").click()
    wait_for(
        lambda: {
            s["StepName"]: s
            for s in sm.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"]
        },
        lambda steps: (
            (steps.get("Evaluate", {}).get("AttemptCount"), steps.get("Evaluate", {}).get("StepStatus"))
            == (2, "Failed")
        ),
        timeout=120,
        what="the retried step's second attempt to fail",
    )
    assert console_errors(browser) == []


GRAPH_POSITIONS = """
const cy = window.consoleGraph;
return cy.nodes().map((node) => {
  const box = node.boundingBox({ includeLabels: false });
  return { id: node.id(), x: node.position("x"), y: node.position("y"), w: box.w, h: box.h };
});
"""


def _drawn_graph(driver) -> dict:
    run_script(driver, "return document.getElementById('graph').dataset.drawnAt", bool, "the graph drawn", 30)
    placed = driver.execute_script(GRAPH_POSITIONS)
    return {n["id"]: n for n in placed}


def test_a_first_view_of_a_graph_comes_laid_out_by_the_server(browser, server, sm):
    """A graph never shown before: its page carries the positions Graphviz gave on the server, Cytoscape
    places the steps exactly there (dagre is not even loaded), and no two steps overlap."""
    require_dot()
    name = f"console-layout-{uuid.uuid4().hex[:6]}"
    fan = [processing(f"Shard{i}", "print(1)", DependsOn=["Prepare"]) for i in range(5)]
    check = {
        "Name": "Good",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": 1, "RightValue": 0.5}],
            "IfSteps": [processing("Register", "print(3)")],
            "ElseSteps": [{"Name": "TooLow", "Type": "Fail", "Arguments": {"ErrorMessage": "too low"}}],
        },
        "DependsOn": ["Merge"],
    }
    merge = processing("Merge", "print(2)", DependsOn=[step["Name"] for step in fan])
    create(sm, name, [processing("Prepare", "print(0)"), *fan, merge, check])
    open_page(browser, server, f"/console/pipelines/{name}", "console-pipeline-graph")
    sent = browser.execute_script("return Console.jsonData('graph-data').positions || null")
    assert sent is not None, "the first view came without the server's positions"
    assert browser.execute_script("return typeof cytoscapeDagre") == "undefined"
    drawn = _drawn_graph(browser)
    assert set(drawn) == set(sent) and len(drawn) == 10
    for step, (x, y) in sent.items():
        assert (drawn[step]["x"], drawn[step]["y"]) == pytest.approx((x, y), abs=0.01)
    boxes = {step: (n["w"], n["h"]) for step, n in drawn.items()}
    assert overlapping({step: (n["x"], n["y"]) for step, n in drawn.items()}, boxes) == []
    # Layers left to right: every dependency's step stands right of the step it depends on.
    assert all(drawn[f"Shard{i}"]["x"] > drawn["Prepare"]["x"] for i in range(5))
    assert drawn["Register"]["x"] > drawn["Good"]["x"] > drawn["Merge"]["x"] > drawn["Shard0"]["x"]


def test_without_graphviz_the_browser_lays_the_graph_out_once(browser, no_graphviz):
    """The fallback: a server without dot sends no positions, dagre lays the graph out in the browser and its
    positions go back to the server, which sends them from then on (dagre then not even loaded)."""
    sm = make_client("sagemaker", no_graphviz.url)
    name = f"console-dagre-{uuid.uuid4().hex[:6]}"
    create(sm, name, [processing("Prepare", "print(1)"), processing("Evaluate", "print(2)", DependsOn=["Prepare"])])
    open_page(browser, no_graphviz, f"/console/pipelines/{name}", "console-pipeline-dagre")
    assert browser.execute_script("return Console.jsonData('graph-data').positions || null") is None
    assert browser.execute_script("return typeof cytoscapeDagre") != "undefined"
    laid = _drawn_graph(browser)["Evaluate"]

    def reloaded_positions():
        browser.get(f"{no_graphviz.url}/console/pipelines/{name}")
        return browser.execute_script("return Console.jsonData('graph-data').positions || null")

    kept = wait_for(reloaded_positions, lambda p: p is not None, timeout=30, what="the kept layout")
    assert kept["Evaluate"] == pytest.approx([laid["x"], laid["y"]], abs=0.1)
    assert browser.execute_script("return typeof cytoscapeDagre") == "undefined"  # not even loaded
    assert console_errors(browser) == []
