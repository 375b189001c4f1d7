"""alerts.development_key: one development across stories and languages

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 18:00:00.000000

Why: a rule with ``develops_on: [vendor]`` makes the English and the Chinese report of the same
vendor disclosure one development (one alert with both stories' sources), not one alert per story.
The key (``vendor=Huawei``) is looked up by rule within the rule's window, so it is indexed.

How: a nullable column and an index, both native on PostgreSQL and SQLite (no table copy).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("development_key", sa.String(length=300), nullable=True))
    op.create_index("ix_alerts_development_key", "alerts", ["development_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_development_key", table_name="alerts")
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.drop_column("development_key")
