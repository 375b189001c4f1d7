"""daemon_instances.loop_lag_p99 / loop_lag_max

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 17:45:00.000000

Why: the daemon measures how late its event loop runs what is due (CPU work on the loop stalls
every source, the relay and the health notices); each heartbeat records the last 5 minutes' p99
and maximum so `storywatch status`, a separate process, can show them.

How: two nullable columns (a plain ADD COLUMN on both backends); rows of older daemons keep NULL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("daemon_instances", sa.Column("loop_lag_p99", sa.Float(), nullable=True))
    op.add_column("daemon_instances", sa.Column("loop_lag_max", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("daemon_instances") as batch:
        batch.drop_column("loop_lag_max")
        batch.drop_column("loop_lag_p99")
