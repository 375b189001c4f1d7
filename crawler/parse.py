"""Feed bytes -> ParsedFeed: RSS 0.9x/1.0/2.0, Atom 0.3/1.0, RDF (feedparser) and JSON Feed 1.x (json).

Pure and synchronous: no network, no file system. feedparser is only ever handed a ``BytesIO`` (a str
may make it open a URL or a file). Safety rules applied before feedparser sees the bytes:

1. Bodies over ``max_bytes`` are refused (ParseError).
2. The body is transcoded to UTF-8 first (feedparser's own RFC 3023 rules: BOM, Content-Type charset,
   XML declaration), so the rules below see the bytes the XML parser will see.
3. Every ``<!DOCTYPE ...>`` (its end found quote- and bracket-aware; an unterminated one runs to the
   first start tag) is replaced by a rebuilt DOCTYPE holding only *safe* entity declarations, or removed
   when there are none. Safe: a general, internal entity (``<!ENTITY name "value">``) whose value is one
   character reference or at most 256 bytes with no ``& % < > " '``, and all safe entities together
   can add at most 1 MiB of text (references counted in the body). External (SYSTEM/PUBLIC) and
   parameter entities, nested references (billion laughs), oversized values (quadratic blow-up),
   ATTLIST/ELEMENT declarations and the external DTD id are dropped, with a warning.
4. ``<!ENTITY`` markup outside a DOCTYPE is never valid; it is removed (up to its ``>``).
Behind these, expat runs with external general entities off and its own amplification limit.

Titles, summaries and authors come out as plain text: feedparser sanitizes HTML, then tags are
stripped (script/style content dropped), entities unescaped and whitespace collapsed. Plain-text
values that contain tag-like markup are treated as HTML too (feeds mislabel their content types).
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
from feedparser.encodings import convert_to_utf8
from selectolax.lexbor import LexborHTMLParser

from crawler.errors import ParseError
from crawler.types import FeedEntry, FeedHints, ParsedFeed

__all__ = ["ARCHIVE_RELS", "DEFAULT_MAX_BYTES", "parse_feed"]

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
ARCHIVE_RELS = frozenset(
    {"prev-archive", "next-archive", "next", "previous", "first", "last", "current", "self"}
)
MIN_DATE = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=2)
MAX_WARNINGS = 50
MAX_ENTITY_VALUE = 256
MAX_ENTITY_EXPANSION = 1024 * 1024

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
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DECL = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_STRAY_ENTITY = re.compile(rb"<!ENTITY[^>]*>?", re.IGNORECASE)
_DOCTYPE_TOKEN = re.compile(rb"\"[^\"]*\"|'[^']*'|<!--.*?-->|[\[\]>]", re.DOTALL)
_START_TAG = re.compile(rb"<[A-Za-z_]")
_ENTITY_OPEN = re.compile(rb"<!ENTITY", re.IGNORECASE)
_SAFE_ENTITY = re.compile(
    rb"<!ENTITY\s+([A-Za-z_]\w*)\s+(?:\"(&#\d+;|&#x[0-9A-Fa-f]+;|[^&%<>\"']*)\"|'(&#\d+;|&#x[0-9A-Fa-f]+;|[^&%<>\"']*)')\s*>"
)
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
) -> ParsedFeed:
    """Parse a feed body (already decompressed) fetched from ``url``. Raises ParseError if not a feed."""
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    if len(body) > max_bytes:
        raise ParseError(
            f"feed body is {len(body)} bytes, over the {max_bytes}-byte cap", url=url, source_id=source_id
        )
    if not body.strip():
        raise ParseError("not a feed: empty body", url=url, source_id=source_id)
    base = urljoin(url, hdrs["content-location"]) if hdrs.get("content-location") else url
    moment = now or datetime.now(UTC)
    if body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        return _parse_json_feed(body, base=base, url=url, source_id=source_id, now=moment)
    return _parse_xml_feed(body, base=base, url=url, hdrs=hdrs, source_id=source_id, now=moment)


# ---------------------------------------------------------------------------------------- XML (feedparser)


def _parse_xml_feed(
    body: bytes, *, base: str, url: str, hdrs: Mapping[str, str], source_id: str | None, now: datetime
) -> ParsedFeed:
    warnings: list[str] = []
    data = _to_utf8(body, hdrs.get("content-type"), warnings)
    data = _screen_declarations(data, warnings)
    result = feedparser.parse(
        io.BytesIO(data),
        response_headers={"content-type": "application/xml; charset=utf-8", "content-location": base},
        resolve_relative_uris=True,
        sanitize_html=True,
    )
    bozo = result.get("bozo_exception") if result.get("bozo") else None
    if bozo is not None:
        warnings.append(f"ill-formed feed: {bozo}")
    feed = result.get("feed", {})
    title = _text(feed.get("title", ""), _detail_type(feed, "title"))
    raws = [_raw_from_feedparser(e) for e in result.get("entries", [])]
    if not raws and (not title or not result.get("version")):
        raise ParseError(_not_a_feed_reason(data, bozo), url=url, source_id=source_id)
    entries, entry_warnings = _build_entries(raws, base=base, now=now)
    return ParsedFeed(
        title=title,
        link=_http_url(feed.get("link"), base),
        entries=entries,
        warnings=_cap_warnings(warnings + entry_warnings),
        hints=_hints(feed, warnings),
        archive_links=_archive_links(feed.get("links", []), base),
    )


def _to_utf8(body: bytes, content_type: str | None, warnings: list[str]) -> bytes:
    """Transcode to UTF-8 with feedparser's RFC 3023 rules; record what it had to guess."""
    state: dict[str, Any] = {}
    data: bytes = convert_to_utf8({"content-type": content_type} if content_type else {}, body, state)
    if state.get("bozo"):
        warnings.append(f"encoding: {state.get('bozo_exception')}")
    return data


def _screen_declarations(data: bytes, warnings: list[str]) -> bytes:
    """Rebuild the DOCTYPE with safe entities only and drop every other declaration (module rules 3-4)."""
    if not _DECL.search(data):
        return data
    spans = _doctype_spans(data)
    kept: dict[bytes, bytes] = {}
    dropped = 0
    for start, end in spans:
        safe, unsafe = _safe_entities(data[start:end])
        dropped += unsafe
        for name, value in safe.items():
            kept.setdefault(name, value)
    if _expansion(kept, data) > MAX_ENTITY_EXPANSION:
        warnings.append(
            f"DOCTYPE: entity declarations could expand past {MAX_ENTITY_EXPANSION} bytes: removed"
        )
        kept = {}
    parts: list[bytes] = []
    pos = 0
    for i, (start, end) in enumerate(spans):
        gap, stray = _STRAY_ENTITY.subn(b" ", data[pos:start])
        parts += [gap, _rebuild_doctype(kept) if i == 0 else b""]
        dropped, pos = dropped + stray, end
    tail, stray = _STRAY_ENTITY.subn(b" ", data[pos:])
    if dropped + stray:
        warnings.append(
            f"DOCTYPE: removed {dropped + stray} unsafe entity declaration(s) "
            "(external, parameter, nested, oversized or misplaced)"
        )
    return b"".join([*parts, tail])


def _doctype_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each DOCTYPE; the end is found skipping quoted strings, comments and [subset]."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while (m := _DOCTYPE.search(data, pos)) is not None:
        end = _doctype_end(data, m.end())
        if end is None:
            tag = _START_TAG.search(data, m.end())
            end = tag.start() if tag else len(data)
        spans.append((m.start(), end))
        pos = max(end, m.end())
    return spans


def _doctype_end(data: bytes, pos: int) -> int | None:
    depth = 0
    for tok in _DOCTYPE_TOKEN.finditer(data, pos):
        ch = tok.group()
        if ch == b"[":
            depth += 1
        elif ch == b"]":
            depth = max(depth - 1, 0)
        elif ch == b">" and depth == 0:
            return tok.end()
    return None


def _safe_entities(doctype: bytes) -> tuple[dict[bytes, bytes], int]:
    """Safe entity declarations in one DOCTYPE, and how many declarations were not safe."""
    safe: dict[bytes, bytes] = {}
    for m in _SAFE_ENTITY.finditer(doctype):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        if len(value) <= MAX_ENTITY_VALUE:
            safe.setdefault(m.group(1), value)
    return safe, len(_ENTITY_OPEN.findall(doctype)) - len(safe)


def _expansion(entities: Mapping[bytes, bytes], data: bytes) -> int:
    return sum(data.count(b"&" + name + b";") * max(len(value), 1) for name, value in entities.items())


def _rebuild_doctype(entities: Mapping[bytes, bytes]) -> bytes:
    if not entities:
        return b""
    decls = b"".join(b'<!ENTITY %s "%s">\n' % (name, value) for name, value in entities.items())
    return b"\n<!DOCTYPE feed [\n" + decls + b"]>"


def _raw_from_feedparser(entry: Mapping[str, Any]) -> _RawEntry:
    summary = entry.get("summary", "")
    summary_type = _detail_type(entry, "summary")
    contents = entry.get("content") or []
    if not summary and contents:
        summary, summary_type = contents[0].get("value", ""), contents[0].get("type", "text/plain")
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    return _RawEntry(
        guid=(entry.get("id") or "").strip() or None,
        link=entry.get("link"),
        title=_text(entry.get("title", ""), _detail_type(entry, "title")),
        summary=_text(summary, summary_type),
        date=_from_struct_time(stamp),
        author=_text(entry.get("author", ""), "text/plain") or None,
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


def _not_a_feed_reason(data: bytes, bozo: object) -> str:
    head = data[:4096]
    if _HTML_SNIFF.search(head):
        return "not a feed: looks like HTML (a web page, not RSS/Atom/RDF)"
    detail = f" ({bozo})" if bozo is not None else ""
    return f"not a feed: no RSS, Atom or RDF channel, title or entries found{detail}"


# ---------------------------------------------------------------------------------------- JSON Feed


def _parse_json_feed(body: bytes, *, base: str, url: str, source_id: str | None, now: datetime) -> ParsedFeed:
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
    raws = [_raw_from_json(item) for item in items if isinstance(item, dict)]
    title = _text(_jstr(doc.get("title")), "text/plain")
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


def _raw_from_json(item: Mapping[str, Any]) -> _RawEntry:
    summary = _jstr(item.get("summary")) or _jstr(item.get("content_text"))
    plain = _text(summary, "text/plain") if summary else _text(_jstr(item.get("content_html")), "text/html")
    authors: list[Any] = item["authors"] if isinstance(item.get("authors"), list) else [item.get("author")]
    names = [_jstr(a.get("name")) for a in authors if isinstance(a, dict)]
    return _RawEntry(
        guid=_json_id(item.get("id")),
        link=_jstr(item.get("url")) or _jstr(item.get("external_url")) or None,
        title=_text(_jstr(item.get("title")), "text/plain"),
        summary=plain,
        date=_from_iso(_jstr(item.get("date_published")) or _jstr(item.get("date_modified"))),
        author=_text(", ".join(n for n in names if n), "text/plain") or None,
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


def _text(value: str, mime: str) -> str:
    """Plain text from a feed value: HTML stripped (script/style dropped), entities unescaped, one line."""
    if not value:
        return ""
    looks_html = mime in _HTML_TYPES or _TAG_LIKE.search(value) is not None
    plain = _html_to_text(value) if looks_html else html.unescape(value)
    return " ".join(_CONTROL.sub("", plain).split())


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
