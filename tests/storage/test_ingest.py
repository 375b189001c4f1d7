"""storage.ingest with concurrent writers on PostgreSQL: band-key locks held by another writer's open
transaction hold up only the documents that share those bands, and those still see its documents."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from crawler.config import AlertsConfig
from crawler.dedup import THRESHOLD, content_hash, fingerprint
from crawler.types import Document
from storage import dedup_store
from storage.db import Database
from storage.ingest import IngestItem, IngestResult, ingest_groups
from storage.models import DocumentRow

DATA = Path(__file__).parents[1] / "data" / "dedup"
EN = (DATA / "en_article.txt").read_text(encoding="utf-8")
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


@pytest.fixture
def db(pg_db: Database) -> Database:
    """Concurrent writers: PostgreSQL only (SQLite serialises its write transactions)."""
    return pg_db


def item(key: str, text: str) -> IngestItem:
    url = f"https://example.com/{key}"
    doc = Document(
        source_id="wire", url=url, canonical_url=url, title=key, text=text, discovered=NOW,
        content_hash=content_hash(text), entry_id=key,
    )  # fmt: skip
    return IngestItem(doc, fingerprint(text))


def stored(db: Database, key: str) -> DocumentRow | None:
    with db.read() as s:
        return s.scalars(select(DocumentRow).where(DocumentRow.canonical_url == f"https://example.com/{key}")).first()


def wait_for(check: object, seconds: float = 15.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_writer_goes_ahead_with_the_documents_another_writer_does_not_hold(db: Database) -> None:
    reprint = "\n\n".join(["Filed by Tech Ledger", *EN.strip().split("\n\n")[:-1]])
    unrelated = " ".join(f"Sentence {i} about the harbour budget, the council vote and rail works." for i in range(40))
    results: list[list[IngestResult]] = []
    writer = threading.Thread(
        target=lambda: results.extend(
            ingest_groups(
                db,
                [([item("reprint", reprint), item("other", unrelated)], NOW)],
                alerts_cfg=AlertsConfig(),
                threshold=THRESHOLD,
            )
        )
    )
    original = fingerprint(EN)
    with db.write() as s:  # another writer, in the middle of storing the original
        dedup_store.lock_fingerprints(s, [original])
        writer.start()
        assert wait_for(lambda: stored(db, "other") is not None), "the unrelated document waited"
        assert stored(db, "reprint") is None, "the reprint did not wait for the original's transaction"
        doc = DocumentRow(
            canonical_url="https://example.com/original", url="https://example.com/original", source_id="wire",
            title="original", text=EN, content_hash=content_hash(EN),
        )  # fmt: skip
        s.add(doc)
        s.flush()
        dedup_store.index_document(s, db, doc.id, original)
        story = dedup_store.assign_story(
            s, db, doc.id, near_document_id=None, title="original", source_id="wire", seen_at=NOW
        )
    writer.join(30)
    assert not writer.is_alive()
    (batch,) = results
    assert [r.status for r in batch] == ["new", "new"]  # results in the batch's order
    assert batch[0].story_id == story, "the reprint saw the original committed and joined its story"
    assert batch[1].story_id != story


def test_atomic_waits_and_writes_everything_in_one_transaction(db: Database) -> None:
    original = fingerprint(EN)
    results: list[list[IngestResult]] = []
    writer = threading.Thread(
        target=lambda: results.extend(
            ingest_groups(
                db,
                [([item("copy", EN + "\n\nRead more"), item("solo", "Nothing alike at all here. " * 30)], NOW)],
                alerts_cfg=AlertsConfig(),
                threshold=THRESHOLD,
                atomic=True,
            )
        )
    )
    with db.write() as s:
        dedup_store.lock_fingerprints(s, [original])
        writer.start()
        assert not wait_for(lambda: stored(db, "solo") is not None, 1.0), "atomic split its batch"
    writer.join(30)
    assert [r.status for r in results[0]] == ["new", "new"]


def test_a_deadlock_victim_is_written_again(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Another transaction locks the story row a reprint joins, then waits for a band key the
    reprint's transaction took: a cycle. PostgreSQL rolls back the reprint's transaction (its wait
    began last, and the other's deadlock_timeout is long); the ingest runs it again, not losing it."""
    from sqlalchemy import text

    caplog.set_level("WARNING", logger="storywatch.storage")
    original = item("original", EN)
    (first,) = ingest_groups(db, [([original], NOW)], alerts_cfg=AlertsConfig(), threshold=THRESHOLD)
    reprint = item("reprint", "\n\n".join(["Filed by Tech Ledger", *EN.strip().split("\n\n")[:-1]]))
    assert reprint.fingerprint is not None
    band = dedup_store._int4(reprint.fingerprint.bands[0])
    results: list[list[IngestResult]] = []
    writer = threading.Thread(
        target=lambda: results.extend(
            ingest_groups(db, [([reprint], NOW)], alerts_cfg=AlertsConfig(), threshold=THRESHOLD)
        )
    )
    with db.write() as s:
        s.execute(text("SET LOCAL deadlock_timeout = '20s'"))
        s.execute(text("SELECT id FROM stories WHERE id = :id FOR UPDATE"), {"id": first[0].story_id})
        writer.start()
        taken = text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = "
            "CAST(CAST(:k AS bigint) & 4294967295 AS oid) AND pid <> pg_backend_pid()"
        )

        def held_by_the_writer() -> bool:
            with db.read() as r:
                return r.execute(taken, {"k": band}).scalar() == 1

        assert wait_for(held_by_the_writer)
        s.execute(text("SELECT pg_advisory_xact_lock(:ns, :k)"), {"ns": dedup_store._LOCK_NAMESPACE, "k": band})
    writer.join(30)
    assert not writer.is_alive()
    assert "40P01" in caplog.text, "the reprint's transaction was not the deadlock victim"
    (batch,) = results
    assert [(r.status, r.story_id) for r in batch] == [("new", first[0].story_id)]
