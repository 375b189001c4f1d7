"""robots.txt verdicts and their per-origin cache (RELIABILITY.md item 8).

The network part (fetching /robots.txt through the guarded, polite client) lives in
``crawler.fetch.client``; this module holds the rules and the cache, so it has no I/O of its own:

- a parsed robots.txt (protego) answers ``allows(url, user_agent)``;
- a 4xx robots.txt (or too many redirects) means "no rules": everything is allowed (RFC 9309);
- a 5xx, 429, timeout or transport error means "unreachable": everything is disallowed for now,
  and the verdict is cached for a shorter time so it is retried soon.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from protego import Protego


@dataclass(frozen=True)
class RobotsRules:
    """What one origin's robots.txt says; ``unavailable`` is set when it could not be read."""

    parser: Protego | None = None
    unavailable: str | None = None
    text: str | None = None  # the robots.txt it was parsed from (to share it with other processes)

    @classmethod
    def allow_all(cls) -> RobotsRules:
        return cls()

    @classmethod
    def failed(cls, reason: str) -> RobotsRules:
        return cls(unavailable=reason)

    @classmethod
    def parse(cls, body: bytes) -> RobotsRules:
        text = body.decode("utf-8", errors="replace")
        return cls(parser=Protego.parse(text), text=text)

    def allows(self, url: str, user_agent: str) -> bool:
        if self.unavailable is not None:
            return False
        return self.parser is None or bool(self.parser.can_fetch(url, user_agent))


def robots_url(url: str) -> str:
    """The robots.txt URL for ``url``'s origin (scheme, host, port; no user info)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme.lower()}://{host}{port}/robots.txt"


Loader = Callable[[str], Awaitable[RobotsRules]]


class RobotsSource(Protocol):
    """Where the Fetcher gets an origin's rules: ``RobotsCache`` in one process, or a shared cache."""

    async def rules_for(self, url: str, load: Loader) -> RobotsRules: ...


class RobotsCache:
    """Per-origin robots.txt rules, loaded once (concurrent callers wait for one load) and kept
    for ``ttl`` seconds, or ``error_ttl`` seconds when robots.txt was unavailable."""

    def __init__(self, ttl: float, error_ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._error_ttl = error_ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, RobotsRules]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def rules_for(self, url: str, load: Loader) -> RobotsRules:
        key = robots_url(url)
        cached = self._entries.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]  # the usual case: no lock to take, nothing to load
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            cached = self._entries.get(key)
            if cached is not None and cached[0] > self._clock():
                return cached[1]
            rules = await load(key)
            ttl = self._error_ttl if rules.unavailable is not None else self._ttl
            self._entries[key] = (self._clock() + ttl, rules)
            return rules
