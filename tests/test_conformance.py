"""The conformance check the whole suite relies on: it catches what botocore's parser lets through, and no
client of the test process escapes it."""

from __future__ import annotations

import json

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse

from support.conformance import RECORDER, check_response

DESCRIBE_MODEL = botocore.session.get_session().get_service_model("sagemaker").operation_model("DescribeModel")
GOOD = {"ModelName": "m", "ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m", "CreationTime": 1.5}


def answer(body: dict, status: int = 200) -> dict:
    return {
        "status_code": status,
        "headers": {"content-type": "application/x-amz-json-1.1"},
        "body": json.dumps(body).encode(),
    }


def test_a_conforming_answer_passes():
    assert check_response(DESCRIBE_MODEL, answer(GOOD)) == []


@pytest.mark.parametrize(
    "body, problem",
    [
        ({**GOOD, "Extra": 1}, "DescribeModel.Extra: not a member of DescribeModelOutput"),
        ({**GOOD, "CreationTime": "2024-01-01"}, "DescribeModel.CreationTime: expected epoch seconds"),
        ({**GOOD, "EnableNetworkIsolation": "true"}, "DescribeModel.EnableNetworkIsolation: expected a boolean"),
        ({k: v for k, v in GOOD.items() if k != "ModelArn"}, "DescribeModel.ModelArn: required member missing"),
        (
            {**GOOD, "DeploymentRecommendation": {"RecommendationStatus": "Maybe"}},
            "DescribeModel.DeploymentRecommendation.RecommendationStatus: 'Maybe' is not one of",
        ),
    ],
)
def test_what_botocore_would_let_through_is_caught(body, problem):
    problems = check_response(DESCRIBE_MODEL, answer(body))
    assert any(p.startswith(problem) for p in problems), problems


def test_error_answers_are_not_held_to_the_output_shape():
    assert check_response(DESCRIBE_MODEL, answer({"__type": "ValidationException"}, status=400)) == []


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self):
        yield self.body


def test_a_client_made_any_way_is_checked():
    """A raw boto3 client (no fixture, no factory) is checked too: the hook is on botocore's Session."""
    raw = boto3.client(
        "sagemaker",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    body = json.dumps({**GOOD, "Extra": 1}).encode()
    # Answer from before-send: the request never leaves, the answer still goes through botocore's parsing.
    raw.meta.events.register(
        "before-send",
        lambda **_: AWSResponse("http://127.0.0.1:9/", 200, {"content-type": "application/x-amz-json-1.1"}, _Raw(body)),
    )
    assert raw.describe_model(ModelName="m")["ModelName"] == "m"  # botocore itself let it through
    problems = RECORDER.drain()  # taken here so that this test's own check does not fail on them
    assert problems == ["DescribeModel.Extra: not a member of DescribeModelOutput"]
