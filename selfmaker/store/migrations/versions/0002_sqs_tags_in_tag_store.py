"""SQS queue tags move into the common tag store (tags, keyed by the queue's ARN)

Every family's tags now live in one table (selfmaker/store/tag_store.py); SQS kept them in a JSON
column of sqs_queues. The upgrade copies each queue's tags, in their order, to `tags` under
arn:aws:sqs:<region>:<account>:<name> and drops the column. A tag longer than the table keeps
(key 128, value 256 characters: AWS's limits, which SelfMaker did not check for SQS before) cannot
be copied; it is dropped with a warning rather than failing the server's start.
CloudWatch alarms and log groups already kept their tags there.

Revision ID: 0002
Revises: 0001
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

_queues = sa.table(
    "sqs_queues",
    sa.column("account_id", sa.String),
    sa.column("region", sa.String),
    sa.column("name", sa.String),
    sa.column("tags", sa.JSON),
)
_tags = sa.table(
    "tags",
    sa.column("arn", sa.String),
    sa.column("key", sa.String),
    sa.column("value", sa.String),
    sa.column("position", sa.Integer),
)
MAX_KEY, MAX_VALUE = 128, 256


def _arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:sqs:{region}:{account_id}:{name}"


def upgrade() -> None:
    conn = op.get_bind()
    for account_id, region, name, tags in conn.execute(
        sa.select(_queues.c.account_id, _queues.c.region, _queues.c.name, _queues.c.tags)
    ).all():
        arn = _arn(region, account_id, name)
        present = dict(conn.execute(sa.select(_tags.c.key, _tags.c.position).where(_tags.c.arn == arn)).all())
        last = max(present.values(), default=0)
        rows: list[dict] = []
        for key, value in (tags or {}).items():
            value = str(value)
            if len(key) > MAX_KEY or len(value) > MAX_VALUE:
                log.warning("the tag %r of the SQS queue %s is too long for the tag store; it is dropped", key, arn)
            elif key not in present:
                rows.append({"arn": arn, "key": key, "value": value, "position": last + len(rows) + 1})
        if rows:
            conn.execute(_tags.insert(), rows)
    with op.batch_alter_table("sqs_queues", schema=None) as batch_op:
        batch_op.drop_column("tags")


def downgrade() -> None:
    with op.batch_alter_table("sqs_queues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="{}"))
    conn = op.get_bind()
    for account_id, region, name in conn.execute(
        sa.select(_queues.c.account_id, _queues.c.region, _queues.c.name)
    ).all():
        arn = _arn(region, account_id, name)
        tags = dict(
            conn.execute(
                sa.select(_tags.c.key, _tags.c.value).where(_tags.c.arn == arn).order_by(_tags.c.position)
            ).all()
        )
        if tags:
            conn.execute(
                _queues.update()
                .where(_queues.c.account_id == account_id, _queues.c.region == region, _queues.c.name == name)
                .values(tags=tags)
            )
            conn.execute(_tags.delete().where(_tags.c.arn == arn))
