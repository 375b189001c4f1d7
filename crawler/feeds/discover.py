"""Feed discovery, the pure part: which feed addresses an HTML page announces, and where else to look.

No I/O: :func:`feed_links` reads a page's ``<link rel="alternate">`` elements of the RSS, Atom and
JSON Feed types (the way Miniflux, NetNewsWire and every browser extension find a site's feed);
:func:`usual_feed_urls` lists the conventional paths to try when a page announces none;
:func:`page_selector` picks the region to watch when a page has no feed at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

FEED_TYPES = {
    "application/rss+xml": "RSS",
    "application/atom+xml": "Atom",
    "application/feed+json": "JSON Feed",
    "application/json": "JSON Feed",  # JSON Feed 1.0 pages announce it as plain JSON
    "application/rdf+xml": "RDF",
    "application/xml": "XML",
    "text/xml": "XML",
}
# Conventional feed paths (WordPress, Hugo, Jekyll, Ghost, Blogger...), tried in this order: at the
# site's root, after a few at the page's own directory (a WordPress category, a Hugo section).
USUAL_PATHS = ("/feed", "/rss", "/feed.xml", "/atom.xml", "/index.xml", "/rss.xml", "/index.rss")
SECTION_PATHS = ("/feed", "/index.xml", "/rss")
# The regions tried, in order, when a page without a feed is watched instead.
PAGE_SELECTORS = ("main", "article", "[role=main]", "#content", "body")


@dataclass(frozen=True)
class FeedLink:
    """One feed a page announces: its absolute URL, its format and the page's title for it."""

    url: str
    format: str  # RSS, Atom, JSON Feed, RDF, XML
    title: str = ""


def feed_links(html: bytes | str, base_url: str) -> tuple[FeedLink, ...]:
    """The feeds announced by ``<link rel="alternate" type="...">`` in ``html``, in page order.

    Relative hrefs resolve against ``<base href>`` (if any) and ``base_url``; only http(s) results
    are kept, each URL once. Comment feeds (a title or URL about comments) come last.
    """
    tree = LexborHTMLParser(html if isinstance(html, str) else html.decode("utf-8", "replace"))
    base = base_url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        base = _join(base_url, base_node.attributes.get("href") or "")
    found: dict[str, FeedLink] = {}
    for node in tree.css("link[rel][href]"):
        rels = (node.attributes.get("rel") or "").lower().split()
        kind = FEED_TYPES.get((node.attributes.get("type") or "").split(";")[0].strip().lower())
        if "alternate" not in rels or kind is None:
            continue
        url = _join(base, (node.attributes.get("href") or "").strip())
        if urlsplit(url).scheme in ("http", "https") and url not in found:
            found[url] = FeedLink(url, kind, " ".join((node.attributes.get("title") or "").split()))
    return tuple(sorted(found.values(), key=_is_comment_feed))


def _is_comment_feed(link: FeedLink) -> bool:
    text = f"{link.title} {link.url}".lower()
    return "comment" in text


def usual_feed_urls(page_url: str) -> tuple[str, ...]:
    """The conventional feed addresses of ``page_url``'s site (and of its directory, when it has one)."""
    parts = urlsplit(page_url)
    root = f"{parts.scheme}://{parts.netloc}"
    directory = parts.path.rstrip("/")
    urls = [root + directory + p for p in SECTION_PATHS] if directory else []
    urls += [root + p for p in USUAL_PATHS]
    page = page_url.rstrip("/")
    return tuple(u for u in dict.fromkeys(urls) if u.rstrip("/") != page)


def page_selector(html: bytes | str) -> str:
    """The first of :data:`PAGE_SELECTORS` that matches an element of ``html`` (``body`` at worst)."""
    tree = LexborHTMLParser(html if isinstance(html, str) else html.decode("utf-8", "replace"))
    for selector in PAGE_SELECTORS:
        if tree.css_first(selector) is not None:
            return selector
    return "body"


def page_title(html: bytes | str) -> str:
    """The page's ``<title>``, whitespace collapsed ("" when it has none)."""
    tree = LexborHTMLParser(html if isinstance(html, str) else html.decode("utf-8", "replace"))
    node = tree.css_first("title")
    return " ".join(node.text().split()) if node is not None else ""


def _join(base: str, ref: str) -> str:
    try:
        return urljoin(base, ref)
    except ValueError:
        return ref
