"""The router's HTTP client (services/hosting/connections.py) parses model servers' answers itself: these fake
model servers, on real Unix sockets, answer in the ways HTTP/1.1 allows (chunked with trailers, a byte at a
time, until close) and misbehave (too large, an endless head, closing a pooled connection, never answering).
Each runs on both event loops the server may run on (uvloop, as uvicorn picks it, and asyncio's own)."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import uvloop

from selfmaker.services.hosting import connections
from selfmaker.services.hosting.connections import (
    HEAD_LIMIT,
    BadResponse,
    InstanceGone,
    Instances,
    Invocation,
    ModelTimeout,
    ResponseTooLarge,
)

CAP = 4096  # the payload cap these tests give the client
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(params=["uvloop", "asyncio"])
def run(request):
    """run(handler, client): serve ``handler(model, reader, writer)`` per connection on a Unix socket, and return
    ``await client(instances, path, model)``, where ``model.connections`` counts the connections accepted."""
    directory = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # a socket path must stay short
    loop = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()

    def run(handler, client):
        async def main():
            model = Model()
            path = str(Path(directory) / "model.sock")
            server = await asyncio.start_unix_server(model.accept(handler), path)
            instances = Instances()
            async with server:
                try:
                    return await client(instances, path, model)
                finally:
                    for task in model.tasks:
                        task.cancel()
                    await asyncio.gather(*model.tasks, return_exceptions=True)
                    for pool in instances._idle.values():
                        for connection in pool:
                            connection.close()

        return loop.run_until_complete(main())

    yield run
    loop.close()
    shutil.rmtree(directory)


class Model:
    def __init__(self):
        self.connections = 0
        self.requests: list[bytes] = []
        self.tasks: list[asyncio.Task] = []

    def accept(self, handler):
        async def accepted(reader, writer):
            self.connections += 1
            self.tasks.append(asyncio.current_task())
            try:
                await handler(self, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):  # the end of a test
                pass
            finally:
                writer.close()

        return accepted

    async def request(self, reader) -> bytes | None:
        """The next request's body, or None when the client closed the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        body = await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head)[1]))
        self.requests.append(body)
        return body


def invocation(body: bytes = b"1,2") -> Invocation:
    return Invocation(body, "text/csv", None, "attributes", None)


def exchange(instances, path, body=b"1,2", timeout=10.0):
    return instances.exchange(path, invocation(body), timeout, CAP)


def answering(answer: bytes):
    """A model server answering every request with ``answer``, keep-alive."""

    async def handler(model, reader, writer):
        while await model.request(reader) is not None:
            writer.write(answer)

    return handler


def test_a_chunked_answer_with_trailers_and_the_answer_fields(run):
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        b"X-Amzn-SageMaker-Custom-Attributes: trace=1\r\n\r\n"
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n"
    )

    async def client(instances, path, model):
        first = await exchange(instances, path)
        second = await exchange(instances, path)  # the trailers were all read: the connection is in step
        return first, second, model.connections

    first, second, connections_made = run(answering(answer), client)
    assert (first.status, first.body, first.content_type) == (200, b"hello, world", "application/json")
    assert first.custom_attributes == "trace=1" and first.model_seconds > 0
    assert second.body == b"hello, world" and connections_made == 1


def test_an_answer_split_byte_by_byte(run, monkeypatch):
    reads = []
    received = connections._Connection.data_received
    monkeypatch.setattr(
        connections._Connection, "data_received", lambda self, data: reads.append(data) or received(self, data)
    )
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: text/csv\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n",
    ]

    async def handler(model, reader, writer):
        for answer in answers:
            await model.request(reader)
            for i in range(len(answer)):
                writer.write(answer[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)

    async def client(instances, path, model):
        return [await exchange(instances, path) for _ in answers], model.connections

    (interim_then_final, chunked), connections_made = run(handler, client)
    assert (interim_then_final.status, interim_then_final.body) == (200, b"hello world")  # the 100 skipped
    assert interim_then_final.content_type == "text/csv"
    assert chunked.body == b"abcde" and connections_made == 1
    assert len(reads) > sum(map(len, answers)) / 2, "the answers really arrived in pieces"


def test_an_answer_that_runs_until_close_and_one_that_says_close(run):
    async def until_close(model, reader, writer):
        await model.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe rest")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b" of it")

    async def client(instances, path, model):
        answer = await exchange(instances, path)
        return answer, len(instances._idle[path])

    answer, pooled = run(until_close, client)
    assert (answer.body, pooled) == (b"the rest of it", 0)

    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"  # HTTP/1.0 closes unless it says keep-alive
    for answer in (closing, old):
        assert run(answering(answer), client)[1] == 0


def test_no_body_statuses_keep_the_connection_in_step(run):
    answers = iter([b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", OK])

    async def handler(model, reader, writer):
        while await model.request(reader) is not None:
            writer.write(next(answers))

    async def client(instances, path, model):
        answers = [await exchange(instances, path) for _ in range(3)]
        return [(a.status, a.body) for a in answers], model.connections

    assert run(handler, client) == ([(204, b""), (304, b""), (200, b"ok")], 1)


def test_answers_over_the_cap_fail_as_they_arrive(run):
    """Neither a declared nor an undeclared length makes the client wait for (or buffer) more than the cap."""
    declared = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (CAP + 1)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    streams = {  # none ends: a client waiting for the end would time out instead
        "chunks": chunked + (b"400\r\n" + b"x" * 1024 + b"\r\n") * 8,
        "until close": b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 8192,
        "one big chunk, part of it": chunked + b"1001\r\n" + b"x" * 1024,
    }

    async def never_sending_the_body(model, reader, writer):
        await model.request(reader)
        writer.write(declared)
        await asyncio.sleep(30)

    async def client(instances, path, model):
        with pytest.raises(ResponseTooLarge) as caught:
            await exchange(instances, path)
        return caught.value, instances._idle[path]

    error, pooled = run(never_sending_the_body, client)
    assert (error.status, error.size, pooled) == (200, CAP + 1, [])

    for name, stream in streams.items():

        async def endless(model, reader, writer, stream=stream):
            await model.request(reader)
            writer.write(stream)
            await reader.read()  # until the client hangs up

        async def stopped(instances, path, model):
            error, pooled = await client(instances, path, model)
            await asyncio.wait(model.tasks, timeout=10)
            return error, pooled, all(task.done() for task in model.tasks)

        error, pooled, server_saw_the_hang_up = run(endless, stopped)
        assert (error.status, error.size, pooled) == (200, None, []), name
        assert server_saw_the_hang_up, name


def test_a_head_over_the_limit_or_not_http_is_a_bad_response(run):
    async def endless_head(model, reader, writer):
        await model.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Long: " + b"y" * HEAD_LIMIT)  # and no end of the head
        await reader.read()  # until the client hangs up

    async def client(instances, path, model):
        with pytest.raises(BadResponse, match=f"longer than {HEAD_LIMIT}"):
            await exchange(instances, path)
        return instances._idle[path]

    assert run(endless_head, client) == []

    for answer in (
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    ):

        async def bad(instances, path, model):
            with pytest.raises(BadResponse):
                await exchange(instances, path)

        run(answering(answer), bad)


def test_a_pooled_connection_the_server_closed_is_retried_once_on_a_fresh_one(run):
    async def one_answer_per_connection(model, reader, writer):
        """Answers once, then reads the next request and hangs up on it (as a server whose idle timeout
        fires just as the request arrives)."""
        await model.request(reader)
        writer.write(OK)
        await model.request(reader)

    async def client(instances, path, model):
        answers = [await exchange(instances, path, body) for body in (b"a", b"b", b"c")]
        return [a.body for a in answers], model.connections, model.requests

    bodies, connections_made, requests = run(one_answer_per_connection, client)
    assert bodies == [b"ok"] * 3
    assert (connections_made, requests) == (3, [b"a", b"b", b"b", b"c", b"c"])  # b and c: each sent twice

    async def hanging_up(model, reader, writer):
        await model.request(reader)

    async def gone(instances, path, model):
        with pytest.raises(InstanceGone, match="before answering"):
            await exchange(instances, path)
        return model.connections

    assert run(hanging_up, gone) == 1  # a fresh connection's failure is not retried


def test_a_pooled_connection_closed_while_idle_is_not_used(run):
    async def closing_when_idle(model, reader, writer):
        await model.request(reader)
        writer.write(OK)

    async def client(instances, path, model):
        await exchange(instances, path)
        await asyncio.sleep(0.05)  # the server's close arrives
        await exchange(instances, path)
        return model.connections, model.requests

    assert run(closing_when_idle, client) == (2, [b"1,2", b"1,2"])  # no request was lost on a closed connection


def test_a_timeout_closes_the_connection(run):
    async def slow_at_first(model, reader, writer):
        if model.connections == 1:
            await model.request(reader)
            await asyncio.sleep(1)  # past the client's timeout (the client hangs up meanwhile)
            writer.write(OK)
        await answering(OK)(model, reader, writer)

    async def client(instances, path, model):
        with pytest.raises(ModelTimeout):
            await exchange(instances, path, timeout=0.1)
        answer = await exchange(instances, path, timeout=5)
        await asyncio.wait(model.tasks[:1], timeout=5)
        return answer.body, model.connections, len(instances._idle[path]), model.tasks[0].done()

    assert run(slow_at_first, client) == (b"ok", 2, 1, True)  # the first connection ended, never reused


def test_one_exchange_at_a_time_per_connection(run):
    """Concurrent exchanges each get their own connection: nothing is ever sent before the answer is back."""
    early = []

    async def checking(model, reader, writer):
        while await model.request(reader) is not None:
            try:
                early.append(await asyncio.wait_for(reader.read(1), 0.02))  # bytes before the answer
            except TimeoutError:
                pass
            writer.write(OK)

    async def client(instances, path, model):
        for _ in range(3):
            answers = await asyncio.gather(*(exchange(instances, path, b"%d" % i) for i in range(5)))
            assert [a.body for a in answers] == [b"ok"] * 5
        return model.connections, len(model.requests), len(instances._idle[path])

    assert run(checking, client) == (5, 15, 5)
    assert early == []


def test_the_pools_of_vanished_instances_are_forgotten(run):
    async def client(instances, path, model):
        await exchange(instances, path)
        for other in (path + "-retired", path + "-new"):
            server = await asyncio.start_unix_server(model.accept(answering(OK)), other)
            async with server:
                await exchange(instances, other)
            if other.endswith("-retired"):
                Path(other).unlink(missing_ok=True)  # a retired instance's socket is removed
        return sorted(Path(address).name for address in instances._idle)

    assert run(answering(OK), client) == ["model.sock", "model.sock-new"]  # the new address forgot the retired
