"""Sitemaps and robots.txt ``Sitemap:`` lines -> dated URLs. Pure: bytes in, frozen values out.

Reads the sitemaps.org protocol (``<urlset>`` and ``<sitemapindex>``), Google News sitemaps
(``news:publication_date``, ``news:title``), gzip-compressed sitemaps (``.xml.gz``, decoded bytes
capped) and plain-text sitemaps (one URL per line).

Why this XML parser: defusedxml is not installed, and sitemaps never need a DTD. So the stdlib
expat parser is driven directly, the way defusedxml does it: a DOCTYPE, an entity declaration or an
external entity reference anywhere in the document raises ``ParseError`` before anything is
expanded (no XXE, no billion laughs, no external DTD fetch), and parameter-entity parsing is off.
Nothing here opens a file or a connection. lxml would do too but is not a project dependency.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urljoin, urlsplit
from xml.parsers import expat

from protego import Protego

from crawler.bounds.markup import DEFAULT_MAX_DEPTH
from crawler.errors import NestingTooDeep, ParseError

__all__ = [
    "Sitemap",
    "SitemapEntry",
    "UnsafeXML",
    "in_window",
    "parse_sitemap",
    "parse_w3c_date",
    "robots_sitemaps",
]

MAX_BYTES = 50 * 1024 * 1024  # the protocol's limit for one uncompressed sitemap
MAX_ENTRIES = 50_000  # the protocol's limit of URLs per sitemap
_YEAR_MONTH = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


class UnsafeXML(ParseError):
    """The sitemap declares a DTD or entities: refused (a sitemap never needs them)."""


@dataclass(frozen=True)
class SitemapEntry:
    """One ``<url>`` (or one child ``<sitemap>`` of an index)."""

    loc: str
    lastmod: datetime | None = None
    published: datetime | None = None  # news:publication_date
    title: str | None = None  # news:title

    @property
    def date(self) -> datetime | None:
        """The best date for the window: the publication date, else the last modification."""
        return self.published or self.lastmod


@dataclass(frozen=True)
class Sitemap:
    kind: Literal["index", "urlset", "text"]
    entries: tuple[SitemapEntry, ...]
    truncated: bool = False  # more than MAX_ENTRIES entries: the rest was ignored


def robots_sitemaps(body: bytes, *, base: str) -> tuple[str, ...]:
    """The absolute http(s) ``Sitemap:`` URLs of a robots.txt body, in order, without repeats."""
    parser = Protego.parse(body.decode("utf-8", errors="replace"))
    urls = (urljoin(base, u.strip()) for u in parser.sitemaps)
    return tuple(dict.fromkeys(u for u in urls if urlsplit(u).scheme in ("http", "https")))


def parse_sitemap(
    body: bytes, *, url: str, max_bytes: int = MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Sitemap:
    """Parse one sitemap file fetched from ``url``; raises ParseError (or UnsafeXML) when it is not one."""
    data = _gunzip(body, url, max_bytes) if body[:2] == b"\x1f\x8b" else body
    if len(data) > max_bytes:
        raise ParseError(f"sitemap is {len(data)} bytes, over the {max_bytes}-byte cap", url=url)
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise ParseError("not a sitemap: empty body", url=url)
    if not head.startswith(b"<"):
        return _text_sitemap(head, url)
    return _XMLSitemap(url, max_depth).parse(data)


def parse_w3c_date(value: str | None) -> datetime | None:
    """W3C datetime (``2026``, ``2026-11``, ``2026-11-20``, ``2026-11-20T08:00:00+08:00``) -> aware UTC."""
    text = (value or "").strip()
    if not text:
        return None
    m = _YEAR_MONTH.match(text)
    try:
        if m:
            return datetime(int(m.group(1)), int(m.group(2) or 1), 1, tzinfo=UTC)
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def _gunzip(body: bytes, url: str, max_bytes: int) -> bytes:
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = dec.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ParseError(f"corrupt gzip sitemap: {exc}", url=url) from exc
    if len(data) > max_bytes or dec.unconsumed_tail:
        raise ParseError(f"gzip sitemap decodes past the {max_bytes}-byte cap", url=url)
    if not dec.eof:
        raise ParseError("truncated gzip sitemap", url=url)
    return data


def _text_sitemap(data: bytes, url: str) -> Sitemap:
    lines = data.decode("utf-8", errors="replace").splitlines()
    locs = [ln.strip() for ln in lines if ln.strip().lower().startswith(("http://", "https://"))]
    if not locs:
        raise ParseError("not a sitemap: neither XML nor a list of URLs", url=url)
    entries = tuple(SitemapEntry(loc) for loc in dict.fromkeys(locs))
    return Sitemap("text", entries[:MAX_ENTRIES], truncated=len(entries) > MAX_ENTRIES)


class _XMLSitemap:
    """A streaming expat reader that keeps only what a sitemap entry needs."""

    def __init__(self, url: str, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.url = url
        self.max_depth = max_depth
        self.root: str | None = None
        self.path: list[str] = []
        self.fields: dict[str, str] = {}
        self.text: list[str] = []
        self.entries: list[SitemapEntry] = []
        self.truncated = False

    def parse(self, data: bytes) -> Sitemap:
        p = expat.ParserCreate(namespace_separator=" ")
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = self._refuse_doctype
        p.EntityDeclHandler = self._refuse_entity
        p.ExternalEntityRefHandler = self._refuse_external
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self.text.append
        try:
            p.Parse(data, True)
        except expat.ExpatError as exc:
            raise ParseError(f"not a sitemap: invalid XML ({exc})", url=self.url) from exc
        if self.root not in ("urlset", "sitemapindex"):
            raise ParseError(f"not a sitemap: root element is <{self.root}>", url=self.url)
        kind: Literal["index", "urlset"] = "index" if self.root == "sitemapindex" else "urlset"
        return Sitemap(kind, tuple(self.entries), self.truncated)

    def _refuse_doctype(self, *_: object) -> None:
        raise UnsafeXML("refused: the sitemap declares a DOCTYPE (sitemaps need none)", url=self.url)

    def _refuse_entity(self, *_: object) -> None:
        raise UnsafeXML("refused: the sitemap declares an entity", url=self.url)

    def _refuse_external(self, *_: object) -> int:
        raise UnsafeXML("refused: the sitemap references an external entity", url=self.url)

    def _start(self, name: str, _attrs: dict[str, str]) -> None:
        local = _local(name)
        if self.root is None:
            self.root = local
        self.path.append(local)
        if len(self.path) > self.max_depth:  # a sitemap is 3 levels deep; expat keeps a frame per level
            raise NestingTooDeep(
                f"sitemap: nesting deeper than {self.max_depth} levels (extract.max_depth)", url=self.url
            )
        self.text.clear()
        if len(self.path) == 2:
            self.fields = {}

    def _end(self, name: str) -> None:
        local = _local(name)
        depth = len(self.path)
        self.path.pop()
        if depth > 2 and local in ("loc", "lastmod", "publication_date", "title"):
            self.fields.setdefault(local, "".join(self.text).strip())
        elif depth == 2 and local in ("url", "sitemap"):
            self._entry()
        self.text.clear()

    def _entry(self) -> None:
        loc = self.fields.get("loc", "")
        if not loc.lower().startswith(("http://", "https://")):
            return
        if len(self.entries) >= MAX_ENTRIES:
            self.truncated = True
            return
        f = self.fields
        self.entries.append(
            SitemapEntry(
                loc=loc,
                lastmod=parse_w3c_date(f.get("lastmod")),
                published=parse_w3c_date(f.get("publication_date")),
                title=f.get("title") or None,
            )
        )


def _local(name: str) -> str:
    return name.rsplit(" ", 1)[-1]


def in_window(entries: Iterable[SitemapEntry], since: datetime, until: datetime) -> list[SitemapEntry]:
    """Entries dated inside [since, until], plus every undated entry (the caller counts those)."""
    return [e for e in entries if e.date is None or since <= e.date <= until]
