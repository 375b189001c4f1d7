"""storage.dedup_store on SQLite and PostgreSQL: the shared LSH index, stories, summaries, races.

Uses the shared ``db_url`` fixture of tests/conftest.py (a temp SQLite file, and a fresh
PostgreSQL schema that is skipped with a reason when no server is reachable).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from crawler.dedup import THRESHOLD, Fingerprint, fingerprint
from crawler.errors import StorageError
from storage import dedup_store
from storage.db import Database, open_database
from storage.dedup_store import StoryNotFound
from storage.models import BandRow, DocumentRow, MatchRow, SightingRow, SignatureRow, StoryRow

DATA = Path(__file__).parents[1] / "data" / "dedup"
EN = (DATA / "en_article.txt").read_text(encoding="utf-8")
ZH = (DATA / "zh_article.txt").read_text(encoding="utf-8")
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def reprint(outlet: str) -> str:
    paragraphs = EN.strip().split("\n\n")[:-1]
    return "\n\n".join([f"LongCat-2.0 is here | {outlet}", f"By Staff, {outlet}", *paragraphs, "Read more"])


def add_document(s: Session, key: str, source: str = "wire", text: str = "") -> int:
    row = DocumentRow(
        canonical_url=f"https://example.com/{key}", url=f"https://example.com/{key}", source_id=source,
        title=f"title {key}", text=text or key, content_hash=f"{key:0>64}"[-64:],
    )  # fmt: skip
    s.add(row)
    s.flush()
    return row.id


def ingest(db: Database, key: str, text: str, *, source: str = "wire", at: datetime = T0) -> tuple[int, int]:
    """What the pipeline does for one new document, in one write transaction."""
    fp = fingerprint(text)
    with db.write() as s:
        doc = add_document(s, key, source, text)
        hit = dedup_store.find_near_duplicate(s, fp, threshold=THRESHOLD, exclude_document_id=doc)
        dedup_store.index_document(s, db, doc, fp)
        story = dedup_store.assign_story(
            s, db, doc, near_document_id=hit[0] if hit else None, title=key, source_id=source, seen_at=at
        )
    return doc, story


def test_index_and_find_near_duplicate(db: Database) -> None:
    fp = fingerprint(EN)
    with db.write() as s:
        assert dedup_store.find_near_duplicate(s, fp, threshold=0.4) is None  # empty index
        doc = add_document(s, "a", text=EN)
        dedup_store.index_document(s, db, doc, fp)
        dedup_store.index_document(s, db, doc, fp)  # a repeat is a no-op
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(BandRow)) == len(fp.bands)
        assert s.scalar(select(SignatureRow.signature).where(SignatureRow.document_id == doc)) == fp.signature
        hit = dedup_store.find_near_duplicate(
            s, fingerprint(reprint("Tech Ledger")), threshold=0.4, lock=False
        )
        assert hit is not None and hit[0] == doc and 0.4 <= hit[1] < 1.0
        assert dedup_store.find_near_duplicate(s, fingerprint(ZH), threshold=0.4, lock=False) is None
        assert (
            dedup_store.find_near_duplicate(s, fp, threshold=0.4, exclude_document_id=doc, lock=False) is None
        )
        assert dedup_store.find_near_duplicate(s, fp, threshold=1.0, lock=False) == (doc, 1.0)


def test_best_candidate_wins_and_ties_go_to_the_oldest(db: Database) -> None:
    copy, exact = fingerprint(reprint("A")), fingerprint(EN)
    with db.write() as s:
        first = add_document(s, "copy")
        second = add_document(s, "exact-1")
        third = add_document(s, "exact-2")
        for doc, fp in ((first, copy), (second, exact), (third, exact)):
            dedup_store.index_document(s, db, doc, fp)
        assert dedup_store.find_near_duplicate(s, exact, threshold=0.4) == (second, 1.0)


def test_pending_index_is_searched_with_the_table_and_written_by_flush(db: Database) -> None:
    copy, exact = fingerprint(reprint("A")), fingerprint(EN)
    pending = dedup_store.PendingIndex()
    with db.write() as s:
        stored = add_document(s, "copy")
        dedup_store.index_document(s, db, stored, copy)  # written now
        first, second = add_document(s, "exact-1"), add_document(s, "exact-2")
        for doc in (second, first, first):  # out of order, and a repeat (a no-op)
            dedup_store.index_document(s, db, doc, exact, pending=pending)
        assert s.scalar(select(func.count()).select_from(BandRow)) == len(copy.bands)  # not yet written
        # pending documents are candidates: the exact copies beat the stored reprint, the oldest wins
        assert dedup_store.find_near_duplicate(s, exact, threshold=0.4, pending=pending) == (first, 1.0)
        assert dedup_store.find_near_duplicate(
            s, exact, threshold=0.4, exclude_document_id=first, pending=pending
        ) == (second, 1.0)
        assert dedup_store.find_near_duplicate(s, exact, threshold=1.0) is None  # the table alone
        assert dedup_store.find_near_duplicate(s, fingerprint(ZH), threshold=0.4, pending=pending) is None
        pending.flush(s)
        pending.flush(s)  # emptied: nothing is written twice
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(BandRow)) == 3 * len(exact.bands)
        signatures = {d: sig for d, sig in s.execute(select(SignatureRow.document_id, SignatureRow.signature))}
        assert signatures == {stored: copy.signature, first: exact.signature, second: exact.signature}
        assert dedup_store.find_near_duplicate(s, exact, threshold=0.4, lock=False) == (first, 1.0)


def test_empty_fingerprint_is_never_indexed_or_found(db: Database) -> None:
    empty = fingerprint("")
    with db.write() as s:
        doc = add_document(s, "empty")
        dedup_store.index_document(s, db, doc, empty)
        assert dedup_store.find_near_duplicate(s, empty, threshold=0.0) is None
        assert s.scalar(select(func.count()).select_from(SignatureRow)) == 0


def test_reprints_join_one_story_and_others_start_their_own(db: Database) -> None:
    doc_a, story_a = ingest(db, "orig", EN, source="wire", at=T0)
    _, story_b = ingest(db, "copy1", reprint("Tech Ledger"), source="ledger", at=T0 + timedelta(hours=1))
    _, story_c = ingest(db, "copy2", reprint("Metro"), source="metro", at=T0 + timedelta(hours=2))
    _, story_zh = ingest(db, "zh", ZH, source="cn", at=T0 + timedelta(hours=3))
    assert story_a == story_b == story_c != story_zh
    with db.read() as s:
        story = s.get(StoryRow, story_a)
        assert story is not None
        assert (story.first_document_id, story.first_source_id, story.first_seen) == (doc_a, "wire", T0)
        assert story.updated_at == T0 + timedelta(hours=2)
        assert dedup_store.story_sources(s, story_a) == ["ledger", "metro", "wire"]


def test_an_earlier_copy_becomes_the_first_of_its_story(db: Database) -> None:
    _, story = ingest(db, "live", EN, source="live", at=T0)
    old_doc, old_story = ingest(
        db, "backfilled", reprint("Archive"), source="archive", at=T0 - timedelta(days=2)
    )
    assert old_story == story
    with db.read() as s:
        row = s.get(StoryRow, story)
        assert row is not None
        assert (row.first_document_id, row.first_source_id) == (old_doc, "archive")
        assert row.first_seen == T0 - timedelta(days=2) and row.updated_at == T0


def test_assign_story_is_idempotent_and_checks_the_document(db: Database) -> None:
    doc, story = ingest(db, "a", EN)
    with db.write() as s:
        again = dedup_store.assign_story(
            s, db, doc, near_document_id=None, title="x", source_id="wire", seen_at=T0 + timedelta(days=1)
        )
        assert again == story
        assert s.scalar(select(func.count()).select_from(StoryRow)) == 1
        with pytest.raises(StorageError, match="document 999 does not exist"):
            dedup_store.assign_story(s, db, 999, near_document_id=None, title="x", source_id="w", seen_at=T0)


def test_near_duplicate_without_a_story_gets_one_first(db: Database) -> None:
    with db.write() as s:
        legacy = add_document(s, "legacy", source="old")
        new = add_document(s, "new", source="new")
        story = dedup_store.assign_story(
            s, db, new, near_document_id=legacy, title="new", source_id="new", seen_at=T0
        )
        assert s.scalar(select(DocumentRow.story_id).where(DocumentRow.id == legacy)) == story
        assert dedup_store.story_sources(s, story) == ["new", "old"]


def test_story_sources_include_sightings(db: Database) -> None:
    doc, story = ingest(db, "a", EN, source="wire")
    with db.write() as s:
        s.add(SightingRow(source_id="google-news", entry_id="g1", document_id=doc, url="https://x"))
        s.add(SightingRow(source_id="bing-news", entry_id="b1", document_id=doc, url="https://y"))
        s.add(SightingRow(source_id="wire", entry_id="w1", document_id=doc, url="https://z"))
    with db.read() as s:
        assert dedup_store.story_sources(s, story) == ["bing-news", "google-news", "wire"]
        assert dedup_store.story_sources(s, story + 1000) == []


def _match(doc: int, story: int, rule: str) -> MatchRow:
    return MatchRow(
        document_id=doc, story_id=story, rule_id=rule, severity="high", status="asserted",
        evidence=f"evidence for {rule}", evidence_hash=f"{rule:0>64}"[-64:],
    )  # fmt: skip


def test_story_summaries(db: Database) -> None:
    doc_a, story = ingest(db, "a", EN, source="wire", at=T0)
    doc_b, _ = ingest(db, "b", reprint("Ledger"), source="ledger", at=T0 + timedelta(hours=5))
    _, other = ingest(db, "zh", ZH, source="cn", at=T0 - timedelta(days=3))
    with db.write() as s:
        s.add(_match(doc_a, story, "longcat.vendor-disclosed"))
        s.add(_match(doc_b, story, "longcat.vendor-disclosed"))
        s.add(_match(doc_b, story, "longcat.training-telemetry"))
        s.add(SightingRow(source_id="google-news", entry_id="g1", document_id=doc_b, url="https://x"))
    with db.read() as s:
        summary = dedup_store.story_summary(s, story)
        assert summary.document_count == 2
        assert summary.sources == ("google-news", "ledger", "wire")
        assert summary.rule_ids == ("longcat.training-telemetry", "longcat.vendor-disclosed")
        assert (summary.first_document_id, summary.first_source_id, summary.title) == (doc_a, "wire", "a")
        assert (summary.first_seen, summary.updated_at) == (T0, T0 + timedelta(hours=5))
        recent = dedup_store.list_stories(s, since=T0 - timedelta(days=1))
        assert [r.id for r in recent] == [story]
        everything = dedup_store.list_stories(s, since=T0 - timedelta(days=30))
        assert [r.id for r in everything] == [story, other]
        assert everything[1].rule_ids == () and everything[1].document_count == 1
        assert dedup_store.list_stories(s, since=T0 - timedelta(days=30), limit=1)[0].id == story
        with pytest.raises(StoryNotFound):
            dedup_store.story_summary(s, 12345)


def test_concurrent_near_duplicates_join_one_story(db: Database) -> None:
    """A second writer ingesting a near-duplicate while the first is uncommitted waits, then joins.

    SQLite: the second BEGIN IMMEDIATE waits for the first commit. PostgreSQL: the second
    find_near_duplicate waits on the band advisory lock the first transaction holds.
    """
    first_fp = fingerprint(EN)
    results: dict[str, object] = {}
    started = threading.Event()

    def second_writer() -> None:
        started.set()
        try:
            results["second"] = ingest(db, "copy", reprint("Ledger"), source="ledger")
        except Exception as exc:  # surfaced by the assertion below
            results["error"] = exc

    with db.write() as s:
        doc = add_document(s, "orig", "wire", EN)
        assert dedup_store.find_near_duplicate(s, first_fp, threshold=THRESHOLD) is None
        dedup_store.index_document(s, db, doc, first_fp)
        story = dedup_store.assign_story(
            s, db, doc, near_document_id=None, title="orig", source_id="wire", seen_at=T0
        )
        worker = threading.Thread(target=second_writer)
        worker.start()
        started.wait(5)
        _wait_until_blocked(db, results)
    worker.join(30)
    assert "error" not in results, results.get("error")
    assert not worker.is_alive()
    second = results["second"]
    assert isinstance(second, tuple) and second[1] == story


def _wait_until_blocked(db: Database, results: dict[str, object]) -> None:
    """Give the second writer time to reach its lookup; on PostgreSQL, see it wait on the lock."""
    if db.dialect != "postgresql":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 10
    with db.engine.connect() as conn:
        while time.monotonic() < deadline and not results:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND classid = :ns AND objsubid = 2"
                ),
                {"ns": dedup_store._LOCK_NAMESPACE},
            ).scalar()
            if waiting:
                return
            time.sleep(0.02)
    pytest.fail(f"the second writer never waited on the band lock: {results}")


def test_lock_fingerprints_is_reentrant_within_a_transaction(db: Database) -> None:
    fps: list[Fingerprint | None] = [fingerprint(EN), None, fingerprint(ZH), fingerprint("")]
    with db.write() as s:
        dedup_store.lock_fingerprints(s, fps)
        doc = add_document(s, "a", text=EN)
        assert dedup_store.find_near_duplicate(s, fingerprint(EN), threshold=0.4) is None
        dedup_store.index_document(s, db, doc, fingerprint(EN))
        assert dedup_store.find_near_duplicate(s, fingerprint(EN), threshold=0.4) == (doc, 1.0)


def test_band_lookup_stays_an_index_probe_as_the_index_grows(pg_url: str) -> None:
    """A young database: the band lookup runs many times while ``minhash_bands`` is tiny (and never
    analysed), then the table grows. psycopg prepares a statement on its 5th run and PostgreSQL then
    settles on one generic plan for the connection's life: a plan made for a tiny table is a
    sequential scan, which every later lookup would repeat over the whole index (seen in
    bench/scale.py: 82 million band rows read in one 4,000-document pass). The lookup is planned
    for the table as it is at each run."""
    db = open_database(pg_url)
    try:
        with db.write() as s:
            fps = [fingerprint(f"{EN} variant {i}") for i in range(3)]
            for i, fp in enumerate(fps):
                dedup_store.index_document(s, db, add_document(s, f"young-{i}", text=EN), fp)
            probe = fingerprint(ZH)
            for _ in range(20):  # prepared, then a generic plan, on this one connection
                dedup_store.find_near_duplicate(s, probe, threshold=THRESHOLD, lock=False)
            s.execute(
                text(
                    "INSERT INTO documents (canonical_url, url, source_id, title, text, content_hash, "
                    "discovered, origin) SELECT 'https://example.com/g' || g, 'u', 'wire', 't', 'x', "
                    "md5(g::text), now(), 'article' FROM generate_series(1, 5000) AS g"
                )
            )
            s.execute(
                text(
                    "INSERT INTO minhash_bands (band, hash, document_id) SELECT b, (d.id * 97 + b), d.id "
                    "FROM documents d CROSS JOIN generate_series(0, 39) AS b WHERE d.source_id = 'wire'"
                )
            )
            scans = text("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'minhash_bands'")
            before = s.execute(scans).scalar_one()
            for _ in range(3):
                dedup_store.find_near_duplicate(s, probe, threshold=THRESHOLD, lock=False)
            assert s.execute(scans).scalar_one() == before, "the lookup scanned the whole band index"
    finally:
        db.dispose()
