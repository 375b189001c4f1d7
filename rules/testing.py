"""Rule tests: inline ``tests:`` of rule files, ``storywatch rules test`` results and reports.

Pure functions; the CLI reads files / URLs and prints what these return::

    run_inline_tests(ruleset) -> list[InlineTestResult]
    test_documents(ruleset_or_paths, docs) -> list[dict]     # the --json output
    render_report(ruleset_or_paths, docs) -> rich.text.Text  # the human output
    lint_report(errors) -> str                               # file:line:column: [rule-id] message
    lint_and_test(paths) -> (report, ok)                     # `storywatch rules lint`
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text

from crawler.errors import RuleError
from crawler.types import HitStatus, Match
from rules.engine import RuleInput, RuleResult, RuleSet, lint_paths, load_rules
from rules.load import InlineTest, load_files

SEVERITY_STYLE = {
    "info": "dim",
    "low": "cyan",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}
STATUS_STYLE = {"asserted": "green", "hedged": "yellow", "negated": "red"}


@dataclass(frozen=True)
class InlineTestResult:
    rule_id: str
    index: int  # 1-based position in the rule's tests
    passed: bool
    message: str  # why it failed, or "ok"
    file: str = ""
    line: int = 0
    name: str = ""
    fired: bool = False
    status: HitStatus | None = None  # status of the rule's best hit, None without a hit


def run_inline_tests(ruleset: RuleSet) -> list[InlineTestResult]:
    """Run every ``tests:`` item of every rule of the set."""
    return [_run_one(ruleset, test) for rule in ruleset.rules for test in rule.tests]


def _run_one(ruleset: RuleSet, test: InlineTest) -> InlineTestResult:
    doc = RuleInput(
        title=test.title,
        text=test.text,
        source_id=test.source_id,
        source_kind=test.source_kind,  # type: ignore[arg-type]
        source_tags=test.source_tags,
        url=test.url,
        language=test.language,
    )
    result = next((r for r in ruleset.explain(doc) if r.rule_id == test.rule_id), None)
    fired = result is not None and result.fires
    best = result.fired or result.hits[0] if result is not None else None
    problems = []
    if fired != test.fires:
        seen = f"best hit {best.status}: {best.evidence!r}" if best else "no hit"
        problems.append(f"expected fires: {str(test.fires).lower()}, got {str(fired).lower()} ({seen})")
    if test.status is not None and (best is None or best.status != test.status):
        problems.append(f"expected status {test.status}, got {best.status if best else 'no hit'}")
    for key, value in test.captures.items():
        got = best.captures.get(key) if best else None
        if got != value:
            problems.append(f"expected capture {key}={value!r}, got {got!r}")
    return InlineTestResult(
        rule_id=test.rule_id,
        index=test.index,
        passed=not problems,
        message="; ".join(problems) or "ok",
        file=test.file,
        line=test.line,
        name=test.name,
        fired=fired,
        status=best.status if best else None,
    )


def inline_test_report(results: Sequence[InlineTestResult]) -> str:
    """One line per failed test (file:line: [rule-id] test N: why) and a summary line."""
    lines = [
        f"{r.file}:{r.line}: [{r.rule_id}] test {r.index}{f' ({r.name})' if r.name else ''}: {r.message}"
        for r in results
        if not r.passed
    ]
    failed = len(lines)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)


def lint_report(errors: Iterable[RuleError]) -> str:
    """``file:line:column: [rule-id] message`` lines, one per error."""
    return "\n".join(str(e) for e in errors)


def lint_and_test(paths: Sequence[Path]) -> tuple[str, bool]:
    """What ``storywatch rules lint`` prints, and whether everything is fine.

    Every load error (file:line:column); when the files load, the failing inline tests and a
    summary line.
    """
    errors = lint_paths(paths)
    if errors:
        return lint_report(errors) + f"\n{len(errors)} error(s)", False
    results = run_inline_tests(load_rules(paths))
    return inline_test_report(results), all(r.passed for r in results)


# --- the loaded rules at a glance (the web's rules page and /api/v1/rules) ----------------------


@dataclass(frozen=True)
class RuleInfo:
    id: str
    title: str
    severity: str
    description: str
    file: str
    line: int
    labels: Mapping[str, str]
    fire_on: tuple[str, ...]
    tests: int  # inline tests
    failures: tuple[str, ...]  # why each failing inline test failed


@dataclass(frozen=True)
class RulesOverview:
    """Every loaded rule with its inline test results, and every lint error of the files."""

    rules: tuple[RuleInfo, ...]
    errors: tuple[str, ...]  # file:line:column: [rule-id] message

    @property
    def ok(self) -> bool:
        return not self.errors and not any(r.failures for r in self.rules)


def rules_overview(paths: Sequence[Path]) -> tuple[RulesOverview, RuleSet]:
    """Load ``paths`` once: the overview (lint errors, tests) and the set of the rules that load."""
    loaded = load_files(paths)
    ruleset = RuleSet(loaded.rules)
    results = run_inline_tests(ruleset)
    infos = tuple(
        RuleInfo(
            r.id,
            r.title,
            r.severity,
            r.description,
            r.file,
            r.line,
            dict(r.labels),
            tuple(r.fire_on),
            len(r.tests),
            tuple(f"test {t.index}: {t.message}" for t in results if t.rule_id == r.id and not t.passed),
        )
        for r in ruleset.rules
    )
    return RulesOverview(infos, tuple(str(e) for e in loaded.errors)), ruleset


# --- rules test on documents -------------------------------------------------------------------


def doc_input(doc: Mapping[str, Any]) -> RuleInput:
    """A ``rules test`` document ({"id","title","text","source"?,"url"?,"published"?,"language"?}).

    ``source`` is a source id string, or a mapping {"id", "kind", "tags"}.
    """
    source = doc.get("source") or {}
    if isinstance(source, str):
        source = {"id": source}
    published = doc.get("published")
    if isinstance(published, str):
        published = datetime.fromisoformat(published.replace("Z", "+00:00"))
    return RuleInput(
        title=str(doc.get("title") or ""),
        text=str(doc.get("text") or ""),
        source_id=str(source.get("id") or ""),
        source_kind=source.get("kind") or "feed",
        source_tags=tuple(source.get("tags") or ()),
        url=str(doc.get("url") or ""),
        language=doc.get("language"),
        published=published if isinstance(published, datetime) else None,
    )


def _ruleset(rules: RuleSet | Sequence[Path]) -> RuleSet:
    return rules if isinstance(rules, RuleSet) else load_rules(list(rules))


def test_documents(
    rules: RuleSet | Sequence[Path], docs: Iterable[Mapping[str, Any]], *, suppressed: bool = False
) -> list[dict[str, Any]]:
    """Per document: {"id", "matches": [{"rule","severity","status","evidence","spans","captures"}]}.

    Only matches that fire are listed; spans are [start, end, term] offsets into the evidence.
    With ``suppressed``, also {"suppressed": [...]}: the best hit of each rule that matched but did
    not fire (hedged or negated), in the same shape. The ``rules test --json`` output and the web's
    ``/api/v1/rules/test`` both come from here.
    """
    ruleset = _ruleset(rules)
    return [_test_one(ruleset, doc, suppressed) for doc in docs]


def _test_one(ruleset: RuleSet, doc: Mapping[str, Any], suppressed: bool) -> dict[str, Any]:
    rule_input = doc_input(doc)
    if not suppressed:
        return {"id": doc.get("id"), "matches": [match_json(m) for m in ruleset.evaluate(rule_input)]}
    results = ruleset.explain(rule_input)
    return {
        "id": doc.get("id"),
        "matches": [match_json(r.fired) for r in results if r.fired is not None],
        "suppressed": [match_json(r.hits[0]) for r in results if r.fired is None and r.hits],
    }


test_documents.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def match_json(m: Match) -> dict[str, Any]:
    return {
        "rule": m.rule_id,
        "severity": m.severity,
        "status": m.status,
        "evidence": m.evidence,
        "field": m.field,
        "spans": [[s.start, s.end, s.term] for s in m.spans],
        "captures": dict(m.captures),
    }


def render_report(
    rules: RuleSet | Sequence[Path], docs: Iterable[Mapping[str, Any]], *, show_suppressed: bool = True
) -> Text:
    """Human report: per document the rules that fire, the evidence with matched terms highlighted;
    with ``show_suppressed`` also hits that did not fire (hedged/negated) and why."""
    ruleset = _ruleset(rules)
    out = Text()
    for doc in docs:
        results = ruleset.explain(doc_input(doc))
        out.append(f"{doc.get('id') or '-'}", style="bold")
        out.append(f"  {doc.get('title') or ''}\n")
        shown = [r for r in results if r.fires or show_suppressed]
        if not shown:
            out.append("  no rule fires\n", style="dim")
        for r in shown:
            _render_result(out, r)
        out.append("\n")
    return out


def _render_result(out: Text, result: RuleResult) -> None:
    best = result.fired or result.hits[0]
    mark = "FIRES" if result.fires else "no   "
    out.append(f"  {mark} ", style="bold green" if result.fires else "dim")
    out.append(f"[{best.severity}] ", style=SEVERITY_STYLE.get(best.severity, ""))
    out.append(result.rule_id, style="bold")
    out.append(f" ({best.status})", style=STATUS_STYLE[best.status])
    if best.captures:
        out.append("  " + ", ".join(f"{k}={v}" for k, v in best.captures.items()), style="magenta")
    out.append("\n    ")
    out.append_text(highlight(best))
    out.append("\n")


def highlight(m: Match) -> Text:
    """The evidence sentence with every matched term highlighted."""
    text = Text(m.evidence)
    for span in m.spans:
        text.stylize(f"bold underline {STATUS_STYLE[m.status]}", span.start, span.end)
    return text
