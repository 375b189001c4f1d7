"""Shared by the backfill and rescan tests: a real local site with history and a backfill's settings.

``HistorySite`` serves feeds and their archives, sitemaps, a search feed answering per after/before
query, a CDX API with snapshots, and a webhook receiver; ``make_settings`` is a config over it;
``backfill`` runs one (October by default); ``rows`` reads a table back.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import select

from crawler.backfill.job import BackfillOptions, BackfillReport, Window, run_backfill
from crawler.config import Settings, parse_settings
from storage.db import open_database
from tests.sitekit import article_page, atom, rss

DATA = Path(__file__).parent / "data" / "backfill"
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
