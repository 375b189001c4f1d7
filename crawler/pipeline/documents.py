"""Steps 3-4 of a pass: a fetched feed or page becomes documents (articles fetched and extracted)."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from datetime import datetime

from crawler.dedup import pagediff, urls
from crawler.dedup import text as normalize
from crawler.errors import FetchError, ParseError
from crawler.extract import extract_region
from crawler.feeds import parse_feed, split_feed
from crawler.pipeline.runtime import Prepared, Runtime, text_params
from crawler.pipeline.workers import (
    ArticleJob,
    Built,
    article_document,
    build_articles,
    make_document,
)
from crawler.types import Document, FeedEntry, FeedHints, Fetched, ParsedFeed, SourceSpec
from storage import sources as store_sources

log = logging.getLogger("storywatch.pipeline")
MAX_WARNINGS = 50


FEED_CHUNK = 1000  # entries parsed at once: a big feed is parsed piece by piece (crawler.feeds.chunks)
ARTICLE_BATCH = 32  # new entries whose articles are fetched, then extracted, together


@dataclass(frozen=True)
class FeedDocuments:
    """What a feed poll produced: documents, warnings, the feed's hints, its new entries' times, and
    whether ``fetch.max_entries`` left new entries for the next polls (``capped``)."""

    docs: list[Prepared]
    warnings: list[str]
    hints: FeedHints
    times: tuple[datetime, ...]
    capped: bool = False


async def feed_documents(rt: Runtime, spec: SourceSpec, fetched: Fetched, now: datetime) -> FeedDocuments:
    """Parse (piece by piece), take at most ``fetch.max_entries`` new entries (newest first), then fetch
    their articles (I/O) and extract them (CPU, in the workers) a batch at a time: memory is bounded by
    a feed piece and a batch of pages, not by the feed."""
    fresh, warnings, hints, capped = await _new_entries(rt, spec, fetched)
    params = text_params(rt.settings)
    gate = asyncio.Semaphore(rt.settings.fetch.article_concurrency)

    async def one(entry: FeedEntry) -> _ArticleFetch:
        async with gate:
            return await _fetch_article(rt, spec, entry)

    docs: list[Prepared] = []
    for i in range(0, len(fresh), ARTICLE_BATCH):
        got = await asyncio.gather(*(one(e) for e in fresh[i : i + ARTICLE_BATCH]))
        jobs = [ArticleJob(spec, g.entry, g.page, now) for g in got if g.page is not None]
        built = iter(await rt.offload.build(jobs, params) if rt.offload else build_articles(jobs, params))
        for g in got:
            doc, warning = _entry_outcome(rt, spec, g, now, next(built) if g.page is not None else None)
            if warning:
                warnings.append(warning)
            if doc is not None:
                docs.append(doc)
    times = tuple(e.published or now for e in fresh)
    return FeedDocuments(docs, warnings, hints, times, capped)


async def _new_entries(
    rt: Runtime, spec: SourceSpec, fetched: Fetched
) -> tuple[list[FeedEntry], list[str], FeedHints, bool]:
    """The feed's unseen entries, newest first, at most ``fetch.max_entries`` of them (``capped`` when
    more wait). A big feed is parsed a piece of ``FEED_CHUNK`` entries at a time, only until enough
    new entries are found (feeds list their newest entries first)."""
    limit = rt.settings.fetch.max_entries
    cut = functools.partial(split_feed, fetched.body, FEED_CHUNK)  # ~20 ms per MB: not on the loop
    split = await rt.offload.cpu(cut, url=fetched.final_url, source_id=spec.id) if rt.offload else cut()
    count = len(split.runs) if split else 1
    pieces = split.pieces(fetched.body) if split else iter([fetched.body])
    fresh: list[FeedEntry] = []
    warnings: list[str] = []
    hints = FeedHints()
    taken: set[str] = set()
    read = 0
    for read, piece in enumerate(pieces, 1):
        feed = await _parse(rt, spec, fetched, piece)
        if read == 1:
            hints = feed.hints
        warnings.extend(w for w in feed.warnings if w not in warnings)
        keys = {e.entry_id: normalize.entry_key(e.entry_id, e.title, e.summary) for e in feed.entries}
        unseen = store_sources.unseen_entries(rt.db, spec.id, list(keys.values())) - taken
        new = [e for e in feed.entries if keys[e.entry_id] in unseen]
        taken.update(keys[e.entry_id] for e in new)
        fresh.extend(new)
        if len(fresh) >= limit:
            break
    capped = len(fresh) > limit or (len(fresh) == limit and read < count)
    if not capped:
        return fresh, warnings[:MAX_WARNINGS], hints, False
    warnings.append(
        f"{limit} new entries taken this poll (fetch.max_entries), newest first; the others come "
        "at the next polls (or with `storywatch backfill`)"
    )
    return _newest(fresh, limit), warnings[:MAX_WARNINGS], hints, True


def _newest(entries: list[FeedEntry], limit: int) -> list[FeedEntry]:
    """The ``limit`` newest entries (undated ones last), kept in the feed's order."""
    when = [e.published.timestamp() if e.published else float("-inf") for e in entries]
    chosen = sorted(sorted(range(len(entries)), key=lambda i: when[i], reverse=True)[:limit])
    return [entries[i] for i in chosen]


async def _parse(rt: Runtime, spec: SourceSpec, fetched: Fetched, body: bytes) -> ParsedFeed:
    url, headers, depth = fetched.final_url, fetched.headers, rt.settings.extract.max_depth
    if rt.offload is not None:
        return await rt.offload.parse(body, url=url, headers=headers, source_id=spec.id, max_depth=depth)
    return parse_feed(body, url=url, headers=headers, source_id=spec.id, max_depth=depth)


@dataclass(frozen=True)
class _ArticleFetch:
    entry: FeedEntry
    target: str | None
    page: Fetched | None
    warning: str | None = None


async def _fetch_article(rt: Runtime, spec: SourceSpec, entry: FeedEntry) -> _ArticleFetch:
    """The entry's article page (search-feed redirects unwrapped, robots.txt honoured), when wanted."""
    link = entry.link
    target = (urls.unwrap_search_redirect(link) or link) if link else None
    if not (target and spec.fetch_articles):
        return _ArticleFetch(entry, target, None)
    try:
        page = await rt.fetcher.fetch(target, source_id=spec.id, check_robots=True)
    except (FetchError, ParseError) as exc:
        return _ArticleFetch(entry, target, None, _unavailable(target, str(exc)))
    return _ArticleFetch(entry, target, page)


def _unavailable(target: str, why: str) -> str:
    return f"{target}: article unavailable ({why}); kept the feed summary"


def _entry_outcome(
    rt: Runtime, spec: SourceSpec, got: _ArticleFetch, now: datetime, built: Built | str | None
) -> tuple[Prepared | None, str | None]:
    """The article's document when it was extracted (``built``), else the feed's own summary."""
    warning = got.warning
    if isinstance(built, Built):
        return (built.document, built.analysis), None
    if isinstance(built, str) and got.target:
        warning = _unavailable(got.target, built)
    doc = _summary_document(rt, spec, got.entry, got.target, now)
    return ((doc, None) if doc is not None else None), warning


def _summary_document(
    rt: Runtime, spec: SourceSpec, entry: FeedEntry, target: str | None, now: datetime
) -> Document | None:
    if not (entry.summary or entry.title):
        return None
    url = target or f"urn:storywatch:{spec.id}:{entry.entry_id}"
    canonical = canonical_url_of(rt, url, None) if target else url
    return make_document(
        spec,
        now,
        url=url,
        canonical=canonical,
        title=entry.title,
        text=entry.summary or entry.title,
        published=entry.published,
        author=entry.author,
        language=None,
        aliases=tuple(u for u in (entry.link, target) if u),
        entry_id=normalize.entry_key(entry.entry_id, entry.title, entry.summary),
        origin="summary",
    )


async def entry_document(
    rt: Runtime, spec: SourceSpec, entry: FeedEntry, now: datetime
) -> tuple[Document | None, str | None]:
    """The document for one feed entry: the linked article, or the feed's own summary."""
    got = await _fetch_article(rt, spec, entry)
    failed: str | None = None
    if got.page is not None:
        try:
            return article_document(ArticleJob(spec, entry, got.page, now), text_params(rt.settings)), None
        except ParseError as exc:
            failed = str(exc)
    prepared, warning = _entry_outcome(rt, spec, got, now, failed)
    return (prepared[0] if prepared else None), warning



def canonical_url_of(rt: Runtime, url: str, page_canonical: str | None) -> str:
    extra = rt.settings.dedup.tracking_params
    return urls.canonicalize_url(url, extra_tracking=extra, page_canonical=page_canonical)


# --------------------------------------------------------------------------- pages


async def page_documents(
    rt: Runtime, spec: SourceSpec, fetched: Fetched, last: str | None, now: datetime
) -> tuple[list[Prepared], list[str]]:
    assert spec.selector is not None
    region_of = functools.partial(
        extract_region,
        fetched.body,
        url=fetched.final_url,
        selector=spec.selector,
        content_type=fetched.headers.get("content-type"),
        max_depth=rt.settings.extract.max_depth,
    )
    if rt.offload is not None:  # in a worker process, under the CPU budget
        region = await rt.offload.cpu(region_of, url=fetched.final_url, source_id=spec.id)
    else:
        region = region_of()
    snapshot = pagediff.normalize_snapshot(region)
    change = pagediff.diff_snapshots(last, snapshot, ignore=spec.ignore_patterns)
    added = "\n".join(change.added)
    if last is None or change.changed:  # with workers (the daemon), the write waits in a thread
        save = functools.partial(store_sources.save_snapshot, rt.db, spec.id, snapshot, added or None, now)
        if rt.offload is not None:
            await asyncio.to_thread(save)
        else:
            save()
    if not change.added:
        return [], []
    doc = pagediff.page_document(spec, added, now=now)
    return [(doc, None)], []
