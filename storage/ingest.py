"""The ingest transaction: document + aliases + sighting + story + matches + outbox, atomically.

Race-safe by construction: the document insert is ``INSERT ... ON CONFLICT DO NOTHING`` on its
unique keys (canonical URL, normalised-text hash). A writer that loses the race sees the
winner's row and records only an alias and a sighting, so two processes ingesting the same
article end with one document and one alert.

Kept whole at ~450 lines on purpose: it is one transaction, and its steps must be read in order
to see that the document, its story, its matches and its outbox rows commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, Literal, cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.orm import Session

from crawler.alerts.payload import evidence_hash
from crawler.config import AlertsConfig
from crawler.dedup import Fingerprint, normalize_text
from crawler.types import Document, Match

from . import dedup_store, outbox
from .db import Database, retrying
from .models import AlertRow, AliasRow, DocumentRow, SightingRow
from .rawsql import raw


@dataclass(frozen=True)
class Known:
    document_id: int
    canonical_url: str
    content_hash: str
    story_id: int | None


@dataclass(frozen=True)
class IngestItem:
    document: Document
    fingerprint: Fingerprint | None
    matches: tuple[Match, ...] = ()
    update_of: int | None = None  # an existing document updated in place


@dataclass(frozen=True)
class IngestResult:
    status: Literal["new", "updated", "duplicate"]
    document_id: int
    story_id: int | None
    alerts: int = 0
    corroborations: int = 0
    alert_ids: tuple[int, ...] = field(default=())


def lookup_many(db: Database, keys: Sequence[tuple[str, str, Sequence[str]]]) -> list[Known | None]:
    """The stored documents for a batch of (canonical URL, content hash, aliases), in a few queries.

    Per key: the document with that canonical URL, else the one with that text, else the one
    stored under the first of its aliases that is known.
    """
    out: list[Known | None] = []
    with db.read() as s:
        for i in range(0, len(keys), LOOKUP_CHUNK):
            out.extend(_lookup_chunk(s, keys[i : i + LOOKUP_CHUNK]))
    return out


LOOKUP_CHUNK = 200
_KNOWN_COLS = (
    DocumentRow.id,
    DocumentRow.canonical_url,
    DocumentRow.content_hash,
    DocumentRow.story_id,
)


def _lookup_chunk(s: Session, keys: Sequence[tuple[str, str, Sequence[str]]]) -> list[Known | None]:
    urls = list({k[0] for k in keys})
    hashes = list({k[1] for k in keys})
    rows = s.execute(
        select(*_KNOWN_COLS).where(
            or_(DocumentRow.canonical_url.in_(urls), DocumentRow.content_hash.in_(hashes))
        )
    ).all()
    by_url = {r.canonical_url: r for r in rows}
    by_hash = {r.content_hash: r for r in rows}
    found = [by_url.get(url) or by_hash.get(h) for url, h, _ in keys]
    missing = list(
        {a for (_, _, aliases), row in zip(keys, found, strict=True) if row is None for a in aliases}
    )
    if missing:
        alias_doc = dict(
            s.execute(select(AliasRow.url, AliasRow.document_id).where(AliasRow.url.in_(missing))).all()
        )
        ids = list(set(alias_doc.values()))
        by_id = (
            {r.id: r for r in s.execute(select(*_KNOWN_COLS).where(DocumentRow.id.in_(ids))).all()}
            if ids
            else {}
        )
        for n, (_, _, aliases) in enumerate(keys):
            if found[n] is None:
                doc_id = next((alias_doc[a] for a in aliases if a in alias_doc), None)
                found[n] = by_id.get(doc_id) if doc_id is not None else None
    return [_known(r) if r is not None else None for r in found]


def _known(row: Any) -> Known:
    return Known(row.id, row.canonical_url, row.content_hash, row.story_id)


def document_texts(db: Database, ids: Sequence[int]) -> dict[int, str]:
    """The stored text of each document id (for the rare in-place update: its sentences are
    compared with the new version's, so the stored ones never need keys of their own)."""
    if not ids:
        return {}
    with db.read() as s:
        rows = s.execute(select(DocumentRow.id, DocumentRow.text).where(DocumentRow.id.in_(list(ids)))).all()
    return {int(i): str(t) for i, t in rows}


def _lookup(s: Session, canonical_url: str, content_hash: str, aliases: Sequence[str] = ()) -> Known | None:
    return _lookup_chunk(s, [(canonical_url, content_hash, aliases)])[0]


def ingest(
    db: Database,
    items: Sequence[IngestItem],
    *,
    alerts_cfg: AlertsConfig,
    threshold: float,
    now: datetime,
    origin: str = "live",
    backfill_policy: str = "digest",
) -> list[IngestResult]:
    """Store a batch in ONE write transaction: every item is stored, or none (any error rolls back all).

    Items are processed in order, so a document sees the ones before it in the batch (a near-duplicate
    joins their story). The batch's alias URLs are inserted together at the end (nothing in between
    reads them). ``backfill_policy`` (none | digest | all) decides the deliveries of alerts whose
    origin is not live.
    """
    return ingest_groups(
        db,
        [(items, now)],
        alerts_cfg=alerts_cfg,
        threshold=threshold,
        origin=origin,
        backfill_policy=backfill_policy,
        atomic=True,
    )[0]


def ingest_groups(
    db: Database,
    groups: Sequence[tuple[Sequence[IngestItem], datetime]],
    *,
    alerts_cfg: AlertsConfig,
    threshold: float,
    origin: str = "live",
    backfill_policy: str = "digest",
    atomic: bool = False,
) -> list[list[IngestResult]]:
    """:func:`ingest` for several batches (each with its own ``now``) in one write transaction (group
    commit: pages dirtied by one batch are written once for all); results per batch, in order.

    Concurrent writers (PostgreSQL): the transaction first takes the band-key advisory locks of every
    document, without waiting. A document whose keys another writer's open transaction holds (it
    shares a band with a document being written there: a near-duplicate candidate) is left for a
    second transaction, which waits for those locks and so sees the other writer's documents. The
    rest go ahead at once: one writer never idles through another's whole group because one pair of
    their documents looks alike. ``atomic`` keeps everything in the one transaction (it waits for
    the locks instead), for callers that promise all-or-nothing.
    """
    policy = _Policy(alerts_cfg, cast(outbox.Origin, origin), cast(outbox.BackfillPolicy, backfill_policy))
    job = _Job(db, policy, threshold, groups, [[None] * len(items) for items, _ in groups])
    todo = [(g, i) for g, (items, _) in enumerate(groups) for i in range(len(items))]
    wait = atomic
    while todo:
        todo, wait = retrying(db, partial(job.transaction, places=todo, wait=wait)), True
    done = [[r for r in results if r is not None] for results in job.out]
    assert [len(d) for d in done] == [len(items) for items, _ in groups], "an item was not written"
    return done


Place = tuple[int, int]  # (batch, item) in an ingest_groups call


@dataclass(frozen=True)
class _Job:
    """One ``ingest_groups`` call: its batches, and their results as the transactions write them."""

    db: Database
    policy: _Policy
    threshold: float
    groups: Sequence[tuple[Sequence[IngestItem], datetime]]
    out: list[list[IngestResult | None]]

    def transaction(self, s: Session, *, places: Sequence[Place], wait: bool) -> list[Place]:
        """Write the items at ``places`` whose band keys this transaction holds: all of them
        (``wait``: it waits for every key, taken at once and sorted, so two batches with crossing
        near-duplicates cannot deadlock), or those no other open transaction holds. Returns the
        places left for another transaction."""
        fps = [self.groups[g][0][i].fingerprint for g, i in places]
        if wait:
            dedup_store.lock_fingerprints(s, fps)
            held = [True] * len(places)
        else:
            held = dedup_store.try_lock_fingerprints(s, fps)
        self._write(s, [p for p, ok in zip(places, held, strict=True) if ok])
        return [p for p, ok in zip(places, held, strict=True) if not ok]

    def _write(self, s: Session, places: Sequence[Place]) -> None:
        """Ingest the items at ``places`` (in batch order), their band keys held.

        First the (rule, evidence) keys of every match they may alert on, at once and sorted
        (reprints in two stories make one alert). Band keys are always taken before these, so two
        writers cannot each hold what the other waits for."""
        outbox.lock_matches(s, [m for g, i in places for m in self.groups[g][0][i].matches])
        index = dedup_store.PendingIndex()  # band rows of the whole transaction, written sorted
        by_group: dict[int, list[int]] = {}
        for g, i in places:
            by_group.setdefault(g, []).append(i)
        for g, positions in by_group.items():
            items, now = self.groups[g]
            batch = _Batch(s, self.db, self.policy, self.threshold, now, index)
            for i in positions:
                self.out[g][i] = _ingest_one(batch, items[i])
            batch.flush_aliases()
        index.flush(s)


@dataclass(frozen=True)
class _Policy:
    alerts: AlertsConfig
    origin: outbox.Origin
    backfill: outbox.BackfillPolicy


@dataclass
class _Batch:
    """The open transaction of one ``ingest`` call and what it still has to write."""

    s: Session
    db: Database
    policy: _Policy
    threshold: float
    now: datetime
    index: dedup_store.PendingIndex
    aliases: list[dict[str, Any]] = field(default_factory=list)

    def sighting(self, doc_id: int, doc: Document) -> None:
        """Record the document's URLs (at the end of the batch) and its sighting (now)."""
        for url in dict.fromkeys((doc.canonical_url, doc.url, *doc.aliases)):
            if url:
                self.aliases.append({"url": url, "document_id": doc_id})
        r = raw(self.s)
        r.execute(
            _SIGHTING_SQL,
            {
                "source_id": doc.source_id,
                "entry_id": doc.entry_id or doc.canonical_url,
                "document_id": doc_id,
                "url": doc.canonical_url or doc.url,  # alert source lists show it: no tracking parameters
                "seen_at": r.bind(_SEEN_AT, doc.discovered),
            },
        )

    def flush_aliases(self) -> None:
        if self.aliases:
            raw(self.s).executemany(_ALIAS_SQL, self.aliases)
            self.aliases = []


_DOCS = cast(Table, DocumentRow.__table__)
_SIGHTINGS = cast(Table, SightingRow.__table__)
_ALERTS = cast(Table, AlertRow.__table__)
_SEEN_AT = _SIGHTINGS.c.seen_at.type
_DOC_COLUMNS = (
    "canonical_url",
    "url",
    "source_id",
    "title",
    "text",
    "content_hash",
    "published",
    "discovered",
    "author",
    "language",
    "origin",
)
_ANY_ALERT = select(_ALERTS.c.id).where(_ALERTS.c.story_id == bindparam("story")).limit(1)
_RAISE_COUNTS = (
    update(_ALERTS)
    .where(_ALERTS.c.story_id == bindparam("story"), _ALERTS.c.source_count < bindparam("n"))
    .values(source_count=bindparam("n"))
)


# Plain SQL through storage.rawsql.Raw (SQLAlchemy's per-statement cost is several times these
# small writes' own); the same text runs on SQLite and PostgreSQL.
_DOCUMENT_SQL = (
    f"INSERT INTO documents ({', '.join(_DOC_COLUMNS)}) VALUES ({', '.join(':' + c for c in _DOC_COLUMNS)}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)
_SIGHTING_SQL = (
    "INSERT INTO sightings (source_id, entry_id, document_id, url, seen_at) "
    "VALUES (:source_id, :entry_id, :document_id, :url, :seen_at) ON CONFLICT DO NOTHING"
)
_ALIAS_SQL = (
    "INSERT INTO document_aliases (url, document_id) VALUES (:url, :document_id) ON CONFLICT DO NOTHING"
)
_BOUND = {c: _DOCS.c[c].type for c in ("published", "discovered")}


def _ingest_one(b: _Batch, item: IngestItem) -> IngestResult:
    doc = item.document
    if item.update_of is not None:
        return _update_in_place(b, item)
    r = raw(b.s)
    values = {c: getattr(doc, c) for c in _DOC_COLUMNS}
    for column, type_ in _BOUND.items():
        values[column] = r.bind(type_, values[column])
    rows = r.execute(_DOCUMENT_SQL, values)
    inserted = rows[0][0] if rows else None
    if inserted is None:  # someone stored it first: an alias and a sighting only
        known = _lookup(b.s, doc.canonical_url, doc.content_hash)
        if known is None:  # pragma: no cover - conflicting row vanished (deleted concurrently)
            raise RuntimeError(f"document {doc.canonical_url} conflicted but cannot be found")
        b.sighting(known.document_id, doc)
        _refresh_source_counts(b.s, known.story_id)
        return IngestResult("duplicate", known.document_id, known.story_id)
    doc_id = int(inserted)
    b.sighting(doc_id, doc)
    story_id, new_story = _assign_story(b, doc_id, item)
    alert_ids, corr = _record_matches(
        b.s, b.db, item.matches, doc, doc_id, story_id, b.policy, b.now, new_story
    )
    return IngestResult("new", doc_id, story_id, len(alert_ids), corr, tuple(alert_ids))


def _update_in_place(b: _Batch, item: IngestItem) -> IngestResult:
    s, doc, doc_id, now = b.s, item.document, item.update_of, b.now
    assert doc_id is not None
    clash = s.scalars(
        select(DocumentRow.id).where(DocumentRow.content_hash == doc.content_hash, DocumentRow.id != doc_id)
    ).first()
    values: dict[str, object] = {"title": doc.title, "text": doc.text}
    if clash is None:
        values["content_hash"] = doc.content_hash
    s.execute(update(DocumentRow).where(DocumentRow.id == doc_id).values(**values))
    b.sighting(doc_id, doc)
    story_id = s.scalar(select(DocumentRow.story_id).where(DocumentRow.id == doc_id))
    if story_id is None:
        story_id = dedup_store.assign_story(
            s, b.db, doc_id, near_document_id=None, title=doc.title, source_id=doc.source_id, seen_at=now
        )
    alert_ids, corr = _record_matches(s, b.db, item.matches, doc, doc_id, story_id, b.policy, now)
    return IngestResult("updated", doc_id, story_id, len(alert_ids), corr, tuple(alert_ids))


def _assign_story(b: _Batch, doc_id: int, item: IngestItem) -> tuple[int, bool]:
    """The new document's story, and whether that story was created for it (no near-duplicate)."""
    doc, fp, s = item.document, item.fingerprint, b.s
    near = None
    if fp is not None:
        hit = dedup_store.find_near_duplicate(
            s, fp, threshold=b.threshold, exclude_document_id=doc_id, pending=b.index
        )
        near = hit[0] if hit else None
        dedup_store.index_document(s, b.db, doc_id, fp, pending=b.index)
    story_id = dedup_store.assign_story(
        s,
        b.db,
        doc_id,
        near_document_id=near,
        title=doc.title,
        source_id=doc.source_id,
        seen_at=b.now,
        is_new=True,
    )
    return story_id, near is None


def _record_matches(
    s: Session,
    db: Database,
    matches: Sequence[Match],
    doc: Document,
    doc_id: int,
    story_id: int,
    policy: _Policy,
    now: datetime,
    new_story: bool = False,
) -> tuple[list[int], int]:
    """One alert per development: per rule, the evidence sentences are checked against the story.

    ``matches`` holds, per rule, the best firing hit first, then other firing hits with distinct
    evidence sentences. A rule that never alerted in this story alerts once, with its best hit.
    A rule that did alerts again only for an evidence sentence new to the story (the first such);
    a known sentence is a corroboration.
    """
    if not matches:
        if not new_story:  # a story created for this document has no alert to update yet
            _refresh_source_counts(s, story_id)
        return [], 0
    sources = _story_links(s, story_id)
    new_ids: list[int] = []
    corroborations = 0
    for m in _developments(s, matches, story_id, doc_id):
        out = outbox.record_alert(
            s,
            db,
            match=m,
            story_id=story_id,
            document_id=doc_id,
            source_count=len(sources),
            sources=sources,
            alerts_cfg=policy.alerts,
            origin=policy.origin,
            backfill_policy=policy.backfill,
            now=now,
            headline=doc.title,
            link=doc.canonical_url or doc.url,  # the alert links without tracking parameters
            language=doc.language,
        )
        if out.created:
            new_ids.append(out.alert_id)
        else:
            corroborations += 1
    _refresh_source_counts(s, story_id, len(sources))
    return new_ids, corroborations


def _developments(s: Session, matches: Sequence[Match], story_id: int, doc_id: int) -> list[Match]:
    by_rule: dict[str, list[Match]] = {}
    for m in matches:
        by_rule.setdefault(m.rule_id, []).append(m)
    chosen: list[Match] = []
    story_text: str | None = None
    for rule_id, ms in by_rule.items():
        alerted = s.execute(
            select(AlertRow.evidence_hash, AlertRow.evidence)
            .where(AlertRow.rule_id == rule_id, AlertRow.story_id == story_id)
            .order_by(AlertRow.id)
        ).all()
        if not alerted:
            chosen.append(ms[0])
            continue
        if story_text is None:
            story_text = _story_text(s, story_id, doc_id)
        known = {h: ev for h, ev in alerted}
        # a new headline is not a new development: only body sentences can be new to the story
        fresh = next(
            (
                m
                for m in ms
                if m.field != "title"
                and evidence_hash(m.evidence) not in known
                and normalize_text(m.evidence) not in story_text
            ),
            None,
        )
        if fresh is not None:
            chosen.append(fresh)
            continue
        same = next((m for m in ms if evidence_hash(m.evidence) in known), None)
        # nothing new: the document corroborates the development already alerted
        chosen.append(same or replace(ms[0], evidence=alerted[0][1]))
    return chosen


def _story_text(s: Session, story_id: int, doc_id: int, limit: int = 200) -> str:
    """The normalised titles and texts of the story's other documents (what the story already said)."""
    rows = s.execute(
        select(DocumentRow.title, DocumentRow.text)
        .where(DocumentRow.story_id == story_id, DocumentRow.id != doc_id)
        .order_by(DocumentRow.id)
        .limit(limit)
    ).all()
    return "\n".join(normalize_text(f"{t}\n{x}") for t, x in rows)


def _story_links(s: Session, story_id: int) -> list[tuple[str, str | None]]:
    """(source id, URL) for each distinct source reporting the story, first sighting first."""
    rows = s.execute(
        select(SightingRow.source_id, SightingRow.url)
        .join(DocumentRow, DocumentRow.id == SightingRow.document_id)
        .where(DocumentRow.story_id == story_id)
        .order_by(SightingRow.seen_at)
    ).all()
    links: dict[str, str | None] = {}
    for source_id, url in rows:
        links.setdefault(source_id, url)
    return list(links.items())


def _refresh_source_counts(s: Session, story_id: int | None, count: int | None = None) -> None:
    """Keep every alert of the story showing how many sources now report it."""
    if story_id is None:
        return
    if count is None:
        if s.execute(_ANY_ALERT, {"story": story_id}).first() is None:
            return  # no alert of this story shows a count
        count = len(dedup_store.story_sources(s, story_id))
    s.execute(_RAISE_COUNTS, {"story": story_id, "n": count})
