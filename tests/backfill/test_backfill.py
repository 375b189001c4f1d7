"""Backfill acceptance: archived/paged feeds, sitemaps, sliced search and CDX snapshots into one timeline.

The local site (``HistorySite``) is also used by tests/backfill/test_backfill_kill.py and tests/backfill/test_rescan.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from crawler.backfill.job import (
    BackfillOptions,
    BackfillReport,
    TokenBucket,
    Window,
    backfill_runtime,
    run_backfill,
)
from crawler.config import Settings, parse_settings
from crawler.errors import ParseError
from crawler.feeds import UnsafeXML, parse_sitemap
from crawler.pipeline import run_once
from storage.db import open_database
from storage.models import AlertRow, CheckpointRow, DeliveryRow, DocumentRow, MatchRow
from tests.sitekit import article_page, atom, rss

DATA = Path(__file__).parents[1] / "data" / "backfill"
OCTOBER = Window(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))
RULES = """version: 1
rules:
  - id: t.ascend
    title: Trained on Ascend
    severity: high
    query: '"trained on Ascend"'
"""
Answer = tuple[int, bytes, str]


# ----------------------------------------------------------------------------- the local site


class HistorySite:
    """A real local web site with history: feeds and their archives, sitemaps, a search feed that
    answers per after/before query, a CDX API with snapshots, and a webhook receiver.

    ``hold_after = N`` makes every request after the N-th wait (for the kill test)."""

    def __init__(self) -> None:
        self.static: dict[str, Answer] = {}
        self.dynamic: dict[str, Callable[[dict[str, str]], Answer]] = {}
        self.log: list[str] = []
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.hold_after: int | None = None
        self.reached, self.release = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body in two writes must not wait for a delayed ACK

            def do_GET(self) -> None:
                site._reply(self, site._get(self.path))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with site._lock:
                    site.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                site._reply(self, (200, b"ok", "text/plain"))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def add(
        self, path: str, body: str | bytes, ctype: str = "text/html; charset=utf-8", status: int = 200
    ) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.static[path] = (status, data.replace(b"{BASE}", self.base.encode()), ctype)

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for p in self.log if p == path)

    def _get(self, full: str) -> Answer:
        with self._lock:
            self.log.append(full)
            n = len(self.log)
        if self.hold_after is not None and n > self.hold_after:
            self.reached.set()
            self.release.wait(30)
        path, _, query = full.partition("?")
        if full in self.static:
            return self.static[full]
        if path in self.dynamic:
            return self.dynamic[path]({k: v[0] for k, v in parse_qs(query).items()})
        if path.startswith("/web/"):
            return self._snapshot(path)
        return self.static.get(path, (404, b"not found", "text/plain"))

    @staticmethod
    def _reply(req: BaseHTTPRequestHandler, answer: Answer) -> None:
        status, body, ctype = answer
        try:
            req.send_response(status)
            req.send_header("Content-Type", ctype)
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
        except OSError:
            pass  # the client was killed

    # the web archive: /web/<timestamp>id_/<original url>
    def _snapshot(self, path: str) -> Answer:
        ts = path.removeprefix("/web/").split("id_/", 1)[0]
        lines = SNAPSHOTS.get(ts)
        if lines is None:
            return 404, b"no snapshot", "text/plain"
        paras = "".join(f"<p>{line}</p>" for line in lines)
        page = (
            f"<html><body><div id='updates'>{paras}</div><div id='footer'>Visitors: {ts}</div></body></html>"
        )
        return 200, page.encode(), "text/html; charset=utf-8"


ARTICLES: dict[str, dict[str, Any]] = json.loads((DATA / "articles.json").read_text("utf-8"))
SNAPSHOTS: dict[str, list[str]] = json.loads((DATA / "snapshots.json").read_text("utf-8"))


def _when(path: str) -> datetime:
    return datetime.fromisoformat(ARTICLES[path]["published"])


def _rss_items(site: HistorySite, paths: list[str]) -> list[dict[str, str]]:
    return [
        {
            "title": ARTICLES[p]["title"],
            "link": site.base + p,
            "guid": f"urn:x{p}",
            "pubDate": format_datetime(_when(p)),
        }
        for p in paths
    ]


def _search(site: HistorySite) -> Callable[[dict[str, str]], Answer]:
    """A search engine: results dated in [after, before), plus one old result it always returns."""

    def answer(q: dict[str, str]) -> Answer:
        after = date.fromisoformat(q.get("after", "1990-01-01"))
        before = date.fromisoformat(q.get("before", "2100-01-01"))
        paths = [p for p in ("/n/1", "/n/2", "/n/3") if after <= _when(p).date() < before]
        return 200, rss(_rss_items(site, [*paths, "/n/old"]), title="search").encode(), "application/rss+xml"

    return answer


def _cdx(q: dict[str, str]) -> Answer:
    """The CDX API: a header row, then one row per snapshot between from and to (limit=-1: the last)."""
    assert q.get("output") == "json" and q.get("filter") == "statuscode:200" and q.get("collapse") == "digest"
    lo, hi = q.get("from", "0"), q.get("to", "9")
    stamps = [t for t in sorted(SNAPSHOTS) if lo <= t[: len(lo)] and t[: len(hi)] <= hi]
    if q.get("limit") == "-1":
        stamps = stamps[-1:]
    head = ["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"]
    rows = [head] + [["x", t, q["url"], "text/html", "200", f"D{t}", "100"] for t in stamps]
    return 200, json.dumps(rows).encode(), "application/json"


def _wordpress(site: HistorySite) -> Callable[[dict[str, str]], Answer]:
    pages = {"1": ["/wp/p1", "/wp/p2"], "2": ["/wp/p3", "/wp/p4"]}

    def answer(q: dict[str, str]) -> Answer:
        paths = pages.get(q.get("paged", "1"))
        if paths is None:
            return 404, b"<html><body>Page not found</body></html>", "text/html"
        return 200, rss(_rss_items(site, paths)).encode(), "application/rss+xml"

    return answer


def _next_paged(site: HistorySite) -> Callable[[dict[str, str]], Answer]:
    pages = {"1": ["/wp/p1", "/wp/p2"], "2": ["/wp/p3"], "3": ["/wp/p4"]}

    def answer(q: dict[str, str]) -> Answer:
        n = q.get("page", "1")
        entries = [
            {
                "title": ARTICLES[p]["title"],
                "link": site.base + p,
                "id": f"urn:nx{p}",
                "updated": ARTICLES[p]["published"],
            }
            for p in pages[n]
        ]
        body = atom(entries)
        if n in ("1", "2"):
            link = f'<link rel="next" href="{site.base}/nx/feed.xml?page={int(n) + 1}"/>'
            body = body.replace("<id>urn:x</id>", f"<id>urn:x</id>{link}", 1)
        return 200, body.encode(), "application/atom+xml"

    return answer


def history_site() -> HistorySite:
    site = HistorySite()
    for path, art in ARTICLES.items():
        site.add(path, article_page(art["title"], art["paragraphs"], published=art["published"]))
    for name, path in (
        ("feed.xml", "/feed.xml"),
        ("archive-3.xml", "/archive/3.xml"),
        ("archive-2.xml", "/archive/2.xml"),
        ("archive-1.xml", "/archive/1.xml"),
    ):
        site.add(path, (DATA / name).read_bytes(), "application/atom+xml")
    site.add("/robots.txt", (DATA / "robots.txt").read_bytes(), "text/plain")
    for name in ("sitemap_index.xml", "sitemap-1.xml", "sitemap-old.xml"):
        site.add(f"/{name}", (DATA / name).read_bytes(), "application/xml")
    urlset = (DATA / "sitemap-2.xml").read_bytes().replace(b"{BASE}", site.base.encode())
    site.add("/sitemap-2.xml.gz", gzip.compress(urlset), "application/x-gzip")
    site.dynamic["/search"] = _search(site)
    site.dynamic["/cdx"] = _cdx
    site.dynamic["/wp/feed"] = _wordpress(site)
    site.dynamic["/nx/feed.xml"] = _next_paged(site)
    site.add("/rep/feed", rss(_rss_items(site, ["/wp/p1"])), "application/rss+xml")
    return site


@pytest.fixture
def site() -> Iterator[HistorySite]:
    s = history_site()
    try:
        yield s
    finally:
        s.close()


STANDARD_SOURCES = """
  - {{id: blog, kind: feed, url: "{base}/feed.xml"}}
  - {{id: gsearch, kind: feed, url: "{base}/search?q=longcat",
     backfill_query: "{base}/search?q=longcat&after={{after}}&before={{before}}"}}
  - {{id: watch, kind: page, url: "{base}/watch", selector: "#updates"}}
"""


def config_text(
    tmp_path: Path, site: HistorySite, sources: str, *, rules: str = RULES, db: str = "sw.db"
) -> str:
    (tmp_path / "rules.yaml").write_text(rules, "utf-8")
    return f"""
database: "sqlite:///{tmp_path / db}"
fetch:
  allow_private_networks: ["127.0.0.1/32"]
  per_host_min_gap: 0s
  per_host_concurrency: 8
  deadline: 10s
rules:
  paths: ["{tmp_path / "rules.yaml"}"]
backfill:
  cdx_url: "{site.base}/cdx"
  snapshot_url: "{site.base}/web/{{timestamp}}id_/{{url}}"
  rate: 1000
  slice: 10d
alerts:
  channels:
    hook: {{type: webhook, url: "{site.base}/hook", rate_per_second: 1000}}
sources:
{sources.format(base=site.base)}
"""


def make_settings(tmp_path: Path, site: HistorySite, sources: str = STANDARD_SOURCES, **kw: Any) -> Settings:
    return parse_settings(config_text(tmp_path, site, sources, **kw), name="test.yaml")


def backfill(settings: Settings, **kw: Any) -> BackfillReport:
    deliver = kw.pop("deliver", False)
    opts = BackfillOptions(window=kw.pop("window", OCTOBER), **kw)
    return asyncio.run(run_backfill(settings, opts, deliver=deliver))


def rows(settings: Settings, model: Any) -> list[Any]:
    db = open_database(settings.database_url)
    try:
        with db.read() as s:
            return list(s.scalars(select(model)))
    finally:
        db.dispose()


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
