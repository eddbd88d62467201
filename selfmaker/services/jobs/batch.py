"""Batch transform records: splitting, mini-batches, DataProcessing filters and joins, assembling.

Pure functions over bytes, used by the transform driver between S3 and the
model server. They follow SageMaker's batch transform:

* SplitType ``Line`` splits a file into lines (records); ``None`` keeps the
  file as one record; RecordIO and TFRecord are not supported (a clear error);
* BatchStrategy ``MultiRecord`` packs as many records as fit in
  MaxPayloadInMB into one request (``SingleRecord``: one per request); a
  record alone larger than the limit fails the job;
* DataProcessing: ``InputFilter`` and ``OutputFilter`` are the JSONPath subset
  SageMaker documents (``$``, ``$[1:]``, ``$[0,2]``, ``$[-1]``, ``$[1:3]``,
  ``$.features``, ``$['a','b']``) over CSV lines or JSON records;
  ``JoinSource Input`` joins each output to its input record (CSV columns
  appended; a JSON object gets ``SageMakerOutput``, other JSON becomes
  ``{"SageMakerInput": ..., "SageMakerOutput": ...}``);
* AssembleWith ``Line`` ends every output record with a newline; ``None``
  concatenates them.
"""

from __future__ import annotations

import csv
import io
import json
import re


class TransformDataError(Exception):
    """A record the job cannot process; the message becomes the job's FailureReason."""


class Unsupported(Exception):
    """A request option SelfMaker does not implement (a ValidationException at Create)."""


def split_records(data: bytes, split_type: str | None) -> list[bytes]:
    if split_type in (None, "None"):
        return [data] if data else []
    if split_type == "Line":
        return [line for line in data.splitlines() if line.strip()]
    raise Unsupported(f"SplitType {split_type} is not supported by SelfMaker: use Line or None")


def batches(records: list[bytes], strategy: str, max_payload_mb: int) -> list[list[int]]:
    """Indexes of the records of each request, in order."""
    limit = max_payload_mb * 1024 * 1024 if max_payload_mb else None
    groups: list[list[int]] = []
    size = 0
    for index, record in enumerate(records):
        if limit is not None and len(record) > limit:
            raise TransformDataError(
                f"Too much data for max payload size: a record of {len(record)} bytes is "
                f"larger than MaxPayloadInMB ({max_payload_mb} MB)"
            )
        if strategy == "MultiRecord" and groups and (limit is None or size + len(record) + 1 <= limit):
            groups[-1].append(index)
            size += len(record) + 1
        else:
            groups.append([index])
            size = len(record)
    return groups


def join_request(records: list[bytes]) -> bytes:
    return b"\n".join(records) + (b"\n" if len(records) > 1 else b"")


def split_response(body: bytes, count: int) -> list[bytes]:
    """One output per input record of a multi-record request (lines of the response)."""
    if count == 1:
        return [body.rstrip(b"\n")]
    lines = body.decode("utf-8", "replace").splitlines()
    if len(lines) == 1 and count > 1 and "," in lines[0] and len(lines[0].split(",")) == count:
        lines = lines[0].split(",")  # a CSV row holding one value per record (the XGBoost realtime answer)
    lines = [line for line in lines if line.strip()]
    if len(lines) != count:
        raise TransformDataError(
            f"The model's response holds {len(lines)} records for a request of {count}: "
            "with JoinSource or an OutputFilter, each input record needs one output line"
        )
    return [line.encode() for line in lines]


# -- JSONPath subset ----------------------------------------------------------------------------------------------

_INDEXES = re.compile(r"^\$\[\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*\]$")
_SLICE = re.compile(r"^\$\[\s*(-?\d*)\s*:\s*(-?\d*)\s*\]$")
_KEYS = re.compile(r"^\$\[\s*('[^']*'(?:\s*,\s*'[^']*')*)\s*\]$")
_DOTTED = re.compile(r"^\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)$")


def check_path(path: str | None, member: str) -> None:
    if path and not any(p.match(path.strip()) for p in (_INDEXES, _SLICE, _KEYS, _DOTTED)) and path.strip() != "$":
        raise Unsupported(
            f"{member} {path!r} is not a JSONPath SelfMaker supports: $, $[i,j], $[a:b], $.key.subkey or $['k1','k2']"
        )


def _select(value, path: str):
    path = path.strip()
    if path == "$":
        return value
    match = _INDEXES.match(path)
    if match:
        if not isinstance(value, list):
            raise TransformDataError(f"{path} selects array elements but the record is not an array")
        try:
            picked = [value[int(i)] for i in match.group(1).split(",")]
        except IndexError:
            raise TransformDataError(f"{path} selects elements the record does not have") from None
        return picked
    match = _SLICE.match(path)
    if match:
        if not isinstance(value, list):
            raise TransformDataError(f"{path} selects array elements but the record is not an array")
        start, stop = (int(x) if x else None for x in match.groups())
        return value[start:stop]
    match = _KEYS.match(path)
    if match:
        keys = [k.strip()[1:-1] for k in match.group(1).split(",")]
        if not isinstance(value, dict):
            raise TransformDataError(f"{path} selects keys but the record is not a JSON object")
        picked = [value[k] for k in keys if k in value]
        return picked[0] if len(keys) == 1 and picked else picked
    for key in _DOTTED.match(path).group(1).split(".")[1:]:
        if not isinstance(value, dict) or key not in value:
            raise TransformDataError(f"{path}: the record has no {key!r}")
        value = value[key]
    return value


def _is_json(record: bytes, content_type: str | None) -> bool:
    if content_type and "json" in content_type:
        return True
    stripped = record.lstrip()
    return stripped[:1] in (b"{", b"[") and (content_type is None or "csv" not in content_type)


def _csv_fields(record: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(record.decode("utf-8"))), [])


def _csv_line(fields: list) -> bytes:
    stream = io.StringIO()
    csv.writer(stream, lineterminator="").writerow(fields)
    return stream.getvalue().encode()


def filter_record(record: bytes, path: str | None, content_type: str | None) -> bytes:
    """A record through an InputFilter/OutputFilter JSONPath."""
    if not path or path.strip() == "$":
        return record
    if _is_json(record, content_type):
        try:
            value = json.loads(record)
        except ValueError:
            raise TransformDataError(f"The record is not valid JSON for the filter {path}") from None
        return json.dumps(_select(value, path), separators=(",", ":")).encode()
    selected = _select(_csv_fields(record), path)
    return _csv_line(selected if isinstance(selected, list) else [selected])


def join_input(source: bytes, output: bytes, content_type: str | None) -> bytes:
    """JoinSource Input: the input record with its output (before the OutputFilter)."""
    if _is_json(source, content_type):
        try:
            value = json.loads(source)
        except ValueError:
            raise TransformDataError("The input record is not valid JSON to join with its output") from None
        try:
            result = json.loads(output)
        except ValueError:
            result = output.decode("utf-8", "replace")
        joined = (
            {**value, "SageMakerOutput": result}
            if isinstance(value, dict)
            else {"SageMakerInput": value, "SageMakerOutput": result}
        )
        return json.dumps(joined, separators=(",", ":")).encode()
    return source.rstrip(b"\r\n") + b"," + output.strip()


def assemble(outputs: list[bytes], assemble_with: str | None) -> bytes:
    if assemble_with == "Line":
        return b"".join(o if o.endswith(b"\n") else o + b"\n" for o in outputs)
    return b"".join(outputs)
