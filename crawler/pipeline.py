"""The only module that knows the order of the stages.

One pass over a source, step by step:

1. Load the source's state (HTTP validators, last body hash, last page snapshot).
2. Fetch the source URL with a conditional GET (fetch). A 304 or an unchanged body ends here.
3. Feeds: parse entries (parse); drop entries already seen; for each new entry follow its link
   (search-feed redirects unwrapped), fetch the article and extract its main text (extract);
   when the article cannot be fetched, keep the feed's summary and say so.
   Pages: extract the watched region (extract), diff it against the last snapshot (pagediff);
   the added text becomes a document.
4. Canonicalise the URL and hash the normalised text (normalize). A document already stored
   under that URL is re-read on its changed sentences only; the same text is only an alias.
5. Fingerprint the text for near-duplicate detection (dedup) and run the rules on the new text
   (match).
6. Store everything in one transaction (storage.ingest): document, aliases, sighting, story,
   matches, alerts and their outbox rows. The relay delivers the outbox later.
7. Record the fetch result and the source's health (storage.sources).

Each source is processed inside the single broad ``except`` of the program (``run_source``):
one broken source is recorded and never stops the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from storage import ingest as store_ingest
from storage import sources as store_sources
from storage.db import Database

from . import dedup, normalize, pagediff
from .config import Settings
from .errors import FetchError, HTTPStatusError, ParseError, SelectorNotFound, StorywatchError
from .extract import extract_article, extract_region
from .fetch import Fetcher
from .match import RuleInput, RuleSet, load_rules
from .parse import parse_feed
from .types import Document, FeedEntry, FeedHints, Fetched, Match, SourceResult, SourceSpec


log = logging.getLogger("storywatch.pipeline")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """Live resources of a pass or of the daemon (not a stage value: it is never passed downstream)."""

    settings: Settings
    db: Database
    fetcher: Fetcher
    rules: RuleSet
    clock: Callable[[], datetime] = utcnow
    origin: str = "live"


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
    """Process ``specs`` concurrently; results in the order given."""
    store_sources.sync_sources(rt.db, specs)
    gate = asyncio.Semaphore(rt.settings.fetch.concurrency)

    async def one(spec: SourceSpec) -> SourceOutcome:
        async with gate:
            out = await run_source(rt, spec)
        if on_done:
            on_done(out)
        return out

    return list(await asyncio.gather(*(one(s) for s in specs)))


async def run_source(rt: Runtime, spec: SourceSpec) -> SourceOutcome:
    """One source, start to end. The per-source error boundary lives here."""
    started, now = time.monotonic(), rt.clock()
    try:
        outcome = await _process(rt, spec, now)
    except StorywatchError as exc:
        outcome = _failure(spec, exc, _error_kind(exc))
    except Exception as exc:  # the one broad boundary: record, move on
        log.exception("source %s: internal error; recorded, other sources continue", spec.id,
                      extra={"source_id": spec.id})
        outcome = _failure(spec, exc, "internal")
    result = replace(outcome.result, seconds=round(time.monotonic() - started, 3))
    outcome = replace(outcome, result=result)
    store_sources.record_fetch(rt.db, spec, result, now=now, http_status=outcome.http_status)
    return outcome


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
        http_status=status, retry_after=retry_after, error_kind=kind,
    )


async def _process(rt: Runtime, spec: SourceSpec, now: datetime) -> SourceOutcome:
    state = store_sources.source_state(rt.db, spec.id)
    fetched = await rt.fetcher.fetch(spec.url, source_id=spec.id, validators=state.validators)
    body_hash = hashlib.sha256(fetched.body).hexdigest() if fetched.body else None
    max_age = _max_age(fetched)
    if fetched.not_modified or (body_hash and body_hash == state.body_hash):
        res = SourceResult(spec.id, "not-modified", bytes=len(fetched.body))
        store_sources.save_validators(rt.db, spec.id, fetched.validators, body_hash or state.body_hash)
        return SourceOutcome(res, http_status=fetched.status, cache_max_age=max_age)
    if spec.kind == "feed":
        docs, warnings, hints, times = await _feed_documents(rt, spec, fetched, now)
    else:
        docs, warnings = _page_documents(rt, spec, fetched, state.last_snapshot, now)
        hints, times = FeedHints(), ()
    results = _store(rt, docs, now)
    store_sources.save_validators(rt.db, spec.id, fetched.validators, body_hash)
    new = sum(r.status in ("new", "updated") for r in results)
    alert_ids = tuple(a for r in results for a in r.alert_ids)
    res = SourceResult(
        spec.id, "ok", new_documents=new, bytes=len(fetched.body), warnings=tuple(warnings),
        new_alerts=len(alert_ids),
    )
    return SourceOutcome(res, fetched.status, times, None, max_age, hints, None, alert_ids)


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
) -> tuple[list[Document], list[str], FeedHints, tuple[datetime, ...]]:
    feed = parse_feed(fetched.body, url=fetched.final_url, headers=fetched.headers, source_id=spec.id)
    warnings = list(feed.warnings)
    fresh_ids = store_sources.unseen_entries(rt.db, spec.id, [e.entry_id for e in feed.entries])
    fresh = [e for e in feed.entries if e.entry_id in fresh_ids]
    gate = asyncio.Semaphore(rt.settings.fetch.article_concurrency)

    async def one(entry: FeedEntry) -> tuple[Document | None, str | None]:
        async with gate:
            return await entry_document(rt, spec, entry, now)

    pairs = await asyncio.gather(*(one(e) for e in fresh))
    warnings.extend(w for _, w in pairs if w)
    docs = [d for d, _ in pairs if d is not None]
    times = tuple(e.published or now for e in fresh)
    return docs, warnings, feed.hints, times


async def entry_document(
    rt: Runtime, spec: SourceSpec, entry: FeedEntry, now: datetime
) -> tuple[Document | None, str | None]:
    """The document for one feed entry: the linked article, or the feed's own summary."""
    link = entry.link
    target = (normalize.unwrap_search_redirect(link) or link) if link else None
    warning = None
    if target and spec.fetch_articles:
        try:
            page = await rt.fetcher.fetch(target, source_id=spec.id, check_robots=True)
            art = extract_article(page.body, url=page.final_url, content_type=page.headers.get("content-type"))
            canonical = _canonical(rt, page.final_url, art.canonical_url)
            aliases = tuple(u for u in (link, target, page.final_url, *page.redirects) if u)
            return _document(
                spec, now, url=page.final_url, canonical=canonical, title=art.title or entry.title,
                text=art.text, published=art.published or entry.published, author=art.author or entry.author,
                language=art.language, aliases=aliases, entry_id=entry.entry_id,
            ), None
        except (FetchError, ParseError) as exc:
            warning = f"{target}: article unavailable ({exc}); kept the feed summary"
    if not (entry.summary or entry.title):
        return None, warning
    url = target or f"urn:storywatch:{spec.id}:{entry.entry_id}"
    canonical = _canonical(rt, url, None) if target else url
    doc = _document(
        spec, now, url=url, canonical=canonical, title=entry.title, text=entry.summary or entry.title,
        published=entry.published, author=entry.author, language=None,
        aliases=tuple(u for u in (link, target) if u), entry_id=entry.entry_id, origin="summary",
    )
    return doc, warning


def _canonical(rt: Runtime, url: str, page_canonical: str | None) -> str:
    extra = rt.settings.dedup.tracking_params
    return normalize.canonicalize_url(url, extra_tracking=extra, page_canonical=page_canonical)


def _document(spec: SourceSpec, now: datetime, *, url: str, canonical: str, title: str, text: str,
              published: datetime | None, author: str | None, language: str | None,
              aliases: tuple[str, ...], entry_id: str | None, origin: str = "article") -> Document:
    return Document(
        source_id=spec.id, url=url, canonical_url=canonical, title=title.strip(), text=text,
        discovered=now, content_hash=normalize.content_hash(f"{text}"), published=published,
        aliases=tuple(dict.fromkeys(aliases)), author=author, language=language,
        origin=origin,  # type: ignore[arg-type]
        entry_id=entry_id, source_kind=spec.kind, source_tags=spec.tags,
    )


# --------------------------------------------------------------------------- pages


def _page_documents(
    rt: Runtime, spec: SourceSpec, fetched: Fetched, last: str | None, now: datetime
) -> tuple[list[Document], list[str]]:
    assert spec.selector is not None
    region = extract_region(
        fetched.body, url=fetched.final_url, selector=spec.selector,
        content_type=fetched.headers.get("content-type"),
    )
    snapshot = pagediff.normalize_snapshot(region)
    change = pagediff.diff_snapshots(last, snapshot, ignore=spec.ignore_patterns)
    added = "\n".join(change.added)
    if last is None or change.changed:
        store_sources.save_snapshot(rt.db, spec.id, snapshot, added or None, now)
    if not change.added:
        return [], []
    digest = normalize.content_hash(f"{spec.id}\n{added}")
    doc = Document(
        source_id=spec.id, url=spec.url, canonical_url=f"{spec.url}#storywatch-{digest[:20]}",
        title=f"{spec.id}: page changed", text=added, discovered=now, content_hash=digest,
        origin="page", entry_id=f"snapshot:{digest[:20]}", source_kind=spec.kind, source_tags=spec.tags,
    )
    return [doc], []


# --------------------------------------------------------------------------- storing


def _store(rt: Runtime, docs: Sequence[Document], now: datetime) -> list[store_ingest.IngestResult]:
    if not docs:
        return []
    items = [prepare(rt, d) for d in docs]
    cfg = rt.settings
    return store_ingest.ingest(
        rt.db, [i for i in items if i is not None], alerts_cfg=cfg.alerts,
        threshold=cfg.dedup.threshold, now=now, origin=rt.origin,
    )


def prepare(rt: Runtime, doc: Document) -> store_ingest.IngestItem:
    """Decide new / updated / duplicate and run the rules on the text that is new."""
    known = store_ingest.lookup(rt.db, doc.canonical_url, doc.content_hash, doc.aliases)
    sentences = normalize.split_sentences(doc.text)
    keys = tuple(dict.fromkeys(normalize.sentence_key(s) for s in sentences))
    if known is not None and known.content_hash == doc.content_hash:
        return store_ingest.IngestItem(doc, None)  # same text: alias + sighting only
    if known is not None and known.canonical_url == doc.canonical_url:
        new_text = "\n\n".join(s for s in sentences if normalize.sentence_key(s) not in known.sentence_keys)
        matches = evaluate(rt.rules, doc, new_text) if new_text else ()
        return store_ingest.IngestItem(doc, None, matches, keys, update_of=known.document_id)
    d = rt.settings.dedup
    fp = None
    if doc.origin != "page":
        fp = dedup.fingerprint(
            doc.text, num_perm=d.num_perm, bands=d.bands, word_k=d.shingle_words, char_k=d.shingle_chars
        )
    return store_ingest.IngestItem(doc, fp, evaluate(rt.rules, doc, doc.text), keys)


def evaluate(rules: RuleSet, doc: Document, text: str) -> tuple[Match, ...]:
    """Per firing rule: its best hit, then its other firing hits with distinct evidence sentences."""
    given = RuleInput(
        title=doc.title, text=text, source_id=doc.source_id, source_kind=doc.source_kind,
        source_tags=doc.source_tags, url=doc.canonical_url, language=doc.language, published=doc.published,
    )
    best = rules.evaluate(given)
    if not best:
        return ()
    fire_on = {r.id: r.fire_on for r in rules.rules}
    fired = {m.rule_id: m for m in best}
    out: list[Match] = []
    for result in rules.explain(given):
        top = fired.get(result.rule_id)
        if top is None:
            continue
        out.append(top)
        seen = {top.evidence}
        for m in result.hits:
            if m.status in fire_on[result.rule_id] and m.evidence not in seen:
                seen.add(m.evidence)
                out.append(m)
    return tuple(out)
