"""Endpoint data capture: sampled requests and answers as SageMaker's JSON Lines in S3.

The router only appends what it saw to an in-memory buffer; a background
thread turns the buffer into records and writes one object per endpoint,
variant and hour every second (and at shutdown), in the layout Model Monitor
reads:

    <DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<MM-SS-mmm>-<uuid>.jsonl

A record holds the payloads the config's CaptureOptions ask for, each encoded
as CSV or JSON text when its content type is one of CaptureContentTypeHeader's,
else BASE64 (SageMaker's default), and the event's id, time and InferenceId.

Files are written as the endpoint's account (``AccountObjects``): if the
destination bucket is gone or now belongs to another account, the records are
dropped and a warning says why; they never land in someone else's bucket.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
import uuid
from collections import defaultdict, deque

from ...backends import background_worker
from ...engines.periodic import STOP_TIMEOUT, Periodic
from ...objects.access import AccountObjects
from ...objects.base import parse_s3_uri
from ...server.errors import AWSError

log = logging.getLogger("selfmaker.capture")

FLUSH_SECONDS = 1.0
MAX_BUFFERED_BYTES = 256 * 1024 * 1024  # beyond this, captures are dropped until a flush catches up


def sampled(config: dict) -> bool:
    if config.get("EnableCapture") is False:
        return False
    return random.random() * 100 < float(config.get("InitialSamplingPercentage", 0))


def offer(backends, route, variant: str, invocation, answer, when: float) -> None:
    """Keep this invocation for capture if the route's config samples it (cheap: no encoding here)."""
    if route.capture and sampled(route.capture):
        capturer(backends).add(
            (route.capture, route.account_id, route.endpoint_name, variant, invocation, answer, when)
        )


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _payload(config: dict, content_type: str | None, body: bytes, mode: str) -> dict:
    headers = config.get("CaptureContentTypeHeader") or {}
    media = _media_type(content_type)
    encoding = "BASE64"
    if media in {_media_type(t) for t in headers.get("CsvContentTypes") or ()}:
        encoding = "CSV"
    elif media in {_media_type(t) for t in headers.get("JsonContentTypes") or ()}:
        encoding = "JSON"
    data = None
    if encoding != "BASE64":
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = "BASE64"
    if data is None:
        data = base64.b64encode(body).decode("ascii")
    payload = {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}
    if content_type is None:
        del payload["observedContentType"]
    return payload


def record(config: dict, invocation, answer, when: float) -> dict:
    """One capture record (a line of the .jsonl file)."""
    modes = {option["CaptureMode"] for option in config.get("CaptureOptions") or ()} or {"InputAndOutput"}
    data = {}
    if modes & {"Input", "InputAndOutput"}:
        data["endpointInput"] = _payload(config, invocation.content_type, invocation.body, "INPUT")
    if modes & {"Output", "InputAndOutput"}:
        data["endpointOutput"] = _payload(config, answer.content_type, answer.body, "OUTPUT")
    metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))}
    if invocation.inference_id:
        metadata["inferenceId"] = invocation.inference_id
    return {"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}


def object_key(prefix: str, endpoint: str, variant: str, when: float) -> str:
    moment = time.gmtime(when)
    millis = int(when * 1000) % 1000
    hour = time.strftime("%Y/%m/%d/%H", moment)
    name = f"{time.strftime('%M-%S', moment)}-{millis:03d}-{uuid.uuid4()}.jsonl"
    return "/".join(part for part in (prefix.strip("/"), endpoint, variant, hour, name) if part)


class Capturer(Periodic):
    """The server's capture buffer; its thread (started with the first capture) flushes it every second."""

    def __init__(self, backends):
        super().__init__("selfmaker-capture", FLUSH_SECONDS, on_demand=True)
        self.backends = backends
        self._buffer: deque = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._closed = False  # stopping: captures are refused, so none arrives after the last flush
        self.dropped = 0

    def add(self, item: tuple) -> None:
        size = len(item[4].body) + len(item[5].body)
        with self._lock:
            if self._bytes + size > MAX_BUFFERED_BYTES or self._closed:
                self.dropped += 1
                return
            self._bytes += size
            self._buffer.append(item)
        self.ensure_started()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        with self._lock:
            self._closed = True
        super().stop(timeout)

    def run(self) -> None:
        self.flush()

    def flush(self) -> None:
        with self._lock:
            items, self._buffer, self._bytes = self._buffer, deque(), 0
        files: dict[tuple, list[str]] = defaultdict(list)
        first: dict[tuple, float] = {}
        for config, account_id, endpoint, variant, invocation, answer, when in items:
            destination = config["DestinationS3Uri"]
            where = (account_id, destination, endpoint, variant, int(when // 3600))
            first.setdefault(where, when)
            files[where].append(json.dumps(record(config, invocation, answer, when), separators=(",", ":")))
        for where, lines in files.items():
            account_id, destination, endpoint, variant, _ = where
            try:
                bucket, prefix = parse_s3_uri(destination)
                key = object_key(prefix, endpoint, variant, first[where])
                objects = AccountObjects.of(self.backends, account_id)
                objects.put_object(bucket, key, ("\n".join(lines) + "\n").encode())
            except (AWSError, ValueError) as err:
                log.warning(
                    "data capture for endpoint %s dropped %d records: cannot write to %s: %s",
                    endpoint,
                    len(lines),
                    destination,
                    err,
                )


@background_worker
def capturer(backends) -> Capturer:
    """The server's one Capturer (stopped, and so flushed, by the lifespan at shutdown)."""
    return backends.shared("hosting.capture", lambda: Capturer(backends))
