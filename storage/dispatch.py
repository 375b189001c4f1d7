"""Scale-out dispatch: due sources claimed with a lease and a generation (fencing token); the config version.

The scheduler (``crawler.scale``) calls :func:`claim_due`: due sources whose lease is free or
expired are locked ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises
claimers), their generation is incremented and their lease set, in one short transaction. A worker
checks :func:`poll_ticket` before polling and records the poll's schedule with :func:`finish_poll`,
which applies only if the generation is still the one it was handed: a worker that outlived its
lease (the source was dispatched again meanwhile) changes nothing. A lost message only delays a
source until its lease expires, when it is claimed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from .db import Database, retrying
from .models import ConfigVersionRow, SourceRow
from .sources import FetchRecord, TimingSave, write_fetch_records


@dataclass(frozen=True)
class Dispatch:
    """One claimed poll: the source, its generation (fencing token) and when it was due."""

    source_id: str
    generation: int
    due_at: datetime


@dataclass(frozen=True)
class Ticket:
    """What a worker needs before polling: the source's stored timing, if the generation is current."""

    source_id: str
    generation: int
    timing: dict[str, Any] | None


@dataclass(frozen=True)
class DispatchStats:
    """For /metrics and `storywatch status`: sources due and not dispatched, the oldest such due time,
    and polls in flight (a lease held)."""

    due: int
    oldest_due: datetime | None
    leased: int

    def lag(self, now: datetime) -> float:
        """Seconds the longest-waiting due source has waited (0 when none waits)."""
        return max(0.0, (now - self.oldest_due).total_seconds()) if self.oldest_due else 0.0


def _claimable(now: datetime) -> Any:
    free = or_(SourceRow.dispatch_until.is_(None), SourceRow.dispatch_until < now)
    return and_(SourceRow.next_due_at.is_not(None), SourceRow.next_due_at <= now, free)


def claim_due(db: Database, *, now: datetime, lease: float, limit: int) -> list[Dispatch]:
    """Lease up to ``limit`` due sources (the longest due first); each gets the next generation."""
    with db.write() as s:
        rows = s.execute(
            select(SourceRow.id, SourceRow.generation, SourceRow.next_due_at)
            .where(_claimable(now))
            .order_by(SourceRow.next_due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return []
        s.execute(
            update(SourceRow)
            .where(SourceRow.id.in_([r.id for r in rows]))
            .values(
                generation=SourceRow.generation + 1,
                dispatch_until=now + timedelta(seconds=lease),
                dispatched_at=now,
            )
        )
    return [Dispatch(r.id, int(r.generation) + 1, r.next_due_at) for r in rows]


def poll_ticket(db: Database, source_id: str, generation: int) -> Ticket | None:
    """The source's timing when ``generation`` is still its current one; None for a stale message."""
    with db.read() as s:
        row = s.execute(
            select(SourceRow.timing).where(SourceRow.id == source_id, SourceRow.generation == generation)
        ).first()
    return None if row is None else Ticket(source_id, generation, row.timing)


@dataclass(frozen=True)
class Finish(TimingSave):
    """A poll's final write: its schedule (saved and its lease freed only if ``generation`` is still
    the source's current one) and its fetch record (saved in any case, after the documents)."""

    generation: int
    record: FetchRecord | None = None


def finish_poll(
    db: Database,
    source_id: str,
    generation: int,
    *,
    timing: dict[str, Any],
    health: str,
    next_due: datetime,
    interval: float,
) -> bool:
    """Save the poll's schedule and free the lease, only if ``generation`` still matches (fencing)."""
    return finish_polls(db, [Finish(source_id, timing, health, next_due, interval, generation)])[0]


def finish_polls(db: Database, finishes: Sequence[Finish]) -> list[bool]:
    """Several polls' final writes in ONE transaction (group commit): their fetch records, then each
    schedule where the generation still matches (fencing). Returns, per poll, whether it matched."""
    if not finishes:
        return []

    def write(s: Session) -> list[bool]:
        write_fetch_records(s, [f.record for f in finishes if f.record is not None])
        matched = [False] * len(finishes)
        # source rows in id order: two groups that share a source (a poll dispatched again after its
        # lease lapsed) lock them in the same order and cannot deadlock
        for k in sorted(range(len(finishes)), key=lambda k: finishes[k].source_id):
            f = finishes[k]
            result = s.execute(
                update(SourceRow)
                .where(SourceRow.id == f.source_id, SourceRow.generation == f.generation)
                .values(**f.columns(), dispatch_until=None)
            )
            matched[k] = bool(getattr(result, "rowcount", 0))
        return matched

    return retrying(db, write)


def plan_sources(db: Database, due: dict[str, datetime], configured: Sequence[str]) -> int:
    """Give configured sources without a due time their first one; sources no longer configured
    get none (never dispatched). Returns how many were planned."""
    keep = set(configured)
    with db.write() as s:
        known = {sid: when for sid, when in s.execute(select(SourceRow.id, SourceRow.next_due_at))}
        gone = [sid for sid, when in known.items() if sid not in keep and when is not None]
        for i in range(0, len(gone), 500):
            s.execute(update(SourceRow).where(SourceRow.id.in_(gone[i : i + 500])).values(next_due_at=None))
        fresh = {sid: when for sid, when in due.items() if sid in known and known[sid] is None}
        for sid, when in fresh.items():
            s.execute(update(SourceRow).where(SourceRow.id == sid).values(next_due_at=when))
    return len(fresh)


def dispatch_stats(db: Database, now: datetime) -> DispatchStats:
    with db.read() as s:
        due, oldest = s.execute(
            select(func.count(), func.min(SourceRow.next_due_at)).where(_claimable(now))
        ).one()
        leased = s.scalar(select(func.count()).where(SourceRow.dispatch_until >= now)) or 0
    return DispatchStats(int(due or 0), oldest, int(leased))


# ----------------------------------------------------------------------------- config version


def config_version(db: Database) -> tuple[int, str] | None:
    """(version, digest) of the config the workers must run; None before any scheduler set one."""
    with db.read() as s:
        row = s.execute(select(ConfigVersionRow.version, ConfigVersionRow.digest)).first()
    return None if row is None else (int(row.version), str(row.digest))


def publish_config(db: Database, digest: str, now: datetime) -> int:
    """Record ``digest`` as the config to run; the version goes up only when the digest changed."""
    with db.write() as s:
        row = s.scalars(select(ConfigVersionRow).with_for_update()).first()
        if row is None:
            s.execute(
                db.insert(ConfigVersionRow)
                .values(id=1, version=1, digest=digest, updated_at=now)
                .on_conflict_do_nothing()
            )
            return 1
        if row.digest != digest:
            row.version += 1
            row.digest = digest
            row.updated_at = now
        return int(row.version)


__all__ = [
    "Dispatch",
    "DispatchStats",
    "Finish",
    "Ticket",
    "claim_due",
    "config_version",
    "dispatch_stats",
    "finish_poll",
    "finish_polls",
    "plan_sources",
    "poll_ticket",
    "publish_config",
]
