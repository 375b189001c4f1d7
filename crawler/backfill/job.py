"""Backfill: a source's history, brought into the same timeline as live fetching.

``storywatch backfill --since DATE`` gathers what the sources published before storywatch watched
them and runs it through exactly the live path: ``pipeline.entry_document`` (article fetched and
extracted, search redirects unwrapped, robots.txt honoured), ``pipeline.prepare`` (canonical URL,
dedup, rules on the new text) and ``storage.ingest`` with origin ``backfill`` (story, matches,
alerts and outbox rows in one transaction).

Methods, per source (``--method`` picks some; see ``crawler.backfill.archives``):

- ``archive``  feeds: the feed, then RFC 5005 ``prev-archive`` links, ``next`` paging, else
  WordPress-style ``?paged=N``, until an empty, missing or repeated page, one older than --since,
  or ``backfill.max_pages``;
- ``sitemap``  feeds without a search query: robots.txt ``Sitemap:`` lines (else /sitemap.xml),
  sitemap indexes, news sitemaps, URLs filtered by publication date / lastmod;
- ``search``   feeds with ``backfill_query``: the query per date slice (``{after}``/``{before}``);
- ``cdx``      pages: web-archive snapshots (CDX API), their watched region diffed in time order.

One run, step by step:

1. For each (source, method) the checkpoint of the window is loaded; a completed one is skipped,
   so running the same backfill twice adds nothing.
2. The method walks its pages. Entries dated outside [since, until] are dropped; undated ones are
   kept and counted; entries this source already saw, and URLs already stored, are counted as
   known and never fetched again.
3. Documents are stored in small batches, each in one transaction; after a page is stored its
   checkpoint moves on. A killed run redoes at most one page, and dedup makes that add nothing.
4. Alert policy: ``none`` and ``all`` are applied after each batch
   (``storage.backfill_store.apply_policy``); ``digest`` releases the held deliveries once at the
   end (``storage.outbox.release_held``), so the relay sends ONE digest per channel.

Politeness: every request (feed pages, sitemaps, CDX, snapshots, articles, robots.txt, redirect
hops) waits for one token bucket (``--rate``, default ``backfill.rate`` per second), the gate of the
same ``Fetcher`` (``throttle.BucketGate``: SSRF guard, per-host gap and concurrency, body caps as
live); article pages check robots.txt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from crawler.backfill import archives
from crawler.backfill.throttle import BucketGate, TokenBucket, backfill_runtime
from crawler.config import BackfillConfig, Settings
from crawler.dedup import text as normalize
from crawler.dedup import urls
from crawler.errors import ConfigError, StorywatchError
from crawler.pipeline import Runtime, entry_document, prepare
from crawler.types import Document, FeedEntry, Fetched, SourceSpec
from storage import backfill_store, outbox
from storage import ingest as store_ingest
from storage import sources as store_sources
from storage.db import Database

AlertPolicy = Literal["none", "digest", "all"]
Status = Literal["ok", "error", "skipped"]
METHODS: tuple[str, ...] = ("archive", "sitemap", "search", "cdx")
BATCH = 25  # entries fetched, then stored in one transaction, at a time
COUNTS = ("pages", "new", "known", "outside", "undated", "candidates", "unavailable", "matches", "alerts")


@dataclass(frozen=True)
class Window:
    """[since, until], inclusive. ``key`` names the checkpoints (day resolution, so reruns resume)."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since > self.until:
            raise ConfigError(
                f"--since {self.since:%Y-%m-%d %H:%M} is after --until {self.until:%Y-%m-%d %H:%M}"
            )

    def contains(self, when: datetime) -> bool:
        return self.since <= when <= self.until

    @property
    def key(self) -> str:
        return f"{self.since.astimezone(UTC):%Y-%m-%d}..{self.until.astimezone(UTC):%Y-%m-%d}"


@dataclass(frozen=True)
class BackfillOptions:
    window: Window
    source_ids: tuple[str, ...] = ()  # empty: every enabled source
    methods: tuple[str, ...] = ()  # empty: each source's own methods
    alerts: AlertPolicy = "digest"
    rate: float | None = None  # requests per second over the whole run; None: backfill.rate
    dry_run: bool = False  # discover and count, fetch no article, store nothing
    restart: bool = False  # forget this window's checkpoints first


@dataclass(frozen=True)
class ProgressEvent:
    source_id: str
    method: str
    pages: int
    total: int | None  # pages this run expects, when the method knows
    new: int
    known: int
    matches: int
    alerts: int
    finished: bool = False


ProgressFn = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class MethodReport:
    """What one method did for one source. ``skipped``: an earlier run already completed it."""

    source_id: str
    method: str
    status: Status
    pages: int = 0  # feed pages, sitemap files, date slices or snapshots read
    new: int = 0
    known: int = 0  # already stored or already seen: not fetched or not stored again
    outside: int = 0  # dated outside the window
    undated: int = 0  # no date anywhere: included
    candidates: int = 0  # --dry-run: entries that would be fetched
    unavailable: int = 0  # entries whose article and summary were both unusable
    matches: int = 0
    alerts: int = 0
    resumed: bool = False
    warnings: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class BackfillReport:
    window: Window
    policy: AlertPolicy
    dry_run: bool
    methods: tuple[MethodReport, ...]
    released: int = 0  # held deliveries released for the digest
    delivery: Any = None  # the relay's report when delivered

    @property
    def failed(self) -> list[MethodReport]:
        return [m for m in self.methods if m.status == "error"]

    def total(self, name: str) -> int:
        return sum(int(getattr(m, name)) for m in self.methods)

    def as_json(self) -> dict[str, Any]:
        return {
            "window": {"since": self.window.since.isoformat(), "until": self.window.until.isoformat()},
            "alerts_policy": self.policy,
            "dry_run": self.dry_run,
            "sources": [{**m.__dict__, "warnings": list(m.warnings)} for m in self.methods],
            "totals": {n: self.total(n) for n in COUNTS},
            "failed": [f"{m.source_id}/{m.method}" for m in self.failed],
            "released_for_digest": self.released,
        }


# ----------------------------------------------------------------------------- one method of one source


@dataclass
class Tally:
    pages: int = 0
    new: int = 0
    known: int = 0
    outside: int = 0
    undated: int = 0
    candidates: int = 0
    unavailable: int = 0
    matches: int = 0
    alerts: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class Job:
    """The live state of one (source, method) run; the methods in ``crawler.backfill.archives`` drive it."""

    rt: Runtime
    spec: SourceSpec
    method: str
    window: Window
    opts: BackfillOptions
    checkpoint: backfill_store.Checkpoint
    progress: ProgressFn | None = None
    tally: Tally = field(default_factory=Tally)
    total: int | None = None

    @property
    def cursor(self) -> Mapping[str, Any]:
        return self.checkpoint.cursor

    @property
    def cfg(self) -> BackfillConfig:
        return self.rt.settings.backfill

    async def fetch(self, url: str) -> Fetched:
        """An index page (feed page, sitemap, CDX listing, snapshot): no robots.txt check, like live feeds."""
        return await self.rt.fetcher.fetch(url, source_id=self.spec.id)

    def save(self, cursor: Mapping[str, Any], *, done: bool = False) -> None:
        self.checkpoint = replace(self.checkpoint, cursor=dict(cursor), done=done)
        if not self.opts.dry_run:
            backfill_store.save_checkpoint(self.rt.db, self.checkpoint, now=self.rt.clock())

    def page_read(self) -> None:
        self.tally.pages += 1
        self.report_progress()

    def set_total(self, total: int | None) -> None:
        self.total = total
        self.report_progress()

    def warn(self, message: str) -> None:
        if len(self.tally.warnings) < 50:
            self.tally.warnings.append(message)

    def report_progress(self, *, finished: bool = False) -> None:
        if self.progress is not None:
            counts: dict[str, Any] = {
                n: getattr(self.tally, n) for n in ("pages", "new", "known", "matches", "alerts")
            }
            self.progress(
                ProgressEvent(self.spec.id, self.method, total=self.total, finished=finished, **counts)
            )

    async def take_entries(self, entries: Sequence[FeedEntry]) -> None:
        """Feed or sitemap entries: screened, then fetched and stored BATCH at a time."""
        fresh = self._screen(entries)
        if self.opts.dry_run:
            self.tally.candidates += len(fresh)
            return
        for i in range(0, len(fresh), BATCH):
            await self.store(await self._documents(fresh[i : i + BATCH]))

    def _screen(self, entries: Sequence[FeedEntry]) -> list[FeedEntry]:
        """Drop entries dated outside the window and entries already known; count both."""
        inside = list({e.entry_id: e for e in entries}.values())
        self.tally.outside += sum(1 for e in inside if e.published and not self.window.contains(e.published))
        inside = [e for e in inside if not e.published or self.window.contains(e.published)]
        keys = {e.entry_id: normalize.entry_key(e.entry_id, e.title, e.summary) for e in inside}
        unseen = store_sources.unseen_entries(self.rt.db, self.spec.id, list(keys.values()))
        urls = {e.entry_id: self._urls(e.link) for e in inside if e.link}
        known = backfill_store.known_urls(self.rt.db, [u for us in urls.values() for u in us])
        fresh = [
            e for e in inside if keys[e.entry_id] in unseen and not set(urls.get(e.entry_id, ())) & known
        ]
        self.tally.known += len(inside) - len(fresh)
        return fresh

    def _urls(self, link: str) -> tuple[str, ...]:
        target = urls.unwrap_search_redirect(link) or link
        extra = self.rt.settings.dedup.tracking_params
        return (link, target, urls.canonicalize_url(target, extra_tracking=extra))

    async def _documents(self, entries: Sequence[FeedEntry]) -> list[Document]:
        gate = asyncio.Semaphore(self.rt.settings.fetch.article_concurrency)
        now = self.rt.clock()

        async def one(entry: FeedEntry) -> tuple[Document | None, str | None]:
            async with gate:
                return await entry_document(self.rt, self.spec, entry, now)

        docs = []
        for entry, (doc, warning) in zip(
            entries, await asyncio.gather(*(one(e) for e in entries)), strict=True
        ):
            if warning:
                self.warn(warning)
            if doc is None:
                self.tally.unavailable += 1
            elif entry.published is None and doc.published is None:
                self.tally.undated += 1
                docs.append(doc)
            elif entry.published is None and doc.published and not self.window.contains(doc.published):
                self.tally.outside += 1
            else:
                docs.append(doc)
        return docs

    async def store(self, docs: Sequence[Document]) -> None:
        """Store documents like live fetching does (origin ``backfill``), then apply the alert policy."""
        if not docs or self.opts.dry_run:
            return
        rt, now = self.rt, self.rt.clock()
        items = [prepare(rt, d) for d in docs]
        mark = backfill_store.delivery_watermark(rt.db)
        results = store_ingest.ingest(
            rt.db,
            items,
            alerts_cfg=rt.settings.alerts,
            threshold=rt.settings.dedup.threshold,
            now=now,
            origin="backfill",
            backfill_policy=self.opts.alerts,
        )
        backfill_store.apply_policy(
            rt.db, self.opts.alerts, after_id=mark, alerts_cfg=rt.settings.alerts, now=now
        )
        for item, res in zip(items, results, strict=True):
            if res.status == "duplicate":
                self.tally.known += 1
            else:
                self.tally.new += 1
                self.tally.matches += len(item.matches)
            self.tally.alerts += len(res.alert_ids)
        self.report_progress()

    def report(self, status: Status, *, resumed: bool, error: str | None = None) -> MethodReport:
        counts: dict[str, Any] = {n: getattr(self.tally, n) for n in COUNTS}
        warnings = tuple(self.tally.warnings)
        return MethodReport(
            self.spec.id, self.method, status, resumed=resumed, warnings=warnings, error=error, **counts
        )


MethodFn = Callable[[Job], Awaitable[None]]
_METHOD_FUNCS: dict[str, MethodFn] = {
    "archive": archives.feed_archive,
    "sitemap": archives.sitemap_crawl,
    "search": archives.search_slices,
    "cdx": archives.cdx_snapshots,
}


def methods_for(spec: SourceSpec, wanted: Sequence[str] = ()) -> tuple[str, ...]:
    """The methods for ``spec``: pages cdx; search feeds search; other feeds archive + sitemap."""
    if spec.kind == "page":
        own: tuple[str, ...] = ("cdx",)
    elif spec.backfill_query:
        own = ("search",)
    else:
        own = ("archive", "sitemap")
    return tuple(m for m in own if not wanted or m in wanted)


async def run_method(
    rt: Runtime, spec: SourceSpec, method: str, opts: BackfillOptions, progress: ProgressFn | None = None
) -> MethodReport:
    """One method of one source. The per-(source, method) error boundary lives here."""
    cp = backfill_store.load_checkpoint(rt.db, spec.id, method, opts.window.key)
    job = Job(rt, spec, method, opts.window, opts, cp, progress)
    if cp.done:
        job.report_progress(finished=True)
        return job.report("skipped", resumed=True)
    resumed, error = bool(cp.cursor), None
    try:
        await _METHOD_FUNCS[method](job)
    except StorywatchError as exc:
        error = f"{exc}; rerun the same backfill to resume"
    except Exception as exc:  # the one broad boundary: record, keep the other sources going
        error = f"[{spec.id}] internal error: {type(exc).__name__}: {exc}; rerun to resume"
    job.report_progress(finished=True)
    return job.report("error" if error else "ok", resumed=resumed, error=error)


def select_sources(settings: Settings, source_ids: Sequence[str]) -> tuple[SourceSpec, ...]:
    specs = settings.source_specs()
    if not source_ids:
        return specs
    unknown = sorted(set(source_ids) - {s.id for s in specs})
    if unknown:
        raise ConfigError(
            f"unknown or disabled source id(s): {', '.join(unknown)} (see `storywatch sources`)"
        )
    return tuple(s for s in specs if s.id in source_ids)


async def run_backfill(
    settings: Settings,
    opts: BackfillOptions,
    *,
    progress: ProgressFn | None = None,
    db: Database | None = None,
    deliver: bool = False,
) -> BackfillReport:
    """Backfill every selected source and method, in order; see the module docstring."""
    for m in opts.methods:
        if m not in METHODS:
            raise ConfigError(f"unknown backfill method {m!r} (use one of {', '.join(METHODS)})")
    specs = select_sources(settings, opts.source_ids)
    rate = opts.rate if opts.rate is not None else settings.backfill.rate
    async with backfill_runtime(settings, rate=rate, db=db) as rt:
        if not opts.dry_run:
            store_sources.sync_sources(rt.db, specs)
        if opts.restart and not opts.dry_run:
            backfill_store.clear_checkpoints(rt.db, [s.id for s in specs], opts.window.key)
        reports = [
            await run_method(rt, spec, m, opts, progress)
            for spec in specs
            for m in methods_for(spec, opts.methods)
        ]
        released = 0
        if opts.alerts == "digest" and not opts.dry_run:
            released = outbox.release_held(rt.db, now=rt.clock())
        delivery = None
        if deliver and not opts.dry_run:
            from crawler.pipeline import deliver_outbox

            delivery = await deliver_outbox(settings, rt.db)
    return BackfillReport(opts.window, opts.alerts, opts.dry_run, tuple(reports), released, delivery)


__all__ = [
    "METHODS",
    "AlertPolicy",
    "BackfillOptions",
    "BackfillReport",
    "BucketGate",
    "Job",
    "MethodReport",
    "ProgressEvent",
    "TokenBucket",
    "Window",
    "backfill_runtime",
    "methods_for",
    "run_backfill",
    "run_method",
    "select_sources",
]
