"""Page metadata for the extractor: title, canonical URL, publication time, author, language.

Sources, in order of trust: OpenGraph / article:* meta tags, microdata (``itemprop``), JSON-LD (with
``@graph`` and nested lists), then the visible markup (``<h1>``, ``<title>``, ``<time datetime>``).
Everything here reads a parsed tree and returns values; nothing does I/O or mutates the tree.
A field the page does not carry (or carries in an unreadable form) is ``None``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

__all__ = ["PageMeta", "clean_title", "iter_jsonld", "parse_date", "read_meta"]

_PUBLISHED_KEYS = (
    "article:published_time",
    "og:article:published_time",
    "datepublished",
    "publishdate",
    "publish-date",
    "pubdate",
    "date",
    "dc.date",
    "dc.date.issued",
    "dcterms.created",
    "dcterms.issued",
    "sailthru.date",
    "parsely-pub-date",
)
_AUTHOR_KEYS = ("author", "article:author", "byl", "dc.creator", "sailthru.author", "parsely-author")
_ARTICLE_TYPES = {
    "article",
    "newsarticle",
    "blogposting",
    "reportagenewsarticle",
    "analysisnewsarticle",
    "opinionnewsarticle",
    "report",
    "scholarlyarticle",
    "techarticle",
    "liveblogposting",
    "webpage",
}
_TITLE_SEPARATORS = re.compile(r"\s+(?:\||-|–|—|::|·|•|»|«)\s+")
_BYLINE_PREFIX = re.compile(r"^\s*(?:by|von|par|por|di|door)\s+", re.IGNORECASE)
_DAY_FIRST = re.compile(r"^(\d{1,2})[./](\d{1,2})[./](\d{4})$")


@dataclass(frozen=True)
class PageMeta:
    title: str
    canonical_url: str | None
    published: datetime | None
    author: str | None
    language: str | None


def read_meta(tree: LexborHTMLParser, url: str) -> PageMeta:
    """Read every metadata field from ``tree`` (call before scripts are removed: JSON-LD lives there)."""
    meta = _meta_map(tree)
    jsonld = _main_jsonld(tree)
    return PageMeta(
        title=_title(tree, meta, jsonld),
        canonical_url=_canonical(tree, meta, url),
        published=_published(tree, meta, jsonld),
        author=_author(meta, jsonld),
        language=_language(tree, meta),
    )


def _meta_map(tree: LexborHTMLParser) -> dict[str, str]:
    """First non-empty ``content`` per lower-cased property / name / itemprop / http-equiv."""
    found: dict[str, str] = {}
    for node in tree.css("meta"):
        attrs = node.attributes
        content = (attrs.get("content") or "").strip()
        if not content:
            continue
        for key_attr in ("property", "name", "itemprop", "http-equiv"):
            key = attrs.get(key_attr)
            if key:
                found.setdefault(key.strip().lower(), content)
    return found


def iter_jsonld(tree: LexborHTMLParser) -> Iterator[dict[str, Any]]:
    """Every JSON-LD object of the page, flattening top-level lists and ``@graph``."""
    for node in tree.css('script[type="application/ld+json"]'):
        try:
            data = json.loads(node.text(deep=True) or "null", strict=False)
        except ValueError:  # malformed JSON-LD is common; it is simply not a source
            continue
        yield from _flatten(data, depth=0)


def _flatten(data: Any, depth: int) -> Iterator[dict[str, Any]]:
    if depth > 4:
        return
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item, depth + 1)
    elif isinstance(data, dict):
        yield data
        if "@graph" in data:
            yield from _flatten(data["@graph"], depth + 1)
        if isinstance(data.get("mainEntity"), dict | list):
            yield from _flatten(data["mainEntity"], depth + 1)


def _types(obj: dict[str, Any]) -> set[str]:
    kind = obj.get("@type")
    kinds = kind if isinstance(kind, list) else [kind]
    return {k.lower() for k in kinds if isinstance(k, str)}


def _main_jsonld(tree: LexborHTMLParser) -> dict[str, Any]:
    """The article object of the page's JSON-LD (an object with a datePublished as a fallback)."""
    fallback: dict[str, Any] = {}
    for obj in iter_jsonld(tree):
        kinds = _types(obj)
        if kinds & _ARTICLE_TYPES and "webpage" not in kinds:
            return obj
        if not fallback and (obj.get("datePublished") or "webpage" in kinds):
            fallback = obj
    return fallback


def _title(tree: LexborHTMLParser, meta: dict[str, str], jsonld: dict[str, Any]) -> str:
    site = meta.get("og:site_name") or meta.get("application-name")
    h1 = tree.css_first("h1")
    candidates = (
        meta.get("og:title"),
        meta.get("twitter:title"),
        _text_of(jsonld.get("headline")),
        h1.text(deep=True) if h1 is not None else None,
        _node_text(tree, "title"),
    )
    for candidate in candidates:
        cleaned = clean_title(candidate or "", site)
        if cleaned:
            return cleaned
    return ""


def clean_title(title: str, site_name: str | None = None) -> str:
    """Collapse whitespace and drop a trailing (or leading) site name: "Headline | Site" -> "Headline"."""
    title = " ".join(title.split())
    parts = _TITLE_SEPARATORS.split(title)
    if len(parts) < 2:
        return title
    site = (site_name or "").strip().lower()
    if site and parts[0].strip().lower() == site:
        return " - ".join(parts[1:]) if len(parts) > 2 else parts[1]
    head, last = title[: title.rfind(parts[-1])], parts[-1]
    head = _TITLE_SEPARATORS.sub(" - ", head).rstrip(" -|–—:·•»«")
    is_site = bool(site) and last.strip().lower() == site
    if is_site or (len(last.split()) <= 4 and len(head.split()) >= 2):
        return head.strip()
    return title


def _canonical(tree: LexborHTMLParser, meta: dict[str, str], url: str) -> str | None:
    link = tree.css_first('link[rel="canonical"]')
    for href in (link.attributes.get("href") if link is not None else None, meta.get("og:url")):
        if href and href.strip():
            resolved = urljoin(url, href.strip())
            if urlsplit(resolved).scheme in {"http", "https"}:
                return resolved
    return None


def _published(tree: LexborHTMLParser, meta: dict[str, str], jsonld: dict[str, Any]) -> datetime | None:
    candidates: list[str | None] = [meta.get("article:published_time"), meta.get("og:article:published_time")]
    item = tree.css_first('[itemprop="datePublished"]')
    if item is not None:
        attrs = item.attributes
        candidates.append(attrs.get("content") or attrs.get("datetime") or item.text(deep=True))
    candidates.append(_text_of(jsonld.get("datePublished")))
    candidates.extend(meta.get(key) for key in _PUBLISHED_KEYS[2:])
    for selector in ("time[pubdate][datetime]", "article time[datetime]", "time[datetime]"):
        node = tree.css_first(selector)
        if node is not None:
            candidates.append(node.attributes.get("datetime"))
    for candidate in candidates:
        parsed = parse_date(candidate) if candidate else None
        if parsed is not None:
            return parsed
    return None


def parse_date(value: str) -> datetime | None:
    """ISO 8601 (the web's usual form), RFC 2822 or dd.mm.yyyy; naive times are taken as UTC."""
    value = value.strip()
    if not value:
        return None
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T", 1) if "T" not in value else value)
    except ValueError:
        parsed = _parse_other(value)
    if parsed is None:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse_other(value: str) -> datetime | None:
    day_first = _DAY_FIRST.match(value)
    try:
        if day_first:
            day, month, year = (int(g) for g in day_first.groups())
            return datetime(year, month, day)
        return parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError):
        return None


def _author(meta: dict[str, str], jsonld: dict[str, Any]) -> str | None:
    names = [meta.get(key) for key in _AUTHOR_KEYS[:2]]
    names.append(_person_names(jsonld.get("author")))
    names.extend(meta.get(key) for key in _AUTHOR_KEYS[2:])
    for name in names:
        cleaned = _BYLINE_PREFIX.sub("", " ".join((name or "").split()))
        if cleaned and "://" not in cleaned and not cleaned.startswith("www."):
            return cleaned
    return None


def _person_names(value: Any) -> str | None:
    people = value if isinstance(value, list) else [value]
    names = [_text_of(p.get("name")) if isinstance(p, dict) else _text_of(p) for p in people]
    joined = ", ".join(n.strip() for n in names if n and n.strip())
    return joined or None


def _language(tree: LexborHTMLParser, meta: dict[str, str]) -> str | None:
    html = tree.css_first("html")
    candidates = (
        html.attributes.get("lang") if html is not None else None,
        html.attributes.get("xml:lang") if html is not None else None,
        meta.get("og:locale"),
        meta.get("content-language"),
        meta.get("language"),
    )
    for candidate in candidates:
        code = (candidate or "").split(",")[0].strip().replace("_", "-")
        if code and re.fullmatch(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*", code):
            return code
    return None


def _text_of(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def _node_text(tree: LexborHTMLParser, selector: str) -> str | None:
    node = tree.css_first(selector)
    return node.text(deep=True) if node is not None else None
