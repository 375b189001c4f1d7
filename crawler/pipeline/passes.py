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
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime

from crawler.errors import FetchError, HTTPStatusError, ParseError, SelectorNotFound, StorywatchError
from crawler.pipeline.documents import feed_documents, page_documents
from crawler.pipeline.runtime import Runtime, SourceOutcome
from crawler.pipeline.store import record_call, write_documents
from crawler.pipeline.workers import (
    Write,
)
from crawler.types import FeedHints, Fetched, SourceResult, SourceSpec, Validators
from storage import sources as store_sources

log = logging.getLogger("storywatch.pipeline")


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
        call = record_call(self.rt, batch)
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
    elif rt.offload is not None:  # through the one writer: never wait on the database lock on the loop
        await rt.offload.write(record_call(rt, [rec]))
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
        SourceResult(spec.id, "error", error=msg),
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
    capped = False
    if spec.kind == "feed":
        feed = await feed_documents(rt, spec, fetched, now)
        docs, warnings, hints, times, capped = feed.docs, feed.warnings, feed.hints, feed.times, feed.capped
    else:
        docs, warnings = await page_documents(rt, spec, fetched, state.last_snapshot, now)
        hints, times = FeedHints(), ()
    results = await write_documents(rt, docs, now)
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
    if capped:  # new entries wait: the next poll must read the same body again, not get a 304
        return outcome, _Keep(Validators(), None)
    return outcome, _Keep(fetched.validators, body_hash)


def _max_age(fetched: Fetched) -> float | None:
    cc = fetched.headers.get("cache-control", "")
    for part in cc.split(","):
        k, _, v = part.strip().partition("=")
        if k.lower() in ("max-age", "s-maxage") and v.strip().isdigit():
            return float(v.strip())
    return None
