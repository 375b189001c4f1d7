"""OPML, how feed readers trade subscriptions: read with listparser, write with ElementTree.

Reading is listparser's (the feedparser family's maintained OPML parser: nested folders, Miniflux,
Feedly, Inoreader and NetNewsWire exports); each feed becomes a :class:`NewSource` whose tags are
its folders and OPML ``category`` values. Writing gives an OPML 2.0 file of the feed sources, one
``outline`` per feed with the id as its title and the tags as its ``category``: importing the file
again gives the same sources.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

import listparser

from crawler.errors import ConfigError
from crawler.sources.edit import ExistingSource, NewSource, slug


def read_opml(data: bytes, *, name: str = "<opml>", tags: Sequence[str] = ()) -> list[NewSource]:
    """The feeds of an OPML document, in document order, each URL once; ``tags`` are added to each."""
    result = listparser.parse(data)
    if not result.feeds and result.bozo:
        raise ConfigError(f"not an OPML file: {result.bozo_exception}", file=name)
    out: dict[str, NewSource] = {}
    for feed in result.feeds:
        url = str(feed.get("url") or "").strip()
        if not url or url in out:
            continue
        title = str(feed.get("title") or "").strip()
        folders = [part for path in feed.get("categories") or () for part in path]
        feed_tags = dict.fromkeys(t for t in (*tags, *(slug(f) for f in folders)) if t)
        out[url] = NewSource(url=url, kind="feed", title=title, tags=tuple(feed_tags))
    return list(out.values())


def write_opml(sources: Sequence[ExistingSource], *, title: str = "storywatch sources") -> str:
    """An OPML 2.0 document of the feed ``sources`` (watched pages have no OPML form)."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC))
    body = ET.SubElement(root, "body")
    for src in sources:
        if src.kind != "feed":
            continue
        attrs = {"type": "rss", "text": src.id, "title": src.id, "xmlUrl": src.url}
        if src.tags:
            attrs["category"] = ",".join(src.tags)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
