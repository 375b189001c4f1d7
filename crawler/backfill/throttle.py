"""The backfill's runtime: the same Fetcher, its gate making each request wait for the run's token bucket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from crawler.config import Settings
from crawler.errors import ConfigError
from crawler.fetch import Fetcher, Gate, HostGate, fetch_settings
from crawler.pipeline import Runtime, load_ruleset, utcnow
from storage.db import Database, open_database


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``take()`` waits for one."""

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ConfigError(f"the rate must be > 0 requests per second, got {rate}", key="backfill.rate")
        self.rate, self.burst, self._clock = rate, max(burst, 1.0), clock
        self._tokens, self._at = self.burst, clock()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class BucketGate:
    """The Fetcher's gate for a backfill: the usual per-host ``HostGate``, and then, holding the host's
    place, a token from the run's bucket, so every request (feed pages, sitemaps, CDX, snapshots,
    articles, robots.txt, redirect hops) goes out at most at the run's rate."""

    def __init__(self, hosts: Gate, bucket: TokenBucket) -> None:
        self.hosts, self.bucket = hosts, bucket
        self.gap_at_send = hosts.gap_at_send

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with self.hosts.slot(host):
            await self.bucket.take()
            yield

    async def before_send(self, host: str) -> str | None:
        return await self.hosts.before_send(host)

    def after_send(self, host: str, token: str | None) -> None:
        self.hosts.after_send(host, token)

    def pause(self, host: str, seconds: float, status: int) -> None:
        self.hosts.pause(host, seconds, status)

    def paused(self, host: str) -> tuple[float, int] | None:
        return self.hosts.paused(host)


@asynccontextmanager
async def backfill_runtime(
    settings: Settings, *, rate: float, db: Database | None = None
) -> AsyncIterator[Runtime]:
    """Like ``runner.open_runtime(origin="backfill")``, the fetcher's gate capped at ``rate``."""
    database = db or open_database(settings.database_url)
    rules = load_ruleset(settings)
    try:
        fetch = fetch_settings(settings)
        gate = BucketGate(HostGate.for_settings(fetch), TokenBucket(rate))
        async with Fetcher(fetch, gate=gate) as fetcher:
            yield Runtime(settings, database, fetcher, rules, utcnow, "backfill")
    finally:
        if db is None:
            database.dispose()
