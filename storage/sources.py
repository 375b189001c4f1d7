"""Sources: configured specs, HTTP validators, fetch log and health."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, select, update

from crawler.types import SourceResult, SourceSpec, Validators

from .db import Database
from .models import DeliveryRow, DocumentRow, FetchLogRow, SightingRow, SnapshotRow, SourceRow


@dataclass(frozen=True)
class SourceState:
    """What the pipeline needs to know before fetching a source."""

    id: str
    validators: Validators
    body_hash: str | None
    last_snapshot: str | None


@dataclass(frozen=True)
class SourceStatus:
    """One row of `storywatch sources` / `storywatch status`."""

    id: str
    kind: str
    url: str
    health: str
    last_fetch_at: datetime | None
    last_status: str | None
    last_error: str | None
    error_streak: int
    next_due_at: datetime | None
    interval: float | None
    new_24h: int
    documents: int
    timing: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("last_fetch_at", "next_due_at"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


def sync_sources(db: Database, specs: Sequence[SourceSpec]) -> None:
    """Insert configured sources (keeping state of known ones); URL/kind changes reset validators."""
    with db.write() as s:
        for spec in specs:
            stmt = db.insert(SourceRow).values(id=spec.id, kind=spec.kind, url=spec.url, interval=spec.interval)
            s.execute(stmt.on_conflict_do_nothing())
            s.execute(
                update(SourceRow)
                .where(SourceRow.id == spec.id, (SourceRow.url != spec.url) | (SourceRow.kind != spec.kind))
                .values(url=spec.url, kind=spec.kind, etag=None, last_modified=None, body_hash=None)
            )


def source_state(db: Database, source_id: str) -> SourceState:
    with db.read() as s:
        row = s.get(SourceRow, source_id)
        snap = s.scalars(
            select(SnapshotRow.text)
            .where(SnapshotRow.source_id == source_id)
            .order_by(SnapshotRow.id.desc())
            .limit(1)
        ).first()
    if row is None:
        return SourceState(source_id, Validators(), None, snap)
    return SourceState(source_id, Validators(row.etag, row.last_modified), row.body_hash, snap)


def record_fetch(
    db: Database,
    spec: SourceSpec,
    result: SourceResult,
    *,
    now: datetime,
    http_status: int | None = None,
) -> None:
    """Log one fetch and update the source's validators, streak and simple health."""
    ok = result.status in ("ok", "not-modified")
    with db.write() as s:
        s.execute(
            db.insert(FetchLogRow).values(
                source_id=spec.id, url=spec.url, started_at=now, status=result.status,
                http_status=http_status, bytes=result.bytes, seconds=result.seconds,
                new_documents=result.new_documents, error=result.error,
                warnings="\n".join(result.warnings) or None,
            )
        )
        values: dict[str, Any] = {"last_fetch_at": now, "last_status": result.status}
        if ok:
            values.update(error_streak=0, last_error=None, last_success_at=now, health="ok")
            if result.new_documents:
                values["last_new_at"] = now
        else:
            values.update(
                error_streak=SourceRow.error_streak + 1,
                last_error=result.error,
                health=case((SourceRow.error_streak + 1 >= 3, "failing"), else_="degraded"),
            )
        s.execute(update(SourceRow).where(SourceRow.id == spec.id).values(**values))


def save_validators(db: Database, source_id: str, validators: Validators, body_hash: str | None) -> None:
    """Remember the validators (stored only after the documents are, so a crash refetches)."""
    with db.write() as s:
        s.execute(
            update(SourceRow)
            .where(SourceRow.id == source_id)
            .values(etag=validators.etag, last_modified=validators.last_modified, body_hash=body_hash)
        )


def save_snapshot(db: Database, source_id: str, text: str, added: str | None, now: datetime) -> None:
    import hashlib

    digest = hashlib.sha256(text.encode()).hexdigest()
    with db.write() as s:
        s.execute(
            db.insert(SnapshotRow).values(
                source_id=source_id, taken_at=now, text=text, content_hash=digest, added_text=added
            )
        )


def save_timing(
    db: Database, source_id: str, *, timing: dict[str, Any], health: str, next_due: datetime, interval: float
) -> None:
    with db.write() as s:
        s.execute(
            update(SourceRow)
            .where(SourceRow.id == source_id)
            .values(timing=timing, health=health, next_due_at=next_due, interval=interval)
        )


def load_timings(db: Database) -> dict[str, dict[str, Any]]:
    with db.read() as s:
        return {sid: t for sid, t in s.execute(select(SourceRow.id, SourceRow.timing)) if t}


def unseen_entries(db: Database, source_id: str, entry_ids: Iterable[str]) -> set[str]:
    ids = list(dict.fromkeys(entry_ids))
    if not ids:
        return set()
    seen: set[str] = set()
    with db.read() as s:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            seen.update(
                s.scalars(
                    select(SightingRow.entry_id).where(
                        SightingRow.source_id == source_id, SightingRow.entry_id.in_(chunk)
                    )
                )
            )
    return set(ids) - seen


def list_sources(db: Database, specs: Sequence[SourceSpec], *, now: datetime) -> list[SourceStatus]:
    day_ago = now - timedelta(days=1)
    with db.read() as s:
        rows = {r.id: r for r in s.scalars(select(SourceRow))}
        new_24h = dict(
            s.execute(
                select(FetchLogRow.source_id, func.sum(FetchLogRow.new_documents))
                .where(FetchLogRow.started_at >= day_ago)
                .group_by(FetchLogRow.source_id)
            ).all()
        )
        docs = dict(
            s.execute(select(SightingRow.source_id, func.count()).group_by(SightingRow.source_id)).all()
        )
    out = []
    for spec in specs:
        r = rows.get(spec.id)
        out.append(
            SourceStatus(
                id=spec.id, kind=spec.kind, url=spec.url,
                health=r.health if r else "new",
                last_fetch_at=r.last_fetch_at if r else None,
                last_status=r.last_status if r else None,
                last_error=r.last_error if r else None,
                error_streak=r.error_streak if r else 0,
                next_due_at=r.next_due_at if r else None,
                interval=r.interval if r and r.interval else spec.interval,
                new_24h=int(new_24h.get(spec.id) or 0),
                documents=int(docs.get(spec.id) or 0),
                timing=r.timing if r else None,
            )
        )
    return out


def outbox_depth(db: Database) -> int:
    with db.read() as s:
        return int(
            s.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.state == "pending")) or 0
        )


def document_count(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(DocumentRow)) or 0)


def forget_source(db: Database, source_id: str) -> None:
    with db.write() as s:
        s.execute(delete(SourceRow).where(SourceRow.id == source_id))
