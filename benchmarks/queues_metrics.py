"""SQS and CloudWatch speed: SelfMaker and moto's server side by side, in one run.

Measured with boto3 clients (the client's own cost is the same for both servers, so the
ratios understate the servers' difference):

- a message round trip: SendMessage, ReceiveMessage, DeleteMessage on one queue;
- long-poll wake-up: the time from calling SendMessage to a ReceiveMessage that was
  already waiting (WaitTimeSeconds=20) returning the message: how soon a pipeline's
  Callback step or a consumer hears of it;
- PutMetricData of one value, and GetMetricStatistics over the last hour.

Rounds alternate between the servers so a noisy neighbour weighs on both alike.

    python benchmarks/queues_metrics.py            # 200 samples of each, per server
    python benchmarks/queues_metrics.py --quick    # 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ServerProcess, free_port, log, machine, selfmaker_server, table

ROUNDS = 10


def start(name: str, workdir: Path) -> ServerProcess:
    if name == "selfmaker":
        return selfmaker_server(workdir / "selfmaker-data", workdir / f"{name}.log").start()
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-p", str(port)]
    return ServerProcess(name, argv, port, "/moto-api/", workdir / f"{name}.log").start()


def client(server: ServerProcess, service: str):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDBENCHMARK",
        aws_secret_access_key="s",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def round_trip(sqs, url: str) -> float:
    def once():
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        message = sqs.receive_message(QueueUrl=url)["Messages"][0]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    return timed(once)


def put_metric(cw) -> float:
    return timed(lambda: cw.put_metric_data(Namespace="Bench", MetricData=[{"MetricName": "Latency", "Value": 1.0}]))


def get_statistics(cw) -> float:
    now = time.time()
    return timed(
        lambda: cw.get_metric_statistics(
            Namespace="Bench",
            MetricName="Latency",
            StartTime=now - 3600,
            EndTime=now + 60,
            Period=60,
            Statistics=["Sum", "Average"],
        )
    )


def wake_up(sqs, waiter, url: str) -> float:
    """Milliseconds from calling SendMessage to the waiting receive returning the message."""
    received = {}

    def wait():
        messages = waiter.receive_message(QueueUrl=url, WaitTimeSeconds=20).get("Messages", [])
        received["at"] = time.perf_counter()
        received["messages"] = messages

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)  # let the receive reach the server and start waiting
    sent = time.perf_counter()
    sqs.send_message(QueueUrl=url, MessageBody="wake")
    thread.join()
    for message in received["messages"]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    if not received["messages"]:
        raise RuntimeError("the long poll returned no message")
    return (received["at"] - sent) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--servers", default="selfmaker,moto")
    args = parser.parse_args()
    samples = 20 if args.quick else 200
    wakes = 5 if args.quick else 20
    names = args.servers.split(",")
    results: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {n: start(n, Path(tmp)) for n in names}
        try:
            setup = {}
            for name, server in servers.items():
                sqs, waiter, cw = client(server, "sqs"), client(server, "sqs"), client(server, "cloudwatch")
                url = sqs.create_queue(QueueName="bench")["QueueUrl"]
                for _ in range(3):  # warm up
                    round_trip(sqs, url)
                setup[name] = (sqs, waiter, cw, url)
            for r in range(ROUNDS):
                for name in names if r % 2 == 0 else names[::-1]:
                    sqs, waiter, cw, url = setup[name]
                    out = results[name]
                    for _ in range(samples // ROUNDS):
                        out.setdefault("SQS send + receive + delete", []).append(round_trip(sqs, url))
                        out.setdefault("PutMetricData", []).append(put_metric(cw))
                        out.setdefault("GetMetricStatistics (1 h)", []).append(get_statistics(cw))
                    for _ in range(max(wakes // ROUNDS, 1)):
                        out.setdefault("SQS long-poll wake-up", []).append(wake_up(sqs, waiter, url))
                log(f"round {r + 1}/{ROUNDS} done")
        finally:
            for server in servers.values():
                server.stop()
    rows = []
    for measure in results[names[0]]:
        medians = [statistics.median(results[n][measure]) for n in names]
        rows.append([measure, *medians, *([medians[1] / medians[0]] if len(names) == 2 else [])])
    headers = ["median ms", *names, *(["moto / selfmaker"] if len(names) == 2 else [])]
    print(table(headers, rows, title=f"SQS and CloudWatch, {samples} samples ({wakes} wake-ups) per server"))
    print(f"\nmachine: {machine()}")


if __name__ == "__main__":
    main()
