"""The rules engine: rule files -> a compiled RuleSet -> matches with evidence (pure, no I/O but
reading the rule files in :func:`load_rules`).

Percolator design: every query is compiled once; each incoming document is run against all rules.
A literal prefilter (one RE2 set of the literals each rule needs, matched case-insensitively over
the document's UTF-8 bytes) picks the candidate rules; only those are evaluated
(:mod:`rules.evaluate`). Public API::

    rules = load_rules([Path("rules/")])           # raises RuleError (file:line:column, rule id)
    errors = lint_paths([Path("rules/")])          # every error, nothing raised
    matches = rules.evaluate(RuleInput(title=..., text=...))   # only matches that fire
    results = rules.explain(doc)                   # every rule with a hit, all hits and statuses
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import re2

from crawler.errors import RuleError
from crawler.types import Document, HitStatus, Match, SourceKind, Span
from rules.evaluate import (
    BODY,
    FIELD_NAMES,
    LEVEL_STATUS,
    DocContext,
    DocMeta,
    Hit,
    Present,
    evaluate,
    hit_key,
)
from rules.lang import And, Exclude, Fact, ListTerms, Near, Node, Not, Or, Scope, Term, children
from rules.load import Rule, load_files
from rules.terms import (
    TermMatcher,
    best_clause,
    compile_query,
    leaf_matchers,
    rarity,
    required_literals,
)

PREFILTER_CLAUSES = 8  # literal clauses per rule checked by the prefilter
PREFILTER_MAX_MEM = 256 << 20


@dataclass(frozen=True)
class RuleInput:
    """What the rules read from one document."""

    title: str = ""
    text: str = ""
    source_id: str = ""
    source_kind: SourceKind = "feed"
    source_tags: tuple[str, ...] = ()
    url: str = ""
    language: str | None = None
    published: datetime | None = None

    @classmethod
    def from_document(cls, doc: Document, *, text: str | None = None) -> RuleInput:
        """What the rules read from ``doc``: its canonical URL, and ``text`` instead of its whole
        text when given (an article updated in place is read on its new sentences only)."""
        return cls(
            title=doc.title,
            text=doc.text if text is None else text,
            source_id=doc.source_id,
            source_kind=doc.source_kind,
            source_tags=doc.source_tags,
            url=doc.canonical_url,
            language=doc.language,
            published=doc.published,
        )


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome on one document: every distinct hit (best first) and whether it fires."""

    rule_id: str
    fires: bool
    hits: tuple[Match, ...]  # asserted hits first, then hedged, then negated; best first in each
    fired: Match | None = None  # the hit that fires the rule (what evaluate() returns)


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    query: Node
    clauses: tuple[frozenset[int], ...]  # prefilter literal ids; one of each clause must occur
    max_level: int  # the highest evaluation level fire_on needs
    whole_hits: bool = False  # every hit is a whole witness of the query (see _whole_hits)


def load_rules(paths: Sequence[Path]) -> RuleSet:
    """Load and compile rule files (directories: every *.yaml/*.yml). Raises the first RuleError."""
    result = load_files(paths)
    if result.errors:
        first = result.errors[0]
        more = len(result.errors) - 1
        if more:
            first.add_note(f"... and {more} more error(s); run `storywatch rules lint` to see all")
        raise first
    return RuleSet(result.rules)


def lint_paths(paths: Sequence[Path]) -> list[RuleError]:
    """Every problem in the rule files (never raises for rule problems)."""
    return list(load_files(paths).errors)


class RuleSet:
    """Compiled rules; evaluate documents against all of them."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(r for r in rules if r.enabled)
        cache: dict[str, TermMatcher] = {}
        queries = [compile_query(r.query, cache) for r in self.rules]
        score: dict[str, int] = {}
        for m in (m for q in queries for m in leaf_matchers(q)):
            if m.prefilter is not None:
                score[m.prefilter] = min(score.get(m.prefilter, 1 << 30), rarity(m))
        self._prefilter = _Prefilter([required_literals(q) for q in queries], score)
        self._compiled = tuple(
            CompiledRule(
                r,
                q,
                self._prefilter.clauses[i],
                max(LEVEL_STATUS.index(s) for s in r.fire_on),
                _whole_hits(q),
            )
            for i, (r, q) in enumerate(zip(self.rules, queries, strict=True))
        )

    def __len__(self) -> int:
        return len(self.rules)

    def __reduce__(self) -> tuple[type[RuleSet], tuple[tuple[Rule, ...]]]:
        return (RuleSet, (self.rules,))  # compiled patterns are rebuilt on unpickling

    def candidates(self, doc: RuleInput) -> list[CompiledRule]:
        """Rules whose source condition holds and whose required literals all occur."""
        return self._candidates(doc)[0]

    def _candidates(self, doc: RuleInput) -> tuple[list[CompiledRule], Present]:
        ids, present = self._prefilter.candidates(doc.title, doc.text)
        out = []
        for i in ids:
            cr = self._compiled[i]
            if cr.rule.source.allows(doc.source_id, doc.source_kind, doc.source_tags):
                out.append(cr)
        return out, present

    def evaluate(self, doc: RuleInput) -> tuple[Match, ...]:
        """The matches that fire (one per rule: its best hit among the classes in fire_on)."""
        cands, present = self._candidates(doc)
        if not cands:
            return ()
        ctx = _context(doc, present)
        out = []
        for cr in cands:
            found = _first_firing(cr, ctx)
            if found is not None:
                out.append(_to_match(cr.rule, ctx, *found))
        return tuple(out)

    def explain(self, doc: RuleInput, *, firing_only: bool = False) -> tuple[RuleResult, ...]:
        """Every rule with at least one hit, all its hits with their status (for reports).

        ``firing_only``: only the rules that fire, each with all its hits (a rule that does not
        fire then costs what :meth:`evaluate` spends on it, and its hits are never classified).
        """
        cands, present = self._candidates(doc)
        if not cands:
            return ()
        ctx = _context(doc, present)
        results = []
        for cr in cands:
            firing = _first_firing(cr, ctx) if firing_only else None
            if firing_only and firing is None:
                continue
            hits = _all_hits(cr, ctx)
            if not hits:
                continue
            if not firing_only:
                firing = _first_firing(cr, ctx)
            matches = tuple(_to_match(cr.rule, ctx, h, s) for h, s in hits)
            fired = _to_match(cr.rule, ctx, *firing) if firing else None
            results.append(RuleResult(cr.rule.id, fired is not None, matches, fired))
        return tuple(results)

    def why_not(self, doc: RuleInput, rule_id: str) -> tuple[str, str]:
        """Why a rule does not fire on a document (for back-testing reports): the evidence of its
        best suppressed hit (or "") and the reason, e.g. ``best hit hedged (hedged by 'claim')``
        or ``no hit; absent: @hardware_use``."""
        cr = next((c for c in self._compiled if c.rule.id == rule_id), None)
        if cr is None:
            return "", "the rule is not loaded (unknown or disabled)"
        if not cr.rule.source.allows(doc.source_id, doc.source_kind, doc.source_tags):
            return "", f"its source condition excludes source {doc.source_id or '(none)'!r}"
        ids, present = self._prefilter.candidates(doc.title, doc.text)
        ctx = _context(doc, present)
        hits = _all_hits(cr, ctx) if self._compiled.index(cr) in ids else []
        if hits and _first_firing(cr, ctx) is None:
            hit, status = hits[0]
            reasons = dict.fromkeys(ctx.status_reason(o) for o in hit if ctx.status(o) not in cr.rule.fire_on)
            why = f"best hit {status}" + (f" ({'; '.join(r for r in reasons if r)})" if any(reasons) else "")
            return _to_match(cr.rule, ctx, hit, status).evidence, why
        if hits:
            return "", "it fires"
        absent = list(dict.fromkeys(_absent(cr.query, ctx)))
        together = "every term occurs, but not together as the query requires"
        detail = f"absent: {', '.join(absent)}" if absent else together
        return "", f"no hit; {detail}"


def _absent(node: Node, ctx: DocContext) -> list[str]:
    """The terms and lists a query needs that do not occur in the document (an OR is absent
    when all its alternatives are; the right side of exclusions is not needed)."""
    if isinstance(node, Term | ListTerms):
        found = any(ctx.occurrences(node.compiled, f)[0] for f in (0, 1))
        return [] if found else [f"@{node.name}" if isinstance(node, ListTerms) else node.text]
    if isinstance(node, Or):
        parts = [_absent(c, ctx) for c in node.children]
        if any(not p for p in parts):
            return []
        return ["(" + " OR ".join(x for p in parts for x in p) + ")"]
    if isinstance(node, Exclude):
        return _absent(node.left, ctx)
    if isinstance(node, Not):
        return []
    return [x for c in children(node) for x in _absent(c, ctx)]


def _context(doc: RuleInput, present: Present) -> DocContext:
    meta = DocMeta(doc.source_id, doc.source_kind, doc.source_tags, doc.url, doc.language)
    return DocContext(doc.title, doc.text, meta, present)


def _level_hits(cr: CompiledRule, ctx: DocContext, level: int) -> list[Hit]:
    return [h for h in evaluate(cr.query, ctx, level) if h]


def _first_firing(cr: CompiledRule, ctx: DocContext) -> tuple[Hit, HitStatus] | None:
    """The hit that fires the rule, and its class; None when the rule does not fire.

    Evaluation is monotone in the occurrences it may use: no hit with every status allowed means
    no hit at all, found without classifying a single occurrence. Only then are the stricter
    levels evaluated, except that for a query whose every hit is a whole witness
    (:func:`_whole_hits`) a hit whose occurrences are all asserted is also found with asserted
    occurrences only, and fires without re-evaluating. (Not so in general: the hits of
    ``top:x AND SENT(...)`` are its operands' hits, and the gate's may be asserted while the
    sentence's is hedged.)
    """
    everything = sorted(_level_hits(cr, ctx, 2), key=_rank)
    if not everything:
        return None
    if cr.whole_hits and "asserted" in cr.rule.fire_on:
        for hit in everything:  # a whole witness whose occurrences are all asserted is an asserted hit
            if all(ctx.status(o) == "asserted" for o in hit):
                return hit, "asserted"
    seen: set[tuple[int, int, int]] = set()
    for level in range(cr.max_level + 1):
        status = LEVEL_STATUS[level]
        hits = everything if level == 2 else _level_hits(cr, ctx, level)
        fresh = [h for h in hits if hit_key(ctx, h) not in seen]
        if status in cr.rule.fire_on and fresh:
            return _best(fresh), status
        seen.update(hit_key(ctx, h) for h in hits)
    return None


def _whole_hits(node: Node, in_scope: bool = False) -> bool:
    """True when every hit of ``node`` holds all the occurrences that make it match: an AND outside
    ``SENT``/``PARA``/``CLAUSE`` yields its operands' hits separately, and ``ATLEAST`` counts
    occurrences across hits, so neither qualifies."""
    if isinstance(node, Term | ListTerms | Fact | Not):
        return True
    if isinstance(node, And):
        return in_scope and all(_whole_hits(c, in_scope) for c in node.children)
    if isinstance(node, Or):
        return all(_whole_hits(c, in_scope) for c in node.children)
    if isinstance(node, Scope):
        return _whole_hits(node.child, True)
    if isinstance(node, Near):
        return _whole_hits(node.left, in_scope) and _whole_hits(node.right, in_scope)
    if isinstance(node, Exclude):
        return _whole_hits(node.left, in_scope)
    return False


def _all_hits(cr: CompiledRule, ctx: DocContext) -> list[tuple[Hit, HitStatus]]:
    seen: set[tuple[int, int, int]] = set()
    out: list[tuple[Hit, HitStatus]] = []
    for level, status in enumerate(LEVEL_STATUS):
        for h in sorted(_level_hits(cr, ctx, level), key=_rank):
            key = hit_key(ctx, h)
            if key not in seen:
                seen.add(key)
                out.append((h, status))
    return out


def _rank(hit: Hit) -> tuple[int, int, int]:
    return (-len({o.label for o in hit}), 0 if hit[0].field == BODY else 1, hit[0].start)


def _best(hits: list[Hit]) -> Hit:
    return min(hits, key=_rank)


def _to_match(rule: Rule, ctx: DocContext, hit: Hit, status: HitStatus) -> Match:
    ft = ctx.fields[hit[0].field]
    last_end = max(o.end for o in hit)
    ev_start = ft.sentence_at(hit[0].start)[0]
    ev_end = max(ft.sentence_at(last_end - 1)[1], last_end)
    spans = _outer_spans({Span(o.start - ev_start, o.end - ev_start, o.label) for o in hit})
    captures: dict[str, str] = {}
    for o in hit:
        if o.capture is not None:
            captures.setdefault(*o.capture)
    return Match(
        rule_id=rule.id,
        title=rule.title,
        severity=rule.severity,
        status=status,
        evidence=ft.text[ev_start:ev_end],
        spans=spans,
        captures=captures,
        labels=dict(rule.labels),
        field=FIELD_NAMES[hit[0].field],
        development=development_key(rule, captures),
        development_window=rule.develops_within if rule.develops_on else None,
    )


def development_key(rule: Rule, captures: Mapping[str, str]) -> str | None:
    """``vendor=Huawei`` for a rule with ``develops_on: [vendor]``; None when the rule declares no
    ``develops_on`` or a named capture is missing from the match."""
    if not rule.develops_on or any(name not in captures for name in rule.develops_on):
        return None
    return ";".join(f"{name}={captures[name]}" for name in rule.develops_on)


def _outer_spans(spans: set[Span]) -> tuple[Span, ...]:
    """Spans sorted by offset, without those nested in a longer one ("train*" in "pre-train*")."""
    out: list[Span] = []
    for sp in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and sp.end <= out[-1].end:
            continue
        out.append(sp)
    return tuple(out)


class _Prefilter:
    """One case-insensitive RE2 set over the literals of every term; maps a document to candidate
    rules (those whose chosen literal clauses all occur) and to the set of literals present, which
    lets the evaluator skip the search for terms that cannot occur."""

    def __init__(self, rule_clauses: list[list[frozenset[str]]], score: dict[str, int]) -> None:
        self._ids: dict[str, int] = {}
        self.clauses: list[tuple[frozenset[int], ...]] = []
        self._by_anchor: dict[int, list[int]] = {}
        self._always: list[int] = []
        for i, clauses in enumerate(rule_clauses):
            chosen = _choose(clauses, score)
            ids = tuple(frozenset(self._ids.setdefault(p, len(self._ids)) for p in c) for c in chosen)
            self.clauses.append(ids)
            if not ids:
                self._always.append(i)
            for lid in ids[0] if ids else ():
                self._by_anchor.setdefault(lid, []).append(i)
        for p in sorted(score):  # every term's literal: tells the evaluator which terms cannot occur
            self._ids.setdefault(p, len(self._ids))
        self._anchors = frozenset(self._by_anchor)
        self._patterns = list(self._ids)
        self._set = self._compile(self._patterns)

    @staticmethod
    def _compile(patterns: list[str]) -> object | None:
        if not patterns:
            return None
        opts = re2.Options()
        opts.case_sensitive = False
        opts.max_mem = PREFILTER_MAX_MEM
        rset = re2.Set.SearchSet(opts)
        for p in patterns:
            rset.Add(p)
        rset.Compile()
        return rset

    def candidates(self, title: str, text: str) -> tuple[list[int], Present]:
        if self._set is None:
            return list(self._always), Present({}, frozenset())
        found = frozenset(self._set.Match(f"{title}\n{text}".encode()) or ())  # type: ignore[attr-defined]
        cands = set(self._always)
        for lid in found & self._anchors:
            cands.update(self._by_anchor[lid])
        ids = sorted(i for i in cands if all(not c.isdisjoint(found) for c in self.clauses[i]))
        return ids, Present(self._ids, found)


def _choose(clauses: list[frozenset[str]], score: dict[str, int]) -> list[frozenset[str]]:
    """Up to PREFILTER_CLAUSES distinct clauses, most selective first (the first is the anchor)."""
    unique = list(dict.fromkeys(c for c in clauses if c))
    chosen: list[frozenset[str]] = []
    while unique and len(chosen) < PREFILTER_CLAUSES:
        best = best_clause(unique, score)
        chosen.append(best)
        unique.remove(best)
    return chosen
