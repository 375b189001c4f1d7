"""The backfill's runtime: the same Fetcher, each request first waiting for the run's token bucket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Literal

from crawler.config import Settings
from crawler.errors import ConfigError
from crawler.fetch import Fetcher, FetchSettings, fetch_settings
from crawler.pipeline import Runtime, load_ruleset, utcnow
from crawler.types import Fetched, Validators
from storage.db import Database, open_database

AlertPolicy = Literal["none", "digest", "all"]
Status = Literal["ok", "error", "skipped"]
METHODS: tuple[str, ...] = ("archive", "sitemap", "search", "cdx")


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


class ThrottledFetcher(Fetcher):
    """The same Fetcher, each ``fetch`` first waiting for the run's token bucket."""

    def __init__(self, settings: FetchSettings, bucket: TokenBucket) -> None:
        super().__init__(settings)
        self.bucket = bucket
        self.requests = 0

    async def fetch(
        self,
        url: str,
        *,
        source_id: str | None = None,
        validators: Validators | None = None,
        check_robots: bool = False,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fetched:
        await self.bucket.take()
        self.requests += 1
        return await super().fetch(
            url,
            source_id=source_id,
            validators=validators,
            check_robots=check_robots,
            accept=accept,
            headers=headers,
        )


@asynccontextmanager
async def backfill_runtime(
    settings: Settings, *, rate: float, db: Database | None = None
) -> AsyncIterator[Runtime]:
    """Like ``runner.open_runtime(origin="backfill")``, with the rate-capped fetcher."""
    database = db or open_database(settings.database_url)
    rules = load_ruleset(settings)
    try:
        async with ThrottledFetcher(fetch_settings(settings), TokenBucket(rate)) as fetcher:
            yield Runtime(settings, database, fetcher, rules, utcnow, "backfill")
    finally:
        if db is None:
            database.dispose()
