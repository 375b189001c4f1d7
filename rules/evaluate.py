"""Evaluate one compiled query against one document (see rules/README.md, "Evaluation").

A query evaluates to a list of *hits*; a hit is a tuple of term occurrences (field + offsets) that
together satisfy the query. Leaves give one hit per occurrence; ``AND``/``OR`` concatenate their
operands' hits (``AND`` only when every operand has one); ``SENT``/``PARA`` re-evaluate their operand
inside each sentence/paragraph and merge what they find there into one hit; ``NEAR/n`` joins hits
that are at most n words apart; ``NOT/s|c|p`` and ``NOTNEAR/n`` drop hits that share a
sentence/clause/paragraph with (or are near) a hit of their right side.

Negation is a filter on occurrences: every occurrence gets a status from its clause (see
:mod:`rules.negation`) and the query is evaluated at three *levels*: asserted occurrences only,
asserted + hedged, and all. A hit first found at level 0 is asserted, at level 1 hedged, at level 2
negated. Exclusions (the right side of NOT) always see all occurrences, whatever their status.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from crawler.types import HitStatus
from rules.lang import (
    And,
    AtLeast,
    Exclude,
    Fact,
    ListTerms,
    Near,
    Node,
    Not,
    Or,
    Scope,
    Term,
    children,
)
from rules.negation import ClauseScan, classify, reaching, scan_clause
from rules.terms import CompiledLeaf
from rules.textspans import FieldText

TITLE, BODY = 0, 1
FIELD_NAMES = ("title", "body")
LEVELS: tuple[frozenset[HitStatus] | None, ...] = (
    frozenset({"asserted"}),
    frozenset({"asserted", "hedged"}),
    None,
)
LEVEL_STATUS: tuple[HitStatus, ...] = ("asserted", "hedged", "negated")
_FIELDS_OF = {
    "text": (TITLE, BODY),
    "title": (TITLE,),
    "body": (BODY,),
    "lead": (BODY,),
    "top": (TITLE, BODY),
}

UnitKind = Literal["sentence", "clause", "paragraph"]
Window = tuple[int, int, int]  # (field, start, end)


class Occ(NamedTuple):
    """One occurrence of a term: field (0 title, 1 body), offsets, the term as written, capture."""

    field: int
    start: int
    end: int
    label: str
    capture: tuple[str, str] | None = None


Hit = tuple[Occ, ...]


@dataclass(frozen=True)
class Present:
    """Which prefilter patterns occur in a document (ids of the prefilter's set)."""

    ids: Mapping[str, int]
    found: frozenset[int]

    def absent(self, pattern: str | None) -> bool:
        """True when the pattern is known to the prefilter and did not occur."""
        if pattern is None:
            return False
        i = self.ids.get(pattern)
        return i is not None and i not in self.found


@dataclass(frozen=True)
class DocMeta:
    source_id: str = ""
    source_kind: str = ""
    source_tags: tuple[str, ...] = ()
    url: str = ""
    language: str | None = None


class DocContext:
    """Per-document caches: field geometry, occurrences per term, statuses per occurrence."""

    def __init__(self, title: str, text: str, meta: DocMeta, present: Present | None = None) -> None:
        self.fields = (FieldText(title), FieldText(text))
        self.meta = meta
        self.present = present  # what the prefilter saw in the document (None: unknown)
        self._spans: dict[tuple[str, int], list[tuple[int, int]]] = {}
        self._occ: dict[tuple[str, int], tuple[list[Occ], list[int]]] = {}
        self._status: dict[Occ, HitStatus] = {}
        self._scans: dict[tuple[int, int, int], ClauseScan] = {}  # by (field, clause span)

    def occurrences(self, leaf: CompiledLeaf, f: int) -> tuple[list[Occ], list[int]]:
        """Occurrences of a leaf in field ``f``, sorted by offset, and their start offsets."""
        key = (leaf.key, f)
        if key not in self._occ:
            self._occ[key] = self._field_occurrences(leaf, f)
        return self._occ[key]

    def _field_occurrences(self, leaf: CompiledLeaf, f: int) -> tuple[list[Occ], list[int]]:
        found: list[Occ] = []
        for matcher, cap, value in leaf.parts:
            if self.present is not None and self.present.absent(matcher.prefilter):
                continue  # the prefilter saw no trace of this term in the document
            key = (matcher.key, f)
            if key not in self._spans:
                self._spans[key] = matcher.find(self.fields[f])
            capture = (cap, value) if cap else None
            found.extend(Occ(f, s, e, matcher.label, capture) for s, e in self._spans[key])
        if len(leaf.parts) > 1:
            found = _outermost(sorted(found, key=lambda o: (o.start, -o.end)))
        return found, [o.start for o in found]

    def status(self, occ: Occ) -> HitStatus:
        if occ not in self._status:
            scan, question = self._scan(occ)
            self._status[occ] = classify(scan, occ.start, occ.end, question=question)
        return self._status[occ]

    def _scan(self, occ: Occ) -> tuple[ClauseScan, bool]:
        ft = self.fields[occ.field]
        sent, clause = ft.clause_at(occ.start)
        key = (occ.field, *clause)
        if key not in self._scans:
            self._scans[key] = scan_clause(ft.text, *clause, lower=ft.lower)
        return self._scans[key], ft.text[sent[0] : sent[1]].endswith(("?", "？"))

    def status_reason(self, occ: Occ) -> str:
        """Why an occurrence is hedged or negated: the triggers that reach it, or the question."""
        scan, question = self._scan(occ)
        found = [f"{t.kind} by '{t.text}'" for t in reaching(scan, occ.start, occ.end)]
        return ", ".join(found + (["hedged: a question"] if question else []))

    def unit(self, occ: Occ, kind: UnitKind) -> tuple[int, int]:
        """Identity (field, start offset) of the sentence/clause/paragraph of an occurrence."""
        ft = self.fields[occ.field]
        if kind == "sentence":
            return (occ.field, ft.sentence_at(occ.start)[0])
        if kind == "paragraph":
            return (occ.field, ft.paragraph_at(occ.start)[0])
        return (occ.field, ft.clause_at(occ.start)[1][0])

    def unit_window(self, occ: Occ, kind: Literal["sentence", "paragraph", "clause"]) -> Window:
        ft = self.fields[occ.field]
        if kind == "clause":
            s, e = ft.clause_at(occ.start)[1]
        else:
            s, e = ft.sentence_at(occ.start) if kind == "sentence" else ft.paragraph_at(occ.start)
        return (occ.field, s, max(e, occ.end))

    def lead_end(self) -> int:
        return self.fields[BODY].lead_end()

    def fact(self, node: Fact) -> bool:
        return _FACTS[node.field](self.meta, node.value.lower())


def _outermost(occs: list[Occ]) -> list[Occ]:
    """Drop occurrences nested inside an earlier one ("Huawei" inside "Huawei Ascend")."""
    out: list[Occ] = []
    for o in occs:
        if out and o.end <= out[-1].end and o.start < out[-1].end:
            continue
        out.append(o)
    return out


def _site(meta: DocMeta, v: str) -> bool:
    host = (urlsplit(meta.url).hostname or "").lower()
    return any(
        h == v or h.endswith("." + v) or fnmatchcase(h, v) for h in (host, meta.source_id.lower()) if h
    )


_FACTS = {
    "source": lambda m, v: fnmatchcase(m.source_id.lower(), v),
    "site": _site,
    "url": lambda m, v: fnmatchcase(m.url.lower(), v) if "*" in v else v in m.url.lower(),
    "language": lambda m, v: (
        bool(m.language) and (m.language.lower() == v or m.language.lower().startswith(v + "-"))
    ),
    "tag": lambda m, v: v in (t.lower() for t in m.source_tags),
    "kind": lambda m, v: m.source_kind.lower() == v,
}


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(node: Node, ctx: DocContext, level: int, scope: Window | None = None) -> list[Hit]:
    """Hits of ``node`` using occurrences of statuses allowed at ``level`` inside ``scope``."""
    if isinstance(node, Term | ListTerms):
        return [(o,) for o in leaf_occurrences(node, ctx, level, scope)]
    if isinstance(node, And):
        return _and(node, ctx, level, scope)
    if isinstance(node, Or):
        return [h for c in node.children for h in evaluate(c, ctx, level, scope)]
    if isinstance(node, Scope):
        return _scope(node, ctx, level, scope)
    if isinstance(node, Near):
        return _near(node, ctx, level, scope)
    if isinstance(node, Exclude):
        return _exclude(node, ctx, level, scope)
    if isinstance(node, AtLeast):
        hits = evaluate(node.child, ctx, level, scope)
        return hits if len({o for h in hits for o in h}) >= node.n else []
    if isinstance(node, Fact):
        return [()] if ctx.fact(node) else []
    raise TypeError(f"cannot evaluate {type(node).__name__} here")  # Not is handled by And


def leaf_occurrences(node: Term | ListTerms, ctx: DocContext, level: int, scope: Window | None) -> list[Occ]:
    allowed = LEVELS[level]
    out: list[Occ] = []
    for f in _FIELDS_OF[node.field]:
        if scope is not None and scope[0] != f:
            continue
        occs, starts = ctx.occurrences(node.compiled, f)
        lo, hi = 0, len(occs)
        if scope is not None:
            lo, hi = bisect_left(starts, scope[1]), bisect_left(starts, scope[2])
        limit = ctx.lead_end() if f == BODY and node.field in ("lead", "top") else None
        for o in occs[lo:hi]:
            if scope is not None and o.end > scope[2]:
                continue
            if limit is not None and o.end > limit:
                break
            if allowed is None or ctx.status(o) in allowed:
                out.append(o)
    return out


def _and(node: And, ctx: DocContext, level: int, scope: Window | None) -> list[Hit]:
    hits: list[Hit] = []
    for c in node.children:
        if not isinstance(c, Not):
            found = evaluate(c, ctx, level, scope)
            if not found:
                return []
            hits.extend(found)
    for c in node.children:
        if isinstance(c, Not) and evaluate(c.child, ctx, 2, scope):
            return []
    return hits


def anchor_leaves(node: Node, ctx: DocContext) -> list[Term | ListTerms]:
    """Leaves one of whose occurrences every hit of ``node`` contains: for an AND, those of its
    operand with the fewest occurrences in the document (so SENT/PARA try the fewest windows)."""
    if isinstance(node, Term | ListTerms):
        return [node]
    if isinstance(node, And | Near):
        parts = node.children if isinstance(node, And) else (node.left, node.right)
        options = [leaves for c in parts if not isinstance(c, Not) and (leaves := anchor_leaves(c, ctx))]
        return min(options, key=lambda leaves: _count(leaves, ctx)) if options else []
    if isinstance(node, Exclude):
        return anchor_leaves(node.left, ctx)
    if isinstance(node, Not | Fact):
        return []
    return [leaf for c in children(node) for leaf in anchor_leaves(c, ctx)]


def _count(leaves: list[Term | ListTerms], ctx: DocContext) -> int:
    return sum(len(ctx.occurrences(leaf.compiled, f)[0]) for leaf in leaves for f in _FIELDS_OF[leaf.field])


def _scope(node: Scope, ctx: DocContext, level: int, scope: Window | None) -> list[Hit]:
    windows: set[Window] = set()
    for leaf in anchor_leaves(node.child, ctx):
        for o in leaf_occurrences(leaf, ctx, level, scope):
            f, s, e = ctx.unit_window(o, node.kind)
            windows.add((f, s, e) if scope is None else (f, max(s, scope[1]), min(e, scope[2])))
    out: list[Hit] = []
    for w in sorted(windows):
        merged = sorted({o for h in evaluate(node.child, ctx, level, w) for o in h})
        if merged:
            out.append(tuple(merged))
    return out


def _extent(hit: Hit) -> tuple[int, int, int]:
    return hit[0].field, min(o.start for o in hit), max(o.end for o in hit)


def _near(node: Near, ctx: DocContext, level: int, scope: Window | None) -> list[Hit]:
    lefts = [h for h in evaluate(node.left, ctx, level, scope) if h]
    rights = [h for h in evaluate(node.right, ctx, level, scope) if h] if lefts else []
    out: list[Hit] = []
    for left in lefts:
        partners = [r for r in rights if _close(ctx, _extent(left), _extent(r), node.n, node.ordered)]
        if partners:
            out.append(tuple(sorted(set(left).union(*partners))))
    return out


def _close(ctx: DocContext, a: tuple[int, int, int], b: tuple[int, int, int], n: int, ordered: bool) -> bool:
    if a[0] != b[0] or a == b:
        return False
    ft = ctx.fields[a[0]]
    if b[1] >= a[2]:
        return ft.gap_words(a[2], b[1], n) <= n
    if ordered:
        return False
    if a[1] >= b[2]:
        return ft.gap_words(b[2], a[1], n) <= n
    return True  # overlapping extents


def _exclude(node: Exclude, ctx: DocContext, level: int, scope: Window | None) -> list[Hit]:
    hits = evaluate(node.left, ctx, level, scope)
    if not hits:
        return []
    blockers = evaluate(node.right, ctx, 2, scope)
    if not blockers:
        return hits
    if any(not b for b in blockers):
        return []  # a true source/url/tag condition excludes everything
    if node.scope == "near":

        def keep(h: Hit) -> bool:
            return bool(h) and not any(_close(ctx, _extent(h), _extent(b), node.n, False) for b in blockers)

    else:
        kind: UnitKind = node.scope
        units = {ctx.unit(o, kind) for b in blockers for o in b}

        def keep(h: Hit) -> bool:
            return not any(ctx.unit(o, kind) in units for o in h)

    if all(keep(h) for h in hits):
        return hits
    return _kept(node.left, ctx, level, scope, keep)


def _kept(
    node: Node, ctx: DocContext, level: int, scope: Window | None, keep: Callable[[Hit], bool]
) -> list[Hit]:
    """The hits of ``node`` that ``keep`` accepts, where an AND still needs a kept hit of every
    operand: excluding the evidence of ``top:x AND SENT(...)`` must not leave the gate firing alone."""
    if isinstance(node, Or):
        return [h for c in node.children for h in _kept(c, ctx, level, scope, keep)]
    if isinstance(node, And):
        if not evaluate(node, ctx, level, scope):
            return []
        parts = [_kept(c, ctx, level, scope, keep) for c in node.children if not isinstance(c, Not)]
        return [] if any(not p for p in parts) else [h for p in parts for h in p]
    return [h for h in evaluate(node, ctx, level, scope) if keep(h)]


def hit_key(ctx: DocContext, hit: Hit) -> tuple[int, int, int]:
    """Identity of a hit for de-duplication across levels: field and sentence range."""
    ft = ctx.fields[hit[0].field]
    return hit[0].field, ft.sentence_at(hit[0].start)[0], ft.sentence_at(max(o.end for o in hit) - 1)[0]
