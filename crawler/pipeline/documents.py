"""Steps 3-4 of a pass: a fetched feed or page becomes documents (articles fetched and extracted)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from crawler.dedup import pagediff, urls
from crawler.dedup import text as normalize
from crawler.errors import FetchError, ParseError
from crawler.extract import extract_region
from crawler.feeds import parse_feed
from crawler.pipeline.runtime import Prepared, Runtime, text_params
from crawler.pipeline.workers import (
    ArticleJob,
    Built,
    article_document,
    build_articles,
    make_document,
)
from crawler.types import Document, FeedEntry, FeedHints, Fetched, SourceSpec
from storage import sources as store_sources

log = logging.getLogger("storywatch.pipeline")


async def feed_documents(
    rt: Runtime, spec: SourceSpec, fetched: Fetched, now: datetime
) -> tuple[list[Prepared], list[str], FeedHints, tuple[datetime, ...]]:
    """Parse, fetch the new entries' articles (I/O), then extract them as one batch (CPU)."""
    url, headers = fetched.final_url, fetched.headers
    depth = rt.settings.extract.max_depth
    if rt.offload is not None:
        feed = await rt.offload.parse(
            fetched.body, url=url, headers=headers, source_id=spec.id, max_depth=depth
        )
    else:
        feed = parse_feed(fetched.body, url=url, headers=headers, source_id=spec.id, max_depth=depth)
    warnings = list(feed.warnings)
    keys = {e.entry_id: normalize.entry_key(e.entry_id, e.title, e.summary) for e in feed.entries}
    fresh_ids = store_sources.unseen_entries(rt.db, spec.id, list(keys.values()))
    fresh = [e for e in feed.entries if keys[e.entry_id] in fresh_ids]
    gate = asyncio.Semaphore(rt.settings.fetch.article_concurrency)

    async def one(entry: FeedEntry) -> _ArticleFetch:
        async with gate:
            return await _fetch_article(rt, spec, entry)

    got = await asyncio.gather(*(one(e) for e in fresh))
    jobs = [ArticleJob(spec, g.entry, g.page, now) for g in got if g.page is not None]
    params = text_params(rt.settings)
    built = iter(await rt.offload.build(jobs, params) if rt.offload else build_articles(jobs, params))
    docs: list[Prepared] = []
    for g in got:
        doc, warning = _entry_outcome(rt, spec, g, now, next(built) if g.page is not None else None)
        if warning:
            warnings.append(warning)
        if doc is not None:
            docs.append(doc)
    times = tuple(e.published or now for e in fresh)
    return docs, warnings, feed.hints, times


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


def page_documents(
    rt: Runtime, spec: SourceSpec, fetched: Fetched, last: str | None, now: datetime
) -> tuple[list[Prepared], list[str]]:
    assert spec.selector is not None
    region = extract_region(
        fetched.body,
        url=fetched.final_url,
        selector=spec.selector,
        content_type=fetched.headers.get("content-type"),
        max_depth=rt.settings.extract.max_depth,
    )
    snapshot = pagediff.normalize_snapshot(region)
    change = pagediff.diff_snapshots(last, snapshot, ignore=spec.ignore_patterns)
    added = "\n".join(change.added)
    if last is None or change.changed:
        store_sources.save_snapshot(rt.db, spec.id, snapshot, added or None, now)
    if not change.added:
        return [], []
    doc = pagediff.page_document(spec, added, now=now)
    return [(doc, None)], []
