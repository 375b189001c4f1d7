"""Steps 5-6 of a pass: new, updated or duplicate; the rules on the new text; the write (inline or writer)."""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar, cast

from crawler.config import Settings
from crawler.dedup import text as normalize
from crawler.fetch import Fetcher
from crawler.pipeline.groupwrite import GroupWriter
from crawler.pipeline.runtime import Group, Prepared, Runtime, text_params
from crawler.pipeline.workers import (
    Analysis,
    Write,
    WriterProcess,
    analyse,
    settle_heap,
)
from crawler.types import Document, Match
from rules.engine import RuleInput, RuleSet
from storage import ingest as store_ingest
from storage import sources as store_sources

log = logging.getLogger("storywatch.pipeline")
T = TypeVar("T")


def store_groups(
    rt: Runtime, groups: Sequence[tuple[Sequence[Prepared], datetime]]
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


async def write_documents(
    rt: Runtime, docs: list[Prepared], now: datetime
) -> list[store_ingest.IngestResult]:
    """Store one source's documents: inline, or with group commit (batches that queue up while a write
    runs go out together as the next one, see ``crawler.pipeline.groupwrite``) through the writer of
    ``rt.offload`` or the caller's ``rt.store_group``."""
    if rt.offload is None and rt.store_group is None:
        return store_groups(rt, [(docs, now)])[0]
    if not docs:
        return []
    if rt.store_group is None:
        offload = rt.offload
        assert offload is not None

        async def flush(groups: list[Group]) -> list[list[store_ingest.IngestResult]]:
            serves = (rt.settings, rt.rules)  # read at each write: the daemon may swap the rules
            call = Write(lambda: store_groups(rt, groups), _writer_store, (groups, rt.origin), serves)
            return await offload.write(call)

        rt.store_group = GroupWriter(
            flush, max_size=STORE_GROUP_DOCS, size=lambda g: len(g[0]), linger=STORE_GROUP_LINGER
        )
    return await rt.store_group.submit((docs, now))


def storage_write(rt: Runtime, fn: Callable[..., T], *args: Any) -> Write[T]:
    """``fn(db, *args)`` on the runtime's writer (``Offload.write``): a module-level storage function with
    picklable arguments, run in the writer process on its connection once the process runs, else in
    the writer thread on ``rt.db``. Small writes that depend on no unfinished document write (the
    daemon's poll records and schedules): they never start the process."""
    local = functools.partial(fn, rt.db, *args)
    return Write(local, _writer_storage, (fn, *args), (rt.settings, rt.rules), start_writer=False)


def record_call(rt: Runtime, batch: list[store_sources.FetchRecord]) -> Write[None]:
    serves = (rt.settings, rt.rules)
    local = functools.partial(store_sources.record_fetches, rt.db, batch)
    return Write(local, _writer_record, (batch,), serves, start_writer=False)


# The database writer process (``workers.WriterProcess``): its own connection, and the settings and
# rule set of the main process's runtime (sent to it, never re-read from the files: those may have
# changed since the runtime loaded them).
_WRITER: Runtime | None = None


def writer_process(settings: Settings, rules: RuleSet, database_url: str) -> WriterProcess:
    """What ``Offload`` needs to start a writer process for a runtime with these settings and rules,
    and to move it to the runtime's next ones (``Offload.serve_writer(settings, rules)``)."""
    return WriterProcess(_writer_start, (settings, rules, database_url), (settings, rules), _writer_serve)


def _writer_start(settings: Settings, rules: RuleSet, database_url: str) -> None:
    global _WRITER
    from storage.db import open_database

    db = open_database(database_url, migrate=False)  # the main process migrated it
    _WRITER = Runtime(settings, db, cast(Fetcher, None), rules)  # it never fetches
    settle_heap()


def _writer_serve(settings: Settings, rules: RuleSet) -> None:
    assert _WRITER is not None, "not in the writer process"
    _WRITER.settings, _WRITER.rules = settings, rules
    gc.unfreeze()  # the replaced ones may be freed now
    settle_heap()


def _writer_store(groups: list[Group], origin: str) -> list[list[store_ingest.IngestResult]]:
    assert _WRITER is not None, "not in the writer process"
    return store_groups(replace(_WRITER, origin=origin), groups)


def _writer_storage(fn: Callable[..., T], *args: Any) -> T:
    assert _WRITER is not None, "not in the writer process"
    return fn(_WRITER.db, *args)


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
        old = {normalize.sentence_key(s) for s in normalize.sentence_texts(stored.get(known.document_id, ""))}
        sentences = normalize.sentence_texts(doc.text)
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
