"""Rescan: run the current rules over stored documents (after a rule is added or changed).

``storywatch rescan --since DATE [--rule ID ...]``, step by step:

1. Load the rule files as the daemon would; ``--rule`` keeps only those rules (unknown ids are an
   error, so a typo never rescans nothing).
2. Read the stored documents published since DATE (undated ones: discovered since DATE), oldest
   first, with their story ids; give each its source's current kind and tags.
3. Evaluate the rules on each document's whole text (pure; ``pipeline.evaluate``).
4. Record the hits in the database, origin ``rescan`` (``storage.backfill_store.record_rescan``):
   every new match is stored; only a (rule, story) pair that never alerted may alert, and its
   deliveries follow the policy: ``none`` (no outbox rows at all), ``digest`` (held, then released
   as ONE digest per channel), ``all`` (sent like live alerts).
5. Report every hit with its evidence: rule, status, evidence sentence, document URL, story id,
   and what was done with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from crawler.backfill.job import AlertPolicy
from crawler.config import Settings
from crawler.errors import ConfigError
from crawler.pipeline import evaluate, load_ruleset, utcnow
from crawler.types import SourceSpec
from rules.engine import RuleSet
from storage import backfill_store, outbox
from storage.backfill_store import RescanHit, RescanRecord, StoredDocument
from storage.db import Database, open_database

RECORD_CHUNK = 500


@dataclass(frozen=True)
class RescanOptions:
    since: datetime | None = None  # None: every stored document
    rule_ids: tuple[str, ...] = ()  # empty: every enabled rule
    alerts: AlertPolicy = "digest"
    source_ids: tuple[str, ...] = ()  # empty: documents of every source


@dataclass(frozen=True)
class Finding:
    """One match the current rules make on a stored document, and what the rescan did with it."""

    rule_id: str
    title: str
    severity: str
    status: str  # asserted | hedged | negated
    evidence: str
    url: str
    document_id: int
    story_id: int
    source_id: str
    outcome: str  # alerted | pair-alerted | corroborated | known (see storage.backfill_store.RescanRecord)
    alert_id: int | None = None

    @property
    def new(self) -> bool:
        """A match that was not recorded before this rescan: one the old rules missed."""
        return self.outcome != "known"


@dataclass(frozen=True)
class RescanReport:
    policy: AlertPolicy
    rules: tuple[str, ...]
    documents: int
    findings: tuple[Finding, ...]
    released: int = 0
    delivery: Any = None

    @property
    def new_matches(self) -> int:
        return sum(1 for f in self.findings if f.new)

    @property
    def new_alerts(self) -> int:
        return sum(1 for f in self.findings if f.outcome == "alerted")

    def as_json(self) -> dict[str, Any]:
        return {
            "alerts_policy": self.policy,
            "rules": list(self.rules),
            "documents": self.documents,
            "new_matches": self.new_matches,
            "new_alerts": self.new_alerts,
            "released_for_digest": self.released,
            "findings": [{**f.__dict__, "new": f.new} for f in self.findings],
        }


def select_rules(rules: RuleSet, rule_ids: Sequence[str]) -> RuleSet:
    """Only the rules named (raises ConfigError naming unknown ids)."""
    if not rule_ids:
        return rules
    known = {r.id for r in rules.rules}
    unknown = sorted(set(rule_ids) - known)
    if unknown:
        raise ConfigError(
            f"unknown or disabled rule id(s): {', '.join(unknown)} (see `storywatch rules list`)"
        )
    return RuleSet(r for r in rules.rules if r.id in rule_ids)


def find_hits(
    rules: RuleSet, docs: Sequence[StoredDocument], specs: Mapping[str, SourceSpec]
) -> list[RescanHit]:
    """Pure: the matches ``rules`` make on ``docs`` (documents without a story are skipped)."""
    hits = []
    for stored in docs:
        if stored.story_id is None:
            continue
        doc = stored.document
        spec = specs.get(doc.source_id)
        if spec is not None:
            doc = replace(doc, source_kind=spec.kind, source_tags=spec.tags)
        for m in evaluate(rules, doc, doc.text):
            hits.append(RescanHit(stored.document_id, stored.story_id, doc.source_id, doc.url, m))
    return hits


def _finding(rec: RescanRecord) -> Finding:
    h, m = rec.hit, rec.hit.match
    return Finding(
        m.rule_id,
        m.title,
        m.severity,
        m.status,
        m.evidence,
        h.url,
        h.document_id,
        h.story_id,
        h.source_id,
        rec.outcome,
        rec.alert_id,
    )


async def run_rescan(
    settings: Settings, opts: RescanOptions, *, db: Database | None = None, deliver: bool = False
) -> RescanReport:
    """Steps 1-5 of the module docstring; with ``deliver`` the relay runs once at the end."""
    rules = select_rules(load_ruleset(settings), opts.rule_ids)
    database = db or open_database(settings.database_url)
    try:
        docs = backfill_store.stored_documents(database, since=opts.since, source_ids=opts.source_ids)
        specs = {s.id: s for s in settings.source_specs()}
        hits = find_hits(rules, docs, specs)
        records: list[RescanRecord] = []
        for i in range(0, len(hits), RECORD_CHUNK):
            records += backfill_store.record_rescan(
                database,
                hits[i : i + RECORD_CHUNK],
                alerts_cfg=settings.alerts,
                policy=opts.alerts,
                now=utcnow(),
            )
        released = outbox.release_held(database) if opts.alerts == "digest" and records else 0
        delivery = None
        if deliver and opts.alerts != "none":
            from crawler.pipeline import deliver_outbox

            delivery = await deliver_outbox(settings, database)
    finally:
        if db is None:
            database.dispose()
    ids = tuple(r.id for r in rules.rules)
    return RescanReport(opts.alerts, ids, len(docs), tuple(_finding(r) for r in records), released, delivery)


__all__ = ["Finding", "RescanOptions", "RescanReport", "find_hits", "run_rescan", "select_rules"]
