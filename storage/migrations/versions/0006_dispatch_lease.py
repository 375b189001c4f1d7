"""dispatch lease and generation on sources; the config version

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 18:00:00.000000

Why: in scale-out mode (``crawler.scale``) a scheduler claims due sources and hands each poll to a
worker through Redis. A source's row carries the dispatch lease (``dispatch_until``: a lost
message only delays the source until then) and a generation number (a fencing token: the final
write of a poll applies only if its generation is still the source's). ``config_version`` holds
one row: the version and digest of the config and rule files, so every worker reloads the same
rule set after a change.

How: nullable or defaulted columns (``ALTER TABLE ... ADD COLUMN``, no table rebuild on SQLite)
and one new table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("dispatch_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("sources", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("sources", sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index("ix_sources_next_due", "sources", ["next_due_at"])
    op.create_table(
        "config_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("config_version")
    op.drop_index("ix_sources_next_due", table_name="sources")
    op.drop_column("sources", "generation")
    op.drop_column("sources", "dispatched_at")
    op.drop_column("sources", "dispatch_until")
