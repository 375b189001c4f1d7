"""Story and document queries for the CLI and the web (sessions opened here, frozen values out).

Every function loads a whole page in a fixed number of queries (no query per story or document).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crawler.alerts.views import AlertSummary, Page

from . import dedup_store
from .db import Database
from .dedup_store import StoryNotFound, StorySummary
from .models import DocumentRow, MatchRow, SightingRow, SnapshotRow
from .outbox_admin import alerts_page
from .paging import Newest

STORIES = dedup_store.STORIES
DOCUMENTS = Newest(DocumentRow, "discovered")


@dataclass(frozen=True)
class StoryDocument:
    id: int
    title: str
    canonical_url: str
    source_id: str
    discovered: datetime
    published: datetime | None
    sources: tuple[str, ...]
    language: str | None = None
    origin: str = "article"
    story_id: int | None = None


@dataclass(frozen=True)
class StoryEntry:
    """A story with its documents: one item of `storywatch stories --json` and ``/api/v1/stories``."""

    id: int
    title: str
    first_seen: datetime
    updated_at: datetime
    first_document_id: int | None
    first_source_id: str | None
    document_count: int
    sources: tuple[str, ...]
    rule_ids: tuple[str, ...]
    documents: tuple[StoryDocument, ...] = ()


@dataclass(frozen=True)
class StoryMatch:
    """A rule that fired on one of the story's documents."""

    id: int
    document_id: int
    rule_id: str
    severity: str
    status: str
    evidence: str
    spans: tuple[tuple[int, int, str], ...]
    created_at: datetime
    alert_id: int | None


@dataclass(frozen=True)
class PageChange:
    """What a watched page's change added: the snapshot diff behind one of the story's documents."""

    document_id: int
    source_id: str
    taken_at: datetime
    diff: tuple[str, ...]  # unified diff lines ("+added", "-removed", " context", "@@ ...")


@dataclass(frozen=True)
class StoryDetail:
    story: StoryEntry
    languages: tuple[str, ...]
    matches: tuple[StoryMatch, ...]
    alerts: tuple[AlertSummary, ...]  # with their corroborations (source counts)
    page_changes: tuple[PageChange, ...]


def list_stories(db: Database, *, since: datetime, limit: int = 100) -> list[StorySummary]:
    with db.read() as s:
        return dedup_store.list_stories(s, since=since, limit=limit)


def stories_page(
    db: Database,
    *,
    since: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
    documents: bool = True,
) -> Page:
    """Stories updated since ``since``, most recently updated first, each with its documents."""
    q = STORIES.query(limit=limit, cursor=cursor, since=since)
    with db.read() as s:
        rows = list(s.scalars(q).all())
        summaries = dedup_store._summaries(s, rows)
        docs = _documents_of(s, [r.id for r in rows]) if documents else {}
    return STORIES.page(rows, [_entry(sm, docs.get(sm.id, ())) for sm in summaries], limit)


def story_documents(db: Database, story_id: int) -> list[StoryDocument]:
    with db.read() as s:
        return list(_documents_of(s, [story_id]).get(story_id, ()))


def story_detail(db: Database, story_id: int) -> StoryDetail:
    """One story: documents, sources, languages, matches, alerts and watched-page diffs.

    Raises :class:`storage.dedup_store.StoryNotFound`.
    """
    with db.read() as s:
        summary = dedup_store.story_summary(s, story_id)
        docs = _documents_of(s, [story_id]).get(story_id, ())
        matches = _matches(s, story_id)
        changes = _page_changes(s, [d for d in docs if d.origin == "page"])
    alerts = alerts_page(db, story=story_id, limit=200).items
    languages = tuple(sorted({d.language for d in docs if d.language}))
    return StoryDetail(_entry(summary, docs), languages, matches, alerts, changes)


def documents_page(
    db: Database,
    *,
    since: datetime | None = None,
    source: str | None = None,
    story: int | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page:
    """Documents newest first (by discovery), filtered like the CLI; sightings loaded in one query."""
    q = DOCUMENTS.query(limit=limit, cursor=cursor, since=since, source_id=source, story_id=story)
    with db.read() as s:
        rows = list(s.scalars(q).all())
        seen = _sightings(s, [d.id for d in rows])
    return DOCUMENTS.page(rows, [_document(d, seen) for d in rows], limit)


# ----------------------------------------------------------------------------- batch loaders


def _entry(sm: StorySummary, docs: Sequence[StoryDocument]) -> StoryEntry:
    return StoryEntry(
        sm.id,
        sm.title,
        sm.first_seen,
        sm.updated_at,
        sm.first_document_id,
        sm.first_source_id,
        sm.document_count,
        sm.sources,
        sm.rule_ids,
        tuple(docs),
    )


def _documents_of(s: Session, story_ids: list[int]) -> dict[int, tuple[StoryDocument, ...]]:
    """story id -> its documents in discovery order (two queries for any number of stories)."""
    if not story_ids:
        return {}
    rows = s.scalars(
        select(DocumentRow).where(DocumentRow.story_id.in_(story_ids)).order_by(DocumentRow.id)
    ).all()
    seen = _sightings(s, [d.id for d in rows])
    out: dict[int, list[StoryDocument]] = {}
    for d in rows:
        out.setdefault(int(d.story_id or 0), []).append(_document(d, seen))
    return {k: tuple(v) for k, v in out.items()}


def _sightings(s: Session, doc_ids: list[int]) -> dict[int, set[str]]:
    seen: dict[int, set[str]] = {}
    for i in range(0, len(doc_ids), 500):
        for doc_id, src in s.execute(
            select(SightingRow.document_id, SightingRow.source_id).where(
                SightingRow.document_id.in_(doc_ids[i : i + 500])
            )
        ):
            if doc_id is not None:
                seen.setdefault(doc_id, set()).add(src)
    return seen


def _document(d: DocumentRow, seen: dict[int, set[str]]) -> StoryDocument:
    return StoryDocument(
        d.id,
        d.title,
        d.canonical_url,
        d.source_id,
        d.discovered,
        d.published,
        tuple(sorted(seen.get(d.id, {d.source_id}))),
        d.language,
        d.origin,
        d.story_id,
    )


def _matches(s: Session, story_id: int) -> tuple[StoryMatch, ...]:
    rows = s.scalars(
        select(MatchRow)
        .join(DocumentRow, DocumentRow.id == MatchRow.document_id)
        .where(DocumentRow.story_id == story_id)
        .order_by(MatchRow.id)
    ).all()
    return tuple(
        StoryMatch(
            m.id,
            m.document_id,
            m.rule_id,
            m.severity,
            m.status,
            m.evidence,
            _spans(m.spans),
            m.created_at,
            m.alert_id,
        )
        for m in rows
    )


def _spans(raw: dict[str, Any] | None) -> tuple[tuple[int, int, str], ...]:
    """Stored as ``{"spans": [[start, end, term], ...]}``."""
    return tuple((int(a), int(b), str(t)) for a, b, t in (raw or {}).get("spans", []))


def _page_changes(s: Session, docs: Sequence[StoryDocument]) -> tuple[PageChange, ...]:
    """For each page document: the diff between the snapshot taken with it and the one before."""
    if not docs:
        return ()
    sources = sorted({d.source_id for d in docs})
    index = s.execute(
        select(SnapshotRow.id, SnapshotRow.source_id, SnapshotRow.taken_at)
        .where(SnapshotRow.source_id.in_(sources))
        .order_by(SnapshotRow.id)
    ).all()
    pairs: dict[int, tuple[int | None, int]] = {}
    for d in docs:
        mine = [r for r in index if r.source_id == d.source_id]
        at = next((i for i, r in enumerate(mine) if r.taken_at >= d.discovered), None)
        if at is not None:
            pairs[d.id] = (mine[at - 1].id if at > 0 else None, mine[at].id)
    wanted = {i for pair in pairs.values() for i in pair if i is not None}
    texts = dict(s.execute(select(SnapshotRow.id, SnapshotRow.text).where(SnapshotRow.id.in_(wanted))).all())
    taken = {r.id: r.taken_at for r in index}
    out = []
    for d in docs:
        if d.id in pairs:
            old, new = pairs[d.id]
            diff = difflib.unified_diff(
                (texts.get(old, "") if old else "").splitlines(), texts[new].splitlines(), lineterm="", n=1
            )
            out.append(PageChange(d.id, d.source_id, taken[new], tuple(list(diff)[2:])))
    return tuple(out)


__all__ = [
    "PageChange",
    "StoryDetail",
    "StoryDocument",
    "StoryEntry",
    "StoryMatch",
    "StoryNotFound",
    "documents_page",
    "list_stories",
    "stories_page",
    "story_detail",
    "story_documents",
]
