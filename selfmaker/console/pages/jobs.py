"""Jobs: training, processing and batch transform; a job's status, its transitions, metrics and live logs.

Logs are read from our CloudWatch Logs through its own operations (DescribeLogStreams, GetLogEvents), as
the SageMaker SDK's ``logs=True`` reads them: every stream of the job's name in its family's log group,
followed with each stream's forward token until the job has ended and the last lines are in.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...server.errors import AWSError, not_found
from ..listing import Listing
from ..live import event_stream
from ..rendering import console_url
from ..web import Route, View, redirect

TERMINAL = {"Completed", "Failed", "Stopped"}
LOG_LINES_PER_POLL = 1000


@dataclass(frozen=True)
class JobFamily:
    slug: str  # in the URL
    title: str
    kind: str  # TrainingJob, ...
    log_group: str

    @property
    def listing(self) -> Listing:
        return Listing(f"List{self.kind}s", f"{self.kind}Summaries")

    @property
    def name_member(self) -> str:
        return f"{self.kind}Name"

    @property
    def status_member(self) -> str:
        return f"{self.kind}Status"


FAMILIES = {
    f.slug: f
    for f in (
        JobFamily("training", "Training jobs", "TrainingJob", "/aws/sagemaker/TrainingJobs"),
        JobFamily("processing", "Processing jobs", "ProcessingJob", "/aws/sagemaker/ProcessingJobs"),
        JobFamily("transform", "Transform jobs", "TransformJob", "/aws/sagemaker/TransformJobs"),
    )
}


def _family(view: View) -> JobFamily:
    family = FAMILIES.get(view.labels["family"])
    if family is None:
        raise not_found(f"There is no job family {view.labels['family']!r}.")
    return family


async def list_jobs(view: View):
    family = _family(view)
    listing = await family.listing.fetch(view)
    return view.render("jobs/list.html", title=family.title, family=family, families=FAMILIES, listing=listing)


async def job(view: View):
    family = _family(view)
    name = view.labels["name"]
    described = await view.call(f"Describe{family.kind}", {family.name_member: name})
    status = described.get(family.status_member)
    return view.render(
        "jobs/detail.html",
        title=f"{family.kind} {name}",
        family=family,
        job=described,
        name=name,
        job_status=status,
        live=status not in TERMINAL,
    )


async def stop(view: View):
    family = _family(view)
    name = view.labels["name"]
    await view.call(f"Stop{family.kind}", {family.name_member: name})
    view.flash("ok", f"Stopping {name}.")
    return redirect(console_url(f"/jobs/{family.slug}/{name}"))


async def log_events(view: View):
    """The job's log lines as they arrive: ``lines`` events (stream, time, message), then ``end``."""
    family = _family(view)
    name = view.labels["name"]
    # The job must be the caller's: Describe refuses another account's (and an unknown) name before any log.
    await view.call(f"Describe{family.kind}", {family.name_member: name})
    tokens: dict[str, str | None] = {}
    ending = [False]
    last_status: list[str | None] = [None]

    async def poll():
        status = (await view.call(f"Describe{family.kind}", {family.name_member: name})).get(family.status_member)
        try:
            streams = await view.pages(
                "DescribeLogStreams",
                {"logGroupName": family.log_group, "logStreamNamePrefix": f"{name}/"},
                "logStreams",
                100,
                service="logs",
                token="nextToken",
            )
        except AWSError as err:
            if err.code != "ResourceNotFoundException":
                raise
            streams = []  # the group appears with the first job of the family that logs
        lines = []
        for stream in streams:
            stream_name = stream["logStreamName"]
            params = {"logGroupName": family.log_group, "logStreamName": stream_name, "startFromHead": True}
            if tokens.get(stream_name):
                params["nextToken"] = tokens[stream_name]
            answer = await view.call("GetLogEvents", {**params, "limit": LOG_LINES_PER_POLL}, service="logs")
            tokens[stream_name] = answer.get("nextForwardToken")
            lines += [
                {"stream": stream_name.removeprefix(f"{name}/"), "time": e["timestamp"], "message": e["message"]}
                for e in answer.get("events", [])
            ]
        events: list[tuple[str, object]] = [("lines", sorted(lines, key=lambda line: line["time"]))] if lines else []
        if status != last_status[0]:
            events.append(("status", status))
            last_status[0] = status
        if status in TERMINAL:
            # Read on after the end until a read finds nothing new: the last lines are shipped as the job ends.
            done, ending[0] = ending[0] and not lines, True
            return events, done
        return events, False

    return event_stream(view.request, poll)


ROUTES = [
    Route("GET", "/jobs/{family}", list_jobs),
    Route("GET", "/jobs/{family}/{name}", job),
    Route("POST", "/jobs/{family}/{name}/stop", stop),
    Route("GET", "/jobs/{family}/{name}/logs", log_events),
]
