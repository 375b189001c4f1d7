"""Hot statements through the DBAPI cursor of a session's own connection.

SQLAlchemy spends 30-100 us of Python per ``Session.execute`` (statement cache lookup, parameter
processing, result set-up) where sqlite3 spends 3 us, and ingesting one document runs about eight
statements (document, sighting, LSH lookup, band and signature rows, story). ``Raw`` runs such
statements as plain SQL on the same connection, inside the session's open transaction, so they
commit or roll back with everything else the session did. It is for a few fixed statements written
once (in :mod:`storage.dedup_store` and :mod:`storage.ingest`), not a query builder:

* SQL is written with ``:name`` parameters (sqlite3's own style) and rewritten once per statement
  to ``%(name)s`` for drivers with the ``pyformat`` style (psycopg); write casts as
  ``CAST(x AS T)``, never ``x::T``, and never a literal ``%``.
* Values are passed as the driver expects them: ints, str, bytes. Datetimes and JSON go through
  :meth:`Raw.bind` with the column's SQLAlchemy type, so they are stored exactly as SQLAlchemy
  would store them (and read back by the ORM unchanged).
* Errors are the driver's own exceptions (not wrapped by SQLAlchemy); callers that roll back on
  any exception (``Database.write``) need nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

_NAMED_RE = re.compile(r"(?<![:\w]):(\w+)")


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    return _NAMED_RE.sub(r"%(\1)s", sql)


class Raw:
    """Plain-SQL execution in ``session``'s transaction (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        conn = session.connection()  # begins the session's transaction if it has not begun
        self.dialect = conn.dialect
        self.name = conn.dialect.name
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None, "the session's connection is closed"
        self._cursor = dbapi.cursor()
        self._pyformat = conn.dialect.paramstyle == "pyformat"
        self._binds: dict[TypeEngine[Any], Callable[[Any], Any] | None] = {}

    def _sql(self, sql: str) -> str:
        return _pyformat(sql) if self._pyformat else sql

    def execute(
        self, sql: str, params: Mapping[str, Any], *, plan_each_time: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (``[]`` for a statement that returns none).

        ``plan_each_time``: never run it as a server-side prepared statement (psycopg prepares a
        statement on its 5th run, and PostgreSQL then keeps one generic plan for the connection's
        life). For a join whose best plan depends on a table's size: a plan made while the table
        was small (a young database, tables not analysed yet) is a sequential scan, and it stays
        one as the table grows. SQLite: no effect.
        """
        cur = self._cursor
        if plan_each_time and self.name == "postgresql":
            cur.execute(self._sql(sql), params, prepare=False)  # type: ignore[call-arg]
        else:
            cur.execute(self._sql(sql), params)
        return list(cur.fetchall()) if cur.description is not None else []

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement per parameter set (no rows)."""
        if params:
            self._cursor.executemany(self._sql(sql), params)

    def bind(self, type_: TypeEngine[Any], value: Any) -> Any:
        """``value`` as SQLAlchemy would send it for a column of ``type_`` (datetimes, JSON)."""
        if value is None:
            return None
        proc = self._binds.get(type_, _MISSING)
        if proc is _MISSING:
            proc = self._binds[type_] = type_.dialect_impl(self.dialect).bind_processor(self.dialect)
        return proc(value) if proc is not None else value


_MISSING: Any = object()
_INFO_KEY = "storywatch.raw"


def raw(session: Session) -> Raw:
    """The session's :class:`Raw`, made once per transaction (kept in ``session.info``): one
    transaction runs on one connection, and asking the session for it costs ~20 us a call."""
    kept = session.info.get(_INFO_KEY)
    current = session.get_transaction()
    if kept is not None and current is not None and kept[0] is current:
        return kept[1]
    made = Raw(session)  # begins the transaction if none is open
    session.info[_INFO_KEY] = (session.get_transaction(), made)
    return made


__all__ = ["Raw", "raw"]
