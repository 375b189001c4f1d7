"""storage.locks on PostgreSQL: keys a transaction holds are asked for once; a savepoint's are not
remembered past its rollback (PostgreSQL releases them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event, text

from storage import locks
from storage.db import Database

NS = 0x5357_5445  # a namespace of the test's own


@pytest.fixture
def statements(pg_db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "unnest" in statement:  # storage.locks statements, not the probes of held_elsewhere
            seen.append(statement)

    event.listen(pg_db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(pg_db.engine, "before_cursor_execute", record)


def held_elsewhere(db: Database, key: int) -> bool:
    """Whether another transaction holds ``key`` (a try-lock from a second connection fails)."""
    with db.engine.connect() as other:
        got = other.execute(text("SELECT pg_try_advisory_xact_lock(:ns, :k)"), {"ns": NS, "k": key}).scalar()
        other.rollback()
    return not got


def test_keys_held_are_not_asked_for_again_in_the_same_transaction(pg_db: Database, statements: list[str]) -> None:
    with pg_db.write() as s:
        locks.lock_keys(s, NS, ["a", "b"])
        locks.lock_keys(s, NS, ["b", "a"])  # held: no statement
        assert locks.try_lock_ints(s, NS, [locks.key_int4("a")]) == set()
        assert len(statements) == 1
        assert held_elsewhere(pg_db, locks.key_int4("a"))
        locks.lock_keys(s, NS, ["a", "c"])  # only "c" is asked for
        assert len(statements) == 2
    assert not held_elsewhere(pg_db, locks.key_int4("a"))  # released at commit
    with pg_db.write() as s:
        locks.lock_keys(s, NS, ["a"])  # a new transaction asks again
    assert len(statements) == 3


def test_a_key_first_taken_in_a_rolled_back_savepoint_is_asked_for_again(
    pg_db: Database, statements: list[str]
) -> None:
    key = locks.key_int4("s")
    with pg_db.write() as s:
        locks.lock_keys(s, NS, ["outer"])
        savepoint = s.begin_nested()
        locks.lock_keys(s, NS, ["s"])
        assert held_elsewhere(pg_db, key)
        savepoint.rollback()
        assert not held_elsewhere(pg_db, key), "PostgreSQL released the savepoint's lock"
        before = len(statements)
        locks.lock_keys(s, NS, ["s", "outer"])
        assert len(statements) == before + 1
        assert held_elsewhere(pg_db, key)


def test_try_lock_reports_the_keys_another_transaction_holds(pg_db: Database) -> None:
    a, b = locks.key_int4("a"), locks.key_int4("b")
    with pg_db.write() as first:
        locks.lock_ints(first, NS, [a])
        with pg_db.write() as second:
            assert locks.try_lock_ints(second, NS, [a, b]) == {a}
            assert held_elsewhere(pg_db, b)
            locks.lock_ints(second, NS, [b])  # remembered: no wait, no statement
