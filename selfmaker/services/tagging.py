"""Tags on any ARN: AddTags, ListTags, DeleteTags. The stored tags and the helpers every family uses
(``add``, ``read``, ``read_map``, ``remove``, ``forget``; SQS queues, CloudWatch alarms and log groups
too) are :mod:`selfmaker.store.tag_store`, re-exported here."""

from __future__ import annotations

from sqlalchemy import select

from ..server.errors import AWSError, validation
from ..server.operations import Context, operation
from ..store.tag_store import T, add, forget, read, read_map, remove  # noqa: F401  (re-exported for every family)


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
        remove(conn, params["ResourceArn"], params["TagKeys"])
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
            select(T.c.key, T.c.value, T.c.position)
            .where(T.c.arn == arn, T.c.position > start)
            .order_by(T.c.position)
            .limit(limit + 1)
        ).all()
    result = {"Tags": [{"Key": k, "Value": v} for k, v, _ in rows[:limit]]}
    if len(rows) > limit:
        result["NextToken"] = ctx.backends.resources.page_token(["ListTags", arn], after=rows[limit - 1].position)
    return result
