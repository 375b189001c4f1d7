"""Queries behind ``storywatch alerts ...`` and status: list, show, retry, silences, outbox depth.

Every function returns frozen values from :mod:`crawler.alerts.views`; missing ids raise
:class:`crawler.alerts.base.AlertNotFound`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crawler.alerts.base import AlertNotFound
from crawler.alerts.views import (
    AlertDetail,
    AlertSource,
    AlertSummary,
    DeliveryInfo,
    DeliveryRef,
    OutboxDepth,
    Page,
    RetryOutcome,
    SilenceInfo,
)
from crawler.config import parse_duration
from crawler.errors import StorywatchError

from . import dedup_store
from .db import Database
from .models import AlertRow, DeliveryRow, SilenceRow, utcnow
from .paging import Newest

RETRYABLE = ("failed", "dead", "silenced")
ALERTS = Newest(AlertRow, "created_at")


def _summary(row: AlertRow, deliveries: Mapping[str, str]) -> AlertSummary:
    d = row.details or {}
    return AlertSummary(
        id=row.id,
        created_at=row.created_at,
        rule_id=row.rule_id,
        title=row.title,
        severity=row.severity,
        story_id=row.story_id,
        source_count=row.source_count,
        corroborations=row.corroborations,
        evidence=row.evidence,
        origin=row.origin,
        deliveries=dict(deliveries),
        headline=str(d.get("headline") or ""),
        status=str(d.get("status") or "asserted"),
        spans=tuple((int(a), int(b), str(t)) for a, b, t in d.get("spans") or ()),
        captures={str(k): str(v) for k, v in (d.get("captures") or {}).items()},
        sources=tuple(
            AlertSource(str(x.get("source_id") or ""), x.get("url")) for x in d.get("sources") or ()
        ),
        link=d.get("link"),
    )


def _delivery(row: DeliveryRow, extra: Mapping[str, Any] | None = None) -> DeliveryInfo:
    return DeliveryInfo(
        id=row.id,
        channel=row.channel,
        kind=row.kind,
        state=row.state,
        tries=row.tries,
        idempotency_key=row.idempotency_key,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        sent_at=row.sent_at,
        last_error=row.last_error,
        detail=dict(row.detail or {}) | dict(extra or {}),
    )


def list_alerts(
    db: Database,
    *,
    since: datetime | None = None,
    limit: int = 50,
    rule: str | None = None,
    severity: str | None = None,
    until: datetime | None = None,
) -> tuple[AlertSummary, ...]:
    """Newest first; ``deliveries`` maps each channel to the state of its newest row."""
    return alerts_page(db, since=since, limit=limit, rule=rule, severity=severity, until=until).items


def alerts_page(
    db: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    rule: str | None = None,
    severity: str | None = None,
    story: int | None = None,
    cursor: str | None = None,
) -> Page:
    """One page of alerts, newest first, with their delivery states: two queries, whatever the page."""
    q = ALERTS.query(
        limit=limit, cursor=cursor, since=since, until=until, rule_id=rule, severity=severity, story_id=story
    )
    with db.read() as s:
        rows = list(s.scalars(q).all())
        states = _delivery_states(s, [r.id for r in rows])
        reporters = _story_sources(s, sorted({r.story_id for r in rows}))
        items = [_with_sources(_summary(r, states.get(r.id, {})), reporters) for r in rows]
    return ALERTS.page(rows, items, limit)


def _story_sources(s: Session, story_ids: list[int]) -> dict[int, set[str]]:
    """story id -> every source that reported it (documents and sightings): one query."""
    out: dict[int, set[str]] = {}
    if story_ids:
        for story, source in dedup_store.story_source_pairs(s, story_ids):
            out.setdefault(story, set()).add(source)
    return out


def _with_sources(a: AlertSummary, reporters: Mapping[int, set[str]]) -> AlertSummary:
    """The alert's recorded sources (with URLs), then the story's other reporters (without)."""
    known = {x.source_id for x in a.sources}
    more = tuple(AlertSource(sid) for sid in sorted(reporters.get(a.story_id, set()) - known))
    return replace(a, sources=a.sources + more) if more else a


def _delivery_states(s: Session, ids: list[int]) -> dict[int, dict[str, str]]:
    """alert id -> channel -> state of the newest delivery row there (one query)."""
    states: dict[int, dict[str, str]] = {}
    if ids:
        for aid, ch, st in s.execute(
            select(DeliveryRow.alert_id, DeliveryRow.channel, DeliveryRow.state)
            .where(DeliveryRow.alert_id.in_(ids))
            .order_by(DeliveryRow.id)
        ):
            states.setdefault(int(aid or 0), {})[ch] = st
    return states


def alert_facets(db: Database) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The rule ids and severities that have alerts (for filter menus)."""
    with db.read() as s:
        rules = tuple(s.scalars(select(AlertRow.rule_id).distinct().order_by(AlertRow.rule_id)))
        sevs = tuple(s.scalars(select(AlertRow.severity).distinct().order_by(AlertRow.severity)))
    return rules, sevs


def list_deliveries(
    db: Database, *, states: tuple[str, ...] = ("failed", "dead"), limit: int = 100
) -> tuple[DeliveryRef, ...]:
    """Deliveries in ``states`` (failed and dead by default), newest first, with their alert's rule."""
    q = (
        select(DeliveryRow, AlertRow.rule_id, AlertRow.title)
        .outerjoin(AlertRow, AlertRow.id == DeliveryRow.alert_id)
        .where(DeliveryRow.state.in_(states))
        .order_by(DeliveryRow.id.desc())
        .limit(limit)
    )
    with db.read() as s:
        return tuple(
            DeliveryRef(
                d.id, d.alert_id, d.channel, d.kind, d.state, d.tries, d.created_at, d.last_error, rule, title
            )
            for d, rule, title in s.execute(q)
        )


def show_alert(db: Database, alert_id: int) -> AlertDetail:
    """One alert with every delivery (per-recipient detail; a digested row shows its digest's state)."""
    with db.read() as s:
        row = s.get(AlertRow, alert_id)
        if row is None:
            raise AlertNotFound(f"no alert with id {alert_id} (see `storywatch alerts list`)")
        rows = s.scalars(
            select(DeliveryRow).where(DeliveryRow.alert_id == alert_id).order_by(DeliveryRow.id)
        ).all()
        digest_ids = [int(r.detail["digest_id"]) for r in rows if r.detail and "digest_id" in r.detail]
        digests = {d.id: d for d in s.scalars(select(DeliveryRow).where(DeliveryRow.id.in_(digest_ids)))}
        infos = []
        for r in rows:
            d = digests.get(int((r.detail or {}).get("digest_id", -1)))
            infos.append(_delivery(r, {"digest_state": d.state, "digest_sent_at": d.sent_at} if d else None))
        summary = _summary(row, {i.channel: i.state for i in infos})
        return AlertDetail(
            summary, row.group_key, row.document_id, row.updated_at, dict(row.details or {}), tuple(infos)
        )


def parse_ref(ref: int | str) -> tuple[str, int]:
    """``12`` -> ("alert", 12); ``d12`` / ``delivery:12`` -> ("delivery", 12)."""
    text = str(ref).strip().lower()
    kind = "alert"
    for prefix in ("delivery:", "d"):
        if text.startswith(prefix):
            kind, text = "delivery", text[len(prefix) :]
            break
    text = text.removeprefix("alert:").removeprefix("a")
    if not text.isdigit():
        raise AlertNotFound(f"{ref!r} is not an alert id (12) or a delivery id (d12)")
    return kind, int(text)


def retry_delivery(db: Database, ref: int | str, *, now: datetime | None = None) -> RetryOutcome:
    """Queue again the failed, dead or silenced deliveries of an alert (``12``) or one delivery (``d12``).

    The idempotency key is kept, so a receiver that did get it can drop the copy.
    """
    kind, ident = parse_ref(ref)
    now = now or utcnow()
    col = DeliveryRow.id if kind == "delivery" else DeliveryRow.alert_id
    with db.write() as s:
        if kind == "alert" and s.get(AlertRow, ident) is None:
            raise AlertNotFound(f"no alert with id {ident}")
        rows = s.execute(select(DeliveryRow.id, DeliveryRow.state).where(col == ident)).all()
        if kind == "delivery" and not rows:
            raise AlertNotFound(f"no delivery with id {ident}")
        if kind == "delivery" and rows[0].state not in RETRYABLE:
            raise StorywatchError(
                f"delivery {ident} is {rows[0].state}: only failed, dead or silenced "
                "deliveries can be retried"
            )
        ids = [r.id for r in rows if r.state in RETRYABLE]
        if ids:
            s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id.in_(ids))
                .values(state="pending", tries=0, next_attempt_at=now, lease_until=None, leased_by=None)
            )
        return RetryOutcome(tuple(ids))


# ----------------------------------------------------------------------------- silences


def _silence(row: SilenceRow, now: datetime) -> SilenceInfo:
    return SilenceInfo(
        row.id,
        dict(row.matcher),
        row.starts_at,
        row.ends_at,
        row.comment,
        row.created_by,
        row.starts_at <= now < row.ends_at,
    )


def add_silence(
    db: Database,
    rule_glob: str,
    *,
    duration: float | str | None = None,
    until: datetime | None = None,
    comment: str = "",
    created_by: str = "",
    story_id: int | None = None,
    labels: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> SilenceInfo:
    """Silence rules matching ``rule_glob`` (fnmatch, e.g. ``longcat.*``) for ``duration`` or ``until``."""
    now = now or utcnow()
    if (duration is None) == (until is None):
        raise StorywatchError("give a silence either a duration (e.g. 2h) or an end time, not both")
    try:
        ends = until if until is not None else now + timedelta(seconds=parse_duration(duration))
    except ValueError as exc:
        raise StorywatchError(str(exc)) from exc
    if ends <= now:
        raise StorywatchError("a silence must end in the future")
    matcher: dict[str, Any] = {"rule": rule_glob}
    if story_id is not None:
        matcher["story"] = story_id
    if labels:
        matcher["labels"] = dict(labels)
    with db.write() as s:
        row = SilenceRow(matcher=matcher, starts_at=now, ends_at=ends, comment=comment, created_by=created_by)
        s.add(row)
        s.flush()
        return _silence(row, now)


def list_silences(
    db: Database, *, include_expired: bool = False, now: datetime | None = None
) -> tuple[SilenceInfo, ...]:
    now = now or utcnow()
    q = select(SilenceRow).order_by(SilenceRow.ends_at.desc(), SilenceRow.id.desc())
    if not include_expired:
        q = q.where(SilenceRow.ends_at > now)
    with db.read() as s:
        return tuple(_silence(r, now) for r in s.scalars(q))


def expire_silence(db: Database, silence_id: int, *, now: datetime | None = None) -> SilenceInfo:
    """End a silence now: alerts recorded from now on are delivered."""
    now = now or utcnow()
    with db.write() as s:
        row = s.get(SilenceRow, silence_id)
        if row is None:
            raise AlertNotFound(f"no silence with id {silence_id} (see `storywatch alerts silence list`)")
        if row.ends_at > now:
            row.ends_at = max(now, row.starts_at)
        s.flush()
        return _silence(row, now)


# ----------------------------------------------------------------------------- status


def outbox_depth(db: Database) -> OutboxDepth:
    """Deliveries by state and by channel (for status and metrics)."""
    with db.read() as s:
        rows = s.execute(
            select(DeliveryRow.channel, DeliveryRow.state, func.count()).group_by(
                DeliveryRow.channel, DeliveryRow.state
            )
        ).all()
        oldest = s.execute(
            select(func.min(DeliveryRow.created_at)).where(DeliveryRow.state.in_(("pending", "sending")))
        ).scalar()
    by_state: dict[str, int] = {}
    by_channel: dict[str, dict[str, int]] = {}
    for ch, st, n in rows:
        by_state[st] = by_state.get(st, 0) + int(n)
        by_channel.setdefault(ch, {})[st] = int(n)
    return OutboxDepth(by_state, by_channel, oldest)
