"""`selfmaker logs JOB`: follow a job's log streams in a terminal, through the server's CloudWatch Logs API.

It finds the job among training, processing and transform jobs, prints each
line as ``[algo-1] message`` (plain when the job has one instance) and stops
once the job has ended and every line is printed.
"""

from __future__ import annotations

import os
import sys
import time

from .config import DEFAULT_PORT

KINDS = (
    ("training", "TrainingJobs", "TrainingJobStatus"),
    ("processing", "ProcessingJobs", "ProcessingJobStatus"),
    ("transform", "TransformJobs", "TransformJobStatus"),
)
TERMINAL = {"Completed", "Failed", "Stopped"}


def _clients(endpoint: str, region: str):
    import boto3

    options = dict(
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "selfmaker"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "selfmaker"),
    )
    return boto3.client("sagemaker", **options), boto3.client("logs", **options)


def _find(sm, job: str):
    """(describe function, log group, status key) of the job, or None."""
    for kind, group, status_key in KINDS:
        describe = getattr(sm, f"describe_{kind}_job")
        try:
            describe(**{f"{kind.capitalize()}JobName": job})
        except sm.exceptions.ClientError:
            continue
        return (
            (lambda d=describe, k=kind: d(**{f"{k.capitalize()}JobName": job})),
            f"/aws/sagemaker/{group}",
            status_key,
        )
    return None


def follow(job: str, endpoint: str, region: str, follow: bool = True, poll: float = 1.0, out=sys.stdout) -> int:
    sm, logs = _clients(endpoint, region)
    found = _find(sm, job)
    if found is None:
        print(f"selfmaker: no training, processing or transform job named {job!r} at {endpoint}", file=sys.stderr)
        return 1
    describe, group, status_key = found
    tokens: dict[str, str | None] = {}
    while True:
        status = describe()[status_key]  # read before the logs, so the last lines are never missed
        try:
            streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job}/")["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            streams = []
        names = sorted(s["logStreamName"] for s in streams)
        for name in names:
            while True:
                args = dict(logGroupName=group, logStreamName=name, startFromHead=True)
                if tokens.get(name):
                    args["nextToken"] = tokens[name]
                page = logs.get_log_events(**args)
                for event in page["events"]:
                    host = name.split("/", 1)[1].rsplit("-", 1)[0]
                    print(f"[{host}] {event['message']}" if len(names) > 1 else event["message"], file=out, flush=True)
                if page.get("nextForwardToken") == tokens.get(name) or not page["events"]:
                    tokens[name] = page.get("nextForwardToken")
                    break
                tokens[name] = page.get("nextForwardToken")
        if status in TERMINAL or not follow:
            print(f"{job}: {status}", file=sys.stderr)
            return 0 if status != "Failed" else 3
        time.sleep(poll)


def main(args) -> int:
    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or f"http://localhost:{DEFAULT_PORT}"
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    try:
        return follow(args.job, endpoint, region, follow=not args.no_follow)
    except KeyboardInterrupt:
        return 130
