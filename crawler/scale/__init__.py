"""Scale-out: a scheduler, workers and relays on Dramatiq (Redis); PostgreSQL holds all state."""

from __future__ import annotations

from crawler.scale.broker import POLL_QUEUE, make_broker, poll_message, redis_client, require_scale
from crawler.scale.politeness import RedisHostGate, RedisPacer, RedisRobotsCache
from crawler.scale.relay import run_relay
from crawler.scale.scheduler import Scheduler
from crawler.scale.stats import ScaleStatus, scale_status
from crawler.scale.worker import WorkerState

__all__ = [
    "POLL_QUEUE",
    "RedisHostGate",
    "RedisPacer",
    "RedisRobotsCache",
    "ScaleStatus",
    "Scheduler",
    "WorkerState",
    "make_broker",
    "poll_message",
    "redis_client",
    "require_scale",
    "run_relay",
    "scale_status",
]
