"""Politeness across processes and machines, in Redis: per-host concurrency and minimum gap from
Dramatiq's rate limiters keyed by host, Retry-After pauses, robots.txt verdicts, channel pacing.

- concurrency: at most ``fetch.per_host_concurrency`` holders of a host's slots, each slot held
  while its request runs and expiring on its own (``ACQUIRE``). Not Dramatiq's
  ``ConcurrentRateLimiter``: its counter has ONE TTL that every acquire and release renews, so a
  slot held by a worker killed -9 never frees while the host stays busy (measured: a kill test
  stalled every worker on the host). The gap, Retry-After and channel limits below are safe with
  Dramatiq's limiter backend, and use it;
- minimum gap between request starts, as the site sees them: a request takes its host's gap key
  (the limiters' Redis backend ``add``, with a token of its own) just before its headers go out and
  holds it while they are written (``SEND_HOLD`` at most); once they are written, ``REARM`` makes the
  key live ``per_host_min_gap`` from then, in Redis's clock. The next start waits for the key to
  expire, so it comes at least the gap after the previous request's bytes left, however long the
  process stalled between taking the key and sending (measured under load: a worker stalled ~10 ms
  after Redis set a key that lived the gap from its set, and two starts came 0.285 s apart at a 0.3 s
  gap). A worker killed -9 while holding the key leaves it to expire after ``SEND_HOLD``;
- a 429/503 with Retry-After sets ``storywatch:pause:<host>`` with that TTL: every worker sees it;
- robots.txt: the text (or the "allow all" / "unavailable" verdict) under ``storywatch:robots:<url>``
  with the fetch settings' TTLs.

Redis calls are short and synchronous (a local round trip is ~0.1 ms); waiting is an asyncio sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from crawler.config import ChannelConfig
from crawler.fetch import RobotsRules, robots_url
from crawler.fetch.robots import Loader
from crawler.scale.broker import KEYS

POLL_GAP = 0.02  # seconds between tries for a busy host's slot (plus jitter)
SEND_HOLD = 5.0  # seconds a host's gap key is held between its reservation and the headers written

# Take one of a host's ``limit`` slots: a sorted set of holders scored by when their hold expires
# (the Redis server's clock, so machines' clocks need not agree). Expired holders (a worker killed
# mid-request) are dropped first, so a dead worker's slot frees itself after ``ttl`` ms.
ACQUIRE = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('zadd', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
  redis.call('pexpire', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# The headers of the request holding ``KEYS[1]`` with token ``ARGV[1]`` are written: the key lives
# ``ARGV[2]`` ms from now (the send is over, so the gap counts from after it). Another request's
# key is never shortened: only lengthened to the gap when it has less left (our hold had lapsed, so
# someone else took the key meanwhile: the next start still comes a gap after ours).
REARM = """
if redis.call('get', KEYS[1]) == ARGV[1] or redis.call('pttl', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
end
return 0
"""


class RedisHostGate:
    """``crawler.fetch.politeness.Gate`` shared by every worker through Redis. The gap is taken
    when the request's headers go out (``before_send``) and counted from when they are written
    (``after_send``): a request that first opened a connection is not counted from before its
    connect, nor one whose process stalled from before its send."""

    gap_at_send = True

    def __init__(
        self, client: Any, *, per_host: int, min_gap: float, global_limit: int, hold_ttl: float = 300.0
    ) -> None:
        from dramatiq.rate_limits.backends import RedisBackend

        self._client = client
        self._backend = RedisBackend(client=client)
        self._acquire = client.register_script(ACQUIRE)
        self._rearm = client.register_script(REARM)
        self._per_host = per_host
        self._gap_ms = round(min_gap * 1000)
        self._hold_ms = int(hold_ttl * 1000)  # a killed worker's slot frees itself after this
        self._global = asyncio.Semaphore(global_limit)  # per process: the HTTP client's pool size

    def slot(self, host: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._slot(host)

    @contextlib.asynccontextmanager
    async def _slot(self, host: str) -> AsyncIterator[None]:
        key, token = f"{KEYS}:host:{host}", uuid.uuid4().hex
        async with self._global:
            while not self._acquire(keys=[key], args=[self._hold_ms, self._per_host, token]):
                await asyncio.sleep(POLL_GAP * (1 + random.random()))
            try:
                yield
            finally:
                self._client.zrem(key, token)

    async def before_send(self, host: str) -> str | None:
        """Wait for the host's gap key and take it, held until ``after_send``; returns the token."""
        if self._gap_ms <= 0:
            return None
        token = uuid.uuid4().hex
        await _take_gap(
            self._backend, self._client, f"{KEYS}:gap:{host}", self._gap_ms, token, int(SEND_HOLD * 1000)
        )
        return token

    def after_send(self, host: str, token: str | None) -> None:
        """The headers are written (or failed partway): the next start comes a gap from now."""
        if token is not None:
            self._rearm(keys=[f"{KEYS}:gap:{host}"], args=[token, self._gap_ms])

    def pause(self, host: str, seconds: float, status: int) -> None:
        key = f"{KEYS}:pause:{host}"
        ms = int(seconds * 1000)
        if ms > 0 and self._client.pttl(key) < ms:
            self._client.set(key, str(status), px=ms)

    def paused(self, host: str) -> tuple[float, int] | None:
        key = f"{KEYS}:pause:{host}"
        with self._client.pipeline() as pipe:
            status, left = pipe.get(key).pttl(key).execute()
        if status is None or left is None or left <= 0:
            return None
        return left / 1000, int(status)


async def _take_gap(
    backend: Any, client: Any, key: str, gap_ms: int, token: str = "1", hold_ms: int | None = None
) -> None:
    """Wait for the turn of ``key``: the rate-limiter backend's atomic add of a key that lives
    ``hold_ms`` (default ``gap_ms``) and is never released, so two takes are at least ``gap_ms``
    apart. A key held for a send (longer than the gap) is looked at again a gap later: the earliest
    the next turn can come, once it is re-armed."""
    while not backend.add(key, token, ttl=hold_ms or gap_ms):
        left = client.pttl(key)
        await asyncio.sleep(min(max(left, 1), gap_ms) / 1000 + random.random() * POLL_GAP)


class RedisRobotsCache:
    """``crawler.fetch.robots.RobotsSource`` shared through Redis (one robots.txt fetch per origin
    and TTL for the whole cluster, give or take concurrent first loads)."""

    def __init__(self, client: Any, *, ttl: float, error_ttl: float) -> None:
        self._client = client
        self._ttl = ttl
        self._error_ttl = error_ttl
        self._parsed: dict[str, tuple[float, RobotsRules]] = {}  # this process's parsed copies

    async def rules_for(self, url: str, load: Loader) -> RobotsRules:
        key = robots_url(url)
        local = self._parsed.get(key)
        if local is not None and local[0] > time.monotonic():
            return local[1]
        raw = self._client.get(f"{KEYS}:robots:{key}")
        if raw is not None:
            rules = _decode(raw)
            left = max(self._client.pttl(f"{KEYS}:robots:{key}"), 0) / 1000
        else:
            rules = await load(key)
            left = self._error_ttl if rules.unavailable is not None else self._ttl
            self._client.set(f"{KEYS}:robots:{key}", _encode(rules), px=max(1, int(left * 1000)))
        self._parsed[key] = (time.monotonic() + left, rules)
        return rules


def _encode(rules: RobotsRules) -> str:
    if rules.unavailable is not None:
        return json.dumps({"unavailable": rules.unavailable})
    return json.dumps({"text": rules.text})


def _decode(raw: bytes | str) -> RobotsRules:
    data = json.loads(raw)
    if "unavailable" in data:
        return RobotsRules.failed(str(data["unavailable"]))
    text = data.get("text")
    return RobotsRules.allow_all() if text is None else RobotsRules.parse(text.encode("utf-8"))


class RedisPacer:
    """The relay's per-channel rate limit (``rate_per_second``) shared by every relay process: the
    same never-released gap key as the hosts'."""

    def __init__(self, client: Any) -> None:
        from dramatiq.rate_limits.backends import RedisBackend

        self._client = client
        self._backend = RedisBackend(client=client)

    async def __call__(self, name: str, cfg: ChannelConfig) -> None:
        gap_ms = max(1, int(1000 / cfg.rate_per_second))
        await _take_gap(self._backend, self._client, f"{KEYS}:channel:{name}", gap_ms)


__all__ = ["RedisHostGate", "RedisPacer", "RedisRobotsCache"]
