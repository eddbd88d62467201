"""EventBridge: event buses, rules, targets, the outbox and the deliveries in flight

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events_buses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_buses_name", "events_buses", ["account_id", "region", "name"], unique=True)
    op.create_table(
        "events_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("bus", sa.String(length=256), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_rules_name", "events_rules", ["account_id", "region", "bus", "name"], unique=True)
    op.create_table(
        "events_targets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("arn", sa.String(length=1600), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_targets_id", "events_targets", ["rule_id", "target_id"], unique=True)
    op.create_index("ix_events_targets_arn", "events_targets", ["arn"], unique=False)
    op.create_table(
        "events_outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("bus", sa.String(length=256), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "events_deliveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("rule_arn", sa.String(length=1600), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_deliveries_due", "events_deliveries", ["next_at", "id"], unique=False)


def downgrade() -> None:
    for index, table in (
        ("ix_events_deliveries_due", "events_deliveries"),
        ("ix_events_targets_arn", "events_targets"),
        ("ix_events_targets_id", "events_targets"),
        ("ix_events_rules_name", "events_rules"),
        ("ix_events_buses_name", "events_buses"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("events_deliveries", "events_outbox", "events_targets", "events_rules", "events_buses"):
        op.drop_table(table)
