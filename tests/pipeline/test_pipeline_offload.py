"""The fast paths of a pass: article worker process + writer thread, batched lookups and fetch records,
and kept-alive connections after 304. Each must give the results of the plain inline path."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crawler.config import Settings, parse_settings
from crawler.errors import CPUBudgetExceeded, ParseError, WorkerDied
from crawler.feeds import parse_feed
from crawler.fetch import Fetcher, FetchSettings
from crawler.pipeline import Offload, open_runtime, run_pass, text_params
from crawler.types import SourceSpec, Validators
from storage.db import open_database
from storage.ingest import IngestItem, ingest, lookup_many
from storage.models import DocumentRow, FetchLogRow, SourceRow
from storage.sources import source_state
from tests.sitekit import Site, article_page, rss

FEEDS, ENTRIES = 3, 4


def _site(site: Site, first_entry: int = 0) -> str:
    for f in range(FEEDS):
        items = []
        for e in range(first_entry, first_entry + ENTRIES):
            path = f"/a/{f}/{e}"
            words = f"story {f}-{e} " + " ".join(f"w{(f * 7 + e * 13 + i) % 97}" for i in range(60))
            site.add(
                path, article_page(f"Title {f}-{e}", [f"Paragraph one of {words}.", f"Then {words} again."])
            )
            items.append(
                {"title": f"Title {f}-{e}", "link": site.url(path), "guid": path, "description": "s"}
            )
        items.append(
            {
                "title": "Gone",
                "link": site.url(f"/gone/{f}"),
                "guid": f"gone{f}",
                "description": f"kept summary {f}",
            }
        )
        site.add(f"/feed/{f}", rss(items), "application/rss+xml")
    site.add("/robots.txt", "User-agent: *\nAllow: /\n", "text/plain")
    return "\n".join(f"  - {{id: f{f}, kind: feed, url: '{site.url(f'/feed/{f}')}'}}" for f in range(FEEDS))


def _settings(db_url: str, sources: str) -> Settings:
    return parse_settings(
        f'database: "{db_url}"\nfetch:\n  allow_private_networks: ["127.0.0.1/32"]\n  per_host_min_gap: 0s\n'
        f"  per_host_concurrency: 4\nsources:\n{sources}\n"
    )


def _pass(settings: Settings, workers: int) -> list[str]:
    async def go() -> list[str]:
        async with open_runtime(settings, cpu_workers=workers) as rt:
            outs = await run_pass(rt, settings.source_specs())
        return [o.result.status for o in outs]

    return asyncio.run(go())


def _stored(db_url: str) -> tuple[set[tuple[str, str, str, str, str]], int, int]:
    db = open_database(db_url)
    with db.read() as s:
        docs = {
            (r.canonical_url, r.title, r.text, r.content_hash, r.origin)
            for r in s.scalars(select(DocumentRow))
        }
        logs = s.scalar(select(func.count()).select_from(FetchLogRow)) or 0
        etags = s.scalar(select(func.count()).select_from(SourceRow).where(SourceRow.etag.is_not(None))) or 0
    db.dispose()
    return docs, logs, etags


def test_worker_process_and_writer_thread_store_what_the_inline_path_stores(tmp_path: Path) -> None:
    with Site() as site:
        sources = _site(site)
        inline_url, offload_url = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
        assert _pass(_settings(inline_url, sources), 0) == ["ok"] * FEEDS
        assert _pass(_settings(offload_url, sources), 1) == ["ok"] * FEEDS
        inline, offload = _stored(inline_url), _stored(offload_url)
        assert inline == offload
        docs, logs, etags = offload
        assert len(docs) == FEEDS * (ENTRIES + 1) and logs == FEEDS and etags == FEEDS
        assert sum(origin == "summary" for *_, origin in docs) == FEEDS  # the gone articles: feed summaries
        site.clear_log()
        assert _pass(_settings(offload_url, sources), 1) == ["not-modified"] * FEEDS
        assert sorted(h.status for h in site.hits) == [304] * FEEDS  # validators were saved with the records
        assert _stored(offload_url)[1] == 2 * FEEDS


def test_document_writes_use_the_rule_set_the_runtime_holds_at_write_time(tmp_path: Path) -> None:
    """The daemon may swap ``rt.rules``: writes after the swap must not run the writer process's
    rules (loaded at its start) but the new set (through the writer thread)."""
    from rules.engine import load_rules
    from storage.models import MatchRow

    rule = tmp_path / "para.yaml"
    rule.write_text(
        "version: 1\nrules:\n  - id: t.para\n    title: Paragraph\n    severity: medium\n"
        '    labels: {story: test}\n    query: |\n      "paragraph one"\n',
        "utf-8",
    )
    db_url = f"sqlite:///{tmp_path / 'x.db'}"

    async def go(site: Site, settings: Settings) -> None:
        async with open_runtime(settings, cpu_workers=1) as rt:
            assert [o.result.status for o in await run_pass(rt, settings.source_specs())] == ["ok"] * FEEDS
            rt.rules = load_rules([rule])
            _site(site, first_entry=ENTRIES)  # new articles in every feed
            outs = await run_pass(rt, settings.source_specs())
            assert [o.result.new_documents for o in outs] == [ENTRIES] * FEEDS

    with Site() as site:
        settings = _settings(db_url, _site(site))
        asyncio.run(go(site, settings))
    db = open_database(db_url)
    with db.read() as s:
        fired = s.scalar(select(func.count()).select_from(MatchRow).where(MatchRow.rule_id == "t.para"))
    db.dispose()
    assert fired == FEEDS * ENTRIES  # every article of the second pass, none of the first


def _doc_item(n: int, *, url: str | None = None, text: str | None = None) -> IngestItem:
    from crawler.types import Document

    now = datetime.now(UTC)
    body = text or f"Body number {n} with enough words to be a document of its own."
    canonical = url or f"http://example.org/{n}"
    from crawler.dedup import content_hash

    doc = Document(
        source_id="s",
        url=canonical,
        canonical_url=canonical,
        title=f"T{n}",
        text=body,
        discovered=now,
        content_hash=content_hash(body),
        aliases=(canonical, f"http://alias.example/{n}"),
        entry_id=str(n),
    )
    return IngestItem(doc, None)


def test_lookup_many_prefers_canonical_url_then_text_then_alias(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    first, second = _doc_item(1), _doc_item(2)
    settings = Settings()
    ids = [
        r.document_id
        for r in ingest(db, [first, second], alerts_cfg=settings.alerts, threshold=0.4, now=datetime.now(UTC))
    ]
    d1, d2 = first.document, second.document
    keys = [
        (d1.canonical_url, d2.content_hash, ()),  # URL of 1, text of 2: the URL wins
        ("http://example.org/new", d2.content_hash, ()),  # text of 2
        ("http://example.org/new", "nohash", ("http://x/none", "http://alias.example/1")),  # alias of 1
        ("http://example.org/new", "nohash", ("http://x/none",)),  # unknown
    ]
    found = lookup_many(db, keys)
    assert [k.document_id if k else None for k in found] == [ids[0], ids[1], ids[0], None]
    assert [lookup_many(db, [k])[0] for k in keys] == found  # batching changes no answer
    db.dispose()


def test_ingest_groups_writes_several_batches_in_one_transaction_each_with_its_own_time(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from crawler.dedup import fingerprint
    from storage.ingest import ingest_groups
    from storage.models import StoryRow

    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    words = " ".join(f"word{i}" for i in range(120))
    first, other = _doc_item(1, text=f"Opening line. {words}."), _doc_item(2)
    reprint = _doc_item(3, text=f"Opening line. {words}. Reprinted with permission.")
    a, b, c = (replace(i, fingerprint=fingerprint(i.document.text)) for i in (first, reprint, other))
    t1, t2 = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    settings = Settings()
    out = ingest_groups(db, [([a], t1), ([b, c], t2)], alerts_cfg=settings.alerts, threshold=0.4)
    assert [[r.status for r in group] for group in out] == [["new"], ["new", "new"]]
    assert (
        out[1][0].story_id == out[0][0].story_id != out[1][1].story_id
    )  # the reprint joined batch 1's story
    with db.read() as s:
        stories = {r.id: (r.first_seen, r.updated_at) for r in s.scalars(select(StoryRow))}
    assert stories == {out[0][0].story_id: (t1, t2), out[1][1].story_id: (t2, t2)}
    db.dispose()


def test_unseen_entries_are_those_without_a_sighting_for_that_source(tmp_path: Path) -> None:
    from storage.sources import sync_sources, unseen_entries

    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    sync_sources(db, [SourceSpec(id="s", kind="feed", url="http://example.org/feed")])
    stored = [_doc_item(n) for n in range(3)]  # sightings of source "s" with entry ids "0", "1", "2"
    ingest(db, stored, alerts_cfg=Settings().alerts, threshold=0.4, now=datetime.now(UTC))
    many = [str(n) for n in range(1200)]  # over one 500-id chunk
    assert unseen_entries(db, "s", ["1", "new", "2", "new"]) == {"new"}
    assert unseen_entries(db, "s", many) == set(many) - {"0", "1", "2"}
    assert unseen_entries(db, "other", ["1"]) == {"1"}
    assert unseen_entries(db, "s", []) == set()
    db.dispose()


def test_source_state_reads_saved_validators(tmp_path: Path) -> None:
    from crawler.types import SourceResult
    from storage.sources import record_fetch, sync_sources

    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    spec = SourceSpec(id="s1", kind="feed", url="http://example.org/feed")
    sync_sources(db, [spec])
    now = datetime.now(UTC)
    record_fetch(
        db,
        spec,
        SourceResult("s1", "ok", new_documents=2),
        now=now,
        http_status=200,
        validators=Validators('"v1"', "Mon"),
        body_hash="abc",
    )
    state = source_state(db, "s1")
    assert state.validators == Validators('"v1"', "Mon") and state.body_hash == "abc"
    record_fetch(db, spec, SourceResult("s1", "error", error="boom"), now=now)
    record_fetch(db, spec, SourceResult("s1", "error", error="boom"), now=now)
    record_fetch(db, spec, SourceResult("s1", "error", error="boom"), now=now)
    with db.read() as s:
        row = s.get(SourceRow, "s1")
        assert row is not None and row.error_streak == 3 and row.health == "failing" and row.etag == '"v1"'
        assert row.last_fetch_at is not None and row.last_fetch_at.tzinfo is not None
    record_fetch(db, spec, SourceResult("s1", "not-modified"), now=now)
    with db.read() as s:
        row = s.get(SourceRow, "s1")
        assert row is not None and row.error_streak == 0 and row.health == "ok" and row.last_error is None
    assert source_state(db, "unknown").validators == Validators()
    db.dispose()


class _NotModifiedServer:
    """Answers every request with 304 (keep-alive) and counts the TCP connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/feed"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n\r\n')


def test_304_responses_keep_the_connection_alive() -> None:
    server = _NotModifiedServer()
    settings = FetchSettings(allow_private_networks=("127.0.0.1/32",), per_host_min_gap=0)

    async def go() -> list[int]:
        async with Fetcher(settings) as fetcher:
            return [(await fetcher.fetch(server.url, validators=Validators('"e"'))).status for _ in range(5)]

    assert asyncio.run(go()) == [304] * 5
    assert server.connections == 1
    server.sock.close()


def test_feeds_parsed_in_the_worker_process_equal_inline_and_errors_keep_where() -> None:
    item = {"title": "One", "link": "http://example.org/1", "guid": "g1", "description": "d"}
    body = rss([item | {"pubDate": "Mon, 02 Nov 2026 10:00:00 GMT"}]).encode()
    offload = Offload(1)
    try:
        got = asyncio.run(offload.parse(body, url="http://example.org/f", headers={}, source_id="f1"))
        assert got == parse_feed(body, url="http://example.org/f", headers={}, source_id="f1")
        assert [e.entry_id for e in got.entries] == ["g1"]
        bad = b"\x00\x01 not a feed"
        try:
            asyncio.run(offload.parse(bad, url="http://example.org/x", headers={}, source_id="f2"))
        except ParseError as exc:  # raised in the worker, rebuilt here with its attributes
            assert (exc.url, exc.source_id) == ("http://example.org/x", "f2")
            assert str(exc).startswith("[f2] http://example.org/x: ")
        else:
            raise AssertionError("a body that is no feed must raise ParseError")
    finally:
        offload.close()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # in the worker process: a crash mid-document


def _spin(seconds: float) -> float:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass
    return seconds


def test_a_worker_that_dies_or_runs_past_its_budget_is_replaced_and_only_that_call_fails() -> None:
    body = rss([{"title": "One", "link": "http://example.org/1", "guid": "g1", "description": "d"}]).encode()
    offload = Offload(1, budget=1.0)

    async def go() -> None:
        first = await offload.parse(body, url="http://example.org/f", headers={}, source_id="f1")
        with pytest.raises(WorkerDied, match="worker process died"):
            await offload.cpu(_die, url="http://example.org/crash", source_id="f1")
        started = time.monotonic()
        with pytest.raises(CPUBudgetExceeded, match="CPU budget") as info:
            await offload.cpu(functools.partial(_spin, 30.0), url="http://example.org/slow", source_id="f1")
        assert time.monotonic() - started < 5.0
        assert (info.value.url, info.value.source_id) == ("http://example.org/slow", "f1")
        again = await offload.parse(body, url="http://example.org/f", headers={}, source_id="f1")
        assert [e.entry_id for e in again.entries] == [e.entry_id for e in first.entries] == ["g1"]
        assert offload.pooled  # still in worker processes: replaced, never inline on the loop
        assert await offload.build([], text_params(Settings())) == []

    try:
        asyncio.run(go())
    finally:
        offload.close()


def test_settled_heap_freezes_for_the_block_then_restores_the_collector() -> None:
    import gc

    from crawler.pipeline.workers import GC_OLD_THRESHOLD, GC_YOUNG_THRESHOLD, settled_heap

    before = gc.get_threshold()
    with settled_heap():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], GC_OLD_THRESHOLD)
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
