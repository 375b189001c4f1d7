"""crawler.feeds.discover: the feeds an HTML page announces, the usual feed paths, the region to watch."""

from __future__ import annotations

from crawler.feeds import feed_links, page_selector, usual_feed_urls


def test_feed_links_reads_alternate_links_of_feed_types_in_page_order_comments_last() -> None:
    html = b"""<html><head><base href="https://example.com/news/">
<link rel="alternate" type="application/rss+xml" title="Comments Feed" href="/comments/feed">
<link rel="alternate" type="application/atom+xml" title="Atom" href="atom.xml">
<link rel="alternate" type="application/feed+json" href="https://example.com/feed.json">
<link rel="alternate" type="application/rss+xml" href="https://example.com/rss">
<link rel="alternate" type="text/html" hreflang="fr" href="/fr/">
<link rel="alternate stylesheet" type="text/css" href="/dark.css">
<link rel="ALTERNATE" type="application/rss+xml; charset=utf-8" href="javascript:alert(1)">
<link rel="alternate" type="application/rss+xml" href="https://example.com/rss"></head></html>"""
    links = feed_links(html, "https://example.com/news/today")
    assert [(f.url, f.format) for f in links] == [
        ("https://example.com/news/atom.xml", "Atom"),
        ("https://example.com/feed.json", "JSON Feed"),
        ("https://example.com/rss", "RSS"),
        ("https://example.com/comments/feed", "RSS"),
    ]
    assert links[0].title == "Atom"


def test_usual_feed_urls_try_the_section_then_the_site_root() -> None:
    urls = usual_feed_urls("https://example.com/tech/ai/")
    assert urls[:3] == (
        "https://example.com/tech/ai/feed",
        "https://example.com/tech/ai/index.xml",
        "https://example.com/tech/ai/rss",
    )
    assert "https://example.com/feed" in urls and "https://example.com/atom.xml" in urls
    assert "https://example.com/index.xml" in urls and len(set(urls)) == len(urls)
    assert usual_feed_urls("https://example.com/")[0] == "https://example.com/feed"


def test_page_selector_picks_the_main_region_when_there_is_one() -> None:
    assert page_selector("<html><body><nav>x</nav><main>y</main></body></html>") == "main"
    assert page_selector("<html><body><article>y</article></body></html>") == "article"
    assert page_selector("<html><body><div>y</div></body></html>") == "body"
