"""The default LongCat-2.0 rule pack: loads cleanly, its inline tests pass, the dev cases match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules import PACK_DIR, default_rule_paths
from rules.engine import lint_paths, load_rules
from rules.testing import inline_test_report, run_inline_tests, test_documents

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DEV_CASES = SHARED / "story" / "dev_cases.jsonl"
PACK_IDS = {
    "longcat.vendor-disclosed",
    "longcat.independent-benchmark",
    "longcat.training-telemetry",
    "longcat.reproduction",
    "industry.domestic-training",
}


def test_pack_lints_clean_and_has_exactly_the_story_rules() -> None:
    assert lint_paths([PACK_DIR]) == []
    rules = load_rules(default_rule_paths())
    assert {r.id for r in rules.rules} == PACK_IDS
    assert all(r.tests for r in rules.rules)


def test_every_inline_test_of_every_rule_file_passes() -> None:
    results = run_inline_tests(load_rules([PACK_DIR]))
    assert len(results) >= 40
    assert all(r.passed for r in results), inline_test_report(results)


@pytest.mark.skipif(not DEV_CASES.exists(), reason=f"shared story cases not found at {DEV_CASES}")
def test_dev_cases() -> None:
    cases = [json.loads(line) for line in DEV_CASES.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = test_documents([PACK_DIR], cases)
    got = {r["id"]: sorted({m["rule"] for m in r["matches"]}) for r in results}
    expected = {c["id"]: sorted(c["labels"]) for c in cases}
    assert got == expected


def test_leaderboard_row_on_a_tagged_page_is_an_independent_benchmark() -> None:
    doc = {
        "id": "row",
        "title": "Text Arena",
        "text": "LongCat-2.0 | 1402 | 9,123 votes",
        "source": {"id": "lmarena", "kind": "page", "tags": ["leaderboard"]},
    }
    [result] = test_documents([PACK_DIR], [doc])
    assert [m["rule"] for m in result["matches"]] == ["longcat.independent-benchmark"]
    untagged = dict(doc, source={"id": "blog", "kind": "page"})
    assert test_documents([PACK_DIR], [untagged])[0]["matches"] == []
