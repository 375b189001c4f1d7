"""Request checks shared by the API and the pages: CSRF, read-only mode, time filters."""

from __future__ import annotations

from datetime import datetime

from fastapi import HTTPException, Request

from crawler import config
from crawler.config import WHEN_HINT
from crawler.errors import StorywatchError

from .app import context
from .security import CSRF_FIELD, CSRF_HEADER, SID_COOKIE

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def csrf(request: Request) -> None:
    """Every POST: the CSRF token of this browser (form field or X-CSRF-Token header), else 403."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not context(request).guard.csrf_ok(request.cookies.get(SID_COOKIE), given):
        raise HTTPException(403, "missing or wrong CSRF token (GET /api/v1/csrf, send X-CSRF-Token)")


async def writable(request: Request) -> None:
    """Writes (silences, retries, sources) are refused with 403 when ``web.read_only`` is set."""
    if context(request).read_only:
        raise HTTPException(403, "web.read_only is set: silences, retries and sources are turned off here")


def csrf_token(request: Request) -> str:
    """The token forms of this page must send back."""
    return context(request).guard.csrf_token(request.state.sid)


def parse_when(value: str | None, name: str = "since") -> datetime | None:
    """``2026-11-20``, an ISO time, or a duration ago (``24h``, ``7d``); empty/None -> None."""
    if not value:
        return None
    try:
        return config.parse_when(value)
    except ValueError:
        raise StorywatchError(f"{name}={value!r}: {WHEN_HINT}") from None
