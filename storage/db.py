"""Engines, sessions and migrations. The only module that opens database sessions.

SQLite runs in WAL mode with a busy timeout, foreign keys on, ``synchronous=NORMAL`` and a WAL
checkpointed every 64 MiB;
write transactions begin with ``BEGIN IMMEDIATE`` so two writers never deadlock on a
lock upgrade. Reads use a second engine whose transactions begin deferred, so readers
never wait for writers. PostgreSQL uses one engine for both.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from crawler.errors import StorageError

from .models import Base

log = logging.getLogger("storywatch.storage")
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
_LOCKED_RETRIES = 8  # starts of the migration when SQLite says "database is locked" without waiting
_MIGRATION_LOCK = 0x5357_4D49_4752  # pg_advisory_xact_lock(bigint) key of the migrations: "SWMIGR"
# libpq TCP keepalives: a dead server (or a cut network) is noticed in about a minute, not the
# kernel's two hours. A value given in the URL's query wins.
PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA cache_size=-131072")  # 128 MiB page cache: LSH band lookups stay in memory
        # Checkpoint the WAL every 64 MiB (default 4 MiB): a page that many commits dirty (the band index
        # takes 40 random keys per document) is copied into the database once, not after every commit.
        cur.execute("PRAGMA wal_autocheckpoint=16384")
        cur.close()

    begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_sql)

    return engine


class Database:
    """A handle on one database (any SQLAlchemy URL); create once, pass explicitly."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            db = parsed.database
            if db and db != ":memory:":
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(url, immediate=True)
            self.read_engine = _sqlite_engine(url, immediate=False)
        else:
            given = set(parsed.query)
            keepalives = {k: v for k, v in PG_KEEPALIVES.items() if k not in given}
            self.engine = create_engine(url, pool_pre_ping=True, connect_args=keepalives)
            self.read_engine = self.engine
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def sqlite_path(self) -> Path | None:
        if self.dialect != "sqlite":
            return None
        db = make_url(self.url).database
        return Path(db).expanduser().resolve() if db and db != ":memory:" else None

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any error."""
        with self._write() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    def insert(self, table: Any) -> Any:
        """A dialect-specific INSERT that supports ``on_conflict_do_nothing/update``."""
        if self.dialect == "sqlite":
            return sqlite.insert(table)
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        raise StorageError(f"unsupported database dialect {self.dialect!r}: use SQLite or PostgreSQL")

    def upgrade(self) -> None:
        """Apply Alembic migrations up to head (safe to call on every start, from several processes at
        once: one migrates, the others wait for its commit and find nothing left to do)."""
        for attempt in range(_LOCKED_RETRIES):
            try:
                return self._upgrade_once()
            except OperationalError as exc:
                # SQLite may answer "database is locked" at once, without its busy handler, to a
                # starter whose connection meets another's first migration (a fresh file switching to
                # WAL): that starter waits and tries again; the migration itself is transactional
                locked = self.dialect == "sqlite" and "database is locked" in str(exc)
                if not locked or attempt + 1 == _LOCKED_RETRIES:
                    raise
                time.sleep(0.25 * (attempt + 1))

    def _upgrade_once(self) -> None:
        from alembic import command

        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # SQLite's write transaction (BEGIN IMMEDIATE) already serialises this; PostgreSQL's
                # DDL does not (two processes creating the first tables deadlocked or hung)
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.read_engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Open ``url`` and bring its schema to head. Raises StorageError with the URL on failure."""
    db = Database(url)
    if migrate:
        try:
            db.upgrade()
        except Exception as exc:  # boundary: any driver error becomes one typed error
            db.dispose()
            raise StorageError(f"cannot open database {_masked(url)}: {exc}") from exc
    return db


def _masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


RETRIES = 3  # attempts of a write transaction that PostgreSQL rolled back as a deadlock victim
_TRANSIENT = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def retrying(db: Database, work: Callable[[Session], T]) -> T:
    """``work`` in a write transaction, run again (in a new one, after a short pause) when PostgreSQL
    rolled it back as a deadlock victim or on a serialization failure: nothing of it was kept, and
    the other transaction has gone ahead. Any other error, or a third such failure, is raised."""
    for attempt in range(1, RETRIES + 1):
        try:
            with db.write() as s:
                return work(s)
        except Exception as exc:
            state = getattr(getattr(exc, "orig", exc), "sqlstate", None)
            if state not in _TRANSIENT or attempt == RETRIES:
                raise
            log.warning(
                "write transaction rolled back (%s, attempt %d of %d): trying again", state, attempt, RETRIES
            )
            time.sleep(random.uniform(0.02, 0.1) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["PG_KEEPALIVES", "Base", "Database", "alembic_config", "open_database", "retrying"]
