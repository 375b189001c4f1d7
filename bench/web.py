"""The web dashboard and API on a big database: median time per request and SQL statements per request.

Builds a SQLite database with 100,000 documents (20,000 stories of 5, one sighting each, two
sources per story) and 10,000 alerts (two deliveries each), with bulk inserts, then serves the app
with uvicorn on 127.0.0.1 and times, over real HTTP:

- the developments page (``/``, 50 newest alerts with evidence, sources and delivery states),
- a story page (``/stories/ID``: documents, matches, alerts),
- the API list endpoint (``/api/v1/developments?limit=50``),

and counts the SQL statements each request runs (SQLAlchemy ``before_cursor_execute``), so an
N+1 query shows up as a count that grows with the page. Baseline, in the same process: the same
page of alerts loaded the naive way (one query for the alerts, then one per alert for its
deliveries and one for its story's sources), printed with the ratio.

Target: under 100 ms at the median for each.

Run: python bench/web.py [--documents 100000] [--alerts 10000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import Table, event, insert, select

from crawler.config import parse_settings
from crawler.web import WebServer, bind, create_app
from storage.db import Database, open_database
from storage.models import (
    AlertRow,
    DeliveryRow,
    DocumentRow,
    FetchLogRow,
    MatchRow,
    SightingRow,
    SourceRow,
    StoryRow,
)

SOURCES = [f"src-{i:02d}" for i in range(40)]
DOCS_PER_STORY = 5
BATCH = 5000
EVIDENCE = (
    "Meituan confirmed on Thursday that LongCat-2.0 was pre-trained on Huawei Ascend 910C accelerators."
)
SPANS = [[35, 46, "LongCat-2.0"], [51, 62, "pre-train*"], [66, 72, "Huawei"], [73, 79, "Ascend"]]


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def _bulk(db: Database, model: Any, rows: list[dict[str, Any]]) -> None:
    with db.write() as s:
        for i in range(0, len(rows), BATCH):
            s.execute(insert(_table(model)), rows[i : i + BATCH])


def build(db: Database, documents: int, alerts: int) -> int:
    """Fill the database; returns the id of a story with documents, matches and alerts."""
    now = datetime.now(UTC)
    stories = documents // DOCS_PER_STORY
    _bulk(
        db,
        SourceRow,
        [{"id": s, "kind": "feed", "url": f"https://{s}.example/feed", "health": "ok"} for s in SOURCES],
    )
    _bulk(
        db,
        StoryRow,
        [
            {
                "id": i,
                "title": f"Story {i}",
                "first_source_id": SOURCES[i % 40],
                "first_seen": now - timedelta(minutes=i),
                "updated_at": now - timedelta(minutes=i),
            }
            for i in range(1, stories + 1)
        ],
    )
    docs = []
    for d in range(1, documents + 1):
        story = (d - 1) // DOCS_PER_STORY + 1
        docs.append(
            {
                "id": d,
                "canonical_url": f"https://news.example/{d}",
                "url": f"https://news.example/{d}",
                "source_id": SOURCES[d % 40],
                "title": f"Article {d} about LongCat-2.0",
                "text": f"{EVIDENCE} Body {d}.",
                "content_hash": hashlib.sha256(str(d).encode()).hexdigest(),
                "discovered": now - timedelta(minutes=story),
                "language": "en",
                "origin": "article",
                "story_id": story,
            }
        )
    _bulk(db, DocumentRow, docs)
    _bulk(
        db,
        SightingRow,
        [
            {
                "source_id": SOURCES[d % 40],
                "entry_id": f"e{d}",
                "document_id": d,
                "url": f"https://news.example/{d}",
                "seen_at": now,
            }
            for d in range(1, documents + 1)
        ],
    )
    story_of_alert = [1 + (a * stories) // alerts for a in range(alerts)]
    _bulk(
        db,
        AlertRow,
        [
            {
                "id": a + 1,
                "rule_id": f"longcat.rule-{a % 5}",
                "story_id": story,
                "evidence_hash": f"h{a}",
                "group_key": f"g{a}",
                "title": "LongCat-2.0: a chip vendor is named",
                "severity": ("high", "medium", "low")[a % 3],
                "evidence": EVIDENCE,
                "document_id": (story - 1) * DOCS_PER_STORY + 1,
                "source_count": 2,
                "details": {
                    "status": "asserted",
                    "spans": SPANS,
                    "captures": {"vendor": "Huawei"},
                    "headline": f"Story {story}",
                    "link": "https://news.example/1",
                    "sources": [{"source_id": SOURCES[story % 40], "url": "https://news.example/1"}],
                },
                "created_at": now - timedelta(seconds=a),
            }
            for a, story in enumerate(story_of_alert)
        ],
    )
    _bulk(
        db,
        MatchRow,
        [
            {
                "document_id": (story - 1) * DOCS_PER_STORY + 1,
                "story_id": story,
                "rule_id": f"longcat.rule-{a % 5}",
                "severity": "high",
                "status": "asserted",
                "evidence": EVIDENCE,
                "evidence_hash": f"h{a}",
                "spans": {"spans": SPANS},
                "alert_id": a + 1,
                "created_at": now,
            }
            for a, story in enumerate(story_of_alert)
        ],
    )
    _bulk(
        db,
        DeliveryRow,
        [
            {
                "idempotency_key": f"k{a}-{ch}",
                "channel": ch,
                "kind": "alert",
                "alert_id": a + 1,
                "payload": {},
                "state": "sent" if ch == "slack" else "failed",
                "created_at": now,
            }
            for a in range(alerts)
            for ch in ("slack", "email")
        ],
    )
    _bulk(
        db,
        FetchLogRow,
        [
            {
                "source_id": s,
                "url": "https://x.example/feed",
                "started_at": now - timedelta(hours=h),
                "status": "ok",
                "new_documents": (h * 7) % 11,
            }
            for s in SOURCES
            for h in range(0, 14 * 24, 3)
        ],
    )
    return story_of_alert[-1]


class StatementCounter:
    """Counts SQL statements on both engines of a Database (the app's reads and writes)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self._lock = threading.Lock()
        for engine in {id(e): e for e in (db.engine, db.read_engine)}.values():
            event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        with self._lock:
            self.count += 1


def measure(call: Callable[[], Any], counter: StatementCounter, rounds: int) -> tuple[float, float, int]:
    """(median ms, p90 ms, SQL statements per call); the first call warms caches and is not timed."""
    call()
    times = []
    before = counter.count
    for _ in range(rounds):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    per = (counter.count - before) / rounds
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1], round(per)


def naive_page(db: Database) -> None:
    """The baseline: 50 alerts, then a query per alert for deliveries and one for its story's sources."""
    with db.read() as s:
        rows = s.scalars(select(AlertRow).order_by(AlertRow.created_at.desc()).limit(50)).all()
        for r in rows:
            s.execute(
                select(DeliveryRow.channel, DeliveryRow.state).where(DeliveryRow.alert_id == r.id)
            ).all()
            s.execute(
                select(SightingRow.source_id)
                .join(DocumentRow, DocumentRow.id == SightingRow.document_id)
                .where(DocumentRow.story_id == r.story_id)
            ).all()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--documents", type=int, default=100_000)
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = parse_settings(f'database: "sqlite:///{tmp}/bench.db"\n')
        db = open_database(settings.database_url)
        t = time.perf_counter()
        story = build(db, args.documents, args.alerts)
        took = time.perf_counter() - t
        print(f"built {args.documents:,} documents and {args.alerts:,} alerts in {took:.1f} s")
        counter = StatementCounter(db)
        server = WebServer(
            create_app(settings, db), bind("127.0.0.1:0", has_token=False, key="bench")
        ).start()
        try:
            with httpx.Client(base_url=f"http://{server.address}", timeout=30) as client:
                _wait(client)

                def get(path: str) -> Callable[[], Any]:
                    def call() -> None:
                        r = client.get(path)
                        assert r.status_code == 200, (path, r.status_code, r.text[:200])

                    return call

                rows = [
                    ("developments page  /", *measure(get("/"), counter, args.rounds)),
                    (
                        f"story page  /stories/{story}",
                        *measure(get(f"/stories/{story}"), counter, args.rounds),
                    ),
                    (
                        "API  /api/v1/developments?limit=50",
                        *measure(get("/api/v1/developments?limit=50"), counter, args.rounds),
                    ),
                    (
                        "API  /api/v1/stories?limit=50",
                        *measure(get("/api/v1/stories?limit=50"), counter, args.rounds),
                    ),
                    (
                        "API  /api/v1/developments?limit=200",
                        *measure(get("/api/v1/developments?limit=200"), counter, args.rounds),
                    ),
                ]
                naive = measure(lambda: naive_page(db), counter, args.rounds)
                ours = measure(
                    lambda: __import__("storage.outbox_admin", fromlist=["x"]).alerts_page(db, limit=50),
                    counter,
                    args.rounds,
                )
        finally:
            server.stop()
        print(f"\n{'request':45} {'median ms':>10} {'p90 ms':>8} {'SQL/request':>12}")
        for name, median, p90, sql in rows:
            flag = "" if median < 100 else "  (over the 100 ms target)"
            print(f"{name:45} {median:10.1f} {p90:8.1f} {sql:12d}{flag}")
        print("\nthe page of 50 alerts as a library call, against the naive baseline (same process):")
        print(f"  storage.outbox_admin.alerts_page: {ours[0]:6.1f} ms, {ours[2]} SQL statements")
        print(f"  naive (query per alert):          {naive[0]:6.1f} ms, {naive[2]} SQL statements")
        print(
            f"  ratio: {naive[0] / ours[0]:.1f}x faster, {naive[2] / max(ours[2], 1):.0f}x fewer statements"
        )


def _wait(client: httpx.Client) -> None:
    for _ in range(100):
        try:
            client.get("/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.05)


if __name__ == "__main__":
    main()
