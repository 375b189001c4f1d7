"""Frozen dataclasses passed between pipeline stages. No I/O here.

Data flows one way::

    SourceSpec --fetch--> Fetched --parse--> ParsedFeed(FeedEntry...)
                                  --extract--> Article
    (FeedEntry + Article) --pipeline--> Document --match--> Match --alerts--> Alert/Delivery

Every type is immutable; stages build new values instead of mutating old ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

SourceKind = Literal["feed", "page"]
Health = Literal["new", "ok", "degraded", "failing", "stale"]
HitStatus = Literal["asserted", "hedged", "negated"]
Severity = Literal["info", "low", "medium", "high", "critical"]


@dataclass(frozen=True)
class SourceSpec:
    """One configured source (from the config file)."""

    id: str
    kind: SourceKind
    url: str
    interval: float = 900.0  # seconds, the starting/nominal poll interval
    min_interval: float = 60.0
    max_interval: float = 6 * 3600.0
    selector: str | None = None  # pages: CSS selector of the watched region
    tags: tuple[str, ...] = ()
    ignore_patterns: tuple[str, ...] = ()  # pages: regexes of volatile text to ignore
    fetch_articles: bool = True  # feeds: follow entry links and extract the article
    backfill_query: str | None = None  # search feeds: URL template with {after} / {before}
    enabled: bool = True


@dataclass(frozen=True)
class Validators:
    """HTTP cache validators remembered per URL for conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Fetched:
    """The result of one HTTP fetch (after redirects, decoding and caps)."""

    url: str  # the URL requested
    final_url: str  # the URL after redirects
    status: int
    headers: Mapping[str, str]  # lower-cased header names
    body: bytes  # decoded (decompressed) body, empty on 304
    fetched_at: datetime
    elapsed: float  # seconds
    redirects: tuple[str, ...] = ()
    validators: Validators = field(default_factory=Validators)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class FeedHints:
    """Polling hints a feed gives about itself (RSS ttl, sy:updatePeriod...)."""

    ttl_seconds: float | None = None
    update_period_seconds: float | None = None


@dataclass(frozen=True)
class FeedEntry:
    entry_id: str  # the guid, or a stable hash of link+title when missing
    link: str | None
    title: str
    summary: str  # plain text
    published: datetime | None
    author: str | None = None


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    link: str | None
    entries: tuple[FeedEntry, ...]
    warnings: tuple[str, ...] = ()  # bozo and similar, recorded, not fatal
    hints: FeedHints = field(default_factory=FeedHints)
    archive_links: Mapping[str, str] = field(default_factory=dict)  # rel -> href (prev-archive, next...)


@dataclass(frozen=True)
class Article:
    """Main text and metadata extracted from one HTML page."""

    url: str
    title: str
    text: str  # paragraphs separated by blank lines
    canonical_url: str | None = None
    published: datetime | None = None
    author: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Document:
    """A unit of text that rules read: an article, a feed summary, or text added to a page."""

    source_id: str
    url: str
    canonical_url: str
    title: str
    text: str
    discovered: datetime
    content_hash: str
    published: datetime | None = None
    aliases: tuple[str, ...] = ()
    author: str | None = None
    language: str | None = None
    origin: Literal["article", "summary", "page"] = "article"
    entry_id: str | None = None
    source_kind: SourceKind = "feed"
    source_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Span:
    start: int  # offsets into Match.evidence
    end: int
    term: str


@dataclass(frozen=True)
class Match:
    """One rule firing on one document, with the evidence that proves it."""

    rule_id: str
    title: str
    severity: Severity
    status: HitStatus
    evidence: str  # the evidence sentence
    spans: tuple[Span, ...] = ()
    captures: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    field: str = "body"  # which field the evidence came from
    # the rule's develops_on captures ("vendor=Huawei"): matches with the same key within the window
    # are one development, across stories and languages; None when the rule declares none
    development: str | None = None
    development_window: timedelta | None = None


@dataclass(frozen=True)
class PageChange:
    """What changed between two snapshots of a watched page."""

    added: tuple[str, ...]  # sentences/lines new in this snapshot
    removed: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


@dataclass(frozen=True)
class SourceResult:
    """The outcome of one source in one pass (for summaries, logs and status)."""

    source_id: str
    status: Literal["ok", "not-modified", "error", "skipped"]
    new_documents: int = 0
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    warnings: tuple[str, ...] = ()
    new_alerts: int = 0
