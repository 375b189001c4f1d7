"""Daemon metrics (Prometheus), in a registry of the daemon's own.

``daemon.http: "127.0.0.1:9465"`` (alias ``daemon.metrics``) serves them at ``GET /metrics`` of the
web app (:mod:`crawler.web`), beside ``GET /healthz`` (the daemon's state as JSON) and the
dashboard. Port 0 picks a free port (the daemon logs the one chosen).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from crawler.alerts.views import RelayReport
from crawler.pipeline import SourceOutcome

DELIVERY_STATES = ("pending", "sending", "sent", "failed", "dead", "held")
HEALTH_STATES = ["new", "ok", "degraded", "failing", "stale"]
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every counter the daemon keeps, in a registry of its own (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("storywatch_polls", "Source polls by result", ["source", "result"], registry=r)
        self.errors = Counter(
            "storywatch_poll_errors", "Failed polls by kind", ["source", "kind"], registry=r
        )
        self.latency = Histogram(
            "storywatch_poll_seconds",
            "Time of one source poll (feed and articles)",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.documents = Counter(
            "storywatch_new_documents", "New or updated documents", ["source"], registry=r
        )
        self.alerts = Counter(
            "storywatch_alerts_created", "Alerts created by rule matches", ["source"], registry=r
        )
        self.sent = Counter("storywatch_alerts_sent", "Deliveries sent by the relay", registry=r)
        self.failed = Counter("storywatch_alerts_failed", "Deliveries that failed in the relay", registry=r)
        self.outbox = Gauge("storywatch_outbox_depth", "Pending deliveries in the outbox", registry=r)
        self.health = Enum(
            "storywatch_source_health", "Health of each source", ["source"], states=HEALTH_STATES, registry=r
        )
        self.deliveries = Gauge("storywatch_deliveries", "Outbox rows by state", ["state"], registry=r)
        self.loop_lag = Histogram(
            "storywatch_event_loop_lag_seconds",
            "How late the event loop woke a 50 ms sleeper (CPU work on the loop delays everything)",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_p99 = Gauge(
            "storywatch_event_loop_lag_p99_seconds", "99th percentile of the last 5 minutes' lag", registry=r
        )
        self.notices = Counter(
            "storywatch_health_notices", "Health changes announced", ["source"], registry=r
        )

    def record_poll(self, outcome: SourceOutcome) -> None:
        res = outcome.result
        self.polls.labels(res.source_id, res.status).inc()
        self.latency.labels(res.source_id).observe(res.seconds)
        if res.status == "error":
            self.errors.labels(res.source_id, outcome.error_kind or "internal").inc()
        if res.new_documents:
            self.documents.labels(res.source_id).inc(res.new_documents)
        if res.new_alerts:
            self.alerts.labels(res.source_id).inc(res.new_alerts)

    def set_health(self, source_id: str, health: str) -> None:
        if health in HEALTH_STATES:
            self.health.labels(source_id).state(health)

    def record_delivery(self, report: RelayReport) -> None:
        """Count what one relay pass sent and what failed for good (failed or dead)."""
        self.sent.inc(report.sent)
        self.failed.inc(report.count("failed") + report.count("dead"))

    def set_deliveries(self, counts: Mapping[str, int]) -> None:
        """Outbox rows by state, read from the database (so sends by run_forever show too)."""
        for state in DELIVERY_STATES:
            self.deliveries.labels(state).set(counts.get(state, 0))
        self.outbox.set(counts.get("pending", 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
