"""The CPU half of a feed pass: pure per-article work, run inline or in a worker process.

Feed bytes are parsed here too (feedparser). For each fetched article page (``ArticleJob``): extract
the main text (extract), canonicalise the URL and hash the text (normalize) into a ``Document``,
then compute what storing it needs whatever the database holds (``Analysis``: the near-duplicate
fingerprint). Everything here is pure and synchronous: bytes and frozen dataclasses
in, frozen dataclasses out. Rules are not run here: they are cheap, and the live rule set (the
daemon reloads it) stays in the main process.

``Offload`` runs feeds, watched regions and batches of jobs in worker processes (``spawn``, a pebble
pool) so that parsing, extraction and fingerprinting overlap with the main process's HTTP work and
never run on its event loop, and runs database writes in one writer: a process (started by
``crawler.pipeline.store.writer_process``), or a thread. Each call has a CPU budget
(``fetch.cpu_budget`` per document): past it, pebble kills the worker and starts another, and the
call raises ``CPUBudgetExceeded`` (a worker that dies: ``WorkerDied``) for that document only; a
batch past its budget is redone one document at a time, so only the slow one fails. Without a pool
(``workers=0``: tests, small passes) the same functions run inline, so the results never depend on
where they were computed.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pebble import ProcessExpired, ProcessPool

from crawler.bounds.markup import DEFAULT_MAX_DEPTH
from crawler.dedup import minhash as dedup
from crawler.dedup import text as normalize
from crawler.dedup import urls
from crawler.errors import CPUBudgetExceeded, ParseError, WorkerDied
from crawler.extract import extract_article
from crawler.feeds import parse_feed
from crawler.types import Document, FeedEntry, Fetched, ParsedFeed, SourceSpec

log = logging.getLogger("storywatch.workers")
MIB = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class TextParams:
    """The settings the pure work depends on (dedup layout, extra tracking parameters)."""

    num_perm: int
    bands: int
    word_k: int
    char_k: int
    tracking_params: tuple[str, ...] = ()
    max_depth: int = DEFAULT_MAX_DEPTH  # extract.max_depth


@dataclass(frozen=True)
class Analysis:
    """What storing a document needs from its text alone: its near-duplicate fingerprint."""

    fingerprint: dedup.Fingerprint | None  # None for page-change documents


@dataclass(frozen=True)
class ArticleJob:
    spec: SourceSpec
    entry: FeedEntry
    page: Fetched
    now: datetime


@dataclass(frozen=True)
class Built:
    document: Document
    analysis: Analysis


def analyse(doc: Document, params: TextParams, *, folded: str | None = None) -> Analysis:
    """The fingerprint of ``doc`` (none for page changes: they never join stories); ``folded`` is
    ``normalize.fold_text(doc.text)`` when the caller has it."""
    if doc.origin == "page":
        return Analysis(None)
    fp = dedup.fingerprint(
        doc.text,
        num_perm=params.num_perm,
        bands=params.bands,
        word_k=params.word_k,
        char_k=params.char_k,
        folded=folded,
    )
    return Analysis(fp)


def canonical(url: str, page_canonical: str | None, params: TextParams) -> str:
    return urls.canonicalize_url(
        url, extra_tracking=params.tracking_params, page_canonical=page_canonical
    )


def make_document(
    spec: SourceSpec,
    now: datetime,
    *,
    url: str,
    canonical: str,
    title: str,
    text: str,
    published: datetime | None,
    author: str | None,
    language: str | None,
    aliases: tuple[str, ...],
    entry_id: str | None,
    origin: str = "article",
    folded: str | None = None,
) -> Document:
    """``folded``: ``normalize.fold_text(text)`` when the caller has it (for the content hash)."""
    return Document(
        source_id=spec.id,
        url=url,
        canonical_url=canonical,
        title=title.strip(),
        text=text,
        discovered=now,
        content_hash=normalize.content_hash(text, folded=folded),
        published=published,
        aliases=tuple(dict.fromkeys(aliases)),
        author=author,
        language=language,
        origin=origin,  # type: ignore[arg-type]
        entry_id=entry_id,
        source_kind=spec.kind,
        source_tags=spec.tags,
    )


def article_document(job: ArticleJob, params: TextParams) -> Document:
    """The document of one fetched article page; raises ParseError when no text can be extracted."""
    return _article(job, params)[0]


def _article(job: ArticleJob, params: TextParams) -> tuple[Document, str]:
    """``article_document`` and its folded text (``normalize.fold_text``: the fingerprint reads it)."""
    page, entry = job.page, job.entry
    art = extract_article(
        page.body,
        url=page.final_url,
        content_type=page.headers.get("content-type"),
        max_depth=params.max_depth,
    )
    link = entry.link
    target = (urls.unwrap_search_redirect(link) or link) if link else None
    folded = normalize.fold_text(art.text)
    doc = make_document(
        job.spec,
        job.now,
        url=page.final_url,
        canonical=canonical(page.final_url, art.canonical_url, params),
        title=art.title or entry.title,
        text=art.text,
        published=art.published or entry.published,
        author=art.author or entry.author,
        language=art.language,
        aliases=tuple(u for u in (link, target, page.final_url, *page.redirects) if u),
        entry_id=normalize.entry_key(entry.entry_id, entry.title, entry.summary),
        folded=folded,
    )
    return doc, folded


def build_articles(jobs: Sequence[ArticleJob], params: TextParams) -> list[Built | str]:
    """Per job, the document and its analysis, or the extraction error's message."""
    out: list[Built | str] = []
    for job in jobs:
        try:
            doc, folded = _article(job, params)
        except ParseError as exc:
            out.append(str(exc))
            continue
        out.append(Built(doc, analyse(doc, params, folded=folded)))
    return out


GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)
GC_OLD_THRESHOLD = 100  # middle-generation collections between full ones (default: 10)


def settle_heap() -> None:
    """Call once a long-lived process (the database writer; a big pass's main process through
    :func:`settled_heap`) has loaded what it keeps: modules, settings, rules. ``gc.freeze`` takes
    those objects out of the cyclic collector's sight, and young collections run less often. With
    CPython's defaults the collector re-scanned them on every full collection and ran thousands of
    young ones per pass: ~7% of the CPU of a 40,000-document pass (``bench/ingest.py``), now ~2.5%.
    Objects are still freed by reference counting as soon as they are unused; only cycles wait a
    little longer."""
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, GC_OLD_THRESHOLD)


@contextmanager
def settled_heap() -> Iterator[None]:
    """:func:`settle_heap` for a block (a pass in a process that goes on afterwards): on exit the
    frozen objects are collectable again and the thresholds are restored."""
    thresholds = gc.get_threshold()
    settle_heap()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@dataclass(frozen=True)
class WriterProcess:
    """How to start a database writer process: ``start(*args)`` runs in it first. ``serves`` are the
    objects it was started for (settings, rules): the pipeline writes through it only while its
    runtime still uses those very objects. ``serve(*objects)``, run in the process, makes it write for
    other objects of the same kinds (``Offload.serve_writer``: the daemon's reload)."""

    start: Callable[..., None]
    args: tuple[Any, ...]
    serves: tuple[object, ...]
    serve: Callable[..., None] | None = None


DEFAULT_CPU_BUDGET = 5.0  # seconds per document (fetch.cpu_budget)
BATCH_ALLOWANCE = 0.25  # seconds per document a batch may use beyond one budget before it is split


class Offload:
    """Work moved off the event loop: feeds, regions and article batches to ``workers`` processes (0:
    inline) under a CPU budget, and database writes to ONE writer, a process when ``writer`` is given,
    else a thread. One writer runs the writes in submission order, one transaction at a time (only
    small writes queued before the writer process started go through the thread). A writer process
    that dies is replaced by the thread (the database rolled back the transaction it had open). Close
    it when done."""

    def __init__(
        self, workers: int, *, writer: WriterProcess | None = None, budget: float = DEFAULT_CPU_BUDGET
    ) -> None:
        self.workers = workers
        self.budget = budget  # seconds per document; the daemon updates it on reload
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPool(max_workers=workers, context=ctx) if workers > 0 else None
        self._thread: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="storywatch-db")
        self._process: ProcessPoolExecutor | None = None
        self._serve = writer.serve if writer is not None else None
        self._serves: tuple[object, ...] = ()
        self._process_started = False  # it is spawned by the first call that may start it
        self.writer_pid: int | None = None  # the writer process's, once ``warm(writer=True)`` started it
        self.writes = {"process": 0, "thread": 0}  # writes submitted to each writer so far
        if writer is not None:
            self._process = ProcessPoolExecutor(
                1, mp_context=ctx, initializer=writer.start, initargs=writer.args
            )
            self._serves = writer.serves

    async def warm(self, *, writer: bool = False) -> None:
        """Start the worker processes now (a spawn imports the code: ~1-2 s), not at the first poll.
        With ``writer``, start the writer process too (a long-lived runtime: the daemon) without
        waiting for it: document writes queue for it meanwhile, small writes go to the thread until it
        runs (``Write.start_writer``); then ``writer_pid`` is set."""
        if writer and self._process is not None and not self._process_started:
            self._process.submit(os.getpid).add_done_callback(self._writer_ready)
        if self._pool is not None:
            pool = self._pool
            await asyncio.gather(*(asyncio.wrap_future(pool.schedule(_ready)) for _ in range(self.workers)))

    def _writer_ready(self, started: Future[int]) -> None:
        if not started.cancelled() and started.exception() is None:
            self.writer_pid, self._process_started = started.result(), True

    @property
    def pooled(self) -> bool:
        """Whether CPU work runs in worker processes (else inline, in the caller's thread)."""
        return self._pool is not None

    @property
    def writer_running(self) -> bool:
        """Whether a writer process takes writes (False: none was given, or it died)."""
        return self._process is not None

    def writer_process_for(self, *objects: object) -> bool:
        """Whether writes for a runtime holding ``objects`` may go to the writer process."""
        return (
            self._process is not None
            and len(objects) == len(self._serves)
            and all(a is b for a, b in zip(objects, self._serves, strict=True))
        )

    def serve_writer(self, *objects: object) -> bool:
        """From now on the writer process writes for ``objects`` (the daemon's reload: new settings and
        rules). ``serve(*objects)`` is queued behind the writes already submitted, which run with the
        objects they were submitted for; every write submitted after this call runs with the new ones
        (one process, in submission order). False when there is no writer process to move (writes for
        ``objects`` then go to the thread, see ``writer_process_for``)."""
        process, serve = self._process, self._serve
        if process is None or serve is None:
            return False
        try:
            process.submit(serve, *objects)  # spawns the process if no write has yet
        except BrokenProcessPool:
            self._writer_died()
            return False
        self._serves = objects
        return True

    async def build(self, jobs: Sequence[ArticleJob], params: TextParams) -> list[Built | str]:
        """``build_articles`` in a worker under the batch's budget; past it, each job again alone under
        its own budget, so the slow page gets its error (a string, as for ParseError) and the others
        their documents."""
        if not jobs:
            return []
        if self._pool is None:
            return build_articles(jobs, params)
        first = jobs[0]
        allowed = self.budget + BATCH_ALLOWANCE * len(jobs)
        batch = functools.partial(build_articles, list(jobs), params)
        try:
            return await self.cpu(batch, url=first.page.final_url, source_id=first.spec.id, seconds=allowed)
        except CPUBudgetExceeded as exc:
            if len(jobs) == 1:
                return [str(exc)]
        singles = await asyncio.gather(*(self._build_one(job, params) for job in jobs))
        return [one for out in singles for one in out]

    async def _build_one(self, job: ArticleJob, params: TextParams) -> list[Built | str]:
        call = functools.partial(build_articles, [job], params)
        try:
            return await self.cpu(call, url=job.page.final_url, source_id=job.spec.id)
        except CPUBudgetExceeded as exc:
            log.warning("%s", exc, extra={"source_id": job.spec.id})
            return [str(exc)]

    async def parse(
        self,
        body: bytes,
        *,
        url: str,
        headers: Mapping[str, str],
        source_id: str,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> ParsedFeed:
        """``parse_feed`` in a worker process (feedparser is ~0.3 ms of CPU per entry: off the event
        loop, the main process keeps fetching), with one budget per MiB of body; inline without a pool.
        Raises ParseError (CPUBudgetExceeded past the budget)."""
        call = functools.partial(
            parse_feed, body, url=url, headers=dict(headers), source_id=source_id, max_depth=max_depth
        )
        return await self.cpu(call, url=url, source_id=source_id, seconds=self.budget * (1 + len(body) / MIB))

    async def cpu(
        self, call: Callable[[], T], *, url: str, source_id: str | None, seconds: float | None = None
    ) -> T:
        """``call()`` (a picklable partial of a module-level function) in a worker process, stopped after
        ``seconds`` (default: one budget): then CPUBudgetExceeded for ``url``; inline without a pool."""
        if self._pool is None:
            return call()
        limit = self.budget if seconds is None else seconds
        future = self._pool.schedule(call, timeout=limit)
        try:
            return await asyncio.wrap_future(future)
        except TimeoutError:
            raise CPUBudgetExceeded(
                f"processing took longer than its CPU budget ({limit:.1f} s, fetch.cpu_budget): its worker "
                "process was stopped and replaced; retried at the next poll",
                url=url,
                source_id=source_id,
            ) from None
        except ProcessExpired as exc:
            raise WorkerDied(
                f"the worker process died while processing this (exit code {exc.exitcode}); it was "
                "replaced; retried at the next poll",
                url=url,
                source_id=source_id,
            ) from None

    async def write(self, call: Write[T]) -> T:
        """Run ``call`` on the writer (see ``submit_write``) and wait for it."""
        try:
            return await asyncio.wrap_future(self.submit_write(call))
        except BrokenProcessPool:
            self._writer_died()
            return await asyncio.wrap_future(self.submit_write(call))

    def submit_write(self, call: Write[T]) -> Future[T]:
        """Queue ``call`` on the writer: ``call.remote`` in the writer process when there is one (and
        ``call.serves`` matches, see ``Write.start_writer``), else ``call.local`` in the writer thread."""
        fn, process = call.remote, self._process
        usable = call.start_writer or self._process_started
        if fn is not None and process is not None and usable and self.writer_process_for(*call.serves):
            try:
                future = process.submit(fn, *call.remote_args)
            except BrokenProcessPool:
                self._writer_died()
            else:
                self._process_started = True
                self.writes["process"] += 1
                return future
        assert self._thread is not None, "Offload used after close()"
        self.writes["thread"] += 1
        return self._thread.submit(call.local)

    def _writer_died(self) -> None:
        if self._process is not None:
            log.warning("the database writer process died; writing from the main process from now on")
            _shutdown(self._process)
            self._process = None

    def close(self) -> None:
        pool, process, self._pool, self._process = self._pool, self._process, None, None
        if pool is not None:
            pool.close()
            pool.join(timeout=5)
            pool.stop()
            pool.join()
        _shutdown(process)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)


@dataclass(frozen=True)
class Write(Generic[T]):
    """One database write: ``local()`` runs in this process; ``remote(*remote_args)`` (a module-level
    function, picklable arguments) runs in the writer process started for ``serves``. A call without
    ``start_writer`` uses the writer process only once an earlier call started it (small writes are
    not worth the ~1 s a process takes to start; they never depend on an unfinished larger one)."""

    local: Callable[[], T]
    remote: Callable[..., T] | None = None
    remote_args: tuple[Any, ...] = ()
    serves: tuple[object, ...] = ()
    start_writer: bool = True


def _ready() -> bool:
    return True


def _shutdown(pool: ProcessPoolExecutor | None) -> None:
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
