"""Politeness between storywatch and the sites it reads (RELIABILITY.md items 7 and 9).

- ``HostGate``: at most N requests in flight per host, a minimum gap between request starts to one
  host, a global cap, and per-host pauses after a 429/503 with Retry-After (so one source's 429
  also holds back every other source on that host);
- ``parse_retry_after``: a pure parser for Retry-After (delay-seconds or HTTP-date), clamped.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from crawler.fetch.settings import FetchSettings


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


class Gate(Protocol):
    """What the Fetcher asks before each request: ``HostGate`` in one process; a shared one (e.g.
    ``crawler.scale``'s, in Redis) when several processes on several machines must be polite together.

    With ``gap_at_send`` set, the Fetcher awaits ``before_send(host)`` at the moment the request's
    headers go out (after the connection is made) and calls ``after_send(host, token)`` with what it
    returned once they are written (or failed to be), so the minimum gap is kept between the requests
    as the site sees them, whatever a new connection's set-up or a stalled process costs.
    """

    gap_at_send: bool

    def slot(self, host: str) -> AbstractAsyncContextManager[None]: ...

    async def before_send(self, host: str) -> str | None: ...

    def after_send(self, host: str, token: str | None) -> None: ...

    def pause(self, host: str, seconds: float, status: int) -> None: ...

    def paused(self, host: str) -> tuple[float, int] | None: ...


class HostGate:
    """Per-host concurrency, minimum gap between starts and Retry-After pauses; a global cap."""

    gap_at_send = False  # the gap is kept in ``slot`` (one process: no connection set-up race)

    def __init__(self, per_host: int, min_gap: float, global_limit: int) -> None:
        self._per_host = per_host
        self._min_gap = min_gap
        self._global = asyncio.Semaphore(global_limit)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._next_start: dict[str, float] = {}
        self._paused: dict[str, tuple[float, int]] = {}

    @classmethod
    def for_settings(cls, s: FetchSettings) -> HostGate:
        """The gate the ``fetch`` settings describe (per-host concurrency and gap, global cap)."""
        return cls(s.per_host_concurrency, s.per_host_min_gap, s.global_concurrency)

    def slot(self, host: str) -> _Slot:
        """``async with gate.slot(host):`` waits for the host's turn and holds its place meanwhile."""
        return _Slot(self, host)

    async def _enter(self, host: str) -> asyncio.Semaphore:
        per_host = self._hosts.get(host)
        if per_host is None:
            per_host = self._hosts[host] = asyncio.Semaphore(self._per_host)
        await per_host.acquire()
        try:
            if self._min_gap > 0:  # with no gap, every start is due at once: nothing to wait for
                await self._wait_turn(host)
            await self._global.acquire()
        except BaseException:
            per_host.release()
            raise
        return per_host

    def _leave(self, per_host: asyncio.Semaphore) -> None:
        self._global.release()
        per_host.release()

    async def _wait_turn(self, host: str) -> None:
        now = time.monotonic()
        start = max(now, self._next_start.get(host, now))
        self._next_start[host] = start + self._min_gap
        if start > now:
            await asyncio.sleep(start - now)

    async def before_send(self, host: str) -> str | None:
        return None

    def after_send(self, host: str, token: str | None) -> None:
        return None

    def pause(self, host: str, seconds: float, status: int) -> None:
        until = time.monotonic() + seconds
        if until > self._paused.get(host, (0.0, 0))[0]:
            self._paused[host] = (until, status)

    def paused(self, host: str) -> tuple[float, int] | None:
        """(seconds left, status that caused it) while the host is paused, else None."""
        if not self._paused:
            return None
        until, status = self._paused.get(host, (0.0, 0))
        left = until - time.monotonic()
        return (left, status) if left > 0 else None


class _Slot:
    """One request's place at a ``HostGate`` (a plain class: entered for every request)."""

    __slots__ = ("_gate", "_held", "_host")

    def __init__(self, gate: HostGate, host: str) -> None:
        self._gate = gate
        self._host = host
        self._held: asyncio.Semaphore | None = None

    async def __aenter__(self) -> None:
        self._held = await self._gate._enter(self._host)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._held is not None:
            self._gate._leave(self._held)
            self._held = None
