"""SQS queues: Create/GetUrl/List/Delete/Purge, attributes (dead-letter policy included), tags.

Queue URLs are ``http://<host:port>/<account>/<name>``; a request's QueueUrl is
resolved by account and name (any host), within the caller's region. The errors
clients see, and the wake-ups of long polls (:class:`Arrivals`), live here too.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ...server.errors import AWSError, already_exists
from ...server.operations import Context, operation
from ...server.protocol import register_query_error_codes
from ...store import schema, tag_store

Q, M = schema.sqs_queues, schema.sqs_messages

# The query-era codes clients still see as the error Code (botocore maps the shape name to the exception).
register_query_error_codes(
    "sqs",
    {
        "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
        "QueueNameExists": "QueueAlreadyExists",
        "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
        "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
        "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
        "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
        "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
        "ValidationException": "InvalidParameterValue",
    },
)

# Settable attributes: default, minimum, maximum (all are integers on the wire, as strings).
ATTRIBUTES = {
    "VisibilityTimeout": (30, 0, 43_200),
    "DelaySeconds": (0, 0, 900),
    "MaximumMessageSize": (262_144, 1_024, 1_048_576),
    "MessageRetentionPeriod": (345_600, 60, 1_209_600),
    "ReceiveMessageWaitTimeSeconds": (0, 0, 20),
}
REDRIVE_POLICY = "RedrivePolicy"
COMPUTED = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
)
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


# -- errors -------------------------------------------------------------------------


def queue_does_not_exist() -> AWSError:
    return AWSError("QueueDoesNotExist", "The specified queue does not exist.")


def invalid_parameter(message: str) -> AWSError:
    return AWSError("InvalidParameterValue", message)


def unsupported(message: str) -> AWSError:
    return AWSError("UnsupportedOperation", message)


# -- queues -------------------------------------------------------------------------


@dataclass(frozen=True)
class Queue:
    id: int
    account_id: str
    region: str
    name: str
    created_at: float
    modified_at: float
    attributes: dict

    def setting(self, name: str) -> int:
        return int(self.attributes.get(name, ATTRIBUTES[name][0]))

    def value(self, name: str) -> str:
        """An attribute as the API shows it (a string; "" for a policy that is not set)."""
        if name in ATTRIBUTES:
            return str(self.setting(name))
        return self.attributes.get(name, "")

    @property
    def redrive(self) -> dict | None:
        """The dead-letter policy: {"deadLetterTargetArn", "maxReceiveCount"}, or None."""
        policy = self.attributes.get(REDRIVE_POLICY)
        return json.loads(policy) if policy else None

    @property
    def arn(self) -> str:
        return queue_arn(self.account_id, self.region, self.name)


def queue_arn(account_id: str, region: str, name: str) -> str:
    return f"arn:aws:sqs:{region}:{account_id}:{name}"


def queue_url(endpoint: str, account_id: str, name: str) -> str:
    return f"{endpoint.rstrip('/')}/{account_id}/{name}"


def _endpoint(ctx: Context) -> str:
    host = ctx.headers.get("host")
    return f"http://{host}" if host else ctx.settings.endpoint_url


def parse_url(url: str) -> tuple[str, str]:
    """(account, name) of a queue URL, whatever its host."""
    parts = urlsplit(url).path.strip("/").split("/")
    if len(parts) != 2 or not parts[0].isdigit() or not QUEUE_NAME.fullmatch(parts[1]):
        raise AWSError("InvalidAddress", f"The address {url} is not valid for this endpoint.")
    return parts[0], parts[1]


def _find(conn, account_id: str, region: str, name: str) -> Queue | None:
    row = conn.execute(select(Q).where(Q.c.account_id == account_id, Q.c.region == region, Q.c.name == name)).first()
    return Queue(**row._mapping) if row else None


def resolve(conn, account_id: str, region: str, url: str) -> Queue:
    """The caller's queue at ``url``, or the error SQS gives (another account's queue is not visible)."""
    owner, name = parse_url(url)
    queue = _find(conn, account_id, region, name) if owner == account_id else None
    if queue is None:
        raise queue_does_not_exist()
    return queue


def _redrive_policy(value: str) -> str:
    """RedrivePolicy, checked and normalised ("" removes it)."""
    if value == "":
        return value
    try:
        policy = json.loads(value)
    except ValueError:
        policy = None
    target = policy.get("deadLetterTargetArn") if isinstance(policy, dict) else None
    try:
        count = int(policy.get("maxReceiveCount")) if isinstance(policy, dict) else 0
    except (TypeError, ValueError):
        count = 0
    if (
        not isinstance(target, str)
        or not _arn_parts(target)
        or not 1 <= count <= 1000
        or set(policy) - {"deadLetterTargetArn", "maxReceiveCount"}
    ):
        raise AWSError(
            "InvalidAttributeValue",
            "Invalid value for the parameter RedrivePolicy. Reason: it must be "
            'a JSON object {"deadLetterTargetArn": <queue ARN>, '
            '"maxReceiveCount": <1 to 1000>}.',
        )
    return json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": count}, separators=(",", ":"))


def _arn_parts(arn: str) -> tuple[str, str, str] | None:
    """(region, account, name) of a queue ARN."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "sqs"] or not QUEUE_NAME.fullmatch(parts[5]):
        return None
    return parts[3], parts[4], parts[5]


def dead_letter_queue(conn, queue: Queue) -> tuple[Queue, int] | None:
    """The queue's dead-letter queue and its maxReceiveCount, if it has one that exists."""
    policy = queue.redrive
    if policy is None:
        return None
    region, account, name = _arn_parts(policy["deadLetterTargetArn"])
    target = _find(conn, account, region, name)
    return (target, policy["maxReceiveCount"]) if target is not None else None


def _check_dead_letter_target(conn, account_id: str, region: str, name: str, attributes: dict) -> None:
    policy = attributes.get(REDRIVE_POLICY)
    if not policy:
        return
    target_region, account, target = _arn_parts(json.loads(policy)["deadLetterTargetArn"])
    if (
        (target_region, account) != (region, account_id)
        or target == name
        or _find(conn, account, target_region, target) is None
    ):
        raise invalid_parameter(
            f"Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter "
            "target does not exist, or is this queue, or is in another account or region."
        )


def _checked_attributes(attributes: dict[str, str]) -> dict[str, str]:
    checked = {}
    for name, value in attributes.items():
        if name in ("FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"):
            raise unsupported("FIFO queues are not supported by SelfMaker yet; use a standard queue.")
        if name == REDRIVE_POLICY:
            checked[name] = _redrive_policy(value)
            continue
        if name not in ATTRIBUTES:
            raise AWSError("InvalidAttributeName", f"Unknown or unsupported attribute {name}.")
        _, low, high = ATTRIBUTES[name]
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
        if number is None or not low <= number <= high:
            raise AWSError(
                "InvalidAttributeValue",
                f"Invalid value for the parameter {name}: it must be an integer from {low} to {high}.",
            )
        checked[name] = str(number)
    return checked


def _check_name(name: str) -> None:
    if name.endswith(".fifo"):
        raise unsupported("FIFO queues are not supported by SelfMaker yet; use a standard queue.")
    if not QUEUE_NAME.fullmatch(name):
        raise invalid_parameter("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")


@operation("sqs", "CreateQueue")
def create_queue(ctx: Context, params: dict) -> dict:
    name = params["QueueName"]
    _check_name(name)
    attributes = _checked_attributes(params.get("Attributes") or {})
    tags = params.get("tags") or {}
    _check_tags(tags)
    now = time.time()
    with ctx.store.write() as conn:
        _check_dead_letter_target(conn, ctx.account_id, ctx.region, name, attributes)
        attributes = {k: v for k, v in attributes.items() if v != ""}
        existing = _find(conn, ctx.account_id, ctx.region, name)
        if existing is None:
            try:
                conn.execute(
                    Q.insert().values(
                        account_id=ctx.account_id,
                        region=ctx.region,
                        name=name,
                        created_at=now,
                        modified_at=now,
                        attributes=attributes,
                    )
                )
                _tag(conn, queue_arn(ctx.account_id, ctx.region, name), tags)
            except IntegrityError:  # created concurrently (PostgreSQL); compare with that one
                existing = _find(conn, ctx.account_id, ctx.region, name)
        if existing is not None and any(existing.value(k) != v for k, v in attributes.items()):
            raise already_exists(
                "QueueNameExists",
                f"A queue already exists with the same name and a different "
                f"value for attribute(s) {', '.join(sorted(attributes))}",
            )
    return {"QueueUrl": queue_url(_endpoint(ctx), ctx.account_id, name)}


@operation("sqs", "GetQueueUrl")
def get_queue_url(ctx: Context, params: dict) -> dict:
    owner = params.get("QueueOwnerAWSAccountId") or ctx.account_id
    with ctx.store.read() as conn:
        queue = _find(conn, ctx.account_id, ctx.region, params["QueueName"]) if owner == ctx.account_id else None
    if queue is None:
        raise queue_does_not_exist()
    return {"QueueUrl": queue_url(_endpoint(ctx), queue.account_id, queue.name)}


@operation("sqs", "ListQueues")
def list_queues(ctx: Context, params: dict) -> dict:
    prefix = params.get("QueueNamePrefix") or ""
    limit = params.get("MaxResults")
    if limit is not None and not 1 <= limit <= 1000:
        raise invalid_parameter(
            "Value for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000."
        )
    after = ""
    if params.get("NextToken"):
        after = ctx.backends.resources.read_page_token(
            params["NextToken"], ["ListQueues", prefix], invalid_parameter("Invalid NextToken value.")
        )["after"]
    query = (
        select(Q.c.name)
        .where(Q.c.account_id == ctx.account_id, Q.c.region == ctx.region, Q.c.name > after)
        .order_by(Q.c.name)
        .limit((limit or 1000) + 1)
    )
    if prefix:
        query = query.where(func.substr(Q.c.name, 1, len(prefix)) == prefix)
    with ctx.store.read() as conn:
        names = [row.name for row in conn.execute(query)]
    result: dict = {"QueueUrls": [queue_url(_endpoint(ctx), ctx.account_id, n) for n in names[: limit or 1000]]}
    if limit and len(names) > limit:  # without MaxResults, SQS returns up to 1,000 and no token
        result["NextToken"] = ctx.backends.resources.page_token(["ListQueues", prefix], after=names[limit - 1])
    return result


@operation("sqs", "ListDeadLetterSourceQueues")
def list_dead_letter_source_queues(ctx: Context, params: dict) -> dict:
    limit = params.get("MaxResults") or 1000
    if not 1 <= limit <= 1000:
        raise invalid_parameter(
            "Value for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000."
        )
    with ctx.store.read() as conn:
        target = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        queues = [
            Queue(**row._mapping)
            for row in conn.execute(
                select(Q).where(Q.c.account_id == ctx.account_id, Q.c.region == ctx.region).order_by(Q.c.name)
            )
        ]
    sources = [q.name for q in queues if q.redrive and q.redrive["deadLetterTargetArn"] == target.arn]
    return {"queueUrls": [queue_url(_endpoint(ctx), ctx.account_id, name) for name in sources[:limit]]}


@operation("sqs", "DeleteQueue")
def delete_queue(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        conn.execute(delete(M).where(M.c.queue_id == queue.id))
        conn.execute(delete(Q).where(Q.c.id == queue.id))
        tag_store.forget(conn, queue.arn)
    arrivals(ctx.backends).notify(queue)
    return {}


@operation("sqs", "PurgeQueue")
def purge_queue(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        conn.execute(delete(M).where(M.c.queue_id == queue.id))
    return {}


@operation("sqs", "SetQueueAttributes")
def set_queue_attributes(ctx: Context, params: dict) -> dict:
    attributes = _checked_attributes(params.get("Attributes") or {})
    with ctx.store.write() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        _check_dead_letter_target(conn, ctx.account_id, ctx.region, queue.name, attributes)
        merged = {k: v for k, v in {**queue.attributes, **attributes}.items() if v != ""}
        conn.execute(update(Q).where(Q.c.id == queue.id).values(attributes=merged, modified_at=time.time()))
    return {}


@operation("sqs", "GetQueueAttributes")
def get_queue_attributes(ctx: Context, params: dict) -> dict:
    names = params.get("AttributeNames") or []
    known = (*ATTRIBUTES, REDRIVE_POLICY, *COMPUTED)
    for name in names:
        if name != "All" and name not in known:
            raise AWSError("InvalidAttributeName", f"Unknown or unsupported attribute {name}.")
    wanted = set(known) if "All" in names else set(names)
    now = time.time()
    with ctx.store.read() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        counts = {}
        if wanted & {
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        }:
            row = conn.execute(
                select(
                    func.count().filter(M.c.visible_at <= now),
                    func.count().filter(and_(M.c.visible_at > now, M.c.receive_count > 0)),
                    func.count().filter(and_(M.c.visible_at > now, M.c.receive_count == 0)),
                ).where(M.c.queue_id == queue.id, M.c.sent_at > now - queue.setting("MessageRetentionPeriod"))
            ).one()
            counts = dict(
                zip(
                    (
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed",
                    ),
                    row,
                )
            )
    values = {name: queue.value(name) for name in (*ATTRIBUTES, REDRIVE_POLICY) if queue.value(name)}
    values.update({k: str(v) for k, v in counts.items()})
    values.update(
        CreatedTimestamp=str(int(queue.created_at)),
        LastModifiedTimestamp=str(int(queue.modified_at)),
        QueueArn=queue.arn,
    )
    return {"Attributes": {k: v for k, v in values.items() if k in wanted}}


# Tags live in the common tag store (selfmaker/store/tag_store.py), keyed by the queue's ARN;
# SQS takes and gives them as one {key: value} map.


def _check_tags(tags: dict) -> None:
    if len(tags) > tag_store.MAX_TAGS:
        raise _too_many_tags()
    tag_store.check_lengths(tags, invalid_parameter)


def _too_many_tags() -> AWSError:
    return invalid_parameter(f"Too many tags added for queue: a queue can have at most {tag_store.MAX_TAGS} tags.")


def _tag(conn, arn: str, tags: dict) -> None:
    tag_store.add(conn, arn, [{"Key": k, "Value": v} for k, v in tags.items()], too_many=_too_many_tags())


@operation("sqs", "TagQueue")
def tag_queue(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        _check_tags(params["Tags"])
        _tag(conn, queue.arn, params["Tags"])
    return {}


@operation("sqs", "UntagQueue")
def untag_queue(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        tag_store.remove(conn, queue.arn, params["TagKeys"])
    return {}


@operation("sqs", "ListQueueTags")
def list_queue_tags(ctx: Context, params: dict) -> dict:
    with ctx.store.read() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        return {"Tags": tag_store.read_map(conn, queue.arn)}


# -- waking long polls ---------------------------------------------------------------


class _Arrivals:
    """Wakes long-polling receivers when their queue may have a message for them.

    The events live on the event loop, where receivers wait; senders, in any thread,
    schedule the wake-up there. An event is replaced once set, so a receiver that took
    it before looking at the queue cannot miss a message sent after it looked.
    Queues are keyed by (account, region, name), which a receiver knows from the URL.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[tuple, asyncio.Event] = {}

    def event(self, key: tuple) -> asyncio.Event:
        """The event the next send to the queue sets (call on the event loop)."""
        self._loop = asyncio.get_running_loop()
        return self._events.setdefault(key, asyncio.Event())

    def notify(self, queue: Queue) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, (queue.account_id, queue.region, queue.name))

    def _wake(self, key: tuple) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()


def arrivals(backends) -> _Arrivals:
    return backends.services.setdefault("sqs.arrivals", _Arrivals())
