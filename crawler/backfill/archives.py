"""The backfill methods: each walks one kind of a source's history and hands it to its ``Job``.

Pure helpers first (page URLs, date slices, CDX rows and URLs, snapshot documents), then one
async function per method. A method reads its checkpoint cursor from ``job.cursor``, calls
``job.save(cursor)`` after each page it stored and ``job.save(cursor, done=True)`` at the end;
``crawler.backfill.job`` owns the orchestration, the error boundary and the counting.

=========  ==============================================  ==========================================
method     walks                                           cursor
=========  ==============================================  ==========================================
archive    feed -> prev-archive / next / ?paged=N pages    next URL, mode, pages read, page markers
sitemap    robots.txt Sitemap: / /sitemap.xml, indexes      queue of sitemap files, files done
search     backfill_query per date slice                   slices done
cdx        CDX listing -> snapshots in time order           last timestamp done, its region text
=========  ==============================================  ==========================================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from crawler.dedup import pagediff
from crawler.errors import HTTPStatusError, ParseError, SelectorNotFound
from crawler.extract import extract_region
from crawler.feeds import Sitemap, parse_feed, parse_sitemap, robots_sitemaps
from crawler.fetch import robots_url
from crawler.types import FeedEntry, Fetched, ParsedFeed

if TYPE_CHECKING:
    from crawler.backfill.job import Job, Window

__all__ = [
    "Snapshot",
    "cdx_query_url",
    "cdx_snapshots",
    "date_slices",
    "feed_archive",
    "next_page",
    "paged_url",
    "parse_cdx",
    "search_slices",
    "search_url",
    "sitemap_crawl",
    "snapshot_url",
]

# ----------------------------------------------------------------------------- pure helpers


def paged_url(url: str, page: int) -> str:
    """``url`` with WordPress-style ``paged=<page>`` set (other query parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "paged"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("paged", str(page))])))


def next_page(feed: ParsedFeed, feed_url: str, mode: str, page: int) -> tuple[str | None, str]:
    """The next (older) page and how it was found: ``prev-archive``, ``next``, else ``paged``."""
    links = feed.archive_links
    if links.get("prev-archive"):
        return links["prev-archive"], "prev-archive"
    if links.get("next"):
        return links["next"], "next"
    if mode in ("first", "paged"):
        return paged_url(feed_url, page), "paged"
    return None, mode


def _page_marker(feed: ParsedFeed) -> str:
    ids = "\n".join(sorted(e.entry_id for e in feed.entries))
    return hashlib.sha256(ids.encode("utf-8")).hexdigest()[:16]


def _all_before(entries: Sequence[FeedEntry], since: datetime) -> bool:
    dated = [e.published for e in entries if e.published is not None]
    return bool(dated) and all(d < since for d in dated)


def date_slices(window: Window, slice_seconds: float) -> list[tuple[date, date]]:
    """(after, before) day pairs covering the window; a slice is at least one day (the query's unit)."""
    step = timedelta(days=max(1, round(slice_seconds / 86400)))
    day, last = window.since.astimezone(UTC).date(), window.until.astimezone(UTC).date()
    out = []
    while day <= last:
        out.append((day, min(day + step, last + timedelta(days=1))))
        day += step
    return out


def search_url(template: str, after: date, before: date) -> str:
    return template.replace("{after}", after.isoformat()).replace("{before}", before.isoformat())


@dataclass(frozen=True)
class Snapshot:
    timestamp: str  # YYYYMMDDhhmmss, as the archive names it
    original: str
    taken_at: datetime


def cdx_query_url(
    cdx_url: str, url: str, *, start: datetime | None, end: datetime, last_only: bool = False
) -> str:
    """The CDX query for ``url``'s snapshots from ``start`` (None: the beginning) to ``end``, by day."""
    params = {
        "url": url,
        "from": f"{start:%Y%m%d}" if start else None,
        "to": f"{end:%Y%m%d}",
        "output": "json",
        "filter": "statuscode:200",
        "collapse": "digest",
        "limit": "-1" if last_only else None,
    }
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{cdx_url}{'&' if '?' in cdx_url else '?'}{query}"


def snapshot_url(template: str, snap: Snapshot) -> str:
    return template.replace("{timestamp}", snap.timestamp).replace("{url}", snap.original)


def parse_cdx(body: bytes, *, url: str) -> list[Snapshot]:
    """A CDX ``output=json`` answer (header row, then rows) -> snapshots, oldest first, one per timestamp."""
    try:
        rows = json.loads(body or b"[]")
    except ValueError as exc:
        raise ParseError(f"CDX answer is not JSON: {exc}", url=url) from exc
    if not isinstance(rows, list) or not rows:
        return []
    head = rows[0]
    if not isinstance(head, list) or "timestamp" not in head or "original" not in head:
        raise ParseError("CDX answer has no header row with timestamp and original", url=url)
    ts_i, url_i = head.index("timestamp"), head.index("original")
    found: dict[str, Snapshot] = {}
    for row in rows[1:]:
        if isinstance(row, list) and len(row) > max(ts_i, url_i):
            ts, original = str(row[ts_i]), str(row[url_i])
            when = _cdx_time(ts)
            if when is not None and original.lower().startswith(("http://", "https://")):
                found.setdefault(ts, Snapshot(ts, original, when))
    return sorted(found.values(), key=lambda s: s.timestamp)


def _cdx_time(ts: str) -> datetime | None:
    try:
        return datetime.strptime(ts.ljust(14, "0")[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


# ----------------------------------------------------------------------------- archive: paged/archived feeds


async def feed_archive(job: Job) -> None:
    """The feed, then older pages, until empty, missing, repeated, older than --since, or max_pages."""
    cur: dict[str, Any] = {"next": job.spec.url, "mode": "first", "pages": 0, "seen": [], **job.cursor}
    while cur["next"] and cur["pages"] < job.cfg.max_pages:
        feed = await _feed_page(job, cur["next"], cur["mode"])
        marker = _page_marker(feed) if feed is not None else ""
        if feed is None or not feed.entries or marker in cur["seen"]:
            break
        await job.take_entries(feed.entries)
        job.page_read()
        nxt, mode = next_page(feed, job.spec.url, cur["mode"], cur["pages"] + 2)
        if _all_before(feed.entries, job.window.since):
            nxt = None
        cur = {"next": nxt, "mode": mode, "pages": cur["pages"] + 1, "seen": [*cur["seen"], marker][-200:]}
        job.save(cur)
    if cur["next"] and cur["pages"] >= job.cfg.max_pages:
        job.warn(f"stopped after backfill.max_pages={job.cfg.max_pages} pages; older pages not read")
    job.save(cur, done=True)


def _parse(job: Job, fetched: Fetched) -> ParsedFeed:
    depth = job.rt.settings.extract.max_depth
    return parse_feed(
        fetched.body, url=fetched.final_url, headers=fetched.headers, source_id=job.spec.id, max_depth=depth
    )


async def _feed_page(job: Job, url: str, mode: str) -> ParsedFeed | None:
    """One page; None ends the walk when a guessed ``?paged=N`` page is missing or not a feed."""
    try:
        fetched = await job.fetch(url)
        return _parse(job, fetched)
    except (HTTPStatusError, ParseError) as exc:
        guessed = mode == "paged" and (isinstance(exc, ParseError) or exc.status in (400, 404, 410))
        if guessed:
            return None
        raise


# ----------------------------------------------------------------------------- search: date slices


async def search_slices(job: Job) -> None:
    """The source's ``backfill_query`` for each date slice of the window, oldest first."""
    template = job.spec.backfill_query or ""
    slices = date_slices(job.window, job.cfg.slice)
    start = int(job.cursor.get("slices_done", 0))
    job.set_total(len(slices) - start)
    for i in range(start, len(slices)):
        fetched = await job.fetch(search_url(template, *slices[i]))
        feed = _parse(job, fetched)
        await job.take_entries(feed.entries)
        job.page_read()
        job.save({"slices_done": i + 1})
    job.save({"slices_done": len(slices)}, done=True)


# ----------------------------------------------------------------------------- sitemap


async def sitemap_crawl(job: Job) -> None:
    """Sitemaps of the source's site: indexes expanded, URLs dated in the window fetched as articles."""
    cur: dict[str, Any] = dict(job.cursor)
    if "queue" not in cur:
        cur = {"queue": await _discover_sitemaps(job), "done": []}
        job.save(cur)
    queue, done = list(cur["queue"]), list(cur["done"])
    while queue and len(done) < job.cfg.max_pages:
        job.set_total(len(done) + len(queue))
        url = queue[0]
        sitemap = await _sitemap(job, url)
        if sitemap is not None and sitemap.kind == "index":
            fresh = [e.loc for e in sitemap.entries if e.lastmod is None or e.lastmod >= job.window.since]
            queue.extend(u for u in dict.fromkeys(fresh) if u not in queue and u not in done)
        elif sitemap is not None:
            await job.take_entries(
                [
                    FeedEntry(entry_id=e.loc, link=e.loc, title=e.title or "", summary="", published=e.date)
                    for e in sitemap.entries
                ]
            )
        queue.pop(0)
        done.append(url)
        job.page_read()
        job.save({"queue": queue, "done": done})
    if queue:
        job.warn(f"stopped after backfill.max_pages={job.cfg.max_pages} sitemap files; {len(queue)} not read")
    job.save({"queue": queue, "done": done}, done=True)


async def _discover_sitemaps(job: Job) -> list[str]:
    """robots.txt ``Sitemap:`` lines of the source's origin, else ``/sitemap.xml``."""
    robots = robots_url(job.spec.url)
    try:
        fetched = await job.fetch(robots)
        found = robots_sitemaps(fetched.body, base=robots)
    except HTTPStatusError as exc:
        if exc.status >= 500:
            raise
        found = ()
    return list(found) or [urljoin(job.spec.url, "/sitemap.xml")]


async def _sitemap(job: Job, url: str) -> Sitemap | None:
    """One sitemap file; a missing (4xx) or unreadable one is a warning, not a failure."""
    try:
        fetched = await job.fetch(url)
        return parse_sitemap(fetched.body, url=fetched.final_url, max_depth=job.rt.settings.extract.max_depth)
    except HTTPStatusError as exc:
        if exc.status >= 500 or exc.status == 429:
            raise
        job.warn(f"sitemap {url}: HTTP {exc.status}; skipped")
    except ParseError as exc:
        job.warn(f"sitemap {url}: {exc}; skipped")
    return None


# ----------------------------------------------------------------------------- cdx: web-archive snapshots


async def cdx_snapshots(job: Job) -> None:
    """Snapshots of a watched page in time order; the text each one added becomes a document.

    The last snapshot before the window is the baseline (when the archive has one), so what the
    page gained early in the window counts too; without one the first snapshot is the baseline.
    """
    spec, w = job.spec, job.window
    listing = await job.fetch(cdx_query_url(job.cfg.cdx_url, spec.url, start=w.since, end=w.until))
    snaps = [s for s in parse_cdx(listing.body, url=listing.final_url) if w.contains(s.taken_at)]
    after, last = str(job.cursor.get("after", "")), job.cursor.get("snapshot")
    todo = [s for s in snaps if s.timestamp > after]
    job.set_total(len(todo))
    if job.opts.dry_run:
        job.tally.candidates += len(todo)
        return
    if "snapshot" not in job.cursor:
        last = await _baseline(job)
        job.save({"after": after, "snapshot": last})
        job.set_total(len(todo) + job.tally.pages)
    for snap in todo:
        text = await _snapshot_region(job, snap)
        if text is not None:
            change = pagediff.diff_snapshots(last, text, ignore=spec.ignore_patterns)
            if change.added:
                added = "\n".join(change.added)
                await job.store(
                    [pagediff.page_document(spec, added, now=job.rt.clock(), taken_at=snap.taken_at)]
                )
            last = text
        job.page_read()
        job.save({"after": snap.timestamp, "snapshot": last})
    job.save({"after": todo[-1].timestamp if todo else after, "snapshot": last}, done=True)


async def _baseline(job: Job) -> str | None:
    """The watched region of the last snapshot before the window, or None."""
    end = job.window.since - timedelta(days=1)
    listing = await job.fetch(
        cdx_query_url(job.cfg.cdx_url, job.spec.url, start=None, end=end, last_only=True)
    )
    before = [s for s in parse_cdx(listing.body, url=listing.final_url) if s.taken_at < job.window.since]
    if not before:
        return None
    text = await _snapshot_region(job, before[-1])
    job.page_read()
    return text


async def _snapshot_region(job: Job, snap: Snapshot) -> str | None:
    """The normalised watched region of one snapshot; None (with a warning) when it cannot be had."""
    url = snapshot_url(job.cfg.snapshot_url, snap)
    try:
        page = await job.fetch(url)
        region = extract_region(
            page.body,
            url=page.final_url,
            selector=job.spec.selector or "",
            content_type=page.headers.get("content-type"),
            max_depth=job.rt.settings.extract.max_depth,
        )
    except HTTPStatusError as exc:
        if exc.status >= 500 or exc.status == 429:
            raise
        job.warn(f"snapshot {snap.timestamp}: HTTP {exc.status}; skipped")
        return None
    except SelectorNotFound as exc:
        job.warn(f"snapshot {snap.timestamp}: {exc}; skipped")
        return None
    return pagediff.normalize_snapshot(region)
