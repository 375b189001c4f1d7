"""Keyset (cursor) pagination: newest first by (time, id), opaque cursors, no OFFSET scans."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.sql import ColumnElement

from crawler.errors import StorywatchError


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
