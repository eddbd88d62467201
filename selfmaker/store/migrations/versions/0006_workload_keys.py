"""Workload keys on every server: which record holds each job's or endpoint's access key

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty at first: each server writes the keys of the running workloads it knows when it starts.
    op.create_table(
        "workload_keys",
        sa.Column("access_key_id", sa.String(length=32), nullable=False),
        sa.Column("owner_arn", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id"),
    )
    op.create_index("ix_workload_keys_owner_arn", "workload_keys", ["owner_arn"])


def downgrade() -> None:
    op.drop_index("ix_workload_keys_owner_arn", table_name="workload_keys")
    op.drop_table("workload_keys")
