"""The relay's side of the outbox: repeats, digests, leases (claims), and the outcome of each attempt.

:func:`compose_repeats` queues "still developing" repeats (the rule is in
:mod:`crawler.alerts.repeats`); :func:`compose_digests` folds held rows into digests. Both are
safe with several relays: a repeat's idempotency key is unique (``repeat-{alert}-{channel}-{n}``,
inserted with ON CONFLICT DO NOTHING) and the alert rows are locked SKIP LOCKED while deciding.

:func:`claim` leases due rows of one channel (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the
``BEGIN IMMEDIATE`` write transaction serialises claimers); tries are counted at claim time, so a
worker that keeps dying on a row still ends it ``dead``. Then :func:`mark_sent`,
:func:`mark_failed` or :func:`release`, each fenced: it changes the row only while the caller
still holds the lease (``leased_by`` is the caller and ``lease_until`` has not passed), so a relay
whose lease expired cannot overwrite the outcome of the relay that re-claimed the row. A lease
that expires (worker killed) makes the row claimable again: at most one duplicate, with the same
idempotency key. Every function opens its
own short transaction; an idle relay only reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from crawler.alerts.payload import digest_payload, repeat_payload
from crawler.alerts.repeats import (
    NOTICE_KINDS,
    WAITING,
    Notice,
    RepeatDue,
    fresh_since,
    repeat_due,
    repeat_key,
)
from crawler.alerts.routing import (
    digest_period,
    period_label,
    quiet_until,
    routed_channels,
    schedule,
    silence_matches,
)
from crawler.alerts.views import ClaimedDelivery
from crawler.config import AlertsConfig, ChannelConfig

from .db import Database
from .models import AlertRow, DeliveryRow
from .outbox import active_silences, alert_snapshot

MAX_REPEATS_PER_PASS = 100  # repeats queued per relay pass (one short write transaction)


def _insert(db: Database, table: Any) -> Any:
    return db.insert(table)


def _any(db: Database, *where: Any) -> bool:
    """A read-only probe, so an idle relay never takes SQLite's write lock."""
    with db.read() as s:
        return s.execute(select(DeliveryRow.id).where(*where).limit(1)).first() is not None


def compose_repeats(db: Database, cfg: AlertsConfig, now: datetime) -> int:
    """Queue the "still developing" repeats due at ``now``, one per (alert, channel). Returns rows queued.

    Only alerts corroborated within two intervals can be due (crawler.alerts.repeats, rule 6).
    A read-only probe (an idle relay never takes SQLite's write lock) narrows them with one
    aggregate, then decides exactly; each due pair is decided again in a short write transaction
    holding its alert row (SKIP LOCKED: one held by another relay or an ingest waits for the next
    pass) and inserted under its unique key. At most MAX_REPEATS_PER_PASS rows per pass.
    """
    intervals = {n: cfg.repeat_interval_for(n) for n, ch in cfg.channels.items() if ch.enabled}
    intervals = {n: sec for n, sec in intervals.items() if sec > 0}
    if not intervals:
        return 0
    with db.read() as s:
        maybe = _maybe_due(s, intervals, now)[: 4 * MAX_REPEATS_PER_PASS]  # a burst drains over passes
        if not maybe:
            return 0
        alerts = s.scalars(select(AlertRow).where(AlertRow.id.in_({a for a, _ in maybe}))).all()
        notices = _notices(s, [a.id for a in alerts], set(intervals))
        silences = [m for _, m in active_silences(s, now)]
    rows = {a.id: a for a in alerts}
    pairs = [
        (a, ch)
        for a, ch in maybe
        if a in rows
        and _due(notices, rows[a], ch, intervals[ch], now) is not None
        and _wanted(cfg, ch, rows[a], silences)
    ]
    made = 0
    for i in range(0, len(pairs), MAX_REPEATS_PER_PASS):
        if made >= MAX_REPEATS_PER_PASS:
            break
        made += _compose_some(db, cfg, pairs[i : i + MAX_REPEATS_PER_PASS], MAX_REPEATS_PER_PASS - made, now)
    return made


def _maybe_due(s: Session, intervals: Mapping[str, float], now: datetime) -> list[tuple[int, str]]:
    """(alert id, channel) pairs that may be due, sorted: corroborated recently and past the count
    every notice that reached the channel carried, the newest of those created an interval ago,
    nothing waiting. One aggregate over the recently corroborated alerts' notices (it ignores
    digest states and silences: the exact rules run on this short list)."""
    reached = DeliveryRow.state.in_(("sent", "digested"))
    carried = DeliveryRow.payload[("alert", "corroborations")].as_integer()
    query = (
        select(
            AlertRow.id,
            AlertRow.corroborations,
            AlertRow.updated_at,
            DeliveryRow.channel,
            func.max(case((reached, carried))),
            func.max(case((reached, DeliveryRow.created_at))),
            func.max(case((DeliveryRow.state.in_(WAITING), 1), else_=0)),
        )
        .join(DeliveryRow, DeliveryRow.alert_id == AlertRow.id)
        .where(
            AlertRow.updated_at > min(fresh_since(sec, now) for sec in intervals.values()),
            AlertRow.corroborations > 0,
            DeliveryRow.kind.in_(NOTICE_KINDS),
        )
        .group_by(AlertRow.id, AlertRow.corroborations, AlertRow.updated_at, DeliveryRow.channel)
    )
    out = []
    for alert_id, corroborations, updated_at, ch, most, newest, waiting in s.execute(query):
        seconds = intervals.get(ch)
        if seconds is None or waiting or most is None or newest is None:
            continue
        fresh = updated_at > fresh_since(seconds, now)
        if fresh and corroborations > most and newest <= now - timedelta(seconds=seconds):
            out.append((int(alert_id), ch))
    return sorted(out)


def _due(
    notices: Mapping[tuple[int, str], Sequence[Notice]],
    row: AlertRow,
    ch: str,
    interval: float,
    now: datetime,
) -> RepeatDue | None:
    mine = notices.get((row.id, ch), ())
    return repeat_due(
        mine, corroborations=row.corroborations, updated_at=row.updated_at, interval=interval, now=now
    )


def _wanted(cfg: AlertsConfig, ch: str, row: AlertRow, silences: Sequence[Mapping[str, Any]]) -> bool:
    """The routes still send this alert to ``ch`` and no active silence matches it."""
    labels = dict((row.details or {}).get("labels", {}))
    if ch not in routed_channels(cfg, rule_id=row.rule_id, severity=row.severity, labels=labels):
        return False
    return not any(
        silence_matches(m, rule_id=row.rule_id, story_id=row.story_id, labels=labels) for m in silences
    )  # silenced: nothing queued (a repeat is a reminder, not a record)


def _compose_some(
    db: Database, cfg: AlertsConfig, pairs: Sequence[tuple[int, str]], limit: int, now: datetime
) -> int:
    """Decide again and queue the repeats of these pairs (at most ``limit``) in one write transaction."""
    made = 0
    with db.write() as s:
        query = select(AlertRow).where(AlertRow.id.in_({a for a, _ in pairs})).order_by(AlertRow.id)
        alerts = {a.id: a for a in s.scalars(query.with_for_update(skip_locked=True))}
        notices = _notices(s, list(alerts), {ch for _, ch in pairs})
        silences = [m for _, m in active_silences(s, now)]
        for alert_id, ch in pairs:
            row = alerts.get(alert_id)
            if row is None or made >= limit:
                continue
            due = _due(notices, row, ch, cfg.repeat_interval_for(ch), now)
            if (
                due is not None
                and _wanted(cfg, ch, row, silences)
                and _queue_repeat(s, db, cfg, ch, row, due, now)
            ):
                made += 1
    return made


def _notices(s: Session, alert_ids: Sequence[int], channels: set[str]) -> dict[tuple[int, str], list[Notice]]:
    """Every alert/update/repeat row of these alerts on these channels; a digested row as its digest."""
    rows: list[Any] = []
    for i in range(0, len(alert_ids), 500):  # bounded IN lists
        rows += s.execute(
            select(
                DeliveryRow.alert_id,
                DeliveryRow.channel,
                DeliveryRow.kind,
                DeliveryRow.state,
                DeliveryRow.created_at,
                DeliveryRow.sent_at,
                DeliveryRow.detail,
                DeliveryRow.payload[("alert", "source_count")].as_integer(),
                DeliveryRow.payload[("alert", "corroborations")].as_integer(),
            ).where(DeliveryRow.alert_id.in_(alert_ids[i : i + 500]), DeliveryRow.kind.in_(NOTICE_KINDS))
        ).all()
    digest_ids = {int(r.detail["digest_id"]) for r in rows if r.detail and "digest_id" in r.detail}
    digests: dict[int, tuple[str, datetime | None]] = {}
    if digest_ids:
        query = select(DeliveryRow.id, DeliveryRow.state, DeliveryRow.sent_at)
        digests = {d.id: (d.state, d.sent_at) for d in s.execute(query.where(DeliveryRow.id.in_(digest_ids)))}
    out: dict[tuple[int, str], list[Notice]] = {}
    for alert_id, ch, kind, state, created, sent_at, detail, sources, corroborations in rows:
        if ch not in channels:
            continue
        if state == "digested":
            state, sent_at = digests.get(int((detail or {}).get("digest_id", -1)), ("failed", None))
        notice = Notice(kind, state, created, sent_at, int(sources or 0), int(corroborations or 0))
        out.setdefault((int(alert_id), ch), []).append(notice)
    return out


def _queue_repeat(
    s: Session,
    db: Database,
    cfg: AlertsConfig,
    ch: str,
    row: AlertRow,
    due: RepeatDue,
    now: datetime,
) -> bool:
    """Insert the ``due`` repeat of ``row`` on ``ch`` (False: another relay inserted it first)."""
    when = schedule(ch, cfg.channels[ch], now)  # quiet hours; held for the digest on digest channels
    payload = repeat_payload(
        alert_snapshot(row),
        n=due.n,
        previous_at=due.previous_at,
        previous_source_count=due.previous_source_count,
        previous_corroborations=due.previous_corroborations,
    )
    stmt = (
        _insert(db, DeliveryRow)
        .values(
            idempotency_key=repeat_key(row.id, ch, due.n),
            channel=ch,
            kind="repeat",
            alert_id=row.id,
            payload=payload,
            state=when.state,
            tries=0,
            next_attempt_at=when.at,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(DeliveryRow.id)
    )
    return s.execute(stmt).scalar() is not None


def compose_digests(db: Database, channels: Mapping[str, ChannelConfig], now: datetime) -> int:
    """Held rows whose period is over -> ONE digest delivery per (channel, period). Returns digests made."""
    if not _any(db, DeliveryRow.state == "held", DeliveryRow.next_attempt_at <= now):
        return 0
    with db.write() as s:
        rows = s.scalars(
            select(DeliveryRow)
            .where(DeliveryRow.state == "held", DeliveryRow.next_attempt_at <= now)
            .order_by(DeliveryRow.channel, DeliveryRow.next_attempt_at, DeliveryRow.id)
            .with_for_update(skip_locked=True)
        ).all()
        groups: dict[tuple[str, datetime], list[DeliveryRow]] = {}
        for r in rows:
            groups.setdefault((r.channel, r.next_attempt_at), []).append(r)
        for (ch, end), items in groups.items():
            _digest(s, db, ch, channels.get(ch), end, items, now)
        return len(groups)


def _digest(
    s: Session,
    db: Database,
    ch: str,
    cfg: ChannelConfig | None,
    end: datetime,
    items: Sequence[DeliveryRow],
    now: datetime,
) -> None:
    backfill = all(i.payload.get("alert", {}).get("origin", "live") != "live" for i in items)
    start = None
    if cfg is not None and cfg.mode == "digest" and not backfill:
        start = digest_period(ch, cfg, end - timedelta(seconds=1))[0]
    label = period_label(ch, cfg, start, end) if cfg is not None else f"until {end.isoformat()}"
    if backfill:
        label = f"found by backfill/rescan, {label}"
    payload = digest_payload([i.payload for i in items], start=start, end=end, label=label)
    key = f"digest-{ch}-{end:%Y%m%dT%H%M%SZ}-{items[0].id}"[:200]
    at = (quiet_until(ch, cfg, now) if cfg is not None else None) or now
    digest_id = s.execute(
        _insert(db, DeliveryRow)
        .values(
            idempotency_key=key,
            channel=ch,
            kind="digest",
            alert_id=None,
            payload=payload,
            state="pending",
            tries=0,
            next_attempt_at=at,
            created_at=now,
        )
        .returning(DeliveryRow.id)
    ).scalar_one()
    s.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id.in_([i.id for i in items]))
        .values(state="digested", detail={"digest_id": digest_id})
    )


def claim(
    db: Database, *, channel: str, now: datetime, lease: float, worker: str, limit: int
) -> tuple[ClaimedDelivery, ...]:
    """Lease up to ``limit`` due rows of one channel to ``worker`` (tries counted at claim)."""
    due = or_(
        DeliveryRow.state == "pending", and_(DeliveryRow.state == "sending", DeliveryRow.lease_until < now)
    )
    where = (DeliveryRow.channel == channel, DeliveryRow.next_attempt_at <= now, due)
    if not _any(db, *where):
        return ()
    with db.write() as s:
        rows = s.execute(
            select(
                DeliveryRow.id,
                DeliveryRow.kind,
                DeliveryRow.alert_id,
                DeliveryRow.idempotency_key,
                DeliveryRow.payload,
                DeliveryRow.tries,
                DeliveryRow.detail,
            )
            .where(*where)
            .order_by(DeliveryRow.next_attempt_at, DeliveryRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id.in_([r.id for r in rows]))
                .values(
                    state="sending",
                    lease_until=now + timedelta(seconds=lease),
                    leased_by=worker,
                    tries=DeliveryRow.tries + 1,
                )
            )
    return tuple(
        ClaimedDelivery(
            r.id, channel, r.kind, r.alert_id, r.idempotency_key, r.payload, r.tries + 1, dict(r.detail or {})
        )
        for r in rows
    )


def _fenced(delivery_ids: Sequence[int], worker: str, held_at: datetime) -> tuple[Any, ...]:
    """Lease fencing: only the relay that holds the lease, while it still holds it, may record an
    outcome. A relay whose lease expired (paused, partitioned) can no longer overwrite what the
    relay that re-claimed the row recorded: its update matches no row."""
    return (
        DeliveryRow.id.in_(list(delivery_ids)),
        DeliveryRow.state == "sending",
        DeliveryRow.leased_by == worker,
        DeliveryRow.lease_until >= held_at,
    )


def mark_sent(
    db: Database,
    delivery_id: int,
    *,
    worker: str,
    held_at: datetime,
    now: datetime,
    detail: Mapping[str, Any] | None,
    warning: str | None = None,
) -> bool:
    """Record a delivery as sent (at ``now``) if ``worker`` still holds its lease at ``held_at``.

    False: the lease was lost (expired, or another relay re-claimed the row); nothing is changed.
    """
    with db.write() as s:
        res = s.execute(
            update(DeliveryRow)
            .where(*_fenced([delivery_id], worker, held_at))
            .values(
                state="sent",
                sent_at=now,
                lease_until=None,
                leased_by=None,
                detail=dict(detail) if detail else None,
                last_error=warning,
            )
        )
        return bool(getattr(res, "rowcount", 0))


LOST = "lost"  # what mark_failed returns when the lease was no longer held: nothing recorded


def mark_failed(
    db: Database,
    delivery_id: int,
    *,
    worker: str,
    held_at: datetime,
    error: str,
    permanent: bool,
    retry_at: datetime,
    max_tries: int,
    detail: Mapping[str, Any] | None = None,
) -> str:
    """Record a failed attempt: ``failed`` (permanent), ``dead`` (tries used up) or ``pending`` again;
    :data:`LOST` when ``worker`` no longer holds the lease at ``held_at`` (nothing is changed).

    ``detail`` (e.g. the recipients that already accepted) replaces the row's detail; without it
    the detail of earlier attempts is kept, so a retry knows what is already done.
    """
    values: dict[str, Any] = {"lease_until": None, "leased_by": None, "last_error": error[:2000]}
    if detail is not None:
        values["detail"] = dict(detail)
    fence = _fenced([delivery_id], worker, held_at)
    with db.write() as s:
        tries = s.execute(select(DeliveryRow.tries).where(*fence)).scalar()
        if tries is None:
            return LOST
        state = "failed" if permanent else ("dead" if tries >= max_tries else "pending")
        res = s.execute(
            update(DeliveryRow).where(*fence).values(state=state, next_attempt_at=retry_at, **values)
        )
        return state if getattr(res, "rowcount", 0) else LOST


def release(
    db: Database, ids: Sequence[int], *, worker: str, held_at: datetime, until: datetime | None
) -> int:
    """Give back claimed rows that were not attempted (the try is not counted); only the rows whose
    lease ``worker`` still holds at ``held_at``. Returns how many were given back."""
    if not ids:
        return 0
    values: dict[str, Any] = {
        "state": "pending",
        "lease_until": None,
        "leased_by": None,
        "tries": DeliveryRow.tries - 1,
    }
    if until is not None:
        values["next_attempt_at"] = until
    with db.write() as s:
        res = s.execute(update(DeliveryRow).where(*_fenced(ids, worker, held_at)).values(**values))
        return int(getattr(res, "rowcount", 0) or 0)


def pause_channel(db: Database, channel: str, until: datetime) -> None:
    """Push every waiting row of ``channel`` to ``until`` (429 Retry-After), for every worker."""
    with db.write() as s:
        s.execute(
            update(DeliveryRow)
            .where(
                DeliveryRow.channel == channel,
                DeliveryRow.state == "pending",
                DeliveryRow.next_attempt_at < until,
            )
            .values(next_attempt_at=until)
        )
