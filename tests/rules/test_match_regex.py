"""User regexes run on RE2: pathological patterns stay linear on large documents."""

from __future__ import annotations

import time
from pathlib import Path

from rules.engine import RuleInput, load_rules


def _rules(tmp_path: Path) -> object:
    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\nrules:\n"
        "  - id: t.nested\n    title: nested\n    severity: low\n    query: '/(a+)+$/'\n"
        "  - id: t.alternation\n    title: alternation\n    severity: low\n    query: '/(a|aa)+$/ AND /(a+)+b/'\n",
        encoding="utf-8",
    )
    return load_rules([path])


def _seconds(rules: object, text: str) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    matches = rules.evaluate(RuleInput(text=text))  # type: ignore[attr-defined]
    return time.perf_counter() - t0, [m.rule_id for m in matches]


def test_pathological_patterns_are_linear_on_one_megabyte(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    half_s, half = _seconds(rules, "a" * 500_000 + "!")
    full_s, full = _seconds(rules, "a" * 1_000_000 + "!")
    assert half == full == []  # no match: the text ends with "!"
    # generous bounds: a backtracking engine would not finish at all
    assert full_s < 5.0
    assert full_s < 4 * half_s + 0.5


def test_pathological_pattern_that_matches_reports_evidence(tmp_path: Path) -> None:
    _, fired = _seconds(_rules(tmp_path), "x " + "a" * 1_000_000)
    assert fired == ["t.nested"]
