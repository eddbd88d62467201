"""Tags on any ARN, as stored: SageMaker's AddTags (selfmaker/services/tagging.py) and the AWS
subsets that take tags (log groups, alarms) all keep them in one table through these helpers."""

from __future__ import annotations

from sqlalchemy import func, select

from ..errors import AWSError
from . import schema

T = schema.tags
MAX_TAGS = 50


def add(conn, arn: str, tags: list[dict]) -> None:
    """Add or overwrite tags, keeping the first-added order (AWS allows at most 50 per resource)."""
    existing = {row.key: row.position for row in conn.execute(select(T.c.key, T.c.position).where(T.c.arn == arn))}
    position = max(existing.values(), default=0)
    new_keys = {t["Key"] for t in tags} - existing.keys()
    if len(existing) + len(new_keys) > MAX_TAGS:
        raise AWSError("ResourceLimitExceeded", f"A resource can have at most {MAX_TAGS} tags.")
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
