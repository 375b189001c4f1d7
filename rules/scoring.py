"""Back-testing rules on labelled cases: per-rule TP/FP/FN, precision, recall, exact-set accuracy
and every miss with its evidence or the reason nothing fired (``storywatch rules eval``).

Pure: the caller reads the case file and prints what these return::

    cases = parse_cases(text, origin="cases.jsonl")          # raises CaseError (file:line)
    report = score_cases(ruleset, select(cases, split="check", lang="zh"))
    report.failures(min_precision=0.95, min_recall=0.90)     # [] when every rule passes
    render_eval(report), eval_json(report)

A case is a JSON object per line: ``{"id", "title"?, "text", "labels": [rule ids], "source"?,
"url"?, "lang"?, "split"?}`` (the ``rules test`` document plus the rule ids that must fire).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from crawler.errors import RuleError
from rules.engine import RuleSet
from rules.testing import doc_input

MissKind = Literal["FN", "FP"]


class CaseError(RuleError):
    """A labelled case file that cannot be read (where and what)."""


@dataclass(frozen=True)
class Case:
    """One labelled document: the rule ids that must fire on it, and nothing else."""

    id: str
    labels: frozenset[str]
    doc: Mapping[str, Any]  # the rules-test document (title, text, source, url, language)
    lang: str = ""
    split: str = ""


@dataclass(frozen=True)
class Miss:
    """A rule that fired without its label (FP) or did not fire with it (FN)."""

    case_id: str
    rule_id: str
    kind: MissKind
    evidence: str  # the evidence sentence of the firing (FP) or best suppressed (FN) hit, or ""
    why: str


@dataclass(frozen=True)
class RuleScore:
    rule_id: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        """None when the rule never fired (nothing to be precise about)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """None when no case carries the rule's label."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass(frozen=True)
class EvalReport:
    cases: int
    exact: int  # cases whose fired rule set equals their label set
    rules: tuple[RuleScore, ...]
    misses: tuple[Miss, ...]
    unknown_labels: tuple[str, ...] = ()  # labels naming no loaded rule

    @property
    def accuracy(self) -> float | None:
        return self.exact / self.cases if self.cases else None

    def failures(self, *, min_precision: float | None = None, min_recall: float | None = None) -> list[str]:
        """One line per rule below a threshold (an undefined ratio never fails)."""
        out = []
        for r in self.rules:
            for name, value, floor in (
                ("precision", r.precision, min_precision),
                ("recall", r.recall, min_recall),
            ):
                if floor is not None and value is not None and value < floor:
                    out.append(f"{r.rule_id}: {name} {value:.2f} < {floor:.2f}")
        out.extend(f"{label}: label names no loaded rule" for label in self.unknown_labels)
        return out


def parse_cases(text: str, origin: str = "<cases>") -> list[Case]:
    """Cases from JSONL text; a bad line raises CaseError naming ``origin:line``."""
    cases: list[Case] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CaseError(f"not a JSON object: {exc.msg}", file=origin, line=n) from None
        if not isinstance(row, dict) or "text" not in row or not isinstance(row.get("labels"), list):
            raise CaseError(
                'expected an object with "text" and "labels" (a list of rule ids)', file=origin, line=n
            )
        lang = str(row.get("lang") or row.get("language") or "")
        doc = dict(row, language=row.get("language") or row.get("lang"))
        cases.append(
            Case(
                str(row.get("id") or f"{origin}:{n}"),
                frozenset(map(str, row["labels"])),
                doc,
                lang,
                str(row.get("split") or ""),
            )
        )
    return cases


def select(cases: Iterable[Case], *, split: str | None = None, lang: str | None = None) -> list[Case]:
    """The cases of one split and/or one language (``zh`` matches ``zh-CN``)."""
    return [
        c
        for c in cases
        if (split is None or c.split == split)
        and (lang is None or c.lang.lower() == lang.lower() or c.lang.lower().startswith(lang.lower() + "-"))
    ]


def score_cases(ruleset: RuleSet, cases: Sequence[Case]) -> EvalReport:
    """Run every case through the rules and score each rule against the labels."""
    known = [r.id for r in ruleset.rules]
    counts = {rid: [0, 0, 0] for rid in known}
    misses: list[Miss] = []
    exact = 0
    labels_seen: set[str] = set()
    for case in cases:
        doc = doc_input(case.doc)
        fired = {m.rule_id: m for m in ruleset.evaluate(doc)}
        labels_seen |= case.labels
        exact += set(fired) == case.labels
        for rid in sorted(set(fired) | case.labels):
            c = counts.setdefault(rid, [0, 0, 0])
            if rid in fired and rid in case.labels:
                c[0] += 1
            elif rid in fired:
                c[1] += 1
                m = fired[rid]
                misses.append(
                    Miss(case.id, rid, "FP", m.evidence, f"fired ({m.status})" + _captures(m.captures))
                )
            else:
                c[2] += 1
                evidence, why = ruleset.why_not(doc, rid)
                misses.append(Miss(case.id, rid, "FN", evidence, why))
    scores = tuple(RuleScore(rid, *c) for rid, c in counts.items())
    return EvalReport(len(cases), exact, scores, tuple(misses), tuple(sorted(labels_seen - set(known))))


def _captures(captures: Mapping[str, str]) -> str:
    return (" " + ", ".join(f"{k}={v}" for k, v in captures.items())) if captures else ""


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_eval(report: EvalReport, *, failures: Sequence[str] = ()) -> str:
    """The human report: a per-rule table, exact-set accuracy, every miss, threshold failures."""
    width = max([len("rule"), *(len(r.rule_id) for r in report.rules)])
    lines = [f"{'rule':<{width}}  {'TP':>4} {'FP':>4} {'FN':>4}  precision  recall"]
    for r in report.rules:
        ratios = f"{_ratio(r.precision):>9}  {_ratio(r.recall):>6}"
        lines.append(f"{r.rule_id:<{width}}  {r.tp:>4} {r.fp:>4} {r.fn:>4}  {ratios}")
    acc = report.accuracy
    lines.append(
        f"exact label sets: {report.exact}/{report.cases}" + (f" ({acc:.1%})" if acc is not None else "")
    )
    if report.misses:
        lines.append(f"misses ({len(report.misses)}):")
        for m in report.misses:
            lines.append(f"  {m.case_id} {m.kind} {m.rule_id}: {m.why}")
            if m.evidence:
                lines.append(f"      {m.evidence!r}")
    for f in failures:
        lines.append(f"BELOW THRESHOLD {f}")
    return "\n".join(lines)


def eval_json(report: EvalReport, *, failures: Sequence[str] = ()) -> dict[str, Any]:
    """The ``--json`` output."""
    return {
        "cases": report.cases,
        "exact": report.exact,
        "accuracy": report.accuracy,
        "rules": [
            {
                "rule": r.rule_id,
                "tp": r.tp,
                "fp": r.fp,
                "fn": r.fn,
                "precision": r.precision,
                "recall": r.recall,
            }
            for r in report.rules
        ],
        "misses": [
            {"case": m.case_id, "rule": m.rule_id, "kind": m.kind, "evidence": m.evidence, "why": m.why}
            for m in report.misses
        ],
        "unknown_labels": list(report.unknown_labels),
        "failures": list(failures),
    }
