"""The Dramatiq broker on Redis, the one queue of polls, and what scale-out mode requires.

``storywatch scheduler`` enqueues ``poll(source_id, generation)`` messages on the ``poll`` queue;
``storywatch worker`` runs them (``crawler.scale.worker``). Messages are acknowledged after the
poll; a dead worker's messages are re-queued by Dramatiq, and a message lost with Redis only delays
its source until the dispatch lease expires (``storage.dispatch``).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from crawler.config import Settings
from crawler.errors import ConfigError

POLL_QUEUE = "poll"
POLL_ACTOR = "poll"
NAMESPACE = "dramatiq"  # Dramatiq's default key prefix (queue depth and heartbeats are read from it)
KEYS = "storywatch"  # our own Redis keys: politeness, robots.txt, rate limits, latencies


def require_scale(settings: Settings) -> str:
    """The broker URL; ConfigError (exit 2) naming what is missing when scale-out cannot run."""
    if not settings.broker:
        raise ConfigError(
            "scale-out mode needs `broker: redis://HOST:6379/0` in the config file "
            "(without it, `storywatch run` is the embedded daemon)",
            key="broker",
        )
    if not settings.database_url.startswith("postgresql"):
        raise ConfigError(
            "scale-out mode needs PostgreSQL (`database: postgresql+psycopg://...`): SQLite cannot be "
            "shared by processes on several machines; without `broker`, `storywatch run` uses SQLite",
            key="database",
        )
    return settings.broker


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


def make_broker(url: str) -> Any:
    """A RedisBroker with the middleware the roles rely on (the current message, for its age)."""
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import CurrentMessage

    broker = RedisBroker(url=url, namespace=NAMESPACE)
    broker.add_middleware(CurrentMessage())
    return broker


def poll_message(source_id: str, generation: int) -> Any:
    from dramatiq import Message

    return Message(
        queue_name=POLL_QUEUE,
        actor_name=POLL_ACTOR,
        args=(source_id, generation),
        kwargs={},
        options={},
    )


def config_digest(settings: Settings, rule_files: list[Any]) -> str:
    """sha256 over the contents of the config file and every rule file (not their paths, which
    differ between machines): the same digest means the same configuration and rule set."""
    files = ([settings.path] if settings.path else []) + [str(p) for p in rule_files]
    parts = []
    for path in files:
        with open(path, "rb") as fh:
            parts.append(hashlib.sha256(fh.read()).hexdigest())
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


__all__ = [
    "KEYS",
    "NAMESPACE",
    "POLL_ACTOR",
    "POLL_QUEUE",
    "config_digest",
    "make_broker",
    "poll_message",
    "redis_client",
    "require_scale",
]
