"""Issue 2 acceptance: one real pass from feeds of every kind to stored, clean articles."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from crawler.config import Settings, parse_settings
from crawler.pipeline import run_once
from storage.db import open_database
from storage.models import DocumentRow, FetchLogRow
from tests.sitekit import Site, article_page, atom, rdf, rss

BOILERPLATE_WORDS = (
    "cookies",
    "Related stories",
    "Comments (3)",
    "Copyright 2026",
    "Share on",
    "dataLayer",
    "Accept all",
    "Technology",
)

ARTICLES = {
    "/news/chips-1": (
        "Meituan details its training cluster",
        [
            "Meituan on Monday published new details about the computing cluster used for its latest model, "
            "saying the system links tens of thousands of accelerator cards.",
            "The company said engineers spent months tuning communication libraries to keep the training "
            "run stable, and that memory per device was the main constraint they faced.",
            "Analysts said the disclosure was unusually detailed for a Chinese technology company.",
        ],
    ),
    "/news/bench-2": (
        "Leaderboard adds a new open model",
        [
            "A community leaderboard added a new open-weight model this week after collecting several "
            "thousand votes from users comparing answers side by side.",
            "The maintainers said the ranking would be updated daily as more votes arrive from testers.",
        ],
    ),
    "/news/rdf-3": (
        "Export rules tighten again",
        [
            "New export rules announced on Friday restrict the sale of several accelerator models, "
            "officials said in a statement published on the ministry website.",
            "Companies affected by the rules have ninety days to apply for licences, the statement said.",
        ],
    ),
    "/news/atom-4": (
        "Open weights released for a trillion-parameter model",
        [
            "The weights of a trillion-parameter mixture-of-experts model were released under a permissive "
            "licence, allowing researchers to run and study it on their own hardware.",
            "Early testers reported that the model needs more than a terabyte of memory in eight-bit form.",
        ],
    ),
    "/news/old-5": (
        "An RSS 0.91 story about data centres",
        [
            "A new data centre outside the city will host thousands of servers for cloud customers, "
            "the operator said, with construction expected to finish next spring.",
            "Local officials welcomed the investment but raised questions about water use and power supply.",
        ],
    ),
}


def _config(tmp_path: Path, db_url: str, site: Site, sources: str) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - id: test.cluster\n    title: Cluster details\n    severity: medium\n"
        "    query: '\"computing cluster\"'\n",
        "utf-8",
    )
    text = f"""
database: "{db_url}"
fetch:
  allow_private_networks: ["127.0.0.1/32"]
  per_host_min_gap: 0s
  per_host_concurrency: 8
  deadline: 10s
rules:
  paths: ["{rules}"]
alerts:
  channels:
    console: {{type: console}}
sources:
{sources}
"""
    return parse_settings(text, name="test.yaml")


@pytest.fixture
def site() -> Site:
    with Site() as s:
        for path, (title, paras) in ARTICLES.items():
            s.add(path, article_page(title, paras))
        s.add("/robots.txt", "User-agent: *\nDisallow: /private/\n", "text/plain")
        s.add("/private/secret", article_page("Secret", ["This page must never be fetched by the crawler."]))
        yield s


def _feeds(site: Site) -> str:
    u = site.url
    site.add(
        "/rss2",
        rss(
            [
                {"title": "Cluster", "link": u("/news/chips-1"), "guid": "g1", "description": "summary one"},
                {
                    "title": "Leaderboard",
                    "link": u("/news/bench-2?utm_source=rss&utm_medium=feed"),
                    "guid": "g2",
                },
                {
                    "title": "Gone",
                    "link": u("/news/missing"),
                    "guid": "g3",
                    "description": "The feed's own summary of an article whose page is gone.",
                },
                {
                    "title": "Robots says no",
                    "link": u("/private/secret"),
                    "guid": "g4",
                    "description": "Summary kept because robots.txt disallows the page.",
                },
            ]
        ),
        "application/rss+xml",
    )
    site.add("/rdf", rdf([{"title": "Export", "link": u("/news/rdf-3")}]), "application/rdf+xml")
    site.add(
        "/atom",
        atom([{"title": "Weights", "link": u("/news/atom-4"), "id": "tag:x,2026:4"}]),
        "application/atom+xml",
    )
    site.add("/rss091", rss([{"title": "DC", "link": u("/news/old-5")}], version="0.91"), "text/xml")
    return "\n".join(
        f"  - {{id: {sid}, kind: feed, url: '{u(path)}'}}"
        for sid, path in (("rss2", "/rss2"), ("rdf", "/rdf"), ("atom", "/atom"), ("rss091", "/rss091"))
    )


def _docs(db_url: str) -> dict[str, DocumentRow]:
    db = open_database(db_url)
    with db.read() as s:
        rows = {r.canonical_url: r for r in s.scalars(select(DocumentRow))}
    db.dispose()
    return rows


def test_once_stores_clean_articles_then_sends_conditional_requests(
    tmp_path: Path, db_url: str, site: Site
) -> None:
    settings = _config(tmp_path, db_url, site, _feeds(site))
    report = asyncio.run(run_once(settings, settings.source_specs()))
    assert not report.failed, [o.result.error for o in report.failed]

    docs = _docs(db_url)
    expected = {site.url(p) for p in ARTICLES} | {site.url("/news/missing"), site.url("/private/secret")}
    assert set(docs) == expected  # tracking parameters stripped: one canonical URL per article
    for path, (title, paras) in ARTICLES.items():
        doc = docs[site.url(path)]
        assert doc.title == title
        for para in paras:
            assert para in doc.text
        for junk in BOILERPLATE_WORDS:
            assert junk not in doc.text, (path, junk)
        assert doc.origin == "article"
    gone = docs[site.url("/news/missing")]
    assert (
        gone.origin == "summary" and gone.text == "The feed's own summary of an article whose page is gone."
    )
    assert docs[site.url("/private/secret")].origin == "summary"
    assert site.requests_to("/private/secret") == []  # robots.txt respected
    rss2 = next(o for o in report.outcomes if o.result.source_id == "rss2")
    assert any("article unavailable" in w for w in rss2.result.warnings)
    assert report.new_alerts == 1  # "computing cluster" appears in one article

    site.clear_log()
    again = asyncio.run(run_once(settings, settings.source_specs()))
    assert again.new_documents == 0 and again.new_alerts == 0
    feed_hits = [h for p in ("/rss2", "/rdf", "/atom", "/rss091") for h in site.requests_to(p)]
    assert len(feed_hits) == 4
    assert all(h.status == 304 and h.headers.get("if-none-match") for h in feed_hits)
    assert all(not p.startswith("/news/") for p in {h.path for h in site.hits})  # no article refetched
    assert set(_docs(db_url)) == expected


def test_a_broken_source_does_not_stop_the_others(tmp_path: Path, db_url: str, site: Site) -> None:
    site.add("/html-as-feed", "<html><body><p>not a feed</p></body></html>")
    site.add(
        "/rss-ok", rss([{"title": "DC", "link": site.url("/news/old-5"), "guid": "x"}]), "application/rss+xml"
    )
    sources = "\n".join(
        [
            f"  - {{id: broken, kind: feed, url: '{site.url('/html-as-feed')}'}}",
            f"  - {{id: missing, kind: feed, url: '{site.url('/nope')}'}}",
            "  - {id: closed, kind: feed, url: 'http://127.0.0.1:9/feed'}",
            f"  - {{id: ok, kind: feed, url: '{site.url('/rss-ok')}'}}",
        ]
    )
    settings = _config(tmp_path, db_url, site, sources)
    report = asyncio.run(run_once(settings, settings.source_specs()))
    by_id = {o.result.source_id: o.result for o in report.outcomes}
    assert by_id["ok"].status == "ok" and by_id["ok"].new_documents == 1
    for sid in ("broken", "missing", "closed"):
        assert by_id[sid].status == "error"
        assert sid in (by_id[sid].error or "")
    db = open_database(db_url)
    with db.read() as s:
        logged = {r.source_id: r.status for r in s.scalars(select(FetchLogRow))}
    assert logged == {"broken": "error", "missing": "error", "closed": "error", "ok": "ok"}
