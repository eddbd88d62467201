"""Hyperparameter tuning: tuning jobs, and a job's trials (its training jobs) with their hyperparameters and
objective values, the best one marked.

The trials table is ListTrainingJobsForHyperParameterTuningJob, one page per request, sortable by the
objective value as the API sorts it; the best is DescribeHyperParameterTuningJob's BestTrainingJob (and
OverallBestTrainingJob for a warm-started job). The objective chart shows every trial of the page in the
order they were created. While the job runs, the trials table, the trial counts and the chart follow it over
server-sent events (``/console/tuning/NAME/trials``, the same page of the same list, rendered by the same
template every few seconds and sent when it changed); when the job ends, the page loads once more.
"""

from __future__ import annotations

from ..listing import Listing
from ..live import event_stream, status_stream
from ..rendering import console_url, render
from ..web import Route, View, redirect

JOBS = Listing("ListHyperParameterTuningJobs", "HyperParameterTuningJobSummaries")
TRIALS = Listing(
    "ListTrainingJobsForHyperParameterTuningJob", "TrainingJobSummaries", name_filter=None, default_sort="CreationTime"
)


async def list_jobs(view: View):
    listing = await JOBS.fetch(view)
    return view.render("tuning/list.html", title="Hyperparameter tuning jobs", listing=listing)


ACTIVE = {"InProgress", "Stopping"}
TRIALS_INTERVAL = 2.0


async def _trials(view: View, name: str) -> dict:
    """The job and the page of its trials the request asks for: what the page and its live stream show."""
    described = await view.call("DescribeHyperParameterTuningJob", {"HyperParameterTuningJobName": name})
    trials = await TRIALS.fetch(view, HyperParameterTuningJobName=name)
    objective = described.get("HyperParameterTuningJobConfig", {}).get("HyperParameterTuningJobObjective") or {}
    points = sorted(
        (t["CreationTime"], t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], t["TrainingJobName"])
        for t in trials.items
        if "FinalHyperParameterTuningJobObjectiveMetric" in t
    )
    return {
        "job": described,
        "name": name,
        "objective": objective,
        "trials": trials,
        "parameter_names": sorted({k for t in trials.items for k in t.get("TunedHyperParameters", {})}),
        "best": (described.get("BestTrainingJob") or {}).get("TrainingJobName"),
        "chart": {"title": objective.get("MetricName", "objective"), "points": points},
    }


async def tuning_job(view: View):
    name = view.labels["name"]
    shown = await _trials(view, name)
    status = shown["job"].get("HyperParameterTuningJobStatus")
    return view.render(
        "tuning/detail.html",
        title=f"Tuning job {name}",
        running=status == "InProgress",
        live=status in ACTIVE,
        request_token=view.query("token"),  # the live stream follows this page of the trials
        **shown,
    )


async def trial_events(view: View):
    """``trials`` events while the job runs: the trials table (the request's page, filter and sort), the
    trial counts and the chart's points, each time they change; then ``end``."""
    name = view.labels["name"]
    await view.call("DescribeHyperParameterTuningJob", {"HyperParameterTuningJobName": name})
    last = [""]

    async def poll():
        shown = await _trials(view, name)
        shown["trials"].path = f"/tuning/{name}"  # the table's sort links lead to the page, not to this stream
        counters = shown["job"].get("TrainingJobStatusCounters") or {}
        update = {
            "table": render("tuning/trials_table.html", **shown),
            "counters": " ".join(f"{k} {v}" for k, v in sorted(counters.items()) if v),
            "chart": shown["chart"],
        }
        events: list[tuple[str, object]] = (
            [] if update["table"] + update["counters"] == last[0] else [("trials", update)]
        )
        last[0] = update["table"] + update["counters"]
        return events, shown["job"].get("HyperParameterTuningJobStatus") not in ACTIVE

    return event_stream(view.request, poll, TRIALS_INTERVAL)


async def status_events(view: View):
    """The tuning job's status while it runs; the page then shows its trials and best as they ended."""
    params = {"HyperParameterTuningJobName": view.labels["name"]}
    await view.call("DescribeHyperParameterTuningJob", params)
    return status_stream(
        view.request,
        lambda: view.call("DescribeHyperParameterTuningJob", params),
        "HyperParameterTuningJobStatus",
        ACTIVE,
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
    Route("GET", "/tuning/{name}/trials", trial_events),
    Route("POST", "/tuning/{name}/stop", stop),
]
