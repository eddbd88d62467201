"""Tags on any ARN, as stored: SageMaker's AddTags (selfmaker/services/tagging.py) and the AWS
subsets that take tags (log groups, alarms, SQS queues) all keep them in one table through these helpers.

Each family keeps its own API's limits and errors (SQS's InvalidParameterValue, SageMaker's
ResourceLimitExceeded); the table keeps at most MAX_KEY/MAX_VALUE characters, so a family whose API
model does not bound them checks with ``check_lengths`` first."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from ..errors import AWSError
from . import schema

T = schema.tags
MAX_TAGS = 50
MAX_KEY, MAX_VALUE = 128, 256  # the columns' sizes, and AWS's limits


def add(conn, arn: str, tags: list[dict], too_many: AWSError | None = None) -> None:
    """Add or overwrite tags, keeping the first-added order (AWS allows at most 50 per resource).

    ``too_many`` is the family's error when the resource would have more than 50 (SageMaker's by default)."""
    existing = {row.key: row.position for row in conn.execute(select(T.c.key, T.c.position).where(T.c.arn == arn))}
    position = max(existing.values(), default=0)
    new_keys = {t["Key"] for t in tags} - existing.keys()
    if len(existing) + len(new_keys) > MAX_TAGS:
        raise too_many or AWSError("ResourceLimitExceeded", f"A resource can have at most {MAX_TAGS} tags.")
    for tag in tags:
        key, value = tag["Key"], tag.get("Value", "")
        if key in existing:
            conn.execute(T.update().where(T.c.arn == arn, T.c.key == key).values(value=value))
        else:
            position += 1
            existing[key] = position
            conn.execute(T.insert().values(arn=arn, key=key, value=value, position=position))


def read(conn, arn: str) -> list[dict]:
    rows = conn.execute(select(T.c.key, T.c.value).where(T.c.arn == arn).order_by(T.c.position))
    return [{"Key": k, "Value": v} for k, v in rows]


def count(conn, arn: str) -> int:
    return conn.execute(select(func.count()).select_from(T).where(T.c.arn == arn)).scalar_one()


def read_map(conn, arn: str) -> dict[str, str]:
    """The tags as one map, in the order they were added (the APIs that take and give ``{key: value}``)."""
    return {t["Key"]: t["Value"] for t in read(conn, arn)}


def remove(conn, arn: str, keys) -> None:
    """Remove the named tags (keys the resource does not have are ignored)."""
    keys = list(keys)
    if keys:
        conn.execute(delete(T).where(T.c.arn == arn, T.c.key.in_(keys)))


def forget(conn, *arns: str) -> None:
    """Remove every tag of deleted resources."""
    if arns:
        conn.execute(delete(T).where(T.c.arn.in_(arns)))


def check_lengths(tags: dict[str, str], error) -> None:
    """``error(message)`` when a key or value is longer than the store (and AWS) keeps."""
    for key, value in tags.items():
        if len(key) > MAX_KEY or len(value) > MAX_VALUE:
            raise error(f"Tag keys can be at most {MAX_KEY} characters long and tag values at most {MAX_VALUE}.")
