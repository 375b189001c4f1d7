"""The relay's side of the outbox: digests, leases (claims), and the outcome of each attempt.

:func:`claim` leases due rows of one channel (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the
``BEGIN IMMEDIATE`` write transaction serialises claimers); tries are counted at claim time, so a
worker that keeps dying on a row still ends it ``dead``. Then :func:`mark_sent`,
:func:`mark_failed` or :func:`release`. A lease that expires (worker killed) makes the row
claimable again: at most one duplicate, with the same idempotency key. Every function opens its
own short transaction; an idle relay only reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from crawler.alerts.payload import digest_payload
from crawler.alerts.routing import digest_period, period_label, quiet_until
from crawler.alerts.views import ClaimedDelivery
from crawler.config import ChannelConfig

from .db import Database
from .models import DeliveryRow


def _insert(db: Database, table: Any) -> Any:
    return db.insert(table)


def _any(db: Database, *where: Any) -> bool:
    """A read-only probe, so an idle relay never takes SQLite's write lock."""
    with db.read() as s:
        return s.execute(select(DeliveryRow.id).where(*where).limit(1)).first() is not None


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
        ClaimedDelivery(r.id, channel, r.kind, r.alert_id, r.idempotency_key, r.payload, r.tries + 1)
        for r in rows
    )


def mark_sent(
    db: Database,
    delivery_id: int,
    *,
    now: datetime,
    detail: Mapping[str, Any] | None,
    warning: str | None = None,
) -> bool:
    with db.write() as s:
        res = s.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id == delivery_id, DeliveryRow.state == "sending")
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


def mark_failed(
    db: Database, delivery_id: int, *, error: str, permanent: bool, retry_at: datetime, max_tries: int
) -> str:
    """Record a failed attempt: ``failed`` (permanent), ``dead`` (tries used up) or ``pending`` again."""
    with db.write() as s:
        tries = s.execute(select(DeliveryRow.tries).where(DeliveryRow.id == delivery_id)).scalar() or 0
        state = "failed" if permanent else ("dead" if tries >= max_tries else "pending")
        s.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id == delivery_id)
            .values(
                state=state,
                next_attempt_at=retry_at,
                lease_until=None,
                leased_by=None,
                last_error=error[:2000],
            )
        )
        return state


def release(db: Database, ids: Sequence[int], *, until: datetime | None) -> None:
    """Give back claimed rows that were not attempted (the try is not counted)."""
    if not ids:
        return
    values: dict[str, Any] = {
        "state": "pending",
        "lease_until": None,
        "leased_by": None,
        "tries": DeliveryRow.tries - 1,
    }
    if until is not None:
        values["next_attempt_at"] = until
    with db.write() as s:
        s.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id.in_(list(ids)), DeliveryRow.state == "sending")
            .values(**values)
        )


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
