"""Alembic migrations on SQLite and PostgreSQL: 0002 rebuilds the near-duplicate index.

A database is created at revision 0001 and filled with index rows in a stale format (arbitrary
bytes and made-up band hashes, as an earlier fingerprint version would have left them); upgrading
to head must leave exactly what :func:`crawler.dedup.minhash.fingerprint` computes now, in each document's
stored layout, so that :func:`storage.dedup_store.find_near_duplicate` finds copies of old documents.
"""

from __future__ import annotations

import importlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, bindparam, inspect, text

from crawler.dedup import THRESHOLD, fingerprint
from crawler.dedup import minhash as dedup
from storage import dedup_store
from storage.db import Database, alembic_config, open_database
from storage.models import UTCDateTime

DATA = Path(__file__).parents[1] / "data" / "dedup"
EN = (DATA / "en_article.txt").read_text(encoding="utf-8")
ZH = (DATA / "zh_article.txt").read_text(encoding="utf-8")
EN_PARAGRAPHS = EN.strip().split("\n\n")
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Stale:
    """One document indexed by an earlier version: its text and the layout of its stale rows."""

    key: str
    text: str
    num_perm: int  # stale signature length / 4
    band_rows: int  # stale minhash_bands rows
    expect: tuple[int, int] | None  # the layout after 0002 (None: an empty fingerprint)


CASES = (
    Stale("en", EN, 120, 40, (120, 40)),
    Stale("zh", ZH, 120, 40, (120, 40)),
    Stale("small", "\n\n".join(EN_PARAGRAPHS[1:4]), 64, 16, (64, 16)),
    Stale("empty", "— … !!!", 0, 0, None),  # an empty signature stays empty
    Stale("odd-bands", EN_PARAGRAPHS[0], 120, 7, (120, 40)),  # 7 does not divide 120: default bands
    Stale("no-bands", EN_PARAGRAPHS[2], 64, 0, (120, 40)),  # default bands do not fit 64: defaults
    Stale("no-shingles", "... --- !!!", 120, 40, None),  # the new format finds no shingle: empty
)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        database.dispose()


def upgrade_to(db: Database, revision: str) -> None:
    """``alembic upgrade`` on the connection Database.upgrade hands over (it only does "head")."""
    with db.engine.begin() as conn:
        cfg = alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


DOCUMENT_SQL = (
    "INSERT INTO documents (canonical_url, url, source_id, title, text, content_hash, discovered, origin)"
    " VALUES (:url, :url, 'wire', :key, :text, :hash, :at, 'article')"
)


def document(key: str, body: str) -> dict[str, object]:
    return {"url": f"https://example.com/{key}", "key": key, "text": body, "hash": f"{key:0>64}", "at": T0}


def insert_stale(conn: Connection, case: Stale) -> int:
    """One document with a stale signature of ``case.num_perm`` and ``case.band_rows`` made-up bands."""
    rng = random.Random(case.key)
    insert = text(f"{DOCUMENT_SQL} RETURNING id").bindparams(bindparam("at", type_=UTCDateTime()))
    doc = int(conn.execute(insert, document(case.key, case.text)).scalar_one())
    signature = rng.randbytes(4 * case.num_perm)
    conn.execute(
        text("INSERT INTO minhash_signatures (document_id, signature) VALUES (:doc, :sig)"),
        {"doc": doc, "sig": signature},
    )
    if case.band_rows:
        values = ", ".join(f"({i}, :h{i}, :doc)" for i in range(case.band_rows))
        hashes = {f"h{i}": rng.getrandbits(63) for i in range(case.band_rows)}
        conn.execute(
            text(f"INSERT INTO minhash_bands (band, hash, document_id) VALUES {values}"),
            {"doc": doc, **hashes},
        )
    return doc


def insert_many_stale(conn: Connection, texts: list[str]) -> list[int]:
    """Documents with stale 120-value signatures and 40 made-up bands each, in four statements."""
    insert = text(DOCUMENT_SQL).bindparams(bindparam("at", type_=UTCDateTime()))
    conn.execute(insert, [document(f"many{i}", body) for i, body in enumerate(texts)])
    docs = [int(doc) for doc in conn.execute(text("SELECT id FROM documents ORDER BY id")).scalars()]
    rng = random.Random(0)
    conn.execute(
        text("INSERT INTO minhash_signatures (document_id, signature) VALUES (:doc, :sig)"),
        [{"doc": doc, "sig": rng.randbytes(480)} for doc in docs],
    )
    conn.execute(
        text(
            "INSERT INTO minhash_bands (band, hash, document_id) "
            "WITH RECURSIVE b(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM b WHERE n < 39) "
            "SELECT b.n, d.id * 64 + b.n, d.id FROM documents d CROSS JOIN b"
        )
    )
    return docs


def index_rows(conn: Connection, doc: int) -> tuple[bytes, set[tuple[int, int]]]:
    signature = conn.execute(
        text("SELECT signature FROM minhash_signatures WHERE document_id = :doc"), {"doc": doc}
    ).scalar_one()
    bands = conn.execute(text("SELECT band, hash FROM minhash_bands WHERE document_id = :doc"), {"doc": doc})
    return bytes(signature), {(int(b), int(h)) for b, h in bands}


def reprint(outlet: str) -> str:
    return "\n\n".join([f"LongCat-2.0 is here | {outlet}", *EN_PARAGRAPHS[:-1], "Read more"])


def test_0002_rebuilds_the_index_in_each_documents_layout(db: Database) -> None:
    upgrade_to(db, "0001")
    with db.engine.begin() as conn:
        docs = {case.key: insert_stale(conn, case) for case in CASES}
        orphan = insert_stale(conn, Stale("orphan", "x", 0, 3, None))  # bands without a signature
        conn.execute(text("DELETE FROM minhash_signatures WHERE document_id = :doc"), {"doc": orphan})
    copy = fingerprint(reprint("Tech Ledger"))
    with db.read() as s:  # stale rows: an old document's reprint is not found
        assert dedup_store.find_near_duplicate(s, copy, threshold=THRESHOLD, lock=False) is None

    db.upgrade()  # what open_database does on start: alembic upgrade head

    assert db.current_revision() == HEAD
    with db.engine.connect() as conn:
        for case in CASES:
            signature, bands = index_rows(conn, docs[case.key])
            if case.expect is None:
                assert (signature, bands) == (b"", set()), case.key
                continue
            num_perm, band_count = case.expect
            fp = fingerprint(case.text, num_perm=num_perm, bands=band_count)
            assert not fp.empty and len(signature) // 4 == num_perm and len(bands) == band_count, case.key
            assert signature == fp.signature, case.key
            assert bands == set(enumerate(fp.bands)), case.key
        leftover = conn.execute(
            text("SELECT count(*) FROM minhash_bands WHERE document_id = :doc"), {"doc": orphan}
        )
        assert leftover.scalar_one() == 0
    with db.read() as s:
        hit = dedup_store.find_near_duplicate(s, copy, threshold=THRESHOLD, lock=False)
        assert hit is not None and hit[0] == docs["en"] and THRESHOLD <= hit[1] < 1.0
        small = fingerprint(CASES[2].text, num_perm=64, bands=16)
        assert dedup_store.find_near_duplicate(s, small, threshold=1.0, lock=False) == (docs["small"], 1.0)


def test_0002_rebuilds_every_document_across_batches(db: Database) -> None:
    """Two full batches and one more document (keyset pages): each is rebuilt, none twice."""
    batch = importlib.import_module("storage.migrations.versions.0002_rebuild_fingerprints").BATCH
    upgrade_to(db, "0001")
    texts = [f"Edition {i}: {EN_PARAGRAPHS[i % len(EN_PARAGRAPHS)]}" for i in range(2 * batch + 1)]
    with db.engine.begin() as conn:
        docs = insert_many_stale(conn, texts)
        assert conn.execute(text("SELECT count(*) FROM minhash_bands")).scalar_one() == 40 * len(docs)
    db.upgrade()
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT document_id, signature FROM minhash_signatures"))
        signatures = {int(doc): bytes(signature) for doc, signature in stored}
        bands: dict[int, set[tuple[int, int]]] = {doc: set() for doc in docs}
        for band, value, doc in conn.execute(text("SELECT band, hash, document_id FROM minhash_bands")):
            bands[doc].add((band, value))
    for doc, body in zip(docs, texts, strict=True):
        fp = fingerprint(body)
        assert (signatures[doc], bands[doc]) == (fp.signature, set(enumerate(fp.bands)))
    assert sum(map(len, bands.values())) == 40 * len(docs)


def test_a_fresh_database_opens_at_head_with_an_empty_index(db_url: str) -> None:
    db = open_database(db_url)
    try:
        assert db.current_revision() == HEAD
        with db.engine.connect() as conn:
            for table in ("documents", "minhash_bands", "minhash_signatures"):
                assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        db.upgrade()  # every start upgrades again: a no-op at head
        assert db.current_revision() == HEAD
        assert dedup.NUM_PERM % dedup.BANDS == 0  # the migration's last fallback layout is valid
    finally:
        db.dispose()


def test_0003_drops_the_unread_sentence_hashes_and_keeps_documents(db: Database) -> None:
    upgrade_to(db, "0002")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO documents (canonical_url, url, source_id, title, text, content_hash, discovered,"
                " origin, sentence_hashes) VALUES ('u', 'u', 's', 't', 'x', 'h', :at, 'article', '{}')"
            ),
            {"at": datetime(2026, 11, 1, tzinfo=UTC)},
        )
        conn.execute(
            text("INSERT INTO document_aliases (url, document_id) SELECT 'alias', id FROM documents")
        )
    db.upgrade()
    with db.read() as s:
        assert s.execute(text("SELECT canonical_url, text FROM documents")).all() == [("u", "x")]
        # no table rebuild: dropping and re-creating `documents` would cascade-delete its aliases
        assert s.execute(text("SELECT url FROM document_aliases")).scalars().all() == ["alias"]
    assert "sentence_hashes" not in {c["name"] for c in inspect(db.read_engine).get_columns("documents")}


def test_processes_opening_a_fresh_database_at_once_all_reach_head(db_url: str) -> None:
    """Several processes starting together on one new database: one migrates, the others wait for it
    and find nothing left to do (on PostgreSQL they collided on ``alembic_version`` before)."""
    starters = 4
    if "options=" in db_url:  # PostgreSQL: a lock wait fails after 20 s instead of hanging the suite
        db_url += "%20-clock_timeout%3D20000"
    barrier = threading.Barrier(starters)
    errors: list[BaseException] = []
    revisions: list[str | None] = []

    def start() -> None:
        barrier.wait()
        try:
            db = open_database(db_url)
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)
            return
        revisions.append(db.current_revision())
        db.dispose()

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert revisions == [HEAD] * starters
