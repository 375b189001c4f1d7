"""Frozen values the alerts capability hands out: to the ingest transaction, the relay, the CLI.

Everything here is plain data; :func:`to_jsonable` turns any of it into JSON-ready values for
``storywatch alerts ... --json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

DeliveryState = Literal["pending", "sending", "sent", "failed", "dead", "held", "silenced", "digested"]


@dataclass(frozen=True)
class AlertOutcome:
    """What record_alert did with one match.

    ``new``: a new alert (and its deliveries); ``corroborated``: an existing alert got another
    source; ``duplicate``: this document already recorded this match (nothing changed).
    """

    status: Literal["new", "corroborated", "duplicate"]
    alert_id: int
    match_id: int | None
    source_count: int
    channels: tuple[str, ...] = ()  # channels that got a delivery row (new or coalesced)
    silenced_by: int | None = None

    @property
    def created(self) -> bool:
        return self.status == "new"


@dataclass(frozen=True)
class ClaimedDelivery:
    """An outbox row leased to one relay worker."""

    id: int
    channel: str
    kind: str
    alert_id: int | None
    idempotency_key: str
    payload: Mapping[str, Any]
    tries: int
    detail: Mapping[str, Any] = field(default_factory=dict)  # what earlier attempts recorded


@dataclass(frozen=True)
class DeliveryInfo:
    id: int
    channel: str
    kind: str
    state: str
    tries: int
    idempotency_key: str
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertSource:
    """A source that reported an alert's story, with the URL it was seen at."""

    source_id: str
    url: str | None = None


@dataclass(frozen=True)
class AlertSummary:
    """One development as `alerts list` and the web's developments list show it."""

    id: int
    created_at: datetime
    rule_id: str
    title: str
    severity: str
    story_id: int
    source_count: int
    corroborations: int
    evidence: str
    origin: str
    deliveries: Mapping[str, str] = field(default_factory=dict)  # channel -> state of its newest row
    headline: str = ""  # the title of the document that carried the evidence
    status: str = "asserted"  # asserted | hedged | negated (a rule may fire on hedged)
    spans: tuple[tuple[int, int, str], ...] = ()  # [start, end, term] offsets into evidence
    captures: Mapping[str, str] = field(default_factory=dict)
    sources: tuple[AlertSource, ...] = ()
    link: str | None = None


@dataclass(frozen=True)
class DeliveryRef:
    """A delivery row with the alert it belongs to (the web's failed-deliveries list)."""

    id: int
    alert_id: int | None
    channel: str
    kind: str
    state: str
    tries: int
    created_at: datetime
    last_error: str | None
    rule_id: str | None
    title: str | None


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: tuple[Any, ...]
    next_cursor: str | None = None


@dataclass(frozen=True)
class AlertDetail:
    alert: AlertSummary
    group_key: str
    document_id: int
    updated_at: datetime
    details: Mapping[str, Any]
    deliveries: tuple[DeliveryInfo, ...]


@dataclass(frozen=True)
class SilenceInfo:
    id: int
    matcher: Mapping[str, Any]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    active: bool


@dataclass(frozen=True)
class RetryOutcome:
    delivery_ids: tuple[int, ...]


@dataclass(frozen=True)
class OutboxDepth:
    """Outbox rows by state, and by channel then state; the oldest row still waiting to be sent."""

    by_state: Mapping[str, int]
    by_channel: Mapping[str, Mapping[str, int]]
    oldest_pending_at: datetime | None

    @property
    def pending(self) -> int:
        return sum(self.by_state.get(s, 0) for s in ("pending", "sending", "held"))


@dataclass(frozen=True)
class Attempt:
    """One send attempt made by the relay."""

    delivery_id: int
    channel: str
    outcome: Literal["sent", "partial", "retry", "failed", "dead", "released", "lost"]
    error: str | None = None


@dataclass(frozen=True)
class RelayReport:
    attempts: tuple[Attempt, ...] = ()
    digests: int = 0
    repeats: int = 0  # "still developing" repeats queued by this pass
    paused: Mapping[str, datetime] = field(default_factory=dict)  # channel -> paused until
    unavailable: Mapping[str, str] = field(default_factory=dict)  # channel -> why it could not be built

    def count(self, outcome: str) -> int:
        return sum(1 for a in self.attempts if a.outcome == outcome)

    @property
    def sent(self) -> int:
        return self.count("sent") + self.count("partial")

    def summary_lines(self) -> list[str]:
        """One line per channel for people: ``slack: 2 sent, 1 failed; paused until ... UTC``."""
        words = {"sent": "sent", "partial": "sent", "failed": "failed", "dead": "failed"}
        words |= {"retry": "to retry", "released": "waiting"}
        per: dict[str, dict[str, int]] = {}
        for a in self.attempts:
            counts = per.setdefault(a.channel, {})
            counts[words[a.outcome]] = counts.get(words[a.outcome], 0) + 1
        lines = []
        for channel in sorted(set(per) | set(self.paused) | set(self.unavailable)):
            parts = [", ".join(f"{n} {w}" for w, n in per.get(channel, {}).items())]
            if channel in self.paused:
                parts.append(f"paused until {self.paused[channel]:%Y-%m-%d %H:%M} UTC")
            if channel in self.unavailable:
                parts.append(f"unavailable: {self.unavailable[channel]}")
            lines.append(f"{channel}: " + "; ".join(p for p in parts if p))
        extra = [f"{n} {w}" for n, w in ((self.digests, "digest(s)"), (self.repeats, "repeat(s)")) if n]
        if extra:
            lines.append("queued: " + ", ".join(extra))
        return lines


def to_jsonable(value: Any) -> Any:
    """Dataclasses, mappings, tuples, sets and datetimes -> JSON-ready values.

    The one serializer of every ``--json`` output and of the web's JSON API (``/api/v1/``).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return [to_jsonable(v) for v in sorted(value, key=str)]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
