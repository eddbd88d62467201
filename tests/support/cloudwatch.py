"""CloudWatch test helpers shared by tests/test_cloudwatch*.py."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from botocore.exceptions import ClientError

from support.waiting import status_in, wait_for


def timestamp(seconds: float) -> dt.datetime:
    """Epoch seconds as the aware UTC datetime boto3 sends and returns."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def error(call, **kwargs) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def minute_ago() -> int:
    """The start of the last complete minute."""
    return int(time.time()) // 60 * 60 - 60


def wait_for_state(cw, name: str, state: str, timeout: float = 15.0) -> dict:
    return wait_for(
        lambda: cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0],
        status_in("StateValue", [state]),
        timeout=timeout,
        interval=0.2,
        what=f"alarm {name} to be {state}",
    )
