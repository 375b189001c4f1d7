"""Story queries for the CLI (sessions opened here, frozen values out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from . import dedup_store
from .db import Database
from .dedup_store import StorySummary
from .models import DocumentRow, SightingRow


@dataclass(frozen=True)
class StoryDocument:
    id: int
    title: str
    canonical_url: str
    source_id: str
    discovered: datetime
    published: datetime | None
    sources: tuple[str, ...]


def list_stories(db: Database, *, since: datetime, limit: int = 100) -> list[StorySummary]:
    with db.read() as s:
        return dedup_store.list_stories(s, since=since, limit=limit)


def story_documents(db: Database, story_id: int) -> list[StoryDocument]:
    with db.read() as s:
        docs = s.scalars(
            select(DocumentRow).where(DocumentRow.story_id == story_id).order_by(DocumentRow.id)
        ).all()
        seen: dict[int, set[str]] = {}
        for doc_id, src in s.execute(
            select(SightingRow.document_id, SightingRow.source_id).where(
                SightingRow.document_id.in_([d.id for d in docs])
            )
        ):
            if doc_id is not None:
                seen.setdefault(doc_id, set()).add(src)
        return [
            StoryDocument(
                d.id,
                d.title,
                d.canonical_url,
                d.source_id,
                d.discovered,
                d.published,
                tuple(sorted(seen.get(d.id, {d.source_id}))),
            )
            for d in docs
        ]
