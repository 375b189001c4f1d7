"""Queries for backfill and rescan: checkpoints, known URLs, the backfill alert policy, rescans.

- Checkpoints: one row per (source, method, window) in ``backfill_checkpoints``; the cursor is a
  small JSON object owned by the method (which archive page, sitemap files or date slice is next).
  Saved after the documents of a step are committed, so a killed run redoes at most one step, and
  dedup makes that step add nothing.
- Alert policy for a backfill (``none | digest | all``): ``storage.ingest`` records backfill
  alerts with the outbox's default policy ``digest`` (deliveries ``held`` until released).
  :func:`apply_policy` then turns the rows a batch created into what the caller asked for:
  ``none`` deletes them (the alert rows stay, nothing is sent), ``all`` schedules them like live
  ones. ``digest`` leaves them held; :func:`storage.outbox.release_held` at the end of the run makes
  the relay send ONE digest per channel.
- Rescan: stored documents with their story ids; which (rule, story) pairs already alerted; and
  :func:`record_rescan`, which records every new match and lets only never-alerted pairs alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from crawler.alerts.payload import evidence_hash
from crawler.alerts.routing import HELD_UNTIL_RELEASED, schedule
from crawler.config import AlertsConfig
from crawler.types import Document, Match

from . import dedup_store, outbox
from .db import Database
from .models import AlertRow, AliasRow, CheckpointRow, DeliveryRow, DocumentRow, SourceRow, utcnow

Policy = Literal["none", "digest", "all"]
_CHUNK = 500


# ----------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    source_id: str
    method: str
    window: str
    cursor: Mapping[str, Any] = field(default_factory=dict)
    done: bool = False
    updated_at: datetime | None = None


def load_checkpoint(db: Database, source_id: str, method: str, window: str) -> Checkpoint:
    """The saved progress, or an empty checkpoint when this (source, method, window) never ran."""
    with db.read() as s:
        row = s.get(CheckpointRow, (source_id, method, window))
        if row is None:
            return Checkpoint(source_id, method, window)
        return Checkpoint(source_id, method, window, dict(row.cursor or {}), bool(row.done), row.updated_at)


def save_checkpoint(db: Database, cp: Checkpoint, *, now: datetime | None = None) -> None:
    values = {"cursor": dict(cp.cursor), "done": cp.done, "updated_at": now or utcnow()}
    stmt: Any = db.insert(CheckpointRow).values(
        source_id=cp.source_id, method=cp.method, window=cp.window, **values
    )
    with db.write() as s:
        s.execute(stmt.on_conflict_do_update(index_elements=["source_id", "method", "window"], set_=values))


def clear_checkpoints(db: Database, source_ids: Iterable[str], window: str) -> int:
    """Forget the progress of these sources in this window (``backfill --restart``)."""
    with db.write() as s:
        res = s.execute(
            delete(CheckpointRow).where(
                CheckpointRow.source_id.in_(list(source_ids)), CheckpointRow.window == window
            )
        )
        return int(getattr(res, "rowcount", 0) or 0)


# ----------------------------------------------------------------------------- known documents


def known_urls(db: Database, urls: Iterable[str]) -> set[str]:
    """Those of ``urls`` that a stored document has as its canonical URL or as an alias."""
    wanted = list(dict.fromkeys(u for u in urls if u))
    found: set[str] = set()
    with db.read() as s:
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            found.update(s.scalars(select(AliasRow.url).where(AliasRow.url.in_(chunk))))
            found.update(
                s.scalars(select(DocumentRow.canonical_url).where(DocumentRow.canonical_url.in_(chunk)))
            )
    return found


# ----------------------------------------------------------------------------- alert policy


def delivery_watermark(db: Database) -> int:
    """The highest delivery id now: rows above it were created after this call."""
    with db.read() as s:
        return int(s.scalar(select(func.max(DeliveryRow.id))) or 0)


def apply_policy(
    db: Database, policy: Policy, *, after_id: int, alerts_cfg: AlertsConfig, now: datetime
) -> int:
    """Apply ``policy`` to the held-for-release rows created after ``after_id``; returns rows changed."""
    if policy == "digest":
        return 0
    held = (
        DeliveryRow.id > after_id,
        DeliveryRow.state == "held",
        DeliveryRow.next_attempt_at >= HELD_UNTIL_RELEASED,
    )
    with db.write() as s:
        if policy == "none":
            res = s.execute(delete(DeliveryRow).where(*held))
            return int(getattr(res, "rowcount", 0) or 0)
        rows = s.scalars(select(DeliveryRow).where(*held)).all()
        for row in rows:
            cfg = alerts_cfg.channels.get(row.channel)
            sch = schedule(row.channel, cfg, now) if cfg is not None else None
            row.state, row.next_attempt_at = (sch.state, sch.at) if sch else ("pending", now)
        return len(rows)


# ----------------------------------------------------------------------------- rescan


@dataclass(frozen=True)
class StoredDocument:
    document_id: int
    story_id: int | None
    document: Document


@dataclass(frozen=True)
class RescanHit:
    """One match the current rules make on one stored document."""

    document_id: int
    story_id: int
    source_id: str
    url: str
    match: Match


@dataclass(frozen=True)
class RescanRecord:
    """What :func:`record_rescan` did with a hit.

    ``alerted``: a new alert (its deliveries follow the policy); ``pair-alerted``: the match is
    recorded but this (rule, story) already alerted, so no alert; ``corroborated``: the same
    evidence already alerted (a reprint in another story); ``known``: this match was recorded before.
    """

    hit: RescanHit
    outcome: Literal["alerted", "pair-alerted", "corroborated", "known"]
    alert_id: int | None = None


def stored_documents(
    db: Database, *, since: datetime | None, source_ids: Sequence[str] = (), limit: int | None = None
) -> list[StoredDocument]:
    """Stored documents published (or, when undated, discovered) at or after ``since``, oldest first."""
    when = func.coalesce(DocumentRow.published, DocumentRow.discovered)
    stmt = select(DocumentRow, SourceRow.kind).outerjoin(SourceRow, SourceRow.id == DocumentRow.source_id)
    if since is not None:
        stmt = stmt.where(
            or_(
                DocumentRow.published >= since,
                (DocumentRow.published.is_(None)) & (DocumentRow.discovered >= since),
            )
        )
    if source_ids:
        stmt = stmt.where(DocumentRow.source_id.in_(list(source_ids)))
    stmt = stmt.order_by(when, DocumentRow.id).limit(limit)
    with db.read() as s:
        return [StoredDocument(row.id, row.story_id, _document(row, kind)) for row, kind in s.execute(stmt)]


def _document(row: DocumentRow, kind: str | None) -> Document:
    return Document(
        source_id=row.source_id,
        url=row.url,
        canonical_url=row.canonical_url,
        title=row.title,
        text=row.text,
        discovered=row.discovered,
        content_hash=row.content_hash,
        published=row.published,
        author=row.author,
        language=row.language,
        origin=row.origin,  # type: ignore[arg-type]
        source_kind="page" if kind == "page" else "feed",
    )


def alerted_pairs(db: Database, rule_ids: Iterable[str] | None = None) -> set[tuple[str, int]]:
    """Every (rule id, story id) that has an alert (of any origin)."""
    stmt = select(AlertRow.rule_id, AlertRow.story_id).distinct()
    if rule_ids is not None:
        stmt = stmt.where(AlertRow.rule_id.in_(list(rule_ids)))
    with db.read() as s:
        return {(r, int(sid)) for r, sid in s.execute(stmt)}


def record_rescan(
    db: Database, hits: Sequence[RescanHit], *, alerts_cfg: AlertsConfig, policy: Policy, now: datetime
) -> list[RescanRecord]:
    """Record ``hits`` (origin ``rescan``) in one transaction; see :class:`RescanRecord` for outcomes."""
    out: list[RescanRecord] = []
    with db.write() as s:
        outbox.lock_matches(s, [hit.match for hit in hits])  # all at once, sorted: no deadlock
        alerted = {
            (r, int(sid)) for r, sid in s.execute(select(AlertRow.rule_id, AlertRow.story_id).distinct())
        }
        for hit in hits:
            with s.begin_nested():
                rec = _record_one(s, db, hit, alerted, alerts_cfg, policy, now)
            if rec.outcome in ("alerted", "corroborated"):
                alerted.add((hit.match.rule_id, hit.story_id))
            out.append(rec)
    return out


def _record_one(
    s: Session,
    db: Database,
    hit: RescanHit,
    alerted: set[tuple[str, int]],
    cfg: AlertsConfig,
    policy: Policy,
    now: datetime,
) -> RescanRecord:
    m = hit.match
    if (m.rule_id, hit.story_id) in alerted:
        return RescanRecord(hit, "pair-alerted" if _insert_match(s, db, hit, now) else "known")
    others = [src for src in dedup_store.story_sources(s, hit.story_id) if src != hit.source_id]
    sources: list[tuple[str, str | None]] = [(hit.source_id, hit.url), *((src, None) for src in others)]
    res = outbox.record_alert(
        s,
        db,
        match=m,
        story_id=hit.story_id,
        document_id=hit.document_id,
        source_count=len(sources),
        sources=sources,
        alerts_cfg=cfg,
        origin="rescan",
        backfill_policy=policy,
        now=now,
    )
    outcome = {"new": "alerted", "corroborated": "corroborated", "duplicate": "known"}[res.status]
    return RescanRecord(hit, outcome, res.alert_id)  # type: ignore[arg-type]


def _insert_match(s: Session, db: Database, hit: RescanHit, now: datetime) -> bool:
    """Record the match without an alert; False when this document already had it."""
    m = hit.match
    ev_hash = evidence_hash(m.evidence)
    return outbox.insert_match(s, db, m, hit.document_id, hit.story_id, ev_hash, now) is not None


__all__ = [
    "Checkpoint",
    "RescanHit",
    "RescanRecord",
    "StoredDocument",
    "alerted_pairs",
    "apply_policy",
    "clear_checkpoints",
    "delivery_watermark",
    "known_urls",
    "load_checkpoint",
    "record_rescan",
    "save_checkpoint",
    "stored_documents",
]
