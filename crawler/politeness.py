"""Politeness between storywatch and the sites it reads (RELIABILITY.md items 7 and 9).

- ``HostGate``: at most N requests in flight per host, a minimum gap between request starts to one
  host, a global cap, and per-host pauses after a 429/503 with Retry-After (so one source's 429
  also holds back every other source on that host);
- ``parse_retry_after``: a pure parser for Retry-After (delay-seconds or HTTP-date), clamped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now: datetime, *, max_seconds: float = 6 * 3600.0) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date), clamped to
    [0, max_seconds]; None when absent or unparseable (the caller backs off exponentially)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return min(float(text), max_seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), max_seconds)


class HostGate:
    """Per-host concurrency, minimum gap between starts and Retry-After pauses; a global cap."""

    def __init__(self, per_host: int, min_gap: float, global_limit: int) -> None:
        self._per_host = per_host
        self._min_gap = min_gap
        self._global = asyncio.Semaphore(global_limit)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._next_start: dict[str, float] = {}
        self._paused: dict[str, tuple[float, int]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with self._hosts.setdefault(host, asyncio.Semaphore(self._per_host)):
            await self._wait_turn(host)
            async with self._global:
                yield

    async def _wait_turn(self, host: str) -> None:
        now = time.monotonic()
        start = max(now, self._next_start.get(host, now))
        self._next_start[host] = start + self._min_gap
        if start > now:
            await asyncio.sleep(start - now)

    def pause(self, host: str, seconds: float, status: int) -> None:
        until = time.monotonic() + seconds
        if until > self._paused.get(host, (0.0, 0))[0]:
            self._paused[host] = (until, status)

    def paused(self, host: str) -> tuple[float, int] | None:
        """(seconds left, status that caused it) while the host is paused, else None."""
        until, status = self._paused.get(host, (0.0, 0))
        left = until - time.monotonic()
        return (left, status) if left > 0 else None
