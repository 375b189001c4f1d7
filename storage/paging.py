"""Keyset (cursor) pagination: newest first by (time, id), opaque cursors, no OFFSET scans.

``Newest(AlertRow, "created_at")`` is one such list: ``query`` its filters, order, limit and cursor,
``page`` the ``Page`` of what it read (the alerts, stories and documents pages all use it).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, literal, or_, select
from sqlalchemy.sql import ColumnElement

from crawler.alerts.views import Page
from crawler.errors import StorywatchError

from .models import UTCDateTime

Row = TypeVar("Row")


class BadCursor(StorywatchError):
    """A ``cursor`` that this server did not hand out (or that was cut short)."""


def encode_cursor(when: datetime, ident: int) -> str:
    """The cursor after the row (``when``, ``ident``): opaque URL-safe text."""
    return base64.urlsafe_b64encode(f"{when.isoformat()}|{ident}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """-> (time, id) of the last row of the previous page; BadCursor if it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, ident = text.rsplit("|", 1)
        return datetime.fromisoformat(when), int(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(f"{cursor!r} is not a cursor returned by this API (use next_cursor)") from exc


def before(time_col: Any, id_col: Any, cursor: str) -> ColumnElement[bool]:
    """Rows strictly after the cursor in (time desc, id desc) order."""
    when, ident = decode_cursor(cursor)
    return or_(time_col < when, and_(time_col == when, id_col < ident))


def next_cursor(rows: list[Any], limit: int, when: str = "created_at") -> str | None:
    """The cursor after the last of ``rows`` when the page is full (there may be more)."""
    if len(rows) < limit or not rows:
        return None
    last = rows[-1]
    return encode_cursor(getattr(last, when), int(last.id))


@dataclass(frozen=True)
class Newest(Generic[Row]):
    """The rows of ``model`` newest first by (``when``, id), a page at a time."""

    model: type[Row]
    when: str  # the time column: the order, ``since``/``until`` and the cursor

    def query(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        **equal: object,
    ) -> Select[Row]:
        """At most ``limit`` rows after ``cursor``, ``since`` <= when < ``until``, and each column of
        ``equal`` equal to its value (a filter that is None or "" is not applied)."""
        when, ident = self._column(self.when), self._column("id")
        q = select(self.model).order_by(when.desc(), ident.desc()).limit(limit)
        if since is not None:
            q = q.where(when >= literal(since, UTCDateTime()))
        if until is not None:
            q = q.where(when < literal(until, UTCDateTime()))
        for column, value in equal.items():
            if value is not None and value != "":
                q = q.where(self._column(column) == value)
        if cursor:
            q = q.where(before(when, ident, cursor))
        return q

    def _column(self, name: str) -> Any:
        return getattr(self.model, name)

    def page(self, rows: Sequence[Row], items: Sequence[Any], limit: int) -> Page:
        """``items`` (made from ``rows``), and the cursor after the last row when the page is full."""
        return Page(tuple(items), next_cursor(list(rows), limit, self.when))
