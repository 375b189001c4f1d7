"""Sources: configured specs, HTTP validators, fetch log and health."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from crawler.types import SourceResult, SourceSpec, Validators

from .db import Database
from .models import FetchLogRow, SightingRow, SnapshotRow, SourceRow
from .rawsql import raw


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
    """Insert configured sources (keeping state of known ones); URL/kind changes reset validators.

    One read of the known sources, then one batched insert of the new ones and an update per
    changed one, all in one write transaction.
    """
    if not specs:
        return
    with db.write() as s:
        known = {
            sid: (url, kind)
            for sid, url, kind in s.execute(select(SourceRow.id, SourceRow.url, SourceRow.kind))
        }
        new = [
            {"id": spec.id, "kind": spec.kind, "url": spec.url, "interval": spec.interval}
            for spec in dict((sp.id, sp) for sp in specs).values()
            if spec.id not in known
        ]
        if new:
            s.execute(db.insert(SourceRow).on_conflict_do_nothing(), new)
        for spec in specs:
            if spec.id in known and known[spec.id] != (spec.url, spec.kind):
                s.execute(
                    update(SourceRow)
                    .where(SourceRow.id == spec.id)
                    .values(url=spec.url, kind=spec.kind, etag=None, last_modified=None, body_hash=None)
                )


def source_state(db: Database, source_id: str) -> SourceState:
    return source_states(db, [source_id])[source_id]


def source_states(db: Database, source_ids: Sequence[str]) -> dict[str, SourceState]:
    """The state of each source (unknown ids get an empty state): two queries per 500 ids."""
    out: dict[str, SourceState] = {}
    ids = list(dict.fromkeys(source_ids))
    with db.read() as s:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = s.execute(
                select(SourceRow.id, SourceRow.etag, SourceRow.last_modified, SourceRow.body_hash).where(
                    SourceRow.id.in_(chunk)
                )
            ).all()
            latest = (
                select(func.max(SnapshotRow.id))
                .where(SnapshotRow.source_id.in_(chunk))
                .group_by(SnapshotRow.source_id)
            )
            snaps = dict(
                s.execute(
                    select(SnapshotRow.source_id, SnapshotRow.text).where(SnapshotRow.id.in_(latest))
                ).all()
            )
            found = {r.id: r for r in rows}
            for sid in chunk:
                r = found.get(sid)
                validators = Validators(r.etag, r.last_modified) if r is not None else Validators()
                out[sid] = SourceState(
                    sid, validators, r.body_hash if r is not None else None, snaps.get(sid)
                )
    return out


@dataclass(frozen=True)
class FetchRecord:
    """One source's fetch, to log: ``validators`` (with the body hash) are saved with it when given."""

    spec: SourceSpec
    result: SourceResult
    now: datetime
    http_status: int | None = None
    validators: Validators | None = None
    body_hash: str | None = None


def record_fetch(
    db: Database,
    spec: SourceSpec,
    result: SourceResult,
    *,
    now: datetime,
    http_status: int | None = None,
    validators: Validators | None = None,
    body_hash: str | None = None,
) -> None:
    """Log one fetch and update the source's streak, simple health and (when given) its validators."""
    record_fetches(db, [FetchRecord(spec, result, now, http_status, validators, body_hash)])


def record_fetches(db: Database, records: Sequence[FetchRecord]) -> None:
    """Log several fetches in ONE write transaction (see :func:`record_fetch`); batched statements."""
    if not records:
        return
    with db.write() as s:
        write_fetch_records(s, records)


def write_fetch_records(s: Session, records: Sequence[FetchRecord]) -> None:
    """:func:`record_fetches` inside the caller's write transaction (``storage.dispatch.finish_polls``)."""
    if not records:
        return
    groups: dict[tuple[tuple[str, ...], bool], list[dict[str, Any]]] = {}
    for r in records:
        values = _source_values(r)
        groups.setdefault((tuple(values), _failed(r)), []).append({"_id": r.spec.id, **values})
    s.execute(insert(_FETCH_LOG), [_log_values(r) for r in records])
    for (keys, failed), rows in groups.items():
        s.execute(_update_sources(keys, failed), rows)


@dataclass(frozen=True)
class TimingSave:
    """A source's schedule after a poll (the daemon's ``SourceTiming.to_dict()`` and its columns)."""

    source_id: str
    timing: dict[str, Any]
    health: str
    next_due: datetime
    interval: float

    def columns(self) -> dict[str, Any]:
        """The ``sources`` columns this schedule sets."""
        return {
            "timing": self.timing,
            "health": self.health,
            "next_due_at": self.next_due,
            "interval": self.interval,
        }


def record_polls(db: Database, records: Sequence[FetchRecord], timings: Sequence[TimingSave]) -> None:
    """The end of several polls in ONE write transaction: their fetch records (see
    :func:`record_fetches`), then their schedules (see :func:`save_timing`; its health wins)."""
    if not records and not timings:
        return
    with db.write() as s:
        if records:
            write_fetch_records(s, records)
        if timings:
            s.execute(
                _SAVE_TIMING,
                [
                    {
                        "_id": t.source_id,
                        "_timing": t.timing,
                        "_health": t.health,
                        "_due": t.next_due,
                        "_interval": t.interval,
                    }
                    for t in timings
                ],
            )


_FETCH_LOG = cast(Table, FetchLogRow.__table__)
_SOURCES = cast(Table, SourceRow.__table__)
_SAVE_TIMING = (
    update(_SOURCES)
    .where(_SOURCES.c.id == bindparam("_id"))
    .values(
        timing=bindparam("_timing"),
        health=bindparam("_health"),
        next_due_at=bindparam("_due"),
        interval=bindparam("_interval"),
    )
)
_FAILED = {  # SQL expressions: the same for every failed fetch
    "error_streak": _SOURCES.c.error_streak + 1,
    "health": case((_SOURCES.c.error_streak + 1 >= 3, "failing"), else_="degraded"),
}


@lru_cache(maxsize=32)
def _update_sources(keys: tuple[str, ...], failed: bool) -> Update:
    values: dict[str, Any] = {k: bindparam(k) for k in keys}
    if failed:
        values.update(_FAILED)
    return update(_SOURCES).where(_SOURCES.c.id == bindparam("_id")).values(values)


def _failed(r: FetchRecord) -> bool:
    return r.result.status not in ("ok", "not-modified")


def _log_values(r: FetchRecord) -> dict[str, Any]:
    res = r.result
    return {
        "source_id": r.spec.id,
        "url": r.spec.url,
        "started_at": r.now,
        "status": res.status,
        "http_status": r.http_status,
        "bytes": res.bytes,
        "seconds": res.seconds,
        "new_documents": res.new_documents,
        "error": res.error,
        "warnings": "\n".join(res.warnings) or None,
    }


def _source_values(r: FetchRecord) -> dict[str, Any]:
    """Column -> value (a failure's ``error_streak`` and ``health`` are the SQL of ``_FAILED``)."""
    result, now = r.result, r.now
    values: dict[str, Any] = {"last_fetch_at": now, "last_status": result.status}
    if not _failed(r):
        values.update(error_streak=0, last_error=None, last_success_at=now, health="ok")
        if result.new_documents:
            values["last_new_at"] = now
    else:
        values["last_error"] = result.error
    if r.validators is not None:
        values.update(etag=r.validators.etag, last_modified=r.validators.last_modified, body_hash=r.body_hash)
    return values


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
    """The ids among ``entry_ids`` with no sighting for ``source_id`` yet (the feed's new entries)."""
    ids = list(dict.fromkeys(entry_ids))
    if not ids:
        return set()
    seen: set[str] = set()
    with db.read() as s:
        r = raw(s)  # one small query per feed fetch: plain SQL (see storage.rawsql)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            params = {f"e{j}": e for j, e in enumerate(chunk)}
            params["source"] = source_id
            seen.update(row[0] for row in r.execute(_unseen_sql(len(chunk)), params))
    return set(ids) - seen


@lru_cache(maxsize=64)
def _unseen_sql(n: int) -> str:
    names = ", ".join(f":e{j}" for j in range(n))
    return f"SELECT entry_id FROM sightings WHERE source_id = :source AND entry_id IN ({names})"


def items_per_day(
    db: Database, source_ids: Sequence[str], *, now: datetime, days: int = 14
) -> dict[str, tuple[int, ...]]:
    """New documents per day over the last ``days`` days (oldest first) for each source: one query."""
    start = datetime.combine((now - timedelta(days=days - 1)).date(), datetime.min.time(), now.tzinfo)
    out = {sid: [0] * days for sid in source_ids}
    with db.read() as s:
        rows = s.execute(
            select(FetchLogRow.source_id, FetchLogRow.started_at, FetchLogRow.new_documents).where(
                FetchLogRow.started_at >= start, FetchLogRow.new_documents > 0
            )
        ).all()
    for sid, when, n in rows:
        day = (when - start).days
        if sid in out and 0 <= day < days:
            out[sid][day] += int(n)
    return {sid: tuple(v) for sid, v in out.items()}


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
                id=spec.id,
                kind=spec.kind,
                url=spec.url,
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
