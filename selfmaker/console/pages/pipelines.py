"""Pipelines: the list, a pipeline's definition as a graph and its executions, an execution's steps live.

The graph is read from the definition by the pipeline language's own parser (the one CreatePipeline
validates with), so the edges drawn are the dependencies the engine runs by: DependsOn, every step a step's
arguments read, and a condition's IfSteps / ElseSteps. The server lays it out with Graphviz (:mod:`..graphviz`)
the first time the account sees that graph, and keeps the positions (:mod:`..layouts`) for every later view;
only where it cannot does the browser lay it out (dagre) and post the positions back.
"""

from __future__ import annotations

import json
import uuid

from ...engines.pipeline_language.definition import parse
from ...engines.pipeline_language.errors import DefinitionError
from ...server.errors import validation
from .. import graphviz, layouts
from ..listing import Listing
from ..live import event_stream
from ..rendering import console_url
from ..web import Route, View, json_response, redirect

PIPELINES = Listing("ListPipelines", "PipelineSummaries", name_filter="PipelineNamePrefix", status_filter=None)
EXECUTIONS = Listing("ListPipelineExecutions", "PipelineExecutionSummaries", name_filter=None, status_filter=None)
RUNNING = {"Executing", "Stopping"}
STEPS_SHOWN = 1000  # ListPipelineExecutionSteps pages read for one execution (a definition holds far fewer)


def graph(definition_text: str) -> dict:
    """The definition as nodes and edges for Cytoscape (``error`` when it cannot be read)."""
    try:
        definition = parse(definition_text)
    except DefinitionError as err:
        return {"nodes": [], "edges": [], "error": str(err)}
    nodes = [
        {"id": s.name, "label": s.display_name or s.name, "type": s.type, "description": s.description or ""}
        for s in definition.steps.values()
    ]
    edges = []
    for step in definition.steps.values():
        for source in sorted(step.depends_on):
            if source in definition.steps:
                edges.append({"source": source, "target": step.name, "kind": "depends"})
        if step.branch:
            condition, holds = step.branch
            edges.append({"source": condition, "target": step.name, "kind": "if" if holds else "else"})
    parameters = [
        {"name": p.name, "type": p.type, "default": _text(p.default), "enum": p.enum or ()}
        for p in definition.parameters.values()
    ]
    return {"nodes": nodes, "edges": edges, "parameters": parameters}


async def laid_out(view: View, drawn: dict) -> dict:
    """The graph with its positions (kept, or laid out now by Graphviz), or what the browser needs to post
    the ones dagre gives it when the server could not lay it out."""
    if not drawn["nodes"]:
        return drawn
    account, key = view.session.account_id or "", layouts.digest(drawn)
    kept = layouts.cache(view.backends)
    positions = kept.get(account, key)
    if positions is None:
        positions = await graphviz.layout(drawn, view.backends.settings.graphviz_dot)
        if positions is not None:
            kept.keep(account, key, positions)
    if positions is not None:
        return {**drawn, "positions": positions}
    kept.expect(account, key, (n["id"] for n in drawn["nodes"]))
    return {**drawn, "layout": {"key": key, "url": console_url("/pipelines/layout"), "csrf": view.session.csrf}}


async def keep_layout(view: View):
    """The positions dagre gave a graph this account was sent to lay out (see :mod:`..layouts`)."""
    try:
        positions = json.loads(view.field("positions"))
    except ValueError:
        positions = None
    refusal = layouts.cache(view.backends).put(view.session.account_id or "", view.field("key"), positions)
    if refusal:
        raise validation(refusal)
    return json_response({}, 200)


def _text(value) -> str:
    """A parameter's default as the form field shows it (and StartPipelineExecution reads it back)."""
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


async def list_pipelines(view: View):
    listing = await PIPELINES.fetch(view)
    return view.render("pipelines/list.html", title="Pipelines", listing=listing)


async def pipeline(view: View):
    name = view.labels["name"]
    described = await view.call("DescribePipeline", {"PipelineName": name})
    executions = await EXECUTIONS.fetch(view, PipelineName=name)
    return view.render(
        "pipelines/detail.html",
        title=f"Pipeline {name}",
        pipeline=described,
        graph=await laid_out(view, graph(described.get("PipelineDefinition", ""))),
        executions=executions,
    )


async def start(view: View):
    name = view.labels["name"]
    parameters = [
        {"Name": key.removeprefix("param:"), "Value": values[-1]}
        for key, values in view.form.items()
        if key.startswith("param:") and values[-1] != ""
    ]
    params: dict = {"PipelineName": name, "ClientRequestToken": str(uuid.uuid4())}
    if parameters:
        params["PipelineParameters"] = parameters
    if display := view.field("display_name"):
        params["PipelineExecutionDisplayName"] = display
    started = await view.call("StartPipelineExecution", params)
    execution_id = started["PipelineExecutionArn"].rsplit("/", 1)[-1]
    view.flash("ok", f"Started execution {execution_id}.")
    return redirect(console_url(f"/pipelines/{name}/executions/{execution_id}"))


async def _execution_arn(view: View) -> str:
    name, execution_id = view.labels["name"], view.labels["execution"]
    if not execution_id.isalnum():
        raise validation(f"{execution_id!r} is not a pipeline execution id.")
    described = await view.call("DescribePipeline", {"PipelineName": name})
    return f"{described['PipelineArn']}/execution/{execution_id}"


async def _execution_state(view: View, arn: str) -> dict:
    """What the execution page shows and the live stream updates: the execution and its steps by name."""
    execution = await view.call("DescribePipelineExecution", {"PipelineExecutionArn": arn})
    steps = await view.pages(
        "ListPipelineExecutionSteps", {"PipelineExecutionArn": arn}, "PipelineExecutionSteps", STEPS_SHOWN
    )
    return {
        "status": execution.get("PipelineExecutionStatus"),
        "failure": execution.get("FailureReason", ""),
        "modified": execution.get("LastModifiedTime"),
        # Newest attempt first (the API's default order): a retried step shows its latest attempt.
        "steps": {s["StepName"]: s for s in reversed(steps)},
    }


async def execution(view: View):
    arn = await _execution_arn(view)
    state = await _execution_state(view, arn)
    described = await view.call("DescribePipelineExecution", {"PipelineExecutionArn": arn})
    definition = await view.call("DescribePipelineDefinitionForExecution", {"PipelineExecutionArn": arn})
    parameters = await view.pages(
        "ListPipelineParametersForExecution", {"PipelineExecutionArn": arn}, "PipelineParameters", 200
    )
    return view.render(
        "pipelines/execution.html",
        title=f"Execution {view.labels['execution']}",
        pipeline_name=view.labels["name"],
        execution=described,
        parameters=parameters,
        graph=await laid_out(view, graph(definition.get("PipelineDefinition", ""))),
        state=state,
        live=state["status"] in RUNNING,
    )


async def execution_events(view: View):
    arn = await _execution_arn(view)
    last: list[str] = [""]

    async def poll():
        state = await _execution_state(view, arn)
        text = json.dumps(state, sort_keys=True)
        events = [] if text == last[0] else [("state", state)]
        last[0] = text
        return events, state["status"] not in RUNNING

    return event_stream(view.request, poll)


async def stop(view: View):
    arn = await _execution_arn(view)
    await view.call("StopPipelineExecution", {"PipelineExecutionArn": arn, "ClientRequestToken": str(uuid.uuid4())})
    view.flash("ok", "Stopping the execution.")
    return redirect(console_url(f"/pipelines/{view.labels['name']}/executions/{view.labels['execution']}"))


async def retry(view: View):
    arn = await _execution_arn(view)
    await view.call("RetryPipelineExecution", {"PipelineExecutionArn": arn, "ClientRequestToken": str(uuid.uuid4())})
    view.flash("ok", "Retrying the execution from its failed steps.")
    return redirect(console_url(f"/pipelines/{view.labels['name']}/executions/{view.labels['execution']}"))


ROUTES = [
    Route("GET", "/pipelines", list_pipelines),
    Route("POST", "/pipelines/layout", keep_layout),
    Route("GET", "/pipelines/{name}", pipeline),
    Route("POST", "/pipelines/{name}/start", start),
    Route("GET", "/pipelines/{name}/executions/{execution}", execution),
    Route("GET", "/pipelines/{name}/executions/{execution}/events", execution_events),
    Route("POST", "/pipelines/{name}/executions/{execution}/stop", stop),
    Route("POST", "/pipelines/{name}/executions/{execution}/retry", retry),
]
