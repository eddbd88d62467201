"""SQS messages: send, receive (long polling on the event loop), delete, visibility, and batches of them.

A message is receivable while ``visible_at <= now``; receiving it moves
``visible_at`` on by the visibility timeout, so an unacknowledged message comes
back after a crash of its consumer, and of the server. ReceiveMessage is a
coroutine that waits on an event the senders set, or until the next in-flight
message becomes visible again: a waiting receive holds no thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass

import anyio
from sqlalchemy import delete, func, select, update

from ...server.errors import AWSError
from ...server.operations import Context, operation
from ..sts import caller_identity
from .queues import (
    M,
    Queue,
    arrivals,
    dead_letter_queue,
    invalid_parameter,
    parse_url,
    resolve,
    unsupported,
)

SYSTEM_ATTRIBUTES = ("SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp")
MAX_RECEIVE = 10
MAX_MESSAGE_ATTRIBUTES = 10
_INVALID_CHARACTER = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# -- message attributes -------------------------------------------------------------


def _checked_message_attributes(attributes: dict) -> dict:
    """MessageAttributes as stored (binary values base64-encoded), after SQS's checks."""
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise invalid_parameter(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}]."
        )
    stored = {}
    for name, value in attributes.items():
        data_type = value.get("DataType", "")
        base = data_type.split(".", 1)[0]
        if base not in ("String", "Number", "Binary"):
            raise invalid_parameter(
                f"The type of message (user) attribute '{name}' is invalid. You must use only "
                "the following supported type prefixes: Binary, Number, String."
            )
        if value.get("StringListValues") or value.get("BinaryListValues"):
            raise unsupported("List message attribute values are not supported.")
        if base == "Binary":
            if value.get("BinaryValue") is None:
                raise invalid_parameter(
                    f"Message (user) attribute '{name}' must contain a non-empty value of "
                    f"message attribute type '{data_type}'."
                )
            stored[name] = {"DataType": data_type, "BinaryValue": base64.b64encode(value["BinaryValue"]).decode()}
            continue
        text = value.get("StringValue")
        if not text:
            raise invalid_parameter(
                f"Message (user) attribute '{name}' must contain a non-empty value of message "
                f"attribute type '{data_type}'."
            )
        if base == "Number":
            try:
                float(text)
            except ValueError:
                raise invalid_parameter(
                    f"Can't cast the value of message (user) attribute '{name}' to a number."
                ) from None
        stored[name] = {"DataType": data_type, "StringValue": text}
    return stored


def _wire_attributes(stored: dict) -> dict:
    return {
        name: ({**v, "BinaryValue": base64.b64decode(v["BinaryValue"])} if "BinaryValue" in v else v)
        for name, v in stored.items()
    }


def md5_of_attributes(attributes: dict) -> str:
    """SQS's digest of message attributes: names sorted, each field length-prefixed (big-endian uint32)."""
    digest = hashlib.md5()

    def put(data: bytes) -> None:
        digest.update(len(data).to_bytes(4, "big") + data)

    for name in sorted(attributes):
        value = attributes[name]
        put(name.encode())
        put(value["DataType"].encode())
        if "BinaryValue" in value:
            digest.update(b"\x02")
            binary = value["BinaryValue"]
            put(binary if isinstance(binary, bytes) else base64.b64decode(binary))
        else:
            digest.update(b"\x01")
            put(value["StringValue"].encode())
    return digest.hexdigest()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _attribute_size(stored: dict) -> int:
    return sum(
        len(name.encode())
        + len(v["DataType"].encode())
        + (len(base64.b64decode(v["BinaryValue"])) if "BinaryValue" in v else len(v["StringValue"].encode()))
        for name, v in stored.items()
    )


# -- sending ------------------------------------------------------------------------


def _send(
    backends,
    account_id: str,
    region: str,
    url: str,
    body: str,
    sender_id: str,
    delay: int | None = None,
    attributes: dict | None = None,
) -> dict:
    if not body:
        raise AWSError("MissingParameter", "The request must contain the parameter MessageBody.")
    if bad := _INVALID_CHARACTER.search(body):
        raise AWSError(
            "InvalidMessageContents",
            f"Invalid binary character '#x{ord(bad.group()):X}' was found in "
            "the message body, the set of allowed characters is #x9 | #xA | "
            "#xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        )
    stored = _checked_message_attributes(attributes or {})
    if delay is not None and not 0 <= delay <= 900:
        raise invalid_parameter(
            f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
        )
    message_id = str(uuid.uuid4())
    now = time.time()
    with backends.store.write() as conn:
        queue = resolve(conn, account_id, region, url)
        limit = queue.setting("MaximumMessageSize")
        if len(body.encode()) + _attribute_size(stored) > limit:
            raise invalid_parameter(
                f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            )
        wait = queue.setting("DelaySeconds") if delay is None else delay
        conn.execute(
            M.insert().values(
                queue_id=queue.id,
                message_id=message_id,
                body=body,
                attributes=stored or None,
                sender_id=sender_id,
                sent_at=now,
                visible_at=now + wait,
                receive_count=0,
            )
        )
    arrivals(backends).notify(queue)
    result = {"MessageId": message_id, "MD5OfMessageBody": _md5(body)}
    if stored:
        result["MD5OfMessageAttributes"] = md5_of_attributes(stored)
    return result


def send_message(backends, account_id: str, region: str, queue_url: str, body: str) -> str:
    """Send ``body`` to the queue at ``queue_url`` as ``account_id``; return the MessageId.

    Raises AWSError QueueDoesNotExist (or InvalidAddress for a URL that names no queue),
    with the message a client of SendMessage would see.
    """
    return _send(backends, account_id, region, queue_url, body, sender_id=account_id)["MessageId"]


def _check_standard_queue_entry(params: dict) -> None:
    if params.get("MessageSystemAttributes"):
        raise unsupported("MessageSystemAttributes (AWSTraceHeader) are not supported by SelfMaker yet.")
    if params.get("MessageDeduplicationId") or params.get("MessageGroupId"):
        raise invalid_parameter(
            "The request include parameter that is not valid for this queue type: "
            "MessageDeduplicationId and MessageGroupId are for FIFO queues."
        )


@operation("sqs", "SendMessage")
def send_message_operation(ctx: Context, params: dict) -> dict:
    _check_standard_queue_entry(params)
    return _send(
        ctx.backends,
        ctx.account_id,
        ctx.region,
        params["QueueUrl"],
        params["MessageBody"],
        sender_id=caller_identity(ctx)[1],
        delay=params.get("DelaySeconds"),
        attributes=params.get("MessageAttributes"),
    )


# -- receiving ----------------------------------------------------------------------


def _invalid_receipt(handle: str) -> AWSError:
    return AWSError("ReceiptHandleIsInvalid", f'The input receipt handle "{handle}" is not a valid receipt handle.')


def _receipt(queue_id: int, row_id: int, nonce: str) -> str:
    return base64.urlsafe_b64encode(f"{queue_id}:{row_id}:{nonce}".encode()).decode()


def _parse_receipt(handle: str) -> tuple[int, int, str]:
    try:
        queue_id, row_id, nonce = base64.urlsafe_b64decode(handle.encode()).decode().split(":")
        return int(queue_id), int(row_id), nonce
    except (ValueError, binascii.Error, UnicodeError):
        raise _invalid_receipt(handle) from None


def _wanted_attribute(name: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern in ("All", ".*") or pattern == name or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
            return True
    return False


def _message(queue: Queue, row: dict, nonce: str, system: list[str], user: list[str]) -> dict:
    message = {
        "MessageId": row["message_id"],
        "ReceiptHandle": _receipt(queue.id, row["id"], nonce),
        "Body": row["body"],
        "MD5OfBody": _md5(row["body"]),
    }
    if system:
        every = "All" in system
        values = {
            "SenderId": row["sender_id"],
            "SentTimestamp": str(int(row["sent_at"] * 1000)),
            "ApproximateReceiveCount": str(row["receive_count"]),
            "ApproximateFirstReceiveTimestamp": str(int(row["first_received_at"] * 1000)),
        }
        message["Attributes"] = {k: v for k, v in values.items() if every or k in system}
    if user and row["attributes"]:
        chosen = {k: v for k, v in row["attributes"].items() if _wanted_attribute(k, user)}
        if chosen:
            message["MessageAttributes"] = _wire_attributes(chosen)
            message["MD5OfMessageAttributes"] = md5_of_attributes(chosen)
    return message


@dataclass(frozen=True)
class _Receive:
    url: str
    count: int
    visibility: int | None
    system: list[str]
    user: list[str]


@dataclass(frozen=True)
class _Received:
    queue: Queue
    messages: list[dict]
    next_visible: float | None  # with no messages: when an in-flight or delayed one becomes visible


def _receive_now(backends, account_id: str, region: str, request: _Receive) -> _Received:
    """Take up to ``count`` visible messages now, hiding each for the visibility timeout."""
    now = time.time()
    with backends.store.read() as conn:  # an empty poll, the common case, takes no write lock
        queue = resolve(conn, account_id, region, request.url)
        cutoff = now - queue.setting("MessageRetentionPeriod")
        candidates = [
            row.id
            for row in conn.execute(
                select(M.c.id)
                .where(M.c.queue_id == queue.id, M.c.visible_at <= now, M.c.sent_at > cutoff)
                .order_by(M.c.id)
                .limit(request.count)
            )
        ]
        if not candidates:
            next_visible = conn.execute(
                select(func.min(M.c.visible_at)).where(M.c.queue_id == queue.id, M.c.visible_at > now)
            ).scalar()
            return _Received(queue, [], next_visible)
    visibility = queue.setting("VisibilityTimeout") if request.visibility is None else request.visibility
    messages, dead_letter = [], None
    with backends.store.write() as conn:
        conn.execute(delete(M).where(M.c.queue_id == queue.id, M.c.sent_at <= cutoff))  # past retention
        rows = conn.execute(
            select(M)
            .where(M.c.id.in_(candidates), M.c.visible_at <= now)
            .order_by(M.c.id)
            .with_for_update(skip_locked=True)
        ).all()
        dead_letter = dead_letter_queue(conn, queue)
        for row in rows:
            if dead_letter is not None and row.receive_count >= dead_letter[1]:  # received too often: move it
                conn.execute(
                    update(M)
                    .where(M.c.id == row.id)
                    .values(queue_id=dead_letter[0].id, visible_at=now, receipt_nonce=None)
                )
                continue
            nonce = secrets.token_hex(8)
            taken = {
                **row._mapping,
                "receive_count": row.receive_count + 1,
                "first_received_at": row.first_received_at or now,
            }
            changed = conn.execute(
                update(M)
                .where(M.c.id == row.id, M.c.visible_at <= now)
                .values(
                    visible_at=now + visibility,
                    receive_count=taken["receive_count"],
                    first_received_at=taken["first_received_at"],
                    receipt_nonce=nonce,
                )
            ).rowcount
            if changed:
                messages.append(_message(queue, taken, nonce, request.system, request.user))
    if dead_letter is not None and len(messages) < len(rows):
        arrivals(backends).notify(dead_letter[0])
    # Other receivers may have taken every candidate, or they went to the dead-letter queue: look again at once.
    return _Received(queue, messages, None if messages else now)


def _legacy_attribute_names(params: dict) -> dict:
    """ReceiveMessage's AttributeNames once named message attributes (SentTimestamp, ...), and SQS still
    accepts them there though the model now types them as queue attributes: move them where they belong."""
    names = params.get("AttributeNames")
    if not isinstance(names, list) or not any(n in SYSTEM_ATTRIBUTES for n in names):
        return params
    system = [n for n in names if n in SYSTEM_ATTRIBUTES]
    return {
        **params,
        "AttributeNames": [n for n in names if n not in SYSTEM_ATTRIBUTES],
        "MessageSystemAttributeNames": [*(params.get("MessageSystemAttributeNames") or []), *system],
    }


@operation("sqs", "ReceiveMessage", normalise=_legacy_attribute_names)
async def receive_message(ctx: Context, params: dict) -> dict:
    count = params.get("MaxNumberOfMessages", 1)
    if not 1 <= count <= MAX_RECEIVE:
        raise invalid_parameter(
            f"Value {count} for parameter MaxNumberOfMessages is invalid. Reason: Must be "
            f"between 1 and {MAX_RECEIVE}, if provided."
        )
    visibility = params.get("VisibilityTimeout")
    if visibility is not None and not 0 <= visibility <= 43_200:
        raise invalid_parameter(
            f"Value {visibility} for parameter VisibilityTimeout is invalid. Reason: Must be "
            "between 0 and 43200, if provided."
        )
    wait = params.get("WaitTimeSeconds")
    if wait is not None and not 0 <= wait <= 20:
        raise invalid_parameter(
            f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
        )
    system = [*(params.get("AttributeNames") or []), *(params.get("MessageSystemAttributeNames") or [])]
    request = _Receive(params["QueueUrl"], count, visibility, system, params.get("MessageAttributeNames") or [])
    owner, name = parse_url(request.url)
    waits = arrivals(ctx.backends)
    deadline = None
    while True:
        arrived = waits.event((owner, ctx.region, name))  # taken before looking: no send goes unnoticed
        received = await anyio.to_thread.run_sync(_receive_now, ctx.backends, ctx.account_id, ctx.region, request)
        now = time.time()
        if deadline is None:
            deadline = now + (received.queue.setting("ReceiveMessageWaitTimeSeconds") if wait is None else wait)
        if received.messages or now >= deadline:
            return {"Messages": received.messages} if received.messages else {}
        until = deadline if received.next_visible is None else min(deadline, received.next_visible)
        try:
            await asyncio.wait_for(arrived.wait(), max(until - now, 0.0))
        except TimeoutError:
            pass


def _held_message(conn, queue: Queue, handle: str):
    queue_id, row_id, nonce = _parse_receipt(handle)
    if queue_id != queue.id:
        raise _invalid_receipt(handle)
    return conn.execute(select(M).where(M.c.id == row_id, M.c.queue_id == queue.id)).first(), nonce


def _delete(conn, queue: Queue, handle: str) -> None:
    row, _ = _held_message(conn, queue, handle)
    if row is not None:  # deleting a message that is already gone succeeds, as in SQS
        conn.execute(delete(M).where(M.c.id == row.id))


def _change_visibility(conn, queue: Queue, handle: str, timeout: int) -> None:
    if not 0 <= timeout <= 43_200:
        raise invalid_parameter(
            f"Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
        )
    now = time.time()
    row, nonce = _held_message(conn, queue, handle)
    if row is None or row.receipt_nonce != nonce:
        raise _invalid_receipt(handle)
    if row.visible_at <= now:
        raise AWSError("MessageNotInflight", "The message referred to isn't in flight.")
    conn.execute(update(M).where(M.c.id == row.id).values(visible_at=now + timeout))


@operation("sqs", "DeleteMessage")
def delete_message(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        _delete(conn, resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"]), params["ReceiptHandle"])
    return {}


@operation("sqs", "ChangeMessageVisibility")
def change_message_visibility(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        _change_visibility(conn, queue, params["ReceiptHandle"], params["VisibilityTimeout"])
    if params["VisibilityTimeout"] == 0:
        arrivals(ctx.backends).notify(queue)
    return {}


# -- batches: up to ten entries, each succeeding or failing on its own ------------------------------

MAX_BATCH = 10
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


def _check_batch(entries: list[dict]) -> None:
    if not entries:
        raise AWSError("EmptyBatchRequest", "There should be at least one SendMessageBatchRequestEntry in the request.")
    if len(entries) > MAX_BATCH:
        raise AWSError(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}.",
        )
    ids = [entry["Id"] for entry in entries]
    for entry_id in ids:
        if not _BATCH_ID.fullmatch(entry_id):
            raise AWSError(
                "InvalidBatchEntryId",
                f"A batch entry id can only contain alphanumeric characters, "
                f"hyphens and underscores. It can be at most 80 letters long: "
                f"{entry_id!r}.",
            )
    if len(set(ids)) != len(ids):
        raise AWSError("BatchEntryIdsNotDistinct", "Two or more batch entries in the request have the same Id.")


def _failure(entry_id: str, err: AWSError) -> dict:
    return {"Id": entry_id, "SenderFault": err.status < 500, "Code": err.code, "Message": err.message}


def _batch(entries: list[dict], run) -> dict:
    """Run ``run(entry)`` for each entry; its result (or error) goes to Successful (or Failed)."""
    successful, failed = [], []
    for entry in entries:
        try:
            successful.append({"Id": entry["Id"], **(run(entry) or {})})
        except AWSError as err:
            failed.append(_failure(entry["Id"], err))
    return {"Successful": successful, "Failed": failed}


@operation("sqs", "SendMessageBatch")
def send_message_batch(ctx: Context, params: dict) -> dict:
    entries = params["Entries"]
    _check_batch(entries)
    with ctx.store.read() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
    size = sum(len(e["MessageBody"].encode()) for e in entries)
    if size > queue.setting("MaximumMessageSize"):
        raise AWSError(
            "BatchRequestTooLong",
            f"Batch requests cannot be longer than "
            f"{queue.setting('MaximumMessageSize')} bytes. You have sent {size} "
            "bytes.",
        )
    sender = caller_identity(ctx)[1]

    def send(entry: dict) -> dict:
        _check_standard_queue_entry(entry)
        return _send(
            ctx.backends,
            ctx.account_id,
            ctx.region,
            params["QueueUrl"],
            entry["MessageBody"],
            sender,
            entry.get("DelaySeconds"),
            entry.get("MessageAttributes"),
        )

    return _batch(entries, send)


def _batch_in_queue(ctx: Context, params: dict, run) -> tuple[Queue, dict]:
    """Run ``run(conn, queue, entry)`` for each entry of a batch, in one write transaction."""
    entries = params["Entries"]
    _check_batch(entries)
    with ctx.store.write() as conn:
        queue = resolve(conn, ctx.account_id, ctx.region, params["QueueUrl"])
        return queue, _batch(entries, lambda entry: run(conn, queue, entry))


@operation("sqs", "DeleteMessageBatch")
def delete_message_batch(ctx: Context, params: dict) -> dict:
    _, result = _batch_in_queue(ctx, params, lambda conn, queue, entry: _delete(conn, queue, entry["ReceiptHandle"]))
    return result


@operation("sqs", "ChangeMessageVisibilityBatch")
def change_message_visibility_batch(ctx: Context, params: dict) -> dict:
    queue, result = _batch_in_queue(
        ctx,
        params,
        lambda conn, queue, entry: _change_visibility(
            conn, queue, entry["ReceiptHandle"], entry.get("VisibilityTimeout", 0)
        ),
    )
    arrivals(ctx.backends).notify(queue)
    return result
