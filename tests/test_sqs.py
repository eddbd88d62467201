"""SQS through boto3: queues, messages, visibility, long polling, errors, and the internal send API."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json

import pytest
from botocore.exceptions import ClientError

ACCOUNT = "123456789012"
pytestmark = pytest.mark.both_databases


@pytest.fixture
def sqs(client):
    return client("sqs")


@pytest.fixture
def queue(sqs, unique):
    return sqs.create_queue(QueueName=unique("q"))["QueueUrl"]


def _error(call, **kwargs) -> dict:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response


def test_queue_lifecycle_and_urls(sqs, server, unique):
    name = unique("life")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"}, tags={"team": "ml"})["QueueUrl"]
    assert url == f"{server.url}/{ACCOUNT}/{name}"
    # Creating it again with the same attributes is idempotent; with different ones it is refused.
    assert sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})["QueueUrl"] == url
    error = _error(sqs.create_queue, QueueName=name, Attributes={"VisibilityTimeout": "8"})
    assert error["Error"]["Code"] == "QueueAlreadyExists"
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "7"
    assert attributes["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"
    assert attributes["ApproximateNumberOfMessages"] == "0"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "3"})
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])["Attributes"] == {
        "DelaySeconds": "3"
    }
    sqs.tag_queue(QueueUrl=url, Tags={"stage": "dev"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"stage": "dev"}

    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.get_queue_url(QueueName=name)
    assert info.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")


def test_queue_tags_limits_and_lifetime(sqs, unique):
    name = unique("tags")
    url = sqs.create_queue(QueueName=name, tags={f"k{i}": str(i) for i in range(40)})["QueueUrl"]
    # Overwriting keeps the tag's place; the 51st tag is refused and nothing of that call is kept.
    sqs.tag_queue(QueueUrl=url, Tags={"k0": "new", **{f"n{i}": "x" for i in range(10)}})
    error = _error(sqs.tag_queue, QueueUrl=url, Tags={"k1": "kept?", "one-too-many": "x"})
    assert error["Error"]["Code"] == "InvalidParameterValue"
    assert "at most 50 tags" in error["Error"]["Message"]
    tags = sqs.list_queue_tags(QueueUrl=url)["Tags"]
    assert len(tags) == 50 and list(tags)[:2] == ["k0", "k1"] and tags["k0"] == "new" and tags["k1"] == "1"
    # A key or value longer than AWS allows is a client error, whatever the database.
    for too_long in ({"k" * 129: "v"}, {"k": "v" * 257}):
        assert _error(sqs.tag_queue, QueueUrl=url, Tags=too_long)["Error"]["Code"] == "InvalidParameterValue"
    too_many = {f"k{i}": "v" for i in range(51)}
    assert _error(sqs.create_queue, QueueName=unique("many"), tags=too_many)["Error"]["Code"] == "InvalidParameterValue"
    # A queue's tags go with it: the queue created again under the name starts with none.
    sqs.delete_queue(QueueUrl=url)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {}


def test_list_queues_pages(sqs, unique):
    prefix = unique("page")
    urls = [sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(5)]
    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=3)
    second = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=3, NextToken=first["NextToken"])
    assert first["QueueUrls"] + second["QueueUrls"] == sorted(urls)
    assert "NextToken" not in second
    assert _error(sqs.list_queues, QueueNamePrefix="other", NextToken=first["NextToken"])["Error"]["Code"] == (
        "InvalidParameterValue"
    )
    # A token this server never issued gets SQS's refusal too, not another service's.
    forged = first["NextToken"][:-2] + ("AA" if not first["NextToken"].endswith("AA") else "BB")
    for bad in (forged, "not-a-token"):
        assert _error(sqs.list_queues, QueueNamePrefix=prefix, NextToken=bad)["Error"]["Code"] == (
            "InvalidParameterValue"
        )


def test_send_receive_delete_with_attributes(sqs, queue):
    attributes = {
        "kind": {"DataType": "String", "StringValue": "callback"},
        "meta.size": {"DataType": "Number", "StringValue": "12"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
    }
    sent = sqs.send_message(QueueUrl=queue, MessageBody="héllo", MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5("héllo".encode()).hexdigest()

    got = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"], AttributeNames=["All"])["Messages"]
    assert len(got) == 1
    message = got[0]
    assert message["MessageId"] == sent["MessageId"] and message["Body"] == "héllo"
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert message["Attributes"]["SenderId"] == ACCOUNT
    # A prefix ("meta." followed by anything) selects some attributes, and the digest covers just those.
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["meta.*"])["Messages"][0]
    assert again["MessageAttributes"] == {"meta.size": attributes["meta.size"]}
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=again["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == counts["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_visibility_timeout_and_receipt_handles(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="work")
    first = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=1)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)  # in flight
    counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert counts["Attributes"] == {"ApproximateNumberOfMessagesNotVisible": "1"}
    # Unacknowledged, it comes back once the timeout passes (the long poll waits for exactly that).
    second = sqs.receive_message(
        QueueUrl=queue, WaitTimeSeconds=5, AttributeNames=["ApproximateReceiveCount"], VisibilityTimeout=30
    )["Messages"][0]
    assert second["MessageId"] == first["MessageId"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    # Only the latest receipt handle changes visibility.
    error = _error(
        sqs.change_message_visibility, QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    assert error["Error"]["Code"] == "ReceiptHandleIsInvalid"
    error = _error(sqs.delete_message, QueueUrl=queue, ReceiptHandle="not-a-handle")
    assert error["Error"]["Code"] == "ReceiptHandleIsInvalid"
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"])
    error = _error(
        sqs.change_message_visibility, QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=10
    )
    assert error["Error"]["Code"] == "ReceiptHandleIsInvalid"


def test_delay_and_batches_of_ten(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=1)
    assert sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesDelayed"])[
        "Attributes"
    ] == {"ApproximateNumberOfMessagesDelayed": "1"}
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"][0]["Body"] == "later"
    for i in range(12):
        sqs.send_message(QueueUrl=queue, MessageBody=str(i))
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
    assert len(bodies) == 10 and len(set(bodies)) == 10
    sqs.purge_queue(QueueUrl=queue)
    assert (
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessages"]
        == "0"
    )


def test_batches(sqs, queue):
    sent = sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "a", "MessageBody": "one"},
            {"Id": "b", "MessageBody": "two", "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
            {"Id": "bad", "MessageBody": "x", "DelaySeconds": 901},
        ],
    )
    assert sorted(s["Id"] for s in sent["Successful"]) == ["a", "b"]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in sent["Failed"]] == [("bad", "InvalidParameterValue", True)]
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in received) == ["one", "two"]
    handles = {m["Body"]: m["ReceiptHandle"] for m in received}

    changed = sqs.change_message_visibility_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "one", "ReceiptHandle": handles["one"], "VisibilityTimeout": 0},
            {"Id": "forged", "ReceiptHandle": "Zm9yZ2Vk", "VisibilityTimeout": 0},
        ],
    )
    assert [s["Id"] for s in changed["Successful"]] == ["one"]
    assert [(f["Id"], f["Code"]) for f in changed["Failed"]] == [("forged", "ReceiptHandleIsInvalid")]
    again = sqs.receive_message(QueueUrl=queue)["Messages"][0]
    assert again["Body"] == "one"

    deleted = sqs.delete_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "one", "ReceiptHandle": again["ReceiptHandle"]},
            {"Id": "two", "ReceiptHandle": handles["two"]},
        ],
    )
    assert sorted(s["Id"] for s in deleted["Successful"]) == ["one", "two"] and deleted["Failed"] == []
    counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == counts["ApproximateNumberOfMessagesNotVisible"] == "0"

    for entries, code in [
        ([], "AWS.SimpleQueueService.EmptyBatchRequest"),
        (
            [{"Id": str(i), "MessageBody": "x"} for i in range(11)],
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        ),
        ([{"Id": "same", "MessageBody": "x"}] * 2, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
        ([{"Id": "no spaces", "MessageBody": "x"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
    ]:
        assert _error(sqs.send_message_batch, QueueUrl=queue, Entries=entries)["Error"]["Code"] == code
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)


def test_dead_letter_queue(sqs, unique):
    dead = sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": "2"})
    work = sqs.create_queue(QueueName=unique("work"), Attributes={"RedrivePolicy": policy})["QueueUrl"]
    stored = json.loads(sqs.get_queue_attributes(QueueUrl=work, AttributeNames=["All"])["Attributes"]["RedrivePolicy"])
    assert stored == {"deadLetterTargetArn": dead_arn, "maxReceiveCount": 2}
    assert sqs.list_dead_letter_source_queues(QueueUrl=dead)["queueUrls"] == [work]

    sent = sqs.send_message(QueueUrl=work, MessageBody="poison")["MessageId"]
    for _ in range(2):  # received twice, never deleted
        message = sqs.receive_message(QueueUrl=work, VisibilityTimeout=0)["Messages"][0]
        assert message["MessageId"] == sent
    assert "Messages" not in sqs.receive_message(QueueUrl=work)  # the third receive moves it instead
    moved = sqs.receive_message(QueueUrl=dead, AttributeNames=["All"])["Messages"][0]
    assert (moved["MessageId"], moved["Body"]) == (sent, "poison")

    for bad, code in [
        ({"deadLetterTargetArn": dead_arn}, "InvalidAttributeValue"),
        ({"deadLetterTargetArn": dead_arn.replace("dlq", "nope"), "maxReceiveCount": 1}, "InvalidParameterValue"),
    ]:
        assert (
            _error(sqs.set_queue_attributes, QueueUrl=work, Attributes={"RedrivePolicy": json.dumps(bad)})["Error"][
                "Code"
            ]
            == code
        )
    sqs.set_queue_attributes(QueueUrl=work, Attributes={"RedrivePolicy": ""})  # removes it
    assert "RedrivePolicy" not in sqs.get_queue_attributes(QueueUrl=work, AttributeNames=["All"])["Attributes"]
    assert sqs.list_dead_letter_source_queues(QueueUrl=dead)["queueUrls"] == []


def test_long_polls_wake_on_send_and_hold_no_thread(client, sqs, queue):
    """More waiters than the server has worker threads; each is woken by a send, well before its 20 s wait
    (their client gives up after 10 s), and other requests are served meanwhile."""
    waiters = 48
    patient = client("sqs", read_timeout=10, max_pool_connections=waiters)

    def wait():
        return patient.receive_message(QueueUrl=queue, WaitTimeSeconds=20).get("Messages", [])

    with concurrent.futures.ThreadPoolExecutor(waiters) as pool:
        futures = [pool.submit(wait) for _ in range(waiters)]
        sqs.list_queues()  # served while everyone waits
        for i in range(waiters):
            sqs.send_message(QueueUrl=queue, MessageBody=f"m{i}")
        received = [m["Body"] for f in futures for m in f.result()]
    leftovers = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert sorted(received + [m["Body"] for m in leftovers]) == sorted(f"m{i}" for i in range(waiters))
    assert len(received) >= waiters - 10


def test_bad_requests(sqs, queue, unique):
    cases = [
        (sqs.create_queue, {"QueueName": "bad name!"}, "InvalidParameterValue"),
        (sqs.create_queue, {"QueueName": unique("f") + ".fifo"}, "AWS.SimpleQueueService.UnsupportedOperation"),
        (
            sqs.create_queue,
            {"QueueName": unique("a"), "Attributes": {"VisibilityTimeout": "99999"}},
            "InvalidAttributeValue",
        ),
        (sqs.create_queue, {"QueueName": unique("a"), "Attributes": {"Policy": "{}"}}, "InvalidAttributeName"),
        (
            sqs.create_queue,
            {"QueueName": unique("a"), "Attributes": {"RedrivePolicy": "not json"}},
            "InvalidAttributeValue",
        ),
        (sqs.get_queue_attributes, {"QueueUrl": queue, "AttributeNames": ["Nope"]}, "InvalidParameterValue"),
        (sqs.get_queue_attributes, {"QueueUrl": queue, "AttributeNames": ["Policy"]}, "InvalidAttributeName"),
        (sqs.send_message, {"QueueUrl": queue, "MessageBody": ""}, "MissingParameter"),
        (sqs.send_message, {"QueueUrl": queue, "MessageBody": "a\x00b"}, "InvalidMessageContents"),
        (sqs.send_message, {"QueueUrl": queue, "MessageBody": "x", "DelaySeconds": 901}, "InvalidParameterValue"),
        (
            sqs.send_message,
            {
                "QueueUrl": queue,
                "MessageBody": "x",
                "MessageAttributes": {"a": {"DataType": "Date", "StringValue": "x"}},
            },
            "InvalidParameterValue",
        ),
        (
            sqs.send_message,
            {"QueueUrl": f"http://elsewhere/{ACCOUNT}/no-such-queue", "MessageBody": "x"},
            "AWS.SimpleQueueService.NonExistentQueue",
        ),
        (sqs.send_message, {"QueueUrl": "http://elsewhere/not-a-queue-url", "MessageBody": "x"}, "InvalidAddress"),
        (sqs.receive_message, {"QueueUrl": queue, "MaxNumberOfMessages": 11}, "InvalidParameterValue"),
        (sqs.receive_message, {"QueueUrl": queue, "WaitTimeSeconds": 21}, "InvalidParameterValue"),
    ]
    for call, kwargs, code in cases:
        error = _error(call, **kwargs)
        assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (code, 400), kwargs
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)  # nothing was sent


def test_queues_belong_to_a_region(client, queue):
    elsewhere = client("sqs", region="eu-west-1")
    with pytest.raises(elsewhere.exceptions.QueueDoesNotExist):
        elsewhere.send_message(QueueUrl=queue, MessageBody="x")
    assert queue not in elsewhere.list_queues().get("QueueUrls", [])


def test_internal_send_restart_and_accounts(make_server, client, tmp_path):
    """The Python API other engines use writes to the same store; messages, in flight or not, survive restarts;
    another account's key sees none of it."""
    from selfmaker.aws.sqs import messages
    from selfmaker.backends import Backends
    from selfmaker.config import Settings
    from selfmaker.server.errors import AWSError

    credentials = tmp_path / "credentials"
    credentials.write_text("[AKIAOTHERACCOUNT0001]\nsecret_access_key = s\naccount_id = 222222222222\n")
    srv = make_server("sqs-restart", ["--credentials-file", str(credentials)]).start()
    sqs = client("sqs", srv=srv)
    url = sqs.create_queue(QueueName="callbacks", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    other = client("sqs", srv=srv, access_key="AKIAOTHERACCOUNT0001", secret_key="s")
    with pytest.raises(other.exceptions.QueueDoesNotExist):
        other.send_message(QueueUrl=url, MessageBody="x")
    with pytest.raises(other.exceptions.QueueDoesNotExist):
        other.get_queue_url(QueueName="callbacks", QueueOwnerAWSAccountId=ACCOUNT)
    sqs.send_message(QueueUrl=url, MessageBody="before")
    in_flight = sqs.receive_message(QueueUrl=url)["Messages"][0]
    srv.stop()

    backends = Backends.build(Settings(data_dir=srv.data_dir, database_url=srv.database_url))
    try:
        message_id = messages.send_message(backends, ACCOUNT, "us-east-1", url, '{"token": "abc"}')
        with pytest.raises(AWSError) as info:
            messages.send_message(backends, ACCOUNT, "us-east-1", url.replace("callbacks", "missing"), "x")
        assert info.value.code == "QueueDoesNotExist"
    finally:
        backends.close()

    srv.start()
    bodies = {}
    for _ in range(3):
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", []):
            bodies[m["MessageId"]] = m["Body"]
        if len(bodies) == 2:
            break
    assert bodies == {in_flight["MessageId"]: "before", message_id: '{"token": "abc"}'}
