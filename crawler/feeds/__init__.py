"""Feed bytes -> entries: feedparser on screened bytes, JSON Feed, sitemaps.

``parse.parse_feed`` turns feed bytes into a ``crawler.types.ParsedFeed``; ``xml_screen`` keeps only
safe internal entities in the prolog first; ``sitemaps`` reads sitemaps and robots.txt lines;
``discover`` finds the feeds an HTML page announces (pure; the fetching is crawler.sources.probe).
"""

from __future__ import annotations

from crawler.feeds.chunks import FeedSplit, split_feed
from crawler.feeds.discover import FeedLink, feed_links, page_selector, page_title, usual_feed_urls
from crawler.feeds.parse import FEEDPARSER_OPTIONS, parse_feed
from crawler.feeds.sitemaps import Sitemap, UnsafeXML, parse_sitemap, robots_sitemaps
from crawler.feeds.xml_screen import screen_declarations

__all__ = [
    "FEEDPARSER_OPTIONS",
    "FeedLink",
    "FeedSplit",
    "Sitemap",
    "UnsafeXML",
    "feed_links",
    "page_selector",
    "page_title",
    "parse_feed",
    "parse_sitemap",
    "robots_sitemaps",
    "screen_declarations",
    "split_feed",
    "usual_feed_urls",
]
