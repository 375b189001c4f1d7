"""No duplicate alerts under concurrency: bench/dedup.py's syndicated corpus (AEB articles, each
republished 3-6 times with syndication edits, shuffled) stored by 4 concurrent writer processes on
PostgreSQL gives the same stories (pairwise precision and recall) and the same alert count as one
writer fed the documents in the order the four stored them, and the relay delivers exactly one
notice per alert and channel.

Sized down to the first 30 stories (about 150 documents) so it runs in seconds."""

from __future__ import annotations

import hashlib
import io
import multiprocessing as mp
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from crawler.alerts.console import ConsoleChannel
from crawler.alerts.relay import Relay
from crawler.config import Settings
from crawler.dedup import canonicalize_url
from crawler.pipeline import Runtime, load_ruleset, prepare_many
from crawler.types import Document
from storage import ingest as store_ingest
from storage.db import open_database
from storage.models import AlertRow, DeliveryRow, DocumentRow
from tests.conftest import shared_path

pytestmark = pytest.mark.slow

RULES = (
    "version: 1\nrules:\n  - id: test.officials\n    title: Officials said\n    severity: medium\n"
    "    query: 'said'\n"
)
STORIES = 30
WRITERS = 4
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def corpus() -> list[Any]:
    from bench.dedup import build_corpus, load_articles

    articles = load_articles(shared_path("corpora", "aeb-dev", "ground-truth.json"))
    return build_corpus(articles[: STORIES + 5], seed=7, followups=5)


def settings(url: str, rules_path: str) -> Settings:
    return Settings.model_validate(
        {
            "database": url,
            "rules": {"paths": [rules_path]},
            "alerts": {"channels": {"ops": {"type": "console"}}, "notify_updates": False},
        }
    )


def document(d: Any) -> Document:
    url = f"https://{d.outlet}.example/story/{d.id}"
    text = d.text
    return Document(
        source_id=d.outlet,
        url=url,
        canonical_url=canonicalize_url(url),
        title=text.split("\n", 1)[0][:200],
        text=text,
        discovered=T0,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )


def write(url: str, rules_path: str, docs: list[Any], barrier: Any) -> None:
    """One writer process: each document in its own ingest transaction, as a worker's poll does."""
    s = settings(url, rules_path)
    db = open_database(url, migrate=False)
    rt = Runtime(s, db, None, load_ruleset(s))  # type: ignore[arg-type] # it never fetches
    barrier.wait()
    for d in docs:
        items = prepare_many(rt, [document(d)])
        store_ingest.ingest_groups(db, [(items, T0)], alerts_cfg=s.alerts, threshold=s.dedup.threshold)
    db.dispose()


def run_writers(url: str, rules_path: str, docs: list[Any], writers: int) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(writers)
    parts = [docs[i::writers] for i in range(writers)]
    procs = [ctx.Process(target=write, args=(url, rules_path, part, barrier)) for part in parts]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0


def outcome(url: str, docs: list[Any]) -> tuple[float, float, int, dict[int, int]]:
    from bench.dedup import pairwise

    db = open_database(url, migrate=False)
    with db.read() as s:
        story_of = dict(s.execute(select(DocumentRow.url, DocumentRow.story_id)).all())
        alerts = int(s.scalar(select(func.count()).select_from(AlertRow)) or 0)
    predicted = {d.id: story_of[f"https://{d.outlet}.example/story/{d.id}"] for d in docs}
    precision, recall = pairwise(docs, predicted)
    db.dispose()
    return precision, recall, alerts, predicted


def test_four_concurrent_writers_make_the_same_stories_and_alerts_as_one(tmp_path: Any, request: Any) -> None:
    docs = corpus()
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(RULES, "utf-8")
    many_url = request.getfixturevalue("pg_url")
    open_database(many_url).dispose()  # migrated once; the writers open it without migrating
    run_writers(many_url, str(rules_path), docs, WRITERS)
    # One writer replays the order in which the four stored the documents. What a story holds and
    # which sentence is new to it depend on arrival order by design (a reprint that arrives first
    # alerts with its own sentence; after the original, it corroborates), and four writers interleave
    # the corpus differently from one: only the same order compares concurrency with none.
    one_url = _second_schema(request)
    open_database(one_url).dispose()
    run_writers(one_url, str(rules_path), stored_order(many_url, docs), 1)
    p1, r1, alerts1, one = outcome(one_url, docs)
    p4, r4, alerts4, many = outcome(many_url, docs)
    print(
        f"1 writer: P {p1:.3f} R {r1:.3f}, {alerts1} alerts; {WRITERS} writers: P {p4:.3f} R {r4:.3f}, {alerts4}"
    )
    assert alerts1 > STORIES // 2, "the rule fires on most stories"
    assert p4 >= 0.95 and r4 >= 0.95, "dedup works under concurrency"
    assert partition(many) == partition(one), "the same stories (so the same pairwise precision and recall)"
    assert alerts4 == alerts1, "concurrency neither duplicated nor lost an alert"
    # the relay: exactly one notice per alert and channel
    db = open_database(many_url, migrate=False)
    s = settings(many_url, str(rules_path))
    buf = io.StringIO()
    relay = Relay(db, s.alerts, channels={"ops": ConsoleChannel("ops", s.alerts.channels["ops"], stream=buf)})
    import asyncio

    for _ in range(10):
        report = asyncio.run(relay.run_once(datetime.now(UTC)))
        if not report.attempts:
            break
    with db.read() as q:
        rows = q.execute(select(DeliveryRow.alert_id, DeliveryRow.channel, DeliveryRow.state)).all()
    per_alert = {(a, ch) for a, ch, _ in rows}
    assert len(rows) == len(per_alert) == alerts4
    assert {state for _, _, state in rows} == {"sent"}
    db.dispose()


def stored_order(url: str, docs: list[Any]) -> list[Any]:
    """``docs`` in the order the database gave them ids: each writer's transaction takes its band and
    alert locks before it inserts, so documents that could affect each other got their ids in the
    order their writes were serialised."""
    db = open_database(url, migrate=False)
    with db.read() as s:
        rank = {url: i for i, url in enumerate(s.scalars(select(DocumentRow.url).order_by(DocumentRow.id)))}
    db.dispose()
    return sorted(docs, key=lambda d: rank[f"https://{d.outlet}.example/story/{d.id}"])


def partition(predicted: dict[int, int]) -> set[frozenset[int]]:
    """The stories as sets of corpus document ids (story ids differ between databases)."""
    members: dict[int, set[int]] = {}
    for doc, story in predicted.items():
        members.setdefault(story, set()).add(doc)
    return {frozenset(m) for m in members.values()}


def _second_schema(request: Any) -> str:
    """Another fresh schema: the ``pg_url`` fixture gives one per test."""
    import uuid

    import psycopg

    from tests.conftest import PG_URL

    name = f"sw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")

    def drop() -> None:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")

    request.addfinalizer(drop)
    return f"{PG_URL}?options=-csearch_path%3D{name}"
