"""Feed discovery, the I/O part: fetch an address through the guarded Fetcher and say what it is.

A feed (it parses with crawler.parse) is itself the answer. An HTML page is read for the feeds it
announces (:func:`crawler.feeds.feed_links`), each of them fetched and parsed to keep
only real feeds; when it announces none that work, the usual addresses are tried (first hit
wins). A page with no feed at all can be watched as a page: the probe names the region to watch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from crawler.dedup import canonicalize_url
from crawler.errors import FetchError, ParseError
from crawler.feeds import feed_links, page_selector, page_title, parse_feed, usual_feed_urls
from crawler.fetch import Fetcher

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, "
    "text/xml;q=0.9, text/html;q=0.8, */*;q=0.5"
)


@dataclass(frozen=True)
class FoundFeed:
    """A feed that was fetched and parsed: where, its format (when announced), title, entry count."""

    url: str
    title: str
    entries: int
    format: str = ""


@dataclass(frozen=True)
class Probe:
    """What an address is: a feed (``feeds`` holds it), or a page with the feeds found for it."""

    url: str
    kind: Literal["feed", "page"]
    title: str
    feeds: tuple[FoundFeed, ...]
    selector: str | None = None  # for a page: the region to watch if no feed is chosen
    tried_usual: bool = False  # the usual feed addresses were tried


async def probe(fetcher: Fetcher, url: str, *, note: Callable[[str], None] = lambda _m: None) -> Probe:
    """Fetch ``url`` and classify it. FetchError when it cannot be fetched; ``note`` hears progress."""
    page = await fetcher.fetch(url, accept=FEED_ACCEPT)
    try:
        parsed = parse_feed(page.body, url=page.final_url, headers=page.headers)
    except ParseError:
        parsed = None
    if parsed is not None:
        found = FoundFeed(url, parsed.title, len(parsed.entries))
        return Probe(url, "feed", parsed.title, (found,))
    links = feed_links(page.body, page.final_url)
    feeds = await _verified(fetcher, [(link.url, link.format) for link in links], first_only=False)
    tried_usual = False
    if not feeds:
        note("no feed announced by the page; trying the usual feed addresses")
        feeds = await _verified(fetcher, [(u, "") for u in usual_feed_urls(page.final_url)], first_only=True)
        tried_usual = True
    return Probe(
        url, "page", page_title(page.body), feeds, selector=page_selector(page.body), tried_usual=tried_usual
    )


async def _verified(
    fetcher: Fetcher, candidates: list[tuple[str, str]], *, first_only: bool
) -> tuple[FoundFeed, ...]:
    """The candidates that fetch and parse as feeds, each once (by the canonical address reached)."""
    out: dict[str, FoundFeed] = {}
    for url, fmt in candidates:
        try:
            page = await fetcher.fetch(url, accept=FEED_ACCEPT)
            parsed = parse_feed(page.body, url=page.final_url, headers=page.headers)
        except (FetchError, ParseError):
            continue
        key = canonicalize_url(page.final_url)
        out.setdefault(key, FoundFeed(url, parsed.title, len(parsed.entries), fmt))
        if first_only:
            break
    return tuple(out.values())
