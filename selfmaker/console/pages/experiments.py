"""Experiments: experiments, their trials and runs (trial components); a runs table; metric curves compared.

The runs table is one Search per page (ExperimentTrialComponent under the experiment), whose records carry
each run's parameters and metric summaries, so no run is described one by one. The curves are
sagemaker-metrics BatchGetMetrics, one query per run and metric, by step or by time.
"""

from __future__ import annotations

from ...server.errors import validation
from ..listing import PAGE_SIZE, Listing
from ..web import Route, View

EXPERIMENTS = Listing("ListExperiments", "ExperimentSummaries", name_filter=None, status_filter=None)
TRIALS = Listing("ListTrials", "TrialSummaries", name_filter=None, status_filter=None)
COMPONENTS = Listing("ListTrialComponents", "TrialComponentSummaries", name_filter=None, status_filter=None)
MAX_COMPARED = 10
X_AXES = {
    "step": {"XAxisType": "IterationNumber", "Period": "IterationNumber"},
    "time": {"XAxisType": "Timestamp", "Period": "OneMinute"},
}


async def list_experiments(view: View):
    listing = await EXPERIMENTS.fetch(view)
    return view.render("experiments/list.html", title="Experiments", listing=listing)


def _columns(runs: list) -> tuple[list[str], list[str]]:
    """The parameter and metric names any run of the page has, for the table's columns."""
    parameters = sorted({name for run in runs for name in run.get("Parameters", {})})
    metrics = sorted({m["MetricName"] for run in runs for m in run.get("Metrics", []) if "MetricName" in m})
    return parameters, metrics


def parameter_text(value: dict | None) -> str:
    if not value:
        return ""
    if "NumberValue" in value:
        return f"{value['NumberValue']:g}"
    return str(value.get("StringValue", ""))


async def experiment(view: View):
    name = view.labels["name"]
    described = await view.call("DescribeExperiment", {"ExperimentName": name})
    trials = await TRIALS.fetch(view, ExperimentName=name)
    search = {
        "Resource": "ExperimentTrialComponent",
        "SearchExpression": {"Filters": [{"Name": "Parents.ExperimentName", "Operator": "Equals", "Value": name}]},
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": PAGE_SIZE,
    }
    if token := view.query("runs_token"):
        search["NextToken"] = token
    found = await view.call("Search", search)
    runs = [r["TrialComponent"] for r in found.get("Results", []) if "TrialComponent" in r]
    parameters, metrics = _columns(runs)
    return view.render(
        "experiments/experiment.html",
        title=f"Experiment {name}",
        experiment=described,
        trials=trials,
        runs=runs,
        runs_next=found.get("NextToken"),
        runs_first=not token,
        parameter_names=parameters,
        metric_names=metrics,
        parameter_text=parameter_text,
    )


async def trial(view: View):
    name = view.labels["trial"]
    described = await view.call("DescribeTrial", {"TrialName": name})
    components = await COMPONENTS.fetch(view, TrialName=name)
    return view.render(
        "experiments/trial.html",
        title=f"Trial {name}",
        experiment_name=view.labels["name"],
        trial=described,
        components=components,
    )


async def compare(view: View):
    """One or more runs: their parameters and metric summaries side by side, and every metric's curves."""
    names = list(dict.fromkeys(view.queries("run")))
    if not names:
        raise validation("Choose at least one run to show.")
    if len(names) > MAX_COMPARED:
        raise validation(f"At most {MAX_COMPARED} runs can be compared at once.")
    axis = view.query("x", "step")
    if axis not in X_AXES:
        raise validation("The x axis is either step or time.")
    runs = [await view.call("DescribeTrialComponent", {"TrialComponentName": name}) for name in names]
    parameters, metrics = _columns(runs)
    queries = [
        {"MetricName": metric, "ResourceArn": run["TrialComponentArn"], "MetricStat": "Avg", **X_AXES[axis]}
        for metric in metrics
        for run in runs
        if any(m.get("MetricName") == metric for m in run.get("Metrics", []))
    ]
    results = []
    if queries:
        results = (await view.call("BatchGetMetrics", {"MetricQueries": queries}, service="sagemaker-metrics"))[
            "MetricQueryResults"
        ]
    series: dict[str, list] = {metric: [] for metric in metrics}
    for query, result in zip(queries, results):
        series[query["MetricName"]].append(
            {
                "run": query["ResourceArn"].rsplit("/", 1)[-1],
                "x": result.get("XAxisValues", []),
                "y": result.get("MetricValues", []),
                "status": result.get("Status"),
                "message": result.get("Message", ""),
            }
        )
    return view.render(
        "experiments/compare.html",
        title="Runs compared" if len(runs) > 1 else f"Run {names[0]}",
        experiment_name=view.labels["name"],
        runs=runs,
        parameter_names=parameters,
        metric_names=metrics,
        parameter_text=parameter_text,
        charts={"axis": axis, "series": series},
        axis=axis,
    )


ROUTES = [
    Route("GET", "/experiments", list_experiments),
    Route("GET", "/experiments/{name}", experiment),
    Route("GET", "/experiments/{name}/trials/{trial}", trial),
    Route("GET", "/experiments/{name}/runs", compare),
]
