"""What scale-out mode reports: queue depth, per-queue latency, live workers, dispatch lag.

Read from Redis (Dramatiq's queue list and worker heartbeats, the workers' latency samples) and
PostgreSQL (due sources not dispatched yet, leases held). Shown by `storywatch status` and served on
the scheduler's ``/metrics``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from crawler.scale.broker import KEYS, NAMESPACE, POLL_QUEUE, now_ms
from storage import dispatch
from storage.db import Database

WORKER_FRESH_MS = 30_000  # a worker process whose heartbeat (every 10 s) is older is not counted


@dataclass(frozen=True)
class ScaleStatus:
    queue_depth: dict[str, int]
    queue_latency: dict[str, float]  # mean seconds from enqueue to start, over the last samples
    workers: int  # worker processes with a fresh heartbeat
    due: int  # sources due and not dispatched
    dispatch_lag: float  # seconds the longest-waiting due source has waited
    leased: int  # polls dispatched and not finished (lease held)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def scale_status(redis: Any, db: Database, now: datetime) -> ScaleStatus:
    queue = f"{NAMESPACE}:{POLL_QUEUE}"
    with redis.pipeline() as pipe:
        pipe.llen(queue)
        pipe.zcount(f"{KEYS}:workers", now_ms() - WORKER_FRESH_MS, "+inf")
        pipe.lrange(f"{KEYS}:latency:{POLL_QUEUE}", 0, -1)
        depth, workers, samples = pipe.execute()
    ms = [int(s) for s in samples]
    latency = (sum(ms) / len(ms) / 1000) if ms else 0.0
    stats = dispatch.dispatch_stats(db, now)
    return ScaleStatus(
        {POLL_QUEUE: int(depth)},
        {POLL_QUEUE: round(latency, 3)},
        int(workers),
        stats.due,
        stats.lag(now),
        stats.leased,
    )


class ScaleGauges:
    """The scale-out gauges, in a daemon metrics registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.depth = Gauge("storywatch_queue_depth", "Messages waiting per queue", ["queue"], registry=r)
        self.latency = Gauge(
            "storywatch_queue_latency_seconds", "Mean wait from enqueue to start", ["queue"], registry=r
        )
        self.workers = Gauge("storywatch_workers", "Worker processes with a fresh heartbeat", registry=r)
        self.lag = Gauge(
            "storywatch_dispatch_lag_seconds",
            "How long the longest-waiting due source has waited",
            registry=r,
        )
        self.due = Gauge("storywatch_sources_due", "Sources due and not dispatched", registry=r)
        self.leased = Gauge("storywatch_polls_in_flight", "Polls dispatched and not finished", registry=r)

    def set(self, s: ScaleStatus) -> None:
        for q, n in s.queue_depth.items():
            self.depth.labels(q).set(n)
        for q, sec in s.queue_latency.items():
            self.latency.labels(q).set(sec)
        self.workers.set(s.workers)
        self.lag.set(s.dispatch_lag)
        self.due.set(s.due)
        self.leased.set(s.leased)


__all__ = ["ScaleGauges", "ScaleStatus", "scale_status"]
