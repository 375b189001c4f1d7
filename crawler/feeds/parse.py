"""Feed bytes -> ParsedFeed: RSS 0.9x/1.0/2.0, Atom 0.3/1.0, RDF (feedparser) and JSON Feed 1.x (json).

Pure and synchronous: no network, no file system. feedparser is only ever handed a ``BytesIO`` (a str
may make it open a URL or a file). Safety rules applied before feedparser sees the bytes:

1. Bodies over ``max_bytes`` are refused (ParseError).
2. The body is transcoded to UTF-8 first (feedparser's own RFC 3023 rules: BOM, Content-Type charset,
   XML declaration), so the screen sees the bytes the XML parser will see.
3. crawler.feeds.xml_screen rebuilds the prolog's DOCTYPE with safe internal entities only (no external or
   parameter entities, no nesting, bounded size and total expansion): XXE and entity bombs never reach
   the parser. Behind it, expat runs with external general entities off and its own amplification limit.
4. feedparser crashing on a hostile body (it does, on some: found by fuzzing) is a ParseError.

Titles, summaries and authors come out as plain text: feedparser sanitizes HTML, then tags are
stripped (script/style content dropped), entities unescaped and whitespace collapsed. Plain-text
values that contain tag-like markup are treated as HTML too (feeds mislabel their content types).
Identity: the guid/id verbatim (feedparser gets no base URI, so it cannot rewrite a permalink guid
against the feed's address), else "h:" + sha1(link + "\n" + title); duplicates keep the first.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
from feedparser.encodings import convert_to_utf8
from selectolax.lexbor import LexborHTMLParser

from crawler.bounds.markup import DEFAULT_MAX_DEPTH, check_depth, html_depth
from crawler.errors import ParseError
from crawler.feeds.xml_screen import screen_declarations
from crawler.types import FeedEntry, FeedHints, ParsedFeed

__all__ = ["ARCHIVE_RELS", "DEFAULT_MAX_BYTES", "parse_feed"]

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
ARCHIVE_RELS = frozenset(
    {"prev-archive", "next-archive", "next", "previous", "first", "last", "current", "self"}
)
MIN_DATE = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=2)
MAX_WARNINGS = 50

# What feedparser raises on some hostile bodies (found by fuzzing: chr() of an out-of-range character
# reference in the loose parser, a malformed gml:posList...). OSError/MemoryError are not caught.
_FEEDPARSER_BUGS = (
    ArithmeticError,
    AssertionError,
    AttributeError,
    LookupError,
    RecursionError,
    TypeError,
    ValueError,
)
_SY_PERIODS = {
    "hourly": 3600.0,
    "daily": 86400.0,
    "weekly": 604800.0,
    "monthly": 2592000.0,
    "yearly": 31536000.0,
}
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
_DROP_TAGS = ["script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "math"]
_BLOCK_CSS = (
    "p,div,br,li,ul,ol,dl,dt,dd,h1,h2,h3,h4,h5,h6,tr,td,th,table,blockquote,pre,hr,"
    "section,article,header,footer,aside,figure,figcaption,address"
)
_TAG_LIKE = re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>")
_RAW_TAG = re.compile(r"<(/?)(script|style|noscript|template)\b[^>]*>", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")  # and lone surrogates
_ABSOLUTE_HTTP = re.compile(r"\s*https?://", re.IGNORECASE)
_HTML_SNIFF = re.compile(rb"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)


@dataclass(frozen=True)
class _RawEntry:
    """One entry as read from the document, before identity, dates and dedup are settled."""

    guid: str | None
    link: str | None
    title: str
    summary: str
    date: datetime | None
    author: str | None


def parse_feed(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
    source_id: str | None = None,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> ParsedFeed:
    """Parse a feed body (already decompressed) fetched from ``url``. Raises ParseError if not a feed,
    NestingTooDeep when its XML nests deeper than ``max_depth``; an entry's HTML content that nests
    deeper is read with its tags stripped, without a parser (and a warning)."""
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    if len(body) > max_bytes:
        raise ParseError(
            f"feed body is {len(body)} bytes, over the {max_bytes}-byte cap", url=url, source_id=source_id
        )
    if not body.strip():
        raise ParseError("not a feed: empty body", url=url, source_id=source_id)
    base = urljoin(url, hdrs["content-location"]) if hdrs.get("content-location") else url
    moment = now or datetime.now(UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        return _parse_json_feed(body, base=base, url=url, source_id=source_id, now=moment, depth=max_depth)
    check_depth(body, max_depth, what="feed", url=url, xml=True)
    return _parse_xml_feed(
        body, base=base, url=url, hdrs=hdrs, source_id=source_id, now=moment, depth=max_depth
    )


# ---------------------------------------------------------------------------------------- XML (feedparser)


def _parse_xml_feed(
    body: bytes,
    *,
    base: str,
    url: str,
    hdrs: Mapping[str, str],
    source_id: str | None,
    now: datetime,
    depth: int,
) -> ParsedFeed:
    warnings: list[str] = []
    result, data = _run_feedparser(body, hdrs.get("content-type"), warnings, url=url, source_id=source_id)
    bozo = result.get("bozo_exception") if result.get("bozo") else None
    if bozo is not None:
        warnings.append(f"ill-formed feed: {bozo}")
    feed = result.get("feed", {})
    title = _text(feed.get("title", ""), _detail_type(feed, "title"), depth)
    raws = [_raw_from_feedparser(e, depth) for e in result.get("entries", [])]
    if not raws and (not title or (not result.get("version") and _looks_like_html(data))):
        raise ParseError(_not_a_feed_reason(data, bozo), url=url, source_id=source_id)
    hints = _hints(feed, warnings)
    entries, entry_warnings = _build_entries(raws, base=base, now=now)
    return ParsedFeed(
        title=title,
        link=_http_url(feed.get("link"), base),
        entries=entries,
        warnings=_cap_warnings(warnings + entry_warnings),
        hints=hints,
        archive_links=_archive_links(feed.get("links", []), base),
    )


def _run_feedparser(
    body: bytes, content_type: str | None, warnings: list[str], *, url: str, source_id: str | None
) -> tuple[Any, bytes]:
    """Transcode, screen, then feedparser on a BytesIO. Returns feedparser's result and the bytes it read."""
    with _feedparser_boundary(url, source_id):
        data = _to_utf8(body, content_type, warnings)
    data, screen_warnings = screen_declarations(data)
    warnings.extend(screen_warnings)
    # No base URI for feedparser: it would rewrite permalink guids into URLs relative to the feed's
    # address (ids must not depend on it); links are resolved later. Content URIs are not needed for
    # plain text, so feedparser does not resolve them.
    with _feedparser_boundary(url, source_id):
        result = feedparser.parse(io.BytesIO(data), **FEEDPARSER_OPTIONS)
    return result, data


# How feedparser is called on the screened UTF-8 body (bench/ingest.py times feedparser with these too).
FEEDPARSER_OPTIONS: dict[str, Any] = {
    "response_headers": {"content-type": "application/xml; charset=utf-8"},
    "resolve_relative_uris": False,
    "sanitize_html": True,
}


@contextmanager
def _feedparser_boundary(url: str, source_id: str | None) -> Iterator[None]:
    """Third-party boundary: feedparser crashing on a hostile body becomes a ParseError for that source."""
    try:
        yield
    except _FEEDPARSER_BUGS as exc:
        message = f"feedparser failed on this body: {type(exc).__name__}: {str(exc)[:200]}"
        raise ParseError(message, url=url, source_id=source_id) from exc


def _to_utf8(body: bytes, content_type: str | None, warnings: list[str]) -> bytes:
    """Transcode to UTF-8 with feedparser's RFC 3023 rules; record what it had to guess."""
    state: dict[str, Any] = {}
    data: bytes = convert_to_utf8({"content-type": content_type} if content_type else {}, body, state)
    if state.get("bozo"):
        warnings.append(f"encoding: {state.get('bozo_exception')}")
    return data


def _raw_from_feedparser(entry: dict[str, Any], depth: int) -> _RawEntry:
    summary = entry.get("summary", "")
    summary_type = _detail_type(entry, "summary")
    contents = entry.get("content") or []
    if not summary and contents:
        summary, summary_type = contents[0].get("value", ""), contents[0].get("type", "text/plain")
    # dict.get: FeedParserDict.get("updated_parsed") emits a DeprecationWarning when the key is absent
    stamp = dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed")
    link = entry.get("link")
    if link and link == entry.get("id") and not _ABSOLUTE_HTTP.match(link):
        link = None  # feedparser used the guid as the link, but a guid that is not a URL is no permalink
    return _RawEntry(
        guid=(entry.get("id") or "").strip() or None,
        link=link,
        title=_text(entry.get("title", ""), _detail_type(entry, "title"), depth),
        summary=_text(summary, summary_type, depth),
        date=_from_struct_time(stamp),
        author=_text(entry.get("author", ""), "text/plain", depth) or None,
    )


def _detail_type(node: Mapping[str, Any], key: str) -> str:
    detail = node.get(f"{key}_detail") or {}
    return str(detail.get("type") or "text/plain")


def _from_struct_time(stamp: time.struct_time | None) -> datetime | None:
    if stamp is None:
        return None
    try:
        return datetime(*stamp[:6], tzinfo=UTC)
    except (ValueError, OverflowError, TypeError):
        return None


def _hints(feed: Mapping[str, Any], warnings: list[str]) -> FeedHints:
    ttl = _positive_int(feed.get("ttl"), "ttl", warnings)
    period = (feed.get("sy_updateperiod") or "").strip().lower()
    frequency = _positive_int(feed.get("sy_updatefrequency"), "sy:updateFrequency", warnings)
    update: float | None = None
    if period or frequency:
        if period and period not in _SY_PERIODS:
            warnings.append(f"sy:updatePeriod {period!r} is not hourly/daily/weekly/monthly/yearly: ignored")
        else:
            update = _SY_PERIODS[period or "daily"] / (frequency or 1)
    return FeedHints(ttl_seconds=ttl * 60.0 if ttl else None, update_period_seconds=update)


def _positive_int(value: object, name: str, warnings: list[str]) -> int | None:
    if value is None or not str(value).strip():
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number <= 0:
        warnings.append(f"{name} {str(value)[:40]!r} is not a positive integer: ignored")
        return None
    return number


def _archive_links(links: Sequence[Mapping[str, Any]], base: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for link in links:
        rel, href = str(link.get("rel") or ""), _http_url(link.get("href"), base)
        if rel in ARCHIVE_RELS and href and rel not in found:
            found[rel] = href
    return found


def _looks_like_html(data: bytes) -> bool:
    return _HTML_SNIFF.search(data, 0, 4096) is not None


def _not_a_feed_reason(data: bytes, bozo: object) -> str:
    if _looks_like_html(data):
        return "not a feed: looks like HTML (a web page, not RSS/Atom/RDF)"
    detail = f" ({bozo})" if bozo is not None else ""
    return f"not a feed: no RSS, Atom or RDF channel, title or entries found{detail}"


# ---------------------------------------------------------------------------------------- JSON Feed


def _parse_json_feed(
    body: bytes, *, base: str, url: str, source_id: str | None, now: datetime, depth: int
) -> ParsedFeed:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, absurd nesting or numbers
        raise ParseError(
            f"not a feed: invalid JSON ({str(exc)[:200]})", url=url, source_id=source_id
        ) from exc
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise ParseError(
            "not a feed: JSON document without a jsonfeed.org version", url=url, source_id=source_id
        )
    items = doc.get("items") if isinstance(doc.get("items"), list) else []
    warnings = [
        f"JSON Feed: item {i} is not an object: skipped"
        for i, it in enumerate(items)
        if not isinstance(it, dict)
    ]
    raws = [_raw_from_json(item, depth) for item in items if isinstance(item, dict)]
    title = _text(_jstr(doc.get("title")), "text/plain", depth)
    if not raws and not title:
        raise ParseError("not a feed: JSON Feed with no title and no items", url=url, source_id=source_id)
    entries, entry_warnings = _build_entries(raws, base=base, now=now)
    links = [{"rel": "self", "href": doc.get("feed_url")}, {"rel": "next", "href": doc.get("next_url")}]
    return ParsedFeed(
        title=title,
        link=_http_url(_jstr(doc.get("home_page_url")), base),
        entries=entries,
        warnings=_cap_warnings(warnings + entry_warnings),
        archive_links=_archive_links([lk for lk in links if isinstance(lk["href"], str)], base),
    )


def _raw_from_json(item: Mapping[str, Any], depth: int) -> _RawEntry:
    summary = _jstr(item.get("summary")) or _jstr(item.get("content_text"))
    html_content = _jstr(item.get("content_html"))
    plain = _text(summary, "text/plain", depth) if summary else _text(html_content, "text/html", depth)
    authors: list[Any] = item["authors"] if isinstance(item.get("authors"), list) else [item.get("author")]
    names = [_jstr(a.get("name")) for a in authors if isinstance(a, dict)]
    return _RawEntry(
        guid=_json_id(item.get("id")),
        link=_jstr(item.get("url")) or _jstr(item.get("external_url")) or None,
        title=_text(_jstr(item.get("title")), "text/plain", depth),
        summary=plain,
        date=_from_iso(_jstr(item.get("date_published")) or _jstr(item.get("date_modified"))),
        author=_text(", ".join(n for n in names if n), "text/plain", depth) or None,
    )


def _json_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


def _jstr(value: object) -> str:
    return value if isinstance(value, str) else ""


def _from_iso(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# ---------------------------------------------------------------------------------------- shared


def _build_entries(
    raws: Sequence[_RawEntry], *, base: str, now: datetime
) -> tuple[tuple[FeedEntry, ...], list[str]]:
    """Settle identity (guid or hash of link+title), drop duplicate ids, check dates and links."""
    entries: list[FeedEntry] = []
    warnings: list[str] = []
    seen: set[str] = set()
    undated = 0
    for raw in raws:
        link = _http_url(raw.link, base)
        entry_id = raw.guid or _stable_id(link, raw.title, raw.summary)
        if entry_id in seen:
            warnings.append(f"duplicate entry id {entry_id[:120]!r}: kept the first")
            continue
        seen.add(entry_id)
        if raw.link and link is None:
            warnings.append(f"entry {entry_id[:120]!r}: link {raw.link[:120]!r} is not http(s): dropped")
        published = _sane_date(raw.date, now)
        if raw.date is not None and published is None:
            warnings.append(f"entry {entry_id[:120]!r}: absurd date {raw.date.isoformat()} ignored")
        undated += published is None
        entries.append(FeedEntry(entry_id, link, raw.title, raw.summary, published, raw.author))
    if undated:
        warnings.append(f"{undated} of {len(entries)} entries have no usable date")
    return tuple(entries), warnings


def _stable_id(link: str | None, title: str, summary: str) -> str:
    key = f"{link or ''}\n{title}" if (link or title) else f"\n\n{summary}"
    return "h:" + hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()


def _sane_date(value: datetime | None, now: datetime) -> datetime | None:
    if value is None or value < MIN_DATE or value > now + FUTURE_SLACK:
        return None
    return value


def _http_url(value: object, base: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        absolute = urljoin(base, value.strip())
        scheme = urlsplit(absolute).scheme
    except ValueError:  # e.g. an invalid IPv6 literal
        return None
    return absolute if scheme in ("http", "https") else None


def _text(value: str, mime: str, depth: int) -> str:
    """Plain text from a feed value: HTML stripped (script/style dropped), entities unescaped, one line.
    HTML nesting deeper than ``depth`` is flattened: its tags are stripped without a parser."""
    if not value:
        return ""
    looks_html = mime in _HTML_TYPES or _TAG_LIKE.search(value) is not None
    if looks_html and html_depth(value.encode("utf-8", "surrogatepass"), depth) > depth:
        plain = html.unescape(_TAG_LIKE.sub(" ", _without_raw(value)))
    else:
        plain = _html_to_text(value) if looks_html else html.unescape(value)
    return " ".join(_CONTROL.sub("", plain).split())


def _without_raw(markup: str) -> str:
    """``markup`` without the content of script/style/noscript/template elements, in one linear pass
    (an unclosed one drops the rest)."""
    kept: list[str] = []
    pos, inside = 0, None
    for m in _RAW_TAG.finditer(markup):
        name = m.group(2).lower()
        if inside is None and not m.group(1):
            kept.append(markup[pos : m.start()])
            inside = name
        elif inside == name and m.group(1):
            inside, pos = None, m.end()
    if inside is None:
        kept.append(markup[pos:])
    return " ".join(kept)


def _html_to_text(markup: str) -> str:
    if "<" not in markup:
        return html.unescape(markup)
    tree = LexborHTMLParser(markup)
    tree.strip_tags(_DROP_TAGS)
    for node in tree.css(_BLOCK_CSS):
        node.insert_before(" ")
        node.insert_after(" ")
    root = tree.root
    return root.text() if root is not None else ""


def _cap_warnings(warnings: list[str]) -> tuple[str, ...]:
    if len(warnings) <= MAX_WARNINGS:
        return tuple(warnings)
    return (*warnings[:MAX_WARNINGS], f"... and {len(warnings) - MAX_WARNINGS} more warnings")
