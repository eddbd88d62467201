"""Hyperparameter tuning: tuning jobs, and a job's trials (its training jobs) with their hyperparameters and
objective values, the best one marked.

The trials table is ListTrainingJobsForHyperParameterTuningJob, one page per request, sortable by the
objective value as the API sorts it; the best is DescribeHyperParameterTuningJob's BestTrainingJob (and
OverallBestTrainingJob for a warm-started job). The objective chart shows every trial of the page in the
order they were created.
"""

from __future__ import annotations

from ..listing import Listing
from ..live import status_stream
from ..rendering import console_url
from ..web import Route, View, redirect

JOBS = Listing("ListHyperParameterTuningJobs", "HyperParameterTuningJobSummaries")
TRIALS = Listing(
    "ListTrainingJobsForHyperParameterTuningJob", "TrainingJobSummaries", name_filter=None, default_sort="CreationTime"
)


async def list_jobs(view: View):
    listing = await JOBS.fetch(view)
    return view.render("tuning/list.html", title="Hyperparameter tuning jobs", listing=listing)


async def tuning_job(view: View):
    name = view.labels["name"]
    described = await view.call("DescribeHyperParameterTuningJob", {"HyperParameterTuningJobName": name})
    trials = await TRIALS.fetch(view, HyperParameterTuningJobName=name)
    objective = described.get("HyperParameterTuningJobConfig", {}).get("HyperParameterTuningJobObjective") or {}
    parameters = sorted({k for t in trials.items for k in t.get("TunedHyperParameters", {})})
    points = sorted(
        (t["CreationTime"], t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], t["TrainingJobName"])
        for t in trials.items
        if "FinalHyperParameterTuningJobObjectiveMetric" in t
    )
    chart = {"title": objective.get("MetricName", "objective"), "points": points}
    return view.render(
        "tuning/detail.html",
        title=f"Tuning job {name}",
        job=described,
        name=name,
        objective=objective,
        trials=trials,
        parameter_names=parameters,
        best=(described.get("BestTrainingJob") or {}).get("TrainingJobName"),
        chart=chart,
        running=described.get("HyperParameterTuningJobStatus") == "InProgress",
        live=described.get("HyperParameterTuningJobStatus") in ("InProgress", "Stopping"),
    )


async def status_events(view: View):
    """The tuning job's status while it runs; the page then shows its trials and best as they ended."""
    params = {"HyperParameterTuningJobName": view.labels["name"]}
    await view.call("DescribeHyperParameterTuningJob", params)
    return status_stream(
        view.request,
        lambda: view.call("DescribeHyperParameterTuningJob", params),
        "HyperParameterTuningJobStatus",
        {"InProgress", "Stopping"},
    )


async def stop(view: View):
    name = view.labels["name"]
    await view.call("StopHyperParameterTuningJob", {"HyperParameterTuningJobName": name})
    view.flash("ok", f"Stopping {name}.")
    return redirect(console_url(f"/tuning/{name}"))


ROUTES = [
    Route("GET", "/tuning", list_jobs),
    Route("GET", "/tuning/{name}", tuning_job),
    Route("GET", "/tuning/{name}/events", status_events),
    Route("POST", "/tuning/{name}/stop", stop),
]
