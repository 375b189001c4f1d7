"""The live resources of a pass (``Runtime``), what a pass over one source produced, and the rule set."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from crawler.config import Settings
from crawler.fetch import Fetcher
from crawler.pipeline.groupwrite import Submits
from crawler.pipeline.workers import (
    Analysis,
    Offload,
    TextParams,
)
from crawler.types import Document, FeedHints, SourceResult
from rules.engine import RuleSet, load_rules
from storage import ingest as store_ingest
from storage.db import Database

log = logging.getLogger("storywatch.pipeline")


def utcnow() -> datetime:
    return datetime.now(UTC)


Prepared = tuple[Document, Analysis | None]
Group = tuple[list[Prepared], datetime]  # one source's documents and the time of its pass


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
    # group commit of document writes: made on first use with ``offload``, or set by the caller (the
    # scale-out workers); ``replace`` resets it
    store_group: Submits[Group, list[store_ingest.IngestResult]] | None = field(
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

def text_params(settings: Settings) -> TextParams:
    d = settings.dedup
    return TextParams(
        d.num_perm, d.bands, d.shingle_words, d.shingle_chars, d.tracking_params, settings.extract.max_depth
    )
