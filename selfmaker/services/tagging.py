"""Tags on any ARN: AddTags, ListTags, DeleteTags, and the helpers Create operations use."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from ..server.errors import AWSError, validation
from ..server.operations import Context, operation
from ..store import schema

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


def _owned(ctx: Context, arn: str, conn) -> None:
    """Tags may be read or changed only on an existing resource of the caller's account and region."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise validation(f"{arn} is not a valid ARN.")
    record = ctx.backends.resources.get_by_arn(arn, conn=conn)
    if record is None or record.account_id != ctx.account_id or record.region != ctx.region:
        raise AWSError("ResourceNotFound", f"Resource {arn} does not exist.")


@operation("sagemaker", "AddTags")
def add_tags(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        _owned(ctx, params["ResourceArn"], conn)
        add(conn, params["ResourceArn"], params["Tags"])
        return {"Tags": read(conn, params["ResourceArn"])}


@operation("sagemaker", "DeleteTags")
def delete_tags(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        _owned(ctx, params["ResourceArn"], conn)
        conn.execute(delete(T).where(T.c.arn == params["ResourceArn"], T.c.key.in_(params["TagKeys"])))
    return {}


@operation("sagemaker", "ListTags")
def list_tags(ctx: Context, params: dict) -> dict:
    arn = params["ResourceArn"]
    limit = params.get("MaxResults") or 50
    start = 0
    if params.get("NextToken"):
        start = ctx.backends.resources.read_page_token(params["NextToken"], ["ListTags", arn])["after"]
    with ctx.store.read() as conn:
        _owned(ctx, arn, conn)
        rows = conn.execute(
            select(T.c.key, T.c.value, T.c.position).where(T.c.arn == arn, T.c.position > start)
            .order_by(T.c.position).limit(limit + 1)).all()
    result = {"Tags": [{"Key": k, "Value": v} for k, v, _ in rows[:limit]]}
    if len(rows) > limit:
        result["NextToken"] = ctx.backends.resources.page_token(["ListTags", arn], after=rows[limit - 1].position)
    return result


def count(conn, arn: str) -> int:
    return conn.execute(select(func.count()).select_from(T).where(T.c.arn == arn)).scalar_one()
