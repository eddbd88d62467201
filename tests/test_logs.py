"""CloudWatch Logs: the subset the SageMaker SDKs call (groups, streams, events, tailing), through boto3 and the
real SDKs; and the internal log API jobs write through."""

from __future__ import annotations

import threading
import time

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import event

from selfmaker.aws.logs import log_store
from selfmaker.store import Store
from support.clients import error_of

pytestmark = pytest.mark.both_databases

ACCOUNT = "123456789012"


def now_ms() -> int:
    return int(time.time() * 1000)


# -- CloudWatch Logs: groups and streams -----------------------------------------------


@pytest.fixture
def logs(client):
    return client("logs")


def put(logs, group, stream, *messages, start=None):
    start = now_ms() if start is None else start
    return logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": start + i, "message": m} for i, m in enumerate(messages)],
    )


def test_log_group_and_stream_lifecycle(logs, client, unique):
    group = f"/aws/sagemaker/{unique('Jobs')}"
    logs.create_log_group(logGroupName=group)
    assert error_of(lambda: logs.create_log_group(logGroupName=group)) == (
        "ResourceAlreadyExistsException",
        "The specified log group already exists",
        400,
    )
    logs.create_log_stream(logGroupName=group, logStreamName="job/algo-1")
    assert (
        error_of(lambda: logs.create_log_stream(logGroupName=group, logStreamName="job/algo-1"))[0]
        == "ResourceAlreadyExistsException"
    )
    put(logs, group, "job/algo-1", "hello", "world")

    described = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in described] == [group]
    assert described[0]["storedBytes"] == len("helloworld")
    assert described[0]["logGroupArn"] == f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}"
    # Scoped by region: the group does not exist in another one.
    assert client("logs", region="eu-west-1").describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []

    logs.delete_log_stream(logGroupName=group, logStreamName="job/algo-1")
    assert error_of(lambda: logs.delete_log_stream(logGroupName=group, logStreamName="job/algo-1")) == (
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
        400,
    )
    logs.delete_log_group(logGroupName=group)
    for call in (
        lambda: logs.delete_log_group(logGroupName=group),
        lambda: logs.create_log_stream(logGroupName=group, logStreamName="s"),
        lambda: logs.describe_log_streams(logGroupName=group),
        lambda: logs.get_log_events(logGroupName=group, logStreamName="s"),
        lambda: put(logs, group, "s", "x"),
    ):
        assert error_of(call) == ("ResourceNotFoundException", "The specified log group does not exist.", 400)


def test_create_log_group_refuses_what_selfmaker_cannot_honour(logs, unique):
    group = unique("kms")
    code, message, _ = error_of(lambda: logs.create_log_group(logGroupName=group, kmsKeyId="arn:aws:kms:k"))
    assert code == "InvalidParameterException" and "kmsKeyId" in message
    assert error_of(lambda: logs.create_log_group(logGroupName="has spaces"))[0] == "InvalidParameterException"
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []


def test_describe_log_groups_pages_with_prefix_and_pattern(logs, unique):
    base = f"/pages/{unique('g')}"
    names = [f"{base}/{i}" for i in range(5)]
    for name in reversed(names):
        logs.create_log_group(logGroupName=name)
    seen, token = [], None
    while True:
        page = logs.describe_log_groups(logGroupNamePrefix=base, limit=2, **({"nextToken": token} if token else {}))
        seen += [g["logGroupName"] for g in page["logGroups"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == names  # sorted by name, every group once, no token after the last page
    assert [
        g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePattern=base.upper() + "/3")["logGroups"]
    ] == [names[3]]  # patterns ignore case
    token = logs.describe_log_groups(logGroupNamePrefix=base, limit=2)["nextToken"]
    assert error_of(lambda: logs.describe_log_groups(logGroupNamePrefix=base + "/1", nextToken=token)) == (
        "InvalidParameterException",
        "The specified nextToken is invalid.",
        400,
    )
    assert error_of(lambda: logs.describe_log_groups(nextToken=token[:-3] + "abc"))[0] == "InvalidParameterException"
    assert (
        error_of(lambda: logs.describe_log_groups(logGroupNamePrefix=base, logGroupNamePattern="x"))[0]
        == "InvalidParameterException"
    )


def test_describe_log_streams_orders_and_pages(logs, unique):
    group = unique("streams")
    logs.create_log_group(logGroupName=group)
    start = now_ms()
    for i, name in enumerate(["job/algo-2", "job/algo-1", "other/algo-1"]):
        logs.create_log_stream(logGroupName=group, logStreamName=name)
        put(logs, group, name, "line", start=start - 1000 * i)  # algo-2 has the newest event

    def names(**kw):
        out, token = [], None
        while True:
            paging = {"nextToken": token} if token else {}
            page = logs.describe_log_streams(logGroupName=group, limit=1, **kw, **paging)
            out += [s["logStreamName"] for s in page["logStreams"]]
            if not (token := page.get("nextToken")):
                return out

    assert names(logStreamNamePrefix="job/") == ["job/algo-1", "job/algo-2"]
    assert names(descending=True) == ["other/algo-1", "job/algo-2", "job/algo-1"]
    assert names(orderBy="LastEventTime", descending=True) == ["job/algo-2", "job/algo-1", "other/algo-1"]
    stream = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix="job/algo-2")["logStreams"][0]
    assert stream["firstEventTimestamp"] == stream["lastEventTimestamp"] == start
    assert stream["arn"].endswith(f"log-group:{group}:log-stream:job/algo-2")
    code, message, _ = error_of(
        lambda: logs.describe_log_streams(logGroupName=group, logStreamNamePrefix="job/", orderBy="LastEventTime")
    )
    assert code == "InvalidParameterException" and "LastEventTime" in message
    by_arn = logs.describe_log_streams(logGroupIdentifier=f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}")
    assert len(by_arn["logStreams"]) == 3


# -- CloudWatch Logs: events ---------------------------------------------------------------


@pytest.fixture
def stream(logs, unique):
    group = unique("events")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="job/algo-1-1700000000")
    return group, "job/algo-1-1700000000"


def test_get_log_events_forward_token_waits_at_the_end_and_resumes(logs, stream):
    group, name = stream
    put(logs, group, name, *[f"line {i}" for i in range(5)])
    read = dict(logGroupName=group, logStreamName=name)

    page = logs.get_log_events(**read, startFromHead=True, limit=3)
    assert [e["message"] for e in page["events"]] == ["line 0", "line 1", "line 2"]
    page = logs.get_log_events(**read, nextToken=page["nextForwardToken"])
    assert [e["message"] for e in page["events"]] == ["line 3", "line 4"]
    end = logs.get_log_events(**read, nextToken=page["nextForwardToken"])
    assert end["events"] == [] and end["nextForwardToken"] == page["nextForwardToken"]

    put(logs, group, name, "line 5", "line 6")  # the stream grows between calls
    more = logs.get_log_events(**read, nextToken=end["nextForwardToken"])
    assert [e["message"] for e in more["events"]] == ["line 5", "line 6"]
    assert all(e["ingestionTime"] >= e["timestamp"] - 1000 for e in more["events"])

    back = logs.get_log_events(**read, nextToken=more["nextBackwardToken"], limit=2)
    assert [e["message"] for e in back["events"]] == ["line 3", "line 4"]
    back = logs.get_log_events(**read, nextToken=back["nextBackwardToken"], limit=10)
    assert [e["message"] for e in back["events"]] == ["line 0", "line 1", "line 2"]
    start = logs.get_log_events(**read, nextToken=back["nextBackwardToken"])
    assert start["events"] == [] and start["nextBackwardToken"] == back["nextBackwardToken"]


def test_get_log_events_from_the_tail_and_by_time(logs, stream):
    group, name = stream
    base = now_ms() - 60_000
    logs.put_log_events(
        logGroupName=group,
        logStreamName=name,
        logEvents=[  # unordered batches are accepted
            {"timestamp": base + 2, "message": "c"},
            {"timestamp": base, "message": "a"},
            {"timestamp": base + 1, "message": "b"},
            {"timestamp": base + 3, "message": "d"},
        ],
    )
    read = dict(logGroupName=group, logStreamName=name)
    assert [e["message"] for e in logs.get_log_events(**read)["events"]] == ["a", "b", "c", "d"]
    assert [e["message"] for e in logs.get_log_events(**read, limit=2)["events"]] == ["c", "d"]  # the newest
    window = logs.get_log_events(**read, startTime=base + 1, endTime=base + 3, startFromHead=True)["events"]
    assert [e["message"] for e in window] == ["b", "c"]  # endTime is exclusive


def test_get_log_events_refuses_foreign_and_forged_tokens(logs, stream):
    group, name = stream
    logs.create_log_stream(logGroupName=group, logStreamName="other")
    token = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)["nextForwardToken"]
    for bad in (token.replace("f/", "b/", 1), token[:-2] + "xx", "f/not-a-token"):
        assert error_of(lambda: logs.get_log_events(logGroupName=group, logStreamName=name, nextToken=bad)) == (
            "InvalidParameterException",
            "The specified nextToken is invalid.",
            400,
        )
    assert (
        error_of(lambda: logs.get_log_events(logGroupName=group, logStreamName="other", nextToken=token))[0]
        == "InvalidParameterException"
    )


def test_sdk_log_tailer_follows_a_stream_being_written(logs, unique):
    """The loop of SDK v3's LogStreamHandler / v2's multi_stream_iter, while the job writes."""
    group, job = unique("tail"), unique("job")
    tokens: dict[str, str] = {}

    def poll() -> list[str]:
        try:
            streams = logs.describe_log_streams(
                logGroupName=group, logStreamNamePrefix=f"{job}/", orderBy="LogStreamName"
            )["logStreams"]
        except ClientError as err:
            assert err.response["Error"]["Code"] == "ResourceNotFoundException"
            return []
        out = []
        for s in streams:
            while True:
                token = {"nextToken": tokens[s["logStreamName"]]} if s["logStreamName"] in tokens else {}
                page = logs.get_log_events(
                    logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True, **token
                )
                tokens[s["logStreamName"]] = page["nextForwardToken"]
                if not page["events"]:
                    break
                out += [f"{s['logStreamName'].split('/')[1]}: {e['message']}" for e in page["events"]]
        return out

    assert poll() == []  # no group yet: tolerated
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=f"{job}/algo-1")
    put(logs, group, f"{job}/algo-1", "epoch 1")
    assert poll() == ["algo-1: epoch 1"]
    assert poll() == []
    logs.create_log_stream(logGroupName=group, logStreamName=f"{job}/algo-2")
    put(logs, group, f"{job}/algo-1", "epoch 2", "epoch 3")
    put(logs, group, f"{job}/algo-2", "worker up")
    assert poll() == ["algo-1: epoch 2", "algo-1: epoch 3", "algo-2: worker up"]


def test_put_log_events_rejects_events_out_of_range(logs, stream):
    group, name = stream
    now, hour, day = now_ms(), 3_600_000, 86_400_000
    old = logs.put_log_events(
        logGroupName=group,
        logStreamName=name,
        logEvents=[
            {"timestamp": now - 14 * day - hour, "message": "too old"},
            {"timestamp": now - 14 * day + hour, "message": "old but kept"},
        ],
    )
    assert old["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1}
    new = logs.put_log_events(
        logGroupName=group,
        logStreamName=name,
        logEvents=[{"timestamp": now, "message": "kept"}, {"timestamp": now + 3 * hour, "message": "too new"}],
    )
    assert new["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 1}
    assert "rejectedLogEventsInfo" not in put(logs, group, name, "fine")
    events = logs.get_log_events(logGroupName=group, logStreamName=name)["events"]
    assert [e["message"] for e in events] == ["old but kept", "kept", "fine"]
    code, message, _ = error_of(
        lambda: logs.put_log_events(
            logGroupName=group,
            logStreamName=name,
            logEvents=[{"timestamp": now - 25 * 3_600_000, "message": "a"}, {"timestamp": now, "message": "b"}],
        )
    )
    assert code == "InvalidParameterException" and "24 hours" in message
    assert error_of(lambda: put(logs, group, "missing-stream", "x")) == (
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
        400,
    )


def test_filter_log_events_patterns_streams_and_time(logs, stream):
    group, name = stream
    logs.create_log_stream(logGroupName=group, logStreamName="job/algo-2")
    logs.create_log_stream(logGroupName=group, logStreamName="endpoint/variant")
    t = now_ms() - 60_000
    logs.put_log_events(
        logGroupName=group,
        logStreamName=name,
        logEvents=[
            {"timestamp": t, "message": "ERROR disk full"},
            {"timestamp": t + 2, "message": "Epoch 1: loss=0.5"},
        ],
    )
    logs.put_log_events(
        logGroupName=group,
        logStreamName="job/algo-2",
        logEvents=[
            {"timestamp": t + 1, "message": "WARN slow; retrying"},
            {"timestamp": t + 3, "message": "ERROR: retrying"},
        ],
    )
    logs.put_log_events(
        logGroupName=group,
        logStreamName="endpoint/variant",
        logEvents=[{"timestamp": t + 4, "message": "error lowercase"}],
    )

    def messages(**kw):
        return [e["message"] for e in logs.filter_log_events(logGroupName=group, **kw)["events"]]

    assert messages() == [
        "ERROR disk full",
        "WARN slow; retrying",
        "Epoch 1: loss=0.5",
        "ERROR: retrying",
        "error lowercase",
    ]  # interleaved across streams, in time order
    assert messages(filterPattern="ERROR") == ["ERROR disk full", "ERROR: retrying"]  # case-sensitive
    assert messages(filterPattern="ERROR -retrying") == ["ERROR disk full"]
    assert messages(filterPattern='"loss=0.5"') == ["Epoch 1: loss=0.5"]
    assert messages(filterPattern="?WARN ?disk") == ["ERROR disk full", "WARN slow; retrying"]
    assert messages(logStreamNamePrefix="job/", filterPattern="retrying") == ["WARN slow; retrying", "ERROR: retrying"]
    assert messages(logStreamNames=["endpoint/variant", "no-such-stream"]) == ["error lowercase"]
    assert messages(startTime=t + 1, endTime=t + 3) == [
        "WARN slow; retrying",
        "Epoch 1: loss=0.5",
        "ERROR: retrying",
    ]  # both ends inclusive
    event = logs.filter_log_events(logGroupName=group, filterPattern="full")["events"][0]
    assert event["logStreamName"] == name and event["eventId"]

    for bad in ("ERROR:", '"unbalanced', "{ $.level = 1 }", "[ip, user]"):
        assert (
            error_of(lambda: logs.filter_log_events(logGroupName=group, filterPattern=bad))[0]
            == "InvalidParameterException"
        )
    assert (
        error_of(lambda: logs.filter_log_events(logGroupName=group, logStreamNames=[name], logStreamNamePrefix="job/"))[
            0
        ]
        == "InvalidParameterException"
    )


def test_filter_log_events_pages(logs, stream):
    group, name = stream
    put(logs, group, name, *[f"match {i}" if i % 2 == 0 else f"skip {i}" for i in range(10)])
    seen, token, pages = [], None, 0
    while True:
        page = logs.filter_log_events(
            logGroupName=group, filterPattern="match", limit=2, **({"nextToken": token} if token else {})
        )
        seen += [e["message"] for e in page["events"]]
        pages += 1
        if not (token := page.get("nextToken")):
            break
    assert seen == [f"match {i}" for i in range(0, 10, 2)] and pages == 3
    token = logs.filter_log_events(logGroupName=group, limit=1)["nextToken"]
    assert (
        error_of(lambda: logs.filter_log_events(logGroupName=group, filterPattern="match", nextToken=token))[0]
        == "InvalidParameterException"
    )  # a token belongs to the query that issued it


# -- the internal API ---------------------------------------------------------------------


@pytest.fixture
def server_store(server):
    """The session server's own database, opened from the test process as a job runner would."""
    store = Store(server.database_url or f"sqlite:///{server.data_dir / 'metadata.db'}")
    yield store
    store.close()


def test_append_and_read_events_without_http(server_store, logs, unique):
    group, job = f"/aws/sagemaker/TrainingJobs/{unique('internal')}", unique("job")
    t = now_ms()
    assert (
        log_store.append_events(
            server_store,
            ACCOUNT,
            "us-east-1",
            group,
            f"{job}/algo-1",
            [(t, "starting"), (t + 1, ""), (t + 2, "training")],
        )
        == 2
    )  # empty lines skipped
    log_store.append_events(server_store, ACCOUNT, "us-east-1", group, f"{job}/algo-2", [(t + 1, "worker")])
    log_store.append_events(server_store, ACCOUNT, "us-east-1", group, "other-job/algo-1", [(t, "not mine")])
    log_store.append_events(server_store, "210987654321", "us-east-1", group, f"{job}/algo-1", [(t, "other account")])

    events = log_store.read_events(server_store, ACCOUNT, "us-east-1", group, stream_prefix=f"{job}/")
    assert [(e.stream, e.message) for e in events] == [
        (f"{job}/algo-1", "starting"),
        (f"{job}/algo-1", "training"),
        (f"{job}/algo-2", "worker"),
    ]
    assert log_store.read_events(server_store, ACCOUNT, "us-east-1", group, f"{job}/", after=events[-1].id) == []
    assert log_store.read_events(server_store, ACCOUNT, "us-east-1", "/no/such/group") == []

    # What the internal API wrote is what the Logs API serves.
    served = logs.get_log_events(logGroupName=group, logStreamName=f"{job}/algo-1", startFromHead=True)["events"]
    assert [e["message"] for e in served] == ["starting", "training"]


def test_follow_yields_events_as_they_are_written(server_store, unique):
    group, stream = unique("follow"), "job/algo-1"
    done = threading.Event()

    def job():
        for i in range(3):
            log_store.append_events(server_store, ACCOUNT, "us-east-1", group, stream, [(now_ms(), f"step {i}")])
            time.sleep(0.05)
        done.set()

    writer = threading.Thread(target=job)
    writer.start()
    followed = [
        e.message
        for e in log_store.follow(
            server_store, ACCOUNT, "us-east-1", group, "job/", poll_seconds=0.02, stop=done.is_set
        )
    ]
    writer.join()
    assert followed == ["step 0", "step 1", "step 2"]


def test_append_events_is_one_transaction_per_batch(server_store, logs, unique):
    group = unique("bulk")
    t = now_ms()
    commits = []

    def count(conn):
        commits.append(conn)

    event.listen(server_store.engine, "commit", count)
    try:
        log_store.append_events(
            server_store, ACCOUNT, "us-east-1", group, "s", ((t + i, f"line {i}") for i in range(3000))
        )
    finally:
        event.remove(server_store.engine, "commit", count)
    assert len(commits) == 1
    page = logs.get_log_events(logGroupName=group, logStreamName="s", startFromHead=True, limit=10_000)
    assert len(page["events"]) == 3000 and page["events"][-1]["message"] == "line 2999"
    stream = logs.describe_log_streams(logGroupName=group)["logStreams"][0]
    assert (stream["firstEventTimestamp"], stream["lastEventTimestamp"]) == (t, t + 2999)


# -- the real SageMaker SDKs ----------------------------------------------------------------


def test_sdk_v3_validates_roles_and_tails_job_logs(server, sdk_v3, unique):
    result = sdk_v3.run(
        server,
        """
        import json, os, time
        import boto3
        from sagemaker.core.helper.iam_role_resolver import RoleValidationError, resolve_and_validate_role
        from sagemaker.core.utils.logs import MultiLogStreamHandler

        # SimulatePrincipalPolicy (paginated) and the GetRole trust check, as ModelTrainer does.
        validated = resolve_and_validate_role("arn:aws:iam::123456789012:role/SageMakerRole", "training")
        try:
            resolve_and_validate_role("arn:aws:iam::999999999999:role/Elsewhere", "training")
            foreign = "accepted"
        except RoleValidationError:
            foreign = "RoleValidationError"

        logs, group, job = boto3.client("logs"), os.environ["LOG_GROUP"], os.environ["JOB"]
        handler = MultiLogStreamHandler(group, job, expected_stream_count=2)
        before = list(handler.get_latest_log_events())  # the group does not exist yet
        logs.create_log_group(logGroupName=group)
        for stream in ("algo-1", "algo-2"):
            logs.create_log_stream(logGroupName=group, logStreamName=f"{job}/{stream}")
        now = int(time.time() * 1000)

        def put(stream, ts, message):
            logs.put_log_events(logGroupName=group, logStreamName=f"{job}/{stream}",
                                logEvents=[{"timestamp": ts, "message": message}])

        put("algo-1", now, "a1")
        first = [f"{s}: {e['message']}" for s, e in handler.get_latest_log_events()]
        put("algo-2", now + 1, "b1")
        put("algo-1", now + 2, "a2")
        second = [f"{s}: {e['message']}" for s, e in handler.get_latest_log_events()]
        print(json.dumps({"validated": validated, "foreign": foreign, "before": before, "first": first,
                          "second": second}))
    """,
        env={"LOG_GROUP": unique("/aws/sagemaker/TrainingJobs/v3"), "JOB": unique("job")},
    )
    job = result["first"][0].split("/")[0]
    assert result == {
        "validated": "arn:aws:iam::123456789012:role/SageMakerRole",
        "foreign": "RoleValidationError",
        "before": [],
        "first": [f"{job}/algo-1: a1"],
        "second": [f"{job}/algo-1: a2", f"{job}/algo-2: b1"],
    }


def test_sdk_v2_multi_stream_iter_resumes_by_position(server, sdk_v2, unique):
    result = sdk_v2.run(
        server,
        """
        import json, os, time
        import boto3
        from sagemaker.logs import Position, multi_stream_iter

        logs, group = boto3.client("logs"), os.environ["LOG_GROUP"]
        streams = ["job/algo-1-1700000000", "job/algo-2-1700000000"]
        logs.create_log_group(logGroupName=group)
        for s in streams:
            logs.create_log_stream(logGroupName=group, logStreamName=s)
        now = int(time.time() * 1000)

        def put(stream, *events):
            logs.put_log_events(logGroupName=group, logStreamName=streams[stream],
                                logEvents=[{"timestamp": ts, "message": m} for ts, m in events])

        positions = {s: Position(timestamp=0, skip=0) for s in streams}

        def drain():  # what Session.logs_for_job does on every poll
            seen = []
            for idx, event in multi_stream_iter(logs, group, streams, positions):
                seen.append(f"{idx}: {event['message']}")
                ts, s = event["timestamp"], streams[idx]
                last = positions[s]
                positions[s] = Position(ts, last.skip + 1) if last.timestamp == ts else Position(ts, 1)
            return seen

        put(0, (now, "a1"), (now, "a2"))  # two events at the same millisecond
        put(1, (now + 1, "b1"))
        first = drain()
        put(0, (now, "a3"), (now + 5, "a4"))  # the stream grows, again at the resume timestamp
        second = drain()
        print(json.dumps({"first": first, "second": second, "third": drain()}))
    """,
        env={"LOG_GROUP": unique("/aws/sagemaker/TrainingJobs/v2")},
    )
    assert result == {"first": ["0: a1", "0: a2", "1: b1"], "second": ["0: a3", "0: a4"], "third": []}
