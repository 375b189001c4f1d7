"""The CPU half of a feed pass: pure per-article work, run inline or in a worker process.

For each fetched article page (``ArticleJob``): extract the main text (extract), canonicalise the
URL and hash the text (normalize) into a ``Document``, then compute what storing it needs whatever
the database holds (``Analysis``: sentence keys and the near-duplicate fingerprint). Everything here
is pure and synchronous: bytes and frozen dataclasses in, frozen dataclasses out. Rules are not run
here: they are cheap, and the live rule set (the daemon reloads it) stays in the main process.

``CpuPool`` runs batches of jobs in ONE worker process (``spawn``) so that extraction and
fingerprinting overlap with the main process's HTTP and database work on a second core. When the
pool is absent (``workers=0``) or breaks (a killed worker), the same functions run inline, so the
results never depend on where they were computed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime

from . import dedup, normalize
from .errors import ParseError
from .extract import extract_article
from .types import Document, FeedEntry, Fetched, SourceSpec

log = logging.getLogger("storywatch.workers")


@dataclass(frozen=True)
class TextParams:
    """The settings the pure work depends on (dedup layout, extra tracking parameters)."""

    num_perm: int
    bands: int
    word_k: int
    char_k: int
    tracking_params: tuple[str, ...] = ()


@dataclass(frozen=True)
class Analysis:
    """What storing a document needs from its text alone: sentence keys and fingerprint."""

    keys: tuple[str, ...]
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


def analyse(doc: Document, params: TextParams) -> Analysis:
    """Sentence keys of ``doc`` (in order, distinct) and its fingerprint (not for page changes)."""
    keys = tuple(dict.fromkeys(normalize.sentence_key(s) for s in normalize.split_sentences(doc.text)))
    if doc.origin == "page":
        return Analysis(keys, None)
    fp = dedup.fingerprint(
        doc.text, num_perm=params.num_perm, bands=params.bands, word_k=params.word_k, char_k=params.char_k
    )
    return Analysis(keys, fp)


def canonical(url: str, page_canonical: str | None, params: TextParams) -> str:
    return normalize.canonicalize_url(url, extra_tracking=params.tracking_params, page_canonical=page_canonical)


def make_document(spec: SourceSpec, now: datetime, *, url: str, canonical: str, title: str, text: str,
                  published: datetime | None, author: str | None, language: str | None,
                  aliases: tuple[str, ...], entry_id: str | None, origin: str = "article") -> Document:
    return Document(
        source_id=spec.id, url=url, canonical_url=canonical, title=title.strip(), text=text,
        discovered=now, content_hash=normalize.content_hash(f"{text}"), published=published,
        aliases=tuple(dict.fromkeys(aliases)), author=author, language=language,
        origin=origin,  # type: ignore[arg-type]
        entry_id=entry_id, source_kind=spec.kind, source_tags=spec.tags,
    )


def article_document(job: ArticleJob, params: TextParams) -> Document:
    """The document of one fetched article page; raises ParseError when no text can be extracted."""
    page, entry = job.page, job.entry
    art = extract_article(page.body, url=page.final_url, content_type=page.headers.get("content-type"))
    link = entry.link
    target = (normalize.unwrap_search_redirect(link) or link) if link else None
    return make_document(
        job.spec, job.now, url=page.final_url, canonical=canonical(page.final_url, art.canonical_url, params),
        title=art.title or entry.title, text=art.text, published=art.published or entry.published,
        author=art.author or entry.author, language=art.language,
        aliases=tuple(u for u in (link, target, page.final_url, *page.redirects) if u), entry_id=entry.entry_id,
    )


def build_articles(jobs: Sequence[ArticleJob], params: TextParams) -> list[Built | str]:
    """Per job, the document and its analysis, or the extraction error's message."""
    out: list[Built | str] = []
    for job in jobs:
        try:
            doc = article_document(job, params)
        except ParseError as exc:
            out.append(str(exc))
            continue
        out.append(Built(doc, analyse(doc, params)))
    return out


class CpuPool:
    """``workers`` processes for :func:`build_articles`; 0 runs it inline. Close it when done."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)

    async def build(self, jobs: Sequence[ArticleJob], params: TextParams) -> list[Built | str]:
        if self._pool is None or not jobs:
            return build_articles(jobs, params)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, build_articles, list(jobs), params)
        except BrokenProcessPool:
            log.warning("the article worker process died; extracting in the main process from now on")
            self.close()
            return build_articles(jobs, params)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
