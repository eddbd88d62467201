"""Batch transform: record handling of selfmaker/services/jobs/batch.py (splits, batches, filters, joins)."""

from __future__ import annotations

import json

import pytest

from selfmaker.services.jobs import batch


def test_split_types():
    assert batch.split_records(b"1,2\n\n3,4\r\n", "Line") == [b"1,2", b"3,4"]
    assert batch.split_records(b"whole\nfile", "None") == [b"whole\nfile"]
    assert batch.split_records(b"", None) == []
    with pytest.raises(batch.Unsupported, match="SplitType RecordIO is not supported by SelfMaker"):
        batch.split_records(b"x", "RecordIO")


def test_batches_respect_strategy_and_payload():
    records = [b"a" * 400_000, b"b" * 400_000, b"c" * 400_000]
    assert batch.batches(records, "SingleRecord", 6) == [[0], [1], [2]]
    assert batch.batches(records, "MultiRecord", 6) == [[0, 1, 2]]
    assert batch.batches(records, "MultiRecord", 1) == [[0, 1], [2]]
    with pytest.raises(batch.TransformDataError, match="larger than MaxPayloadInMB"):
        batch.batches([b"x" * (1024 * 1024 + 1)], "MultiRecord", 1)
    assert batch.batches(records, "MultiRecord", 0) == [[0, 1, 2]]  # 0: no limit
    assert batch.join_request([b"1,2", b"3,4"]) == b"1,2\n3,4\n"


def test_split_response():
    assert batch.split_response(b"0.5\n0.7\n", 2) == [b"0.5", b"0.7"]
    assert batch.split_response(b"0.5,0.7", 2) == [b"0.5", b"0.7"]
    assert batch.split_response(b"[1, 2]\n", 1) == [b"[1, 2]"]
    with pytest.raises(batch.TransformDataError, match="holds 1 records for a request of 3"):
        batch.split_response(b"0.5\n", 3)


@pytest.mark.parametrize(
    "path, record, expected",
    [
        ("$", b"1,2,3", b"1,2,3"),
        ("$[1:]", b"id7,2,3", b"2,3"),
        ("$[0,2]", b"1,2,3", b"1,3"),
        ("$[-1]", b"1,2,3", b"3"),
        ("$[1:3]", b"1,2,3,4", b"2,3"),
        ("$.features", b'{"id": 1, "features": [1, 2]}', b"[1,2]"),
        ("$.a.b", b'{"a": {"b": 5}}', b"5"),
        ("$['features']", b'{"id": 1, "features": [1, 2]}', b"[1,2]"),
        ("$['id','x']", b'{"id": 1, "x": 2, "y": 3}', b"[1,2]"),
        ("$[1:]", b"[9, 1, 2]", b"[1,2]"),
    ],
)
def test_filters(path, record, expected):
    batch.check_path(path, "InputFilter")
    assert batch.filter_record(record, path, None) == expected


def test_filter_errors():
    with pytest.raises(batch.Unsupported, match="is not a JSONPath SelfMaker supports"):
        batch.check_path("$..features[?(@.x > 1)]", "InputFilter")
    with pytest.raises(batch.TransformDataError, match="has no 'features'"):
        batch.filter_record(b'{"id": 1}', "$.features", "application/json")
    with pytest.raises(batch.TransformDataError, match="selects elements the record does not have"):
        batch.filter_record(b"1,2", "$[5]", "text/csv")


def test_join_and_output_filter():
    assert batch.join_input(b"id7,1,2", b"0.5", "text/csv") == b"id7,1,2,0.5"
    assert batch.filter_record(batch.join_input(b"id7,1,2", b"0.5", "text/csv"), "$[0,-1]", "text/csv") == b"id7,0.5"
    joined = batch.join_input(b'{"id": 1, "features": [1, 2]}', b"0.5", "application/json")
    assert json.loads(joined) == {"id": 1, "features": [1, 2], "SageMakerOutput": 0.5}
    assert batch.filter_record(joined, "$['id','SageMakerOutput']", "application/json") == b"[1,0.5]"
    assert json.loads(batch.join_input(b"[1, 2]", b'{"score": 1}', "application/json")) == {
        "SageMakerInput": [1, 2],
        "SageMakerOutput": {"score": 1},
    }


def test_assemble():
    assert batch.assemble([b"1", b"2\n"], "Line") == b"1\n2\n"
    assert batch.assemble([b"1", b"2"], "None") == b"12"
