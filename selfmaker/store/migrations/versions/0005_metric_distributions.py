"""CloudWatch percentiles: each statistic set keeps the distribution of its values

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Data written before has no distribution (NULL): its periods answer no percentiles, as statistic sets.
    with op.batch_alter_table("cw_datapoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("distribution", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cw_datapoints", schema=None) as batch_op:
        batch_op.drop_column("distribution")
