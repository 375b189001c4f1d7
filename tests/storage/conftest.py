"""Fixtures of the storage tests: a migrated database on both backends, or on PostgreSQL only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.db import Database, open_database


def _opened(url: str) -> Iterator[Database]:
    database = open_database(url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """The schema at head, on SQLite and on PostgreSQL (``db_url``)."""
    yield from _opened(db_url)


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    """The schema at head, on PostgreSQL only (skipped with a reason where no server answers)."""
    yield from _opened(pg_url)
