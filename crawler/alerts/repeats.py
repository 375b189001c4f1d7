"""When an alert is due a "still developing" repeat on one channel: a pure decision, no I/O.

Alertmanager re-sends a firing alert every ``repeat_interval``; a news alert never resolves, so
"still firing" here means *the story kept growing*: the alert was corroborated after the last
notice that reached the channel. The rules, per (alert, channel):

1. repeats are off when the channel's interval is 0 (``alerts.repeat_interval``, or the
   channel's own ``repeat_interval``);
2. the alert must have reached the channel: a notice (``alert``, ``update`` or ``repeat``) was
   sent, directly or inside a digest that was sent;
3. nothing for the alert may be waiting on that channel (a pending, held or sending notice, or a
   digest not sent yet): whatever waits will carry the news;
4. the alert's corroboration count moved past the highest count a sent notice carried (the
   count a notice carried is the alert snapshot in its payload, so a corroboration that arrived
   while a notice waited in the outbox, unprinted, still counts as new);
5. ``interval`` has passed since the last sent notice, and since the last repeat was queued (so
   a repeat that failed for good is not re-queued on every relay pass);
6. the alert's last corroboration is fresh: less than two intervals old. While the relay runs
   this never holds a repeat back (a repeat is due at most one interval after the corroboration
   that makes it due); it keeps old news from being replayed when repeats are turned on for an
   existing database, after the daemon was stopped for days, or when a long silence ends.

So a story that goes quiet stops repeating by itself. Silences, routes, quiet hours and digests
are applied by the caller (:func:`storage.outbox_relay.compose_repeats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

NOTICE_KINDS = ("alert", "update", "repeat")
WAITING = ("pending", "held", "sending")
FRESH_INTERVALS = 2  # rule 6: corroborations older than this many intervals are not repeated


@dataclass(frozen=True)
class Notice:
    """One outbox row of an alert for one channel, as the repeat rule sees it.

    ``state`` is the row's state, except for a row folded into a digest: then it is the digest's
    state and ``sent_at`` the digest's send time.
    """

    kind: str
    state: str
    created_at: datetime
    sent_at: datetime | None
    source_count: int  # what the notice's payload carried
    corroborations: int


@dataclass(frozen=True)
class RepeatDue:
    """A repeat to queue: the ``n``-th for this alert and channel, and what the last notice said."""

    n: int
    previous_at: datetime
    previous_source_count: int
    previous_corroborations: int


def fresh_since(interval: float, now: datetime) -> datetime:
    """Rule 6: an alert last corroborated at or before this time gets no repeat."""
    return now - timedelta(seconds=FRESH_INTERVALS * interval)


def repeat_due(
    notices: Sequence[Notice],
    *,
    corroborations: int,
    updated_at: datetime,
    interval: float,
    now: datetime,
) -> RepeatDue | None:
    """The repeat due at ``now`` for an alert with ``corroborations`` so far, last corroborated at
    ``updated_at``, or None (see the module docstring for the rules)."""
    mine = [n for n in notices if n.kind in NOTICE_KINDS]
    if interval <= 0 or updated_at <= fresh_since(interval, now) or any(n.state in WAITING for n in mine):
        return None
    sent = [n for n in mine if n.state == "sent" and n.sent_at is not None]
    if not sent:
        return None
    carried = max(sent, key=lambda n: (n.corroborations, n.source_count))
    if corroborations <= carried.corroborations:
        return None
    last = max(n.sent_at for n in sent if n.sent_at is not None)
    repeats = [n for n in mine if n.kind == "repeat"]
    start = max([last, *(n.created_at for n in repeats)])
    if now < start + timedelta(seconds=interval):
        return None
    return RepeatDue(len(repeats) + 1, last, carried.source_count, carried.corroborations)


def repeat_key(alert_id: int, channel: str, n: int) -> str:
    """The idempotency key of the ``n``-th repeat: unique, so racing relays insert it once."""
    return f"repeat-{alert_id}-{channel}-{n}"  # channel names fit in 100 characters (the column)


__all__ = [
    "FRESH_INTERVALS",
    "NOTICE_KINDS",
    "Notice",
    "RepeatDue",
    "fresh_since",
    "repeat_due",
    "repeat_key",
]
