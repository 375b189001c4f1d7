"""The only module that knows the order of the stages.

One pass over a source, step by step:

1. Load the source's state (HTTP validators, last body hash, last page snapshot).
2. Fetch the source URL with a conditional GET (fetch). A 304 or an unchanged body ends here.
3. Feeds: parse entries (parse); drop entries already seen; for each new entry follow its link
   (search-feed redirects unwrapped) and fetch the article, all concurrently; then extract the
   pages' main text as one batch (extract, via crawler.pipeline.workers);
   when the article cannot be fetched or extracted, keep the feed's summary and say so.
   Pages: extract the watched region (extract), diff it against the last snapshot (pagediff);
   the added text becomes a document.
4. Canonicalise the URL and hash the normalised text (normalize). A document already stored
   under that URL is re-read on its changed sentences only; the same text is only an alias
   (one lookup query for the whole batch).
5. Fingerprint the text for near-duplicate detection (dedup) and run the rules on the new text
   (match).
6. Store everything in one transaction (storage.ingest): document, aliases, sighting, story,
   matches, alerts and their outbox rows. The relay delivers the outbox later.
7. Record the fetch result, the source's health and its new validators (storage.sources), after
   the documents.

Each source is processed inside the single broad ``except`` of the program (``run_source``):
one broken source is recorded and never stops the others.

A pass (``run_pass``) reads every source's state in one query and writes the fetch records in
batches. With ``Runtime.offload`` (``runner.open_runtime(cpu_workers=N)``, used by ``run_once`` for
many feeds), step 3's extraction and the text analysis of steps 4-5 run in worker processes and
the database work of steps 4-7 in one writer process (its own connection and rule set), so HTTP,
CPU and SQLite work overlap on several cores; the results are the same as inline. Sources' writes
that queue up meanwhile share one transaction (group commit, ``crawler.pipeline.groupwrite``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from crawler.config import Settings
from crawler.dedup import pagediff
from crawler.dedup import text as normalize
from crawler.errors import FetchError, HTTPStatusError, ParseError, SelectorNotFound, StorywatchError
from crawler.extract.article import extract_region
from crawler.feeds.parse import parse_feed
from crawler.fetch.client import Fetcher
from crawler.pipeline.groupwrite import GroupWriter
from crawler.pipeline.workers import (
    Analysis,
    ArticleJob,
    Built,
    Offload,
    TextParams,
    Write,
    WriterProcess,
    analyse,
    article_document,
    build_articles,
    make_document,
    settle_heap,
)
from crawler.types import Document, FeedEntry, FeedHints, Fetched, Match, SourceResult, SourceSpec, Validators
from rules.engine import RuleInput, RuleSet, load_rules
from storage import ingest as store_ingest
from storage import sources as store_sources
from storage.db import Database

log = logging.getLogger("storywatch.pipeline")


def utcnow() -> datetime:
    return datetime.now(UTC)


_Prepared = tuple[Document, Analysis | None]
_Group = tuple[list[_Prepared], datetime]  # one source's documents and the time of its pass


@dataclass
class Runtime:
    """Live resources of a pass or of the daemon (not a stage value: it is never passed downstream)."""

    settings: Settings
    db: Database
    fetcher: Fetcher
    rules: RuleSet
    clock: Callable[[], datetime] = utcnow
    origin: str = "live"
    offload: Offload | None = None  # article worker processes + database writer; None = inline
    # group commit of document writes through ``offload`` (made on first use; ``replace`` resets it)
    store_group: GroupWriter[_Group, list[store_ingest.IngestResult]] | None = field(
        default=None, init=False, repr=False, compare=False
    )


@dataclass(frozen=True)
class SourceOutcome:
    """What one pass over one source produced (the scheduler reads the hints)."""

    result: SourceResult
    http_status: int | None = None
    item_times: tuple[datetime, ...] = ()
    retry_after: float | None = None
    cache_max_age: float | None = None
    hints: FeedHints = field(default_factory=FeedHints)
    error_kind: str | None = None  # "http", "fetch", "parse", "selector", "internal"
    alert_ids: tuple[int, ...] = ()


def rule_files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p])
    return out


def load_ruleset(settings: Settings) -> RuleSet:
    return load_rules(rule_files(settings.rule_paths()))


async def run_pass(
    rt: Runtime,
    specs: Sequence[SourceSpec],
    *,
    on_done: Callable[[SourceOutcome], None] | None = None,
) -> list[SourceOutcome]:
    """Process ``specs`` concurrently; results in the order given.

    The sources' states are read in one query up front; their fetch records are written in
    batches of ``RECORD_BATCH`` (and the rest when the pass ends), each in one transaction.
    """
    store_sources.sync_sources(rt.db, specs)
    states = store_sources.source_states(rt.db, [s.id for s in specs])
    recorder = _Recorder(rt)
    gate = asyncio.Semaphore(rt.settings.fetch.concurrency)

    async def one(spec: SourceSpec) -> SourceOutcome:
        async with gate:
            out = await run_source(rt, spec, state=states.get(spec.id), record=recorder.add)
        if on_done:
            on_done(out)
        return out

    try:
        return list(await asyncio.gather(*(one(s) for s in specs)))
    finally:
        await recorder.close()


RECORD_BATCH = 64


class _Recorder:
    """Fetch records waiting to be written together (validators included: after the documents).

    With an ``Offload``, batches go to its writer, in order after the documents stored before them;
    ``close`` waits for them and re-raises a failed write.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.pending: list[store_sources.FetchRecord] = []
        self.writes: list[tuple[Future[None], Write[None]]] = []

    def add(self, record: store_sources.FetchRecord) -> None:
        self.pending.append(record)
        if len(self.pending) >= RECORD_BATCH:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        if self.rt.offload is None:
            store_sources.record_fetches(self.rt.db, batch)
            return
        call = _record_call(self.rt, batch)
        self.writes.append((self.rt.offload.submit_write(call), call))

    async def close(self) -> None:
        self.flush()
        writes, self.writes = self.writes, []
        for queued, call in writes:
            try:
                await asyncio.wrap_future(queued)
            except BrokenProcessPool:  # the writer process died: write the batch again from here
                assert self.rt.offload is not None
                await self.rt.offload.write(call)


async def run_source(
    rt: Runtime,
    spec: SourceSpec,
    *,
    state: store_sources.SourceState | None = None,
    record: Callable[[store_sources.FetchRecord], None] | None = None,
) -> SourceOutcome:
    """One source, start to end. The per-source error boundary lives here.

    ``state`` is the source's stored state when the caller already read it; ``record`` receives
    the fetch record instead of it being written at once (``run_pass`` batches them).
    """
    started, now = time.monotonic(), rt.clock()
    keep: _Keep | None = None
    try:
        outcome, keep = await _process(rt, spec, now, state)
    except StorywatchError as exc:
        outcome = _failure(spec, exc, _error_kind(exc))
    except Exception as exc:  # the one broad boundary: record, move on
        log.exception(
            "source %s: internal error; recorded, other sources continue",
            spec.id,
            extra={"source_id": spec.id},
        )
        outcome = _failure(spec, exc, "internal")
    result = replace(outcome.result, seconds=round(time.monotonic() - started, 3))
    outcome = replace(outcome, result=result)
    rec = store_sources.FetchRecord(
        spec,
        result,
        now,
        outcome.http_status,
        keep.validators if keep else None,
        keep.body_hash if keep else None,
    )
    if record is not None:
        record(rec)
    else:
        store_sources.record_fetches(rt.db, [rec])
    return outcome


@dataclass(frozen=True)
class _Keep:
    """Validators and body hash to save with the fetch record (after the documents are stored)."""

    validators: Validators
    body_hash: str | None


def _error_kind(exc: StorywatchError) -> str:
    if isinstance(exc, SelectorNotFound):
        return "selector"
    if isinstance(exc, HTTPStatusError):
        return "http"
    if isinstance(exc, FetchError):
        return "fetch"
    if isinstance(exc, ParseError):
        return "parse"
    return "internal"


def _failure(spec: SourceSpec, exc: BaseException, kind: str) -> SourceOutcome:
    msg = str(exc) if isinstance(exc, StorywatchError) else f"internal error: {type(exc).__name__}: {exc}"
    if not msg.startswith(f"[{spec.id}]") and spec.id not in msg:
        msg = f"[{spec.id}] {msg}"
    retry_after = exc.retry_after if isinstance(exc, HTTPStatusError) else None
    status = exc.status if isinstance(exc, HTTPStatusError) else None
    return SourceOutcome(
        SourceResult(spec.id, "error", error=f"{msg}; will retry with back-off"),
        http_status=status,
        retry_after=retry_after,
        error_kind=kind,
    )


async def _process(
    rt: Runtime, spec: SourceSpec, now: datetime, state: store_sources.SourceState | None
) -> tuple[SourceOutcome, _Keep]:
    if state is None:
        state = store_sources.source_state(rt.db, spec.id)
    fetched = await rt.fetcher.fetch(spec.url, source_id=spec.id, validators=state.validators)
    body_hash = hashlib.sha256(fetched.body).hexdigest() if fetched.body else None
    max_age = _max_age(fetched)
    if fetched.not_modified or (body_hash and body_hash == state.body_hash):
        res = SourceResult(spec.id, "not-modified", bytes=len(fetched.body))
        keep = _Keep(fetched.validators, body_hash or state.body_hash)
        return SourceOutcome(res, http_status=fetched.status, cache_max_age=max_age), keep
    if spec.kind == "feed":
        docs, warnings, hints, times = await _feed_documents(rt, spec, fetched, now)
    else:
        docs, warnings = _page_documents(rt, spec, fetched, state.last_snapshot, now)
        hints, times = FeedHints(), ()
    results = await _write_documents(rt, docs, now)
    new = sum(r.status in ("new", "updated") for r in results)
    alert_ids = tuple(a for r in results for a in r.alert_ids)
    res = SourceResult(
        spec.id,
        "ok",
        new_documents=new,
        bytes=len(fetched.body),
        warnings=tuple(warnings),
        new_alerts=len(alert_ids),
    )
    outcome = SourceOutcome(res, fetched.status, times, None, max_age, hints, None, alert_ids)
    return outcome, _Keep(fetched.validators, body_hash)


def _max_age(fetched: Fetched) -> float | None:
    cc = fetched.headers.get("cache-control", "")
    for part in cc.split(","):
        k, _, v = part.strip().partition("=")
        if k.lower() in ("max-age", "s-maxage") and v.strip().isdigit():
            return float(v.strip())
    return None


# --------------------------------------------------------------------------- feeds


async def _feed_documents(
    rt: Runtime, spec: SourceSpec, fetched: Fetched, now: datetime
) -> tuple[list[_Prepared], list[str], FeedHints, tuple[datetime, ...]]:
    """Parse, fetch the new entries' articles (I/O), then extract them as one batch (CPU)."""
    url, headers = fetched.final_url, fetched.headers
    if rt.offload is not None:
        feed = await rt.offload.parse(fetched.body, url=url, headers=headers, source_id=spec.id)
    else:
        feed = parse_feed(fetched.body, url=url, headers=headers, source_id=spec.id)
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
    docs: list[_Prepared] = []
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
    target = (normalize.unwrap_search_redirect(link) or link) if link else None
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
) -> tuple[_Prepared | None, str | None]:
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
    canonical = _canonical(rt, url, None) if target else url
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


def text_params(settings: Settings) -> TextParams:
    d = settings.dedup
    return TextParams(d.num_perm, d.bands, d.shingle_words, d.shingle_chars, d.tracking_params)


def _canonical(rt: Runtime, url: str, page_canonical: str | None) -> str:
    extra = rt.settings.dedup.tracking_params
    return normalize.canonicalize_url(url, extra_tracking=extra, page_canonical=page_canonical)


# --------------------------------------------------------------------------- pages


def _page_documents(
    rt: Runtime, spec: SourceSpec, fetched: Fetched, last: str | None, now: datetime
) -> tuple[list[_Prepared], list[str]]:
    assert spec.selector is not None
    region = extract_region(
        fetched.body,
        url=fetched.final_url,
        selector=spec.selector,
        content_type=fetched.headers.get("content-type"),
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


# --------------------------------------------------------------------------- storing


def _store_groups(
    rt: Runtime, groups: Sequence[tuple[Sequence[_Prepared], datetime]]
) -> list[list[store_ingest.IngestResult]]:
    """Several sources' documents (each batch with its own ``now``): one lookup, ONE transaction."""
    flat = [p for docs, _ in groups for p in docs]
    if not flat:
        return [[] for _ in groups]
    items = iter(prepare_many(rt, [d for d, _ in flat], [a for _, a in flat]))
    cfg = rt.settings
    return store_ingest.ingest_groups(
        rt.db,
        [([next(items) for _ in docs], now) for docs, now in groups],
        alerts_cfg=cfg.alerts,
        threshold=cfg.dedup.threshold,
        origin=rt.origin,
    )


STORE_GROUP_DOCS = 256  # documents in one grouped write transaction, at most
STORE_GROUP_LINGER = 0.25  # seconds a write waits for others to share its transaction (unless full)


async def _write_documents(
    rt: Runtime, docs: list[_Prepared], now: datetime
) -> list[store_ingest.IngestResult]:
    """Store one source's documents: inline, or through the writer with group commit (batches that
    queue up while a write runs go out together as the next one, see ``crawler.pipeline.groupwrite``)."""
    if rt.offload is None:
        return _store_groups(rt, [(docs, now)])[0]
    if not docs:
        return []
    if rt.store_group is None:
        offload = rt.offload

        async def flush(groups: list[_Group]) -> list[list[store_ingest.IngestResult]]:
            serves = (rt.settings, rt.rules)  # read at each write: the daemon may swap the rules
            call = Write(lambda: _store_groups(rt, groups), _writer_store, (groups, rt.origin), serves)
            return await offload.write(call)

        rt.store_group = GroupWriter(
            flush, max_size=STORE_GROUP_DOCS, size=lambda g: len(g[0]), linger=STORE_GROUP_LINGER
        )
    return await rt.store_group.submit((docs, now))


def _record_call(rt: Runtime, batch: list[store_sources.FetchRecord]) -> Write[None]:
    serves = (rt.settings, rt.rules)
    local = functools.partial(store_sources.record_fetches, rt.db, batch)
    return Write(local, _writer_record, (batch,), serves, start_writer=False)


# The database writer process (``workers.WriterProcess``): its own connection and rule set, loaded
# from the settings the main process started it with.
_WRITER: Runtime | None = None


def writer_process(settings: Settings, rules: RuleSet, database_url: str) -> WriterProcess:
    """What ``Offload`` needs to start a writer process for a runtime with these settings and rules."""
    return WriterProcess(_writer_start, (settings, database_url), (settings, rules))


def _writer_start(settings: Settings, database_url: str) -> None:
    global _WRITER
    from storage.db import open_database

    db = open_database(database_url, migrate=False)  # the main process migrated it
    _WRITER = Runtime(settings, db, cast(Fetcher, None), load_ruleset(settings))  # it never fetches
    settle_heap()


def _writer_store(groups: list[_Group], origin: str) -> list[list[store_ingest.IngestResult]]:
    assert _WRITER is not None, "not in the writer process"
    return _store_groups(replace(_WRITER, origin=origin), groups)


def _writer_record(batch: list[store_sources.FetchRecord]) -> None:
    assert _WRITER is not None, "not in the writer process"
    store_sources.record_fetches(_WRITER.db, batch)


def prepare(rt: Runtime, doc: Document) -> store_ingest.IngestItem:
    """Decide new / updated / duplicate and run the rules on the text that is new."""
    return prepare_many(rt, [doc])[0]


def prepare_many(
    rt: Runtime, docs: Sequence[Document], analyses: Sequence[Analysis | None] | None = None
) -> list[store_ingest.IngestItem]:
    """``prepare`` for a batch: one database lookup for all; ``analyses`` when already computed."""
    known = store_ingest.lookup_many(rt.db, [(d.canonical_url, d.content_hash, d.aliases) for d in docs])
    params = text_params(rt.settings)
    given = analyses if analyses is not None else [None] * len(docs)
    updated = [
        k.document_id
        for doc, k in zip(docs, known, strict=True)
        if k is not None and k.content_hash != doc.content_hash and k.canonical_url == doc.canonical_url
    ]
    stored = store_ingest.document_texts(rt.db, updated)
    return [
        _decide(rt.rules, doc, k, a or analyse(doc, params), stored)
        for doc, k, a in zip(docs, known, given, strict=True)
    ]


def _decide(
    rules: RuleSet,
    doc: Document,
    known: store_ingest.Known | None,
    analysis: Analysis,
    stored: Mapping[int, str],
) -> store_ingest.IngestItem:
    if known is not None and known.content_hash == doc.content_hash:
        return store_ingest.IngestItem(doc, None)  # same text: alias + sighting only
    if known is not None and known.canonical_url == doc.canonical_url:
        # updated in place: the rules read only the sentences the stored version did not have
        old = {
            normalize.sentence_key(s) for s in normalize.split_sentences(stored.get(known.document_id, ""))
        }
        sentences = normalize.split_sentences(doc.text)
        new_text = "\n\n".join(s for s in sentences if normalize.sentence_key(s) not in old)
        matches = evaluate(rules, doc, new_text) if new_text else ()
        return store_ingest.IngestItem(doc, None, matches, update_of=known.document_id)
    return store_ingest.IngestItem(doc, analysis.fingerprint, evaluate(rules, doc, doc.text))


def evaluate(rules: RuleSet, doc: Document, text: str) -> tuple[Match, ...]:
    """Per firing rule: its best hit, then its other firing hits with distinct evidence sentences."""
    fire_on = {r.id: r.fire_on for r in rules.rules}
    out: list[Match] = []
    for result in rules.explain(RuleInput.from_document(doc, text=text), firing_only=True):
        assert result.fired is not None  # firing_only
        out.append(result.fired)
        seen = {result.fired.evidence}
        for m in result.hits:
            if m.status in fire_on[result.rule_id] and m.evidence not in seen:
                seen.add(m.evidence)
                out.append(m)
    return tuple(out)
