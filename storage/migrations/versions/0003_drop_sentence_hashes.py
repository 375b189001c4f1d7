"""drop documents.sentence_hashes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 04:50:00.000000

Why: the sentence keys of every document were stored (about half the size of an article's text)
only for the rare article updated in place; the pipeline now splits the stored text of just those
documents when an update arrives (``storage.ingest.document_texts``), so the column is never read.

How: a native ``ALTER TABLE ... DROP COLUMN`` (PostgreSQL; SQLite >= 3.35). NOT Alembic's batch
mode: on SQLite it copies the table and drops the old one, and with foreign keys on, dropping
``documents`` deletes every alias, sighting, match and index row through ``ON DELETE CASCADE``.
With an older SQLite the nullable column stays: nothing reads or writes it.
"""

import sqlite3

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35, 0):
        return  # the sqlite3 module's library is the one SQLAlchemy's pysqlite driver uses
    op.execute("ALTER TABLE documents DROP COLUMN sentence_hashes")


def downgrade() -> None:
    op.add_column("documents", sa.Column("sentence_hashes", sa.JSON(), nullable=True))
