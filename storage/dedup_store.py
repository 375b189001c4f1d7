"""The database-backed near-duplicate index and story assignment.

The LSH index is two tables shared by every process: ``minhash_bands(band, hash, document_id)``
(primary key = the lookup index) and ``minhash_signatures(document_id, signature)``. Every function
takes an open session from :meth:`storage.db.Database.write` / ``read`` and never opens its own.

Race safety (two processes ingesting near-duplicates at the same time). Call
:func:`find_near_duplicate`, :func:`index_document` and :func:`assign_story` for one document in
ONE write transaction:

* SQLite: write transactions begin with ``BEGIN IMMEDIATE``, so they are serialised; the lookup sees
  every committed document, and the second of two near-duplicates joins the first one's story.
* PostgreSQL (READ COMMITTED, the default): :func:`find_near_duplicate` first takes
  transaction-scoped advisory locks on the fingerprint's band keys, in sorted order. Two
  near-duplicates are LSH candidates only if they share a band, so the second transaction waits at
  that lock until the first commits, and its lookup (a new statement, a new snapshot) then sees the
  first document. One call takes its locks in one statement in a global (sorted) order, so calls
  cannot deadlock each other. A transaction that ingests SEVERAL documents must take all their
  locks first with :func:`lock_fingerprints` (outside any savepoint); per-document locking in
  document order could deadlock against another batch (PostgreSQL would abort one: retry it).
  Under REPEATABLE READ/SERIALIZABLE the lookup's snapshot may predate the wait: use READ
  COMMITTED. The residual cost: writers whose documents share a band hash with an in-flight one
  wait for its commit (milliseconds); keys are folded to 32 bits, so rare unrelated collisions
  only add such a wait.

A transaction that indexes many documents (``storage.ingest.ingest_groups``) passes one
:class:`PendingIndex` to both calls: band rows then wait in memory, where later lookups of the same
transaction find them, and :meth:`PendingIndex.flush` writes them in key order before the commit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import cast

from sqlalchemy import Table, bindparam, func, select, union
from sqlalchemy.orm import Session

from crawler.dedup import Fingerprint, estimate_jaccard_many
from crawler.errors import StorageError

from . import locks
from .db import Database
from .models import DocumentRow, MatchRow, SightingRow, StoryRow
from .paging import Newest
from .rawsql import Raw, raw

MAX_CANDIDATES = 200  # verified per lookup, those sharing the most bands first
_LOCK_NAMESPACE = 0x5357_4C53  # first key of pg_advisory_xact_lock(int4, int4): "SWLS"
STORIES = Newest(StoryRow, "updated_at")  # the stories list: most recently updated first


class StoryNotFound(StorageError):
    """No story with this id."""


@dataclass(frozen=True)
class StorySummary:
    """One story as ``storywatch stories`` lists it."""

    id: int
    title: str
    first_seen: datetime
    updated_at: datetime
    first_document_id: int | None
    first_source_id: str | None
    document_count: int
    sources: tuple[str, ...]  # distinct source ids over its documents and their sightings
    rule_ids: tuple[str, ...]  # distinct rules that matched any of its documents


def find_near_duplicate(
    session: Session,
    fp: Fingerprint,
    *,
    threshold: float,
    exclude_document_id: int | None = None,
    lock: bool = True,
    pending: PendingIndex | None = None,
) -> tuple[int, float] | None:
    """The indexed document most similar to ``fp`` with estimated Jaccard >= ``threshold``, or None.

    Candidates share at least one band hash (one indexed query; at most :data:`MAX_CANDIDATES`,
    those sharing the most bands); each is verified against its stored signature. Ties go to the
    lowest (oldest) document id. ``lock`` takes the PostgreSQL advisory locks described in the
    module docstring (a no-op on SQLite); pass False only for read-only lookups. ``pending``: the
    documents indexed earlier in this transaction but not yet written (see :class:`PendingIndex`)
    are candidates too.
    """
    if fp.empty:
        return None
    if lock:
        lock_fingerprint(session, fp)
    params: dict[str, int] = dict(zip(_band_names(len(fp.bands)), fp.bands, strict=True))
    params["limit"] = MAX_CANDIDATES
    if exclude_document_id is not None:
        params["exclude"] = exclude_document_id
    sql = _candidates_sql(len(fp.bands), exclude_document_id is not None)
    rows = raw(session).execute(sql, params, plan_each_time=True)  # an index probe at any table size
    found = [(int(r[0]), bytes(r[1])) for r in rows]
    if pending is not None:
        found.extend(pending.candidates(fp, exclude_document_id))
    return _best(fp, found, threshold)


class PendingIndex:
    """Band and signature rows of the documents indexed in one write transaction, written together
    by :meth:`flush` before it commits.

    A document's band keys (40 by default) are random: inserted as they come, each lands on a random
    page of the ``minhash_bands`` B-tree. Sorted across a whole group of documents, the same rows go
    in as one ordered pass (about half the cost). Until then :func:`find_near_duplicate` finds them here, so
    a near-duplicate later in the same transaction still joins the first one's story.
    """

    def __init__(self) -> None:
        self._bands: dict[tuple[int, int], list[int]] = {}  # (band, hash) -> document ids
        self._signatures: dict[int, bytes] = {}

    def add(self, document_id: int, fp: Fingerprint) -> None:
        if fp.empty or document_id in self._signatures:
            return  # nothing to index, or a repeat (a no-op, as for stored rows)
        self._signatures[document_id] = fp.signature
        bands = self._bands
        for key in enumerate(fp.bands):
            if key in bands:
                bands[key].append(document_id)
            else:
                bands[key] = [document_id]

    def candidates(self, fp: Fingerprint, exclude: int | None) -> list[tuple[int, bytes]]:
        """The pending documents sharing a band with ``fp``: those sharing the most first, at most
        :data:`MAX_CANDIDATES` (the same rule as the stored index's query)."""
        bands = self._bands
        hits = [doc for key in enumerate(fp.bands) if key in bands for doc in bands[key] if doc != exclude]
        if not hits:
            return []
        shared = Counter(hits)
        ranked = sorted(shared, key=lambda d: (-shared[d], d))[:MAX_CANDIDATES]
        return [(d, self._signatures[d]) for d in ranked]

    def flush(self, session: Session) -> None:
        """Write the pending rows (bands in key order) in ``session``'s transaction; empties the buffer."""
        if not self._signatures:
            return
        bands, signatures = self._bands, self._signatures
        self._bands, self._signatures = {}, {}
        rows = sorted((band, value, doc) for (band, value), docs in bands.items() for doc in docs)
        r = raw(session)
        r.executemany(_BAND_SQL, [{"band": b, "hash": h, "doc": d} for b, h, d in rows])
        r.executemany(_SIGNATURE_SQL, [{"doc": d, "sig": sig} for d, sig in sorted(signatures.items())])


@lru_cache(maxsize=16)
def _band_names(bands: int) -> tuple[str, ...]:
    """The parameter names ``h0 .. h{bands-1}`` of the band statements (built once per layout)."""
    return tuple(f"h{i}" for i in range(bands))


@lru_cache(maxsize=16)
def _candidates_sql(bands: int, exclude: bool) -> str:
    """One statement: probe the (band, hash) primary key once per band, rank, fetch the signatures.

    Plain SQL run through :class:`storage.rawsql.Raw` (building the equivalent 40-term expression
    costs milliseconds per lookup in SQLAlchemy); it runs unchanged on SQLite and PostgreSQL.
    """
    values = ", ".join(f"({i}, CAST(:h{i} AS BIGINT))" for i in range(bands))
    where = "WHERE b.document_id <> :exclude " if exclude else ""
    return (
        f"WITH q(band, hash) AS (VALUES {values}) "
        "SELECT s.document_id, s.signature FROM minhash_signatures s JOIN ("
        "SELECT b.document_id AS document_id, count(*) AS shared FROM q "
        f"JOIN minhash_bands b ON b.band = q.band AND b.hash = q.hash {where}"
        "GROUP BY b.document_id ORDER BY count(*) DESC, b.document_id LIMIT :limit"
        ") c ON c.document_id = s.document_id"
    )


def _best(fp: Fingerprint, rows: list[tuple[int, bytes]], threshold: float) -> tuple[int, float] | None:
    scores = estimate_jaccard_many(fp, [sig for _, sig in rows])
    ranked = sorted(((-score, doc_id) for (doc_id, _), score in zip(rows, scores, strict=True)))
    if ranked and -ranked[0][0] >= threshold:
        return ranked[0][1], -ranked[0][0]
    return None


def lock_fingerprint(session: Session, fp: Fingerprint) -> None:
    """PostgreSQL: take transaction-scoped advisory locks on ``fp``'s band keys. SQLite: no-op."""
    lock_fingerprints(session, [fp])


def lock_fingerprints(session: Session, fps: Iterable[Fingerprint | None]) -> None:
    """Lock the band keys of every fingerprint of a batch at once, in one sorted statement.

    Call it first in a transaction that ingests several documents: locks taken per document, in
    document order, can deadlock against another batch; one sorted acquisition cannot. The
    transaction remembers what it holds (:mod:`storage.locks`), so the per-document locks of
    :func:`find_near_duplicate` then cost nothing.
    """
    locks.lock_ints(session, _LOCK_NAMESPACE, (_int4(h) for fp in fps if fp is not None for h in fp.bands))


def try_lock_fingerprints(session: Session, fps: Sequence[Fingerprint | None]) -> list[bool]:
    """Take, without waiting, every band-key lock of ``fps`` that no other transaction holds; per
    fingerprint, whether all of its keys are now this transaction's (False: another writer's open
    transaction holds one, so a document sharing that band may be on its way). SQLite (one writer
    at a time): all True."""
    keys = [[_int4(h) for h in fp.bands] if fp is not None else [] for fp in fps]
    taken = locks.try_lock_ints(session, _LOCK_NAMESPACE, (k for ks in keys for k in ks))
    return [taken.isdisjoint(ks) for ks in keys]


def _int4(value: int) -> int:
    folded = (value ^ (value >> 32)) & 0xFFFF_FFFF
    return folded - (1 << 32) if folded >= 1 << 31 else folded


_DOCS = cast(Table, DocumentRow.__table__)
_STORIES = cast(Table, StoryRow.__table__)
_AT = _STORIES.c.first_seen.type  # UTCDateTime: how story times are bound (Raw.bind)
# Plain SQL through storage.rawsql.Raw: SQLAlchemy's per-statement cost is several times the
# statement's own on these small writes, and a document runs each of them once.
_DOC_STORY_SQL = "SELECT story_id FROM documents WHERE id = :doc"
_SET_STORY_SQL = "UPDATE documents SET story_id = :story WHERE id = :doc"
_NEW_STORY_SQL = (
    "INSERT INTO stories (title, first_document_id, first_source_id, first_seen, updated_at) "
    "VALUES (:title, :doc, :src, :at, :at) RETURNING id"
)
_SIGNATURE_SQL = (
    "INSERT INTO minhash_signatures (document_id, signature) VALUES (:doc, :sig) ON CONFLICT DO NOTHING"
)
_JOIN_STORY_SQL = (
    "UPDATE stories SET"
    " updated_at = CASE WHEN updated_at < :at THEN :at ELSE updated_at END,"
    " first_document_id = CASE WHEN first_seen > :at THEN :doc ELSE first_document_id END,"
    " first_source_id = CASE WHEN first_seen > :at THEN :src ELSE first_source_id END,"
    " first_seen = CASE WHEN first_seen > :at THEN :at ELSE first_seen END"
    " WHERE id = :story"
)
_DOC_FOR_STORY = select(_DOCS.c.story_id, _DOCS.c.title, _DOCS.c.source_id, _DOCS.c.discovered).where(
    _DOCS.c.id == bindparam("doc")
)


def index_document(
    session: Session, db: Database, document_id: int, fp: Fingerprint, *, pending: PendingIndex | None = None
) -> None:
    """Add ``document_id`` to the index (its band hashes and signature); a repeat is a no-op.

    With ``pending``, the rows wait there until its ``flush`` (the caller's, before commit);
    without, they are written now. ``INSERT ... ON CONFLICT DO NOTHING`` (the same syntax on SQLite
    and PostgreSQL, so ``db`` is only kept for the callers' symmetry).
    """
    batch = pending if pending is not None else PendingIndex()
    batch.add(document_id, fp)
    if pending is None:
        batch.flush(session)


_BAND_SQL = (
    "INSERT INTO minhash_bands (band, hash, document_id) VALUES (:band, :hash, :doc) ON CONFLICT DO NOTHING"
)


def assign_story(
    session: Session,
    db: Database,
    document_id: int,
    *,
    near_document_id: int | None,
    title: str,
    source_id: str,
    seen_at: datetime,
    is_new: bool = False,
) -> int:
    """Put ``document_id`` in its near-duplicate's story, or in a new story; return the story id.

    Idempotent: a document that already has a story keeps it (``is_new``: the caller has just
    inserted the document, so it has none and the check is skipped). Joining a story moves its
    ``updated_at`` forward, and its ``first_*`` fields back when this document was seen earlier
    (a backfilled older copy). A near-duplicate without a story (indexed outside this function)
    gets a story of its own first. Writes are plain SQL: ORM objects already loaded in
    ``session`` are not refreshed. ``db`` is accepted for symmetry with :func:`index_document`.
    """
    r = raw(session)
    if not is_new:
        current = r.execute(_DOC_STORY_SQL, {"doc": document_id})
        if not current:
            raise StorageError(f"cannot assign a story: document {document_id} does not exist")
        if current[0][0] is not None:
            return int(current[0][0])
    story_id = _story_of(session, near_document_id) if near_document_id is not None else None
    if story_id is None:
        story_id = _new_story(r, title=title, document_id=document_id, source_id=source_id, at=seen_at)
    else:
        _join_story(r, story_id, document_id=document_id, source_id=source_id, at=seen_at)
    r.execute(_SET_STORY_SQL, {"doc": document_id, "story": story_id})
    return story_id


def _story_of(session: Session, document_id: int) -> int | None:
    r = raw(session)
    found = r.execute(_DOC_STORY_SQL, {"doc": document_id})
    if not found:
        return None
    if found[0][0] is not None:
        return int(found[0][0])
    row = session.execute(_DOC_FOR_STORY, {"doc": document_id}).one()  # rare: indexed without a story
    story_id = _new_story(
        r, title=row.title, document_id=document_id, source_id=row.source_id, at=row.discovered
    )
    r.execute(_SET_STORY_SQL, {"doc": document_id, "story": story_id})
    return story_id


def _new_story(r: Raw, *, title: str, document_id: int, source_id: str, at: datetime) -> int:
    values = {"title": title, "doc": document_id, "src": source_id, "at": r.bind(_AT, at)}
    return int(r.execute(_NEW_STORY_SQL, values)[0][0])


def _join_story(r: Raw, story_id: int, *, document_id: int, source_id: str, at: datetime) -> None:
    """Move ``updated_at`` forward and, for an earlier sighting, ``first_*`` back (one atomic UPDATE)."""
    r.execute(
        _JOIN_STORY_SQL, {"at": r.bind(_AT, at), "doc": document_id, "src": source_id, "story": story_id}
    )


def story_sources(session: Session, story_id: int) -> list[str]:
    """Distinct source ids over the story's documents and their sightings, sorted."""
    return sorted(src for _, src in _source_pairs(session, [story_id]))


def _source_pairs(session: Session, story_ids: list[int]) -> list[tuple[int, str]]:
    """(story id, source id) pairs, distinct, over the stories' documents and their sightings."""
    docs = select(DocumentRow.story_id, DocumentRow.source_id).where(DocumentRow.story_id.in_(story_ids))
    seen = (
        select(DocumentRow.story_id, SightingRow.source_id)
        .join(DocumentRow, DocumentRow.id == SightingRow.document_id)
        .where(DocumentRow.story_id.in_(story_ids))
    )
    rows = session.execute(union(docs, seen)).all()
    return [(int(story), str(source)) for story, source in rows if story is not None]


def story_source_pairs(session: Session, story_ids: list[int]) -> list[tuple[int, str]]:
    """(story id, source id) pairs, distinct, over the stories' documents and their sightings."""
    return _source_pairs(session, story_ids)


def story_summary(session: Session, story_id: int) -> StorySummary:
    """One story's summary; raises :class:`StoryNotFound`."""
    row = session.get(StoryRow, story_id)
    if row is None:
        raise StoryNotFound(f"story {story_id} does not exist")
    return _summaries(session, [row])[0]


def list_stories(session: Session, *, since: datetime, limit: int = 100) -> list[StorySummary]:
    """Stories with activity (``updated_at``) at or after ``since``, most recently updated first."""
    rows = session.scalars(STORIES.query(limit=limit, since=since)).all()
    return _summaries(session, list(rows))


def _summaries(session: Session, rows: list[StoryRow]) -> list[StorySummary]:
    ids = [row.id for row in rows]
    count_rows = session.execute(
        select(DocumentRow.story_id, func.count())
        .where(DocumentRow.story_id.in_(ids))
        .group_by(DocumentRow.story_id)
    ).all()
    counts = {story: int(n) for story, n in count_rows}
    sources = _grouped(_source_pairs(session, ids))
    rule_rows = session.execute(
        select(DocumentRow.story_id, MatchRow.rule_id)
        .join(DocumentRow, DocumentRow.id == MatchRow.document_id)
        .where(DocumentRow.story_id.in_(ids))
        .distinct()
    ).all()
    rules = _grouped((story, str(rule)) for story, rule in rule_rows)
    return [
        StorySummary(
            id=row.id,
            title=row.title,
            first_seen=row.first_seen,
            updated_at=row.updated_at,
            first_document_id=row.first_document_id,
            first_source_id=row.first_source_id,
            document_count=int(counts.get(row.id, 0)),
            sources=tuple(sorted(sources.get(row.id, ()))),
            rule_ids=tuple(sorted(rules.get(row.id, ()))),
        )
        for row in rows
    ]


def _grouped(pairs: Iterable[tuple[int | None, str]]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for key, value in pairs:
        if key is not None:
            out[int(key)].add(value)
    return out


__all__ = [
    "MAX_CANDIDATES",
    "PendingIndex",
    "StoryNotFound",
    "StorySummary",
    "assign_story",
    "find_near_duplicate",
    "index_document",
    "list_stories",
    "lock_fingerprint",
    "lock_fingerprints",
    "story_source_pairs",
    "story_sources",
    "story_summary",
]
