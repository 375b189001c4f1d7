"""Backfill acceptance: archived/paged feeds, sitemaps, sliced search and CDX snapshots into one timeline.

The local site (``HistorySite``) and the settings over it are in tests/backfillkit.py, shared with
tests/backfill/test_backfill_kill.py and tests/backfill/test_rescan.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from crawler.backfill.job import BackfillReport, TokenBucket, backfill_runtime
from crawler.config import Settings
from crawler.errors import ParseError
from crawler.feeds import UnsafeXML, parse_sitemap
from crawler.pipeline import run_once
from storage.db import open_database
from storage.models import AlertRow, CheckpointRow, DeliveryRow, DocumentRow, MatchRow
from tests.backfillkit import (
    ARTICLES,
    DATA,
    STANDARD_SOURCES,
    HistorySite,
    backfill,
    config_text,
    make_settings,
    rows,
)
from tests.sitekit import atom, rss


def by_method(report: BackfillReport) -> dict[tuple[str, str], Any]:
    return {(m.source_id, m.method): m for m in report.methods}


# ----------------------------------------------------------------------------- acceptance 1


def test_backfill_stores_exactly_the_documents_of_the_window(tmp_path: Path, site: HistorySite) -> None:
    settings = make_settings(tmp_path, site)
    report = backfill(settings, alerts="none")
    assert not report.failed, [m.error for m in report.failed]

    docs = rows(settings, DocumentRow)
    urls = {d.canonical_url.removeprefix(site.base) for d in docs if d.origin != "page"}
    assert urls == {
        "/blog/a1",
        "/blog/a2",
        "/blog/a3",
        "/blog/a4",
        "/blog/a5",  # archive chain
        "/news/s1",
        "/news/s2",
        "/news/s4",
        "/news/s6",  # sitemaps: lastmod/news date in window, undated
        "/n/1",
        "/n/2",
        "/n/3",
    }  # search slices
    pages = sorted((d.published, d.text) for d in docs if d.origin == "page")
    assert pages == [
        (datetime(2026, 10, 5, 12, tzinfo=UTC), "Update one: open weights were released today."),
        (
            datetime(2026, 10, 12, 12, tzinfo=UTC),
            "Update two: the team confirmed LongCat was trained on Ascend chips.",
        ),
        (datetime(2026, 10, 20, 12, tzinfo=UTC), "Update three: API pricing was announced for developers."),
    ]
    # archived pages are followed until the entries are older than --since; old sitemaps are never read
    assert site.hits("/archive/1.xml") == 1 and site.hits("/archive/0.xml") == 0
    assert site.hits("/sitemap-old.xml") == 0 and site.hits("/news/s7") == 0
    for outside in ("/blog/a6", "/blog/a7", "/news/s3", "/news/s5", "/n/old"):
        assert site.hits(outside) == 0, outside
    m = by_method(report)
    assert (m["blog", "archive"].pages, m["blog", "archive"].new) == (4, 5)
    assert (
        m["blog", "sitemap"].known == 1 and m["blog", "sitemap"].undated == 1
    )  # /blog/a1 came from the feed
    assert (m["gsearch", "search"].pages, m["gsearch", "search"].new) == (4, 3)  # 10-day slices of October
    assert (m["watch", "cdx"].pages, m["watch", "cdx"].new) == (4, 3)  # baseline before the window + 3
    assert {d.published for d in docs if d.canonical_url.endswith("/news/s6")} == {None}
    assert all(c.done for c in rows(settings, CheckpointRow))

    # the same backfill again: every method is complete, nothing is fetched or added
    before = len(site.log)
    again = backfill(settings, alerts="none")
    assert {m.status for m in again.methods} == {"skipped"}
    assert len(site.log) == before and len(rows(settings, DocumentRow)) == len(docs)

    # --restart: the indexes are read again, but no stored article is fetched or stored twice
    restart = backfill(settings, alerts="none", restart=True)
    assert restart.total("new") == 0 and restart.total("known") >= 12
    assert all(site.hits(p) == 1 for p in ("/blog/a1", "/news/s2", "/n/2")), "known articles were refetched"
    assert len(rows(settings, DocumentRow)) == len(docs)


def test_paged_feeds_follow_next_links_and_wordpress_pages(tmp_path: Path, site: HistorySite) -> None:
    sources = """
  - {{id: wp, kind: feed, url: "{base}/wp/feed"}}
  - {{id: nx, kind: feed, url: "{base}/nx/feed.xml"}}
  - {{id: rep, kind: feed, url: "{base}/rep/feed"}}
"""
    settings = make_settings(tmp_path, site, sources)
    report = backfill(settings, alerts="none", methods=("archive",), source_ids=("wp", "rep"))
    m = by_method(report)
    assert (m["wp", "archive"].pages, m["wp", "archive"].new) == (2, 4)  # ?paged=2, then ?paged=3 is a 404
    assert site.hits("/wp/feed?paged=3") == 1 and site.hits("/wp/feed?paged=4") == 0
    assert (m["rep", "archive"].pages, site.hits("/rep/feed?paged=2"), site.hits("/rep/feed?paged=3")) == (
        1,
        1,
        0,
    )

    settings2 = make_settings(tmp_path, site, sources, db="nx.db")
    nx = by_method(backfill(settings2, alerts="none", methods=("archive",), source_ids=("nx",)))[
        "nx", "archive"
    ]
    assert (nx.pages, nx.new, nx.status) == (3, 4, "ok")
    assert site.hits("/nx/feed.xml?paged=2") == 0  # `next` links win over guessing


def test_dry_run_counts_and_stores_nothing(tmp_path: Path, site: HistorySite) -> None:
    settings = make_settings(tmp_path, site)
    report = backfill(settings, dry_run=True)
    assert report.total("candidates") == 5 + 5 + 3 + 3  # a1 is counted by archive and sitemap alike
    assert rows(settings, DocumentRow) == [] and rows(settings, CheckpointRow) == []
    assert all(site.hits(p) == 0 for p in ARTICLES)


def _golden(name: str) -> bytes:
    return (DATA / name).read_bytes().replace(b"{BASE}", b"http://example.com")


def test_sitemap_parser_refuses_dtds_and_reads_news_and_gzip() -> None:
    for name in ("sitemap_xxe.xml", "sitemap_laughs.xml"):
        with pytest.raises(UnsafeXML):
            parse_sitemap((DATA / name).read_bytes(), url=name)
    news = parse_sitemap(_golden("sitemap-1.xml"), url="s1")
    assert news.kind == "urlset" and len(news.entries) == 4
    assert news.entries[1].published == datetime(2026, 10, 29, 2, tzinfo=UTC)
    assert news.entries[1].title == "Startup raises funds for robotics"
    packed = parse_sitemap(gzip.compress(_golden("sitemap_index.xml")), url="idx.gz")
    assert packed.kind == "index" and [e.lastmod for e in packed.entries][1] == datetime(
        2026, 10, 10, tzinfo=UTC
    )
    with pytest.raises(ParseError):
        parse_sitemap(gzip.compress(b"x" * 5000)[:40], url="truncated.gz")


def test_token_bucket_spaces_requests_at_the_rate() -> None:
    async def take(n: int, bucket: TokenBucket) -> float:
        start = time.monotonic()
        for _ in range(n):
            await bucket.take()
        return time.monotonic() - start

    elapsed = asyncio.run(take(6, TokenBucket(25.0)))
    assert elapsed >= 5 / 25 * 0.95  # the first token is free, then one every 1/rate seconds


def test_backfill_fetcher_gate_waits_for_the_bucket(tmp_path: Path, site: HistorySite) -> None:
    """Requests made at once through the backfill's Fetcher still go out one token at a time."""
    settings = make_settings(tmp_path, site)
    paths = list(ARTICLES)[:6]

    async def fetch_all() -> float:
        async with backfill_runtime(settings, rate=25.0) as rt:
            start = time.monotonic()
            await asyncio.gather(*(rt.fetcher.fetch(site.base + p) for p in paths))
            return time.monotonic() - start

    elapsed = asyncio.run(fetch_all())
    assert elapsed >= 5 / 25 * 0.95
    assert [site.hits(p) for p in paths] == [1] * 6


# ----------------------------------------------------------------------------- acceptance 3: alerts


def _flood(site: HistorySite) -> None:
    """200 matching feed entries over four archive pages, and two live feeds reusing some of them."""
    rng = random.Random(7)
    words = ["river", "copper", "lantern", "orbit", "maple", "quartz", "falcon", "ember", "harbor", "willow"]

    def entry(i: int) -> dict[str, str]:
        noise = " ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(25))
        when = datetime(2026, 10, 2, tzinfo=UTC) + timedelta(hours=3 * i)
        return {
            "title": f"Flood report {i}",
            "link": f"{site.base}/flood/item/{i}",
            "guid": f"urn:flood:{i}",
            "id": f"urn:flood:{i}",
            "updated": when.isoformat(),
            "pubDate": format_datetime(when),
            "summary": f"Report {i} {noise}. Sources told lab{i} that model{i} was trained on Ascend chips "
            f"in hall{i}. Then {noise[::-1]}.",
        }

    items = [entry(i) for i in range(200)]
    for page in range(4):
        chunk = items[page * 50 : (page + 1) * 50]
        body = atom([{**e, "link": e["link"]} for e in chunk])
        if page < 3:
            link = f'<link rel="prev-archive" href="{site.base}/flood/{page + 1}.xml"/>'
            body = body.replace("<id>urn:x</id>", f"<id>urn:x</id>{link}", 1)
        site.add("/flood/feed.xml" if page == 0 else f"/flood/{page}.xml", body, "application/atom+xml")
    fresh = {**entry(999), "title": "Fresh live report"}
    site.add(
        "/flood/live1.xml",
        rss([{**e, "description": e["summary"]} for e in items[:5]]),
        "application/rss+xml",
    )
    live2 = [
        {**e, "guid": f"live2:{e['guid']}", "description": e["summary"]} for e in [*items[100:110], fresh]
    ]
    site.add("/flood/live2.xml", rss(live2), "application/rss+xml")


FLOOD_SOURCES = """
  - {{id: flood, kind: feed, url: "{base}/flood/feed.xml", fetch_articles: false}}
  - {{id: live1, kind: feed, url: "{base}/flood/live1.xml", fetch_articles: false}}
  - {{id: live2, kind: feed, url: "{base}/flood/live2.xml", fetch_articles: false}}
"""


def _count(settings: Settings, model: Any, *where: Any) -> int:
    db = open_database(settings.database_url)
    try:
        with db.read() as s:
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)
    finally:
        db.dispose()


def test_backfill_sends_one_digest_and_never_repeats_live_alerts(tmp_path: Path, site: HistorySite) -> None:
    _flood(site)
    settings = make_settings(tmp_path, site, FLOOD_SOURCES)
    specs = {s.id: s for s in settings.source_specs()}
    # live first: five alerts sent one by one
    asyncio.run(run_once(settings, [specs["live1"]]))
    assert [h["x-storywatch-event"] for h, _ in site.posts] == ["alert"] * 5
    # the backfill finds 200 matching documents; the 5 stored live add nothing; ONE digest for the rest
    report = backfill(settings, source_ids=("flood",), methods=("archive",), deliver=True)
    assert (report.total("new"), report.total("known"), report.total("matches")) == (195, 5, 195)
    assert (
        _count(settings, MatchRow) == 200 and _count(settings, AlertRow, AlertRow.origin == "backfill") == 195
    )
    assert [h["x-storywatch-event"] for h, _ in site.posts[5:]] == ["digest"]
    # a live pass over a feed repeating backfilled articles: only the fresh one alerts
    asyncio.run(run_once(settings, [specs["live2"]]))
    assert [h["x-storywatch-event"] for h, _ in site.posts[6:]] == ["alert"]
    assert b"Fresh live report" in site.posts[-1][1] or b"hall999" in site.posts[-1][1]


def test_backfill_alerts_none_sends_nothing(tmp_path: Path, site: HistorySite) -> None:
    _flood(site)
    settings = make_settings(tmp_path, site, FLOOD_SOURCES)
    report = backfill(settings, source_ids=("flood",), methods=("archive",), alerts="none", deliver=True)
    assert report.total("new") == 200 and report.total("alerts") == 200
    assert _count(settings, AlertRow) == 200 and _count(settings, DeliveryRow) == 0
    assert site.posts == []


def test_backfill_alerts_all_sends_each_alert_like_live(tmp_path: Path, site: HistorySite) -> None:
    settings = make_settings(tmp_path, site)
    report = backfill(settings, source_ids=("gsearch", "watch"), alerts="all", deliver=True)
    assert report.total("alerts") == 2 and report.released == 0
    assert [h["x-storywatch-event"] for h, _ in site.posts] == ["alert", "alert"]
    assert {d.state for d in rows(settings, DeliveryRow)} == {"sent"}


# ----------------------------------------------------------------------------- the command line


def test_cli_backfill_json_and_help(tmp_path: Path, site: HistorySite) -> None:
    from crawler.backfill import METHODS
    from crawler.cli.backfill import METHODS as CLI_METHODS
    from crawler.cli.backfill import commands
    from crawler.cli.base import cli

    assert CLI_METHODS == METHODS
    for command in commands():
        cli.add_command(command)
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(config_text(tmp_path, site, STANDARD_SOURCES), "utf-8")
    runner = CliRunner()
    args = [
        "--config",
        str(cfg),
        "backfill",
        "--since",
        "2026-10-01",
        "--until",
        "2026-10-31T23:59:59",
        "--source",
        "gsearch",
        "--alerts",
        "none",
        "--json",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["totals"]["new"] == 3 and data["sources"][0]["method"] == "search"
    for name in ("backfill", "rescan"):
        help_text = runner.invoke(cli, [name, "--help"]).output
        assert "Examples:" in help_text and f"storywatch {name}" in help_text
    bad = runner.invoke(cli, ["--config", str(cfg), "backfill", "--since", "2026-10-01", "--source", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output
