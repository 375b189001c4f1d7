"""The default LongCat-2.0 rule pack: loads cleanly, its inline tests pass, the dev cases match; the
CI gate of `storywatch rules eval` on the pack's check split (and its Chinese subset); the real
articles get their labels and no LongCat rule fires on unrelated news (aeb-dev)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules import PACK_DIR, default_rule_paths
from rules.engine import lint_paths, load_rules
from rules.scoring import parse_cases, render_eval, score_cases, select
from rules.testing import inline_test_report, run_inline_tests, test_documents
from tests.conftest import SHARED, shared_path

DEV_CASES = SHARED / "story" / "dev_cases.jsonl"
CASES = Path(__file__).resolve().parents[1] / "data" / "rules" / "longcat_cases.jsonl"
MIN_PRECISION, MIN_RECALL = 0.95, 0.90
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


def _cases() -> list:
    return parse_cases(CASES.read_text(encoding="utf-8"), origin=str(CASES))


def test_the_labelled_set_spans_splits_languages_and_rules() -> None:
    cases = _cases()
    assert len(cases) >= 220
    assert len({c.id for c in cases}) == len(cases)
    assert len(select(cases, lang="zh")) >= 45
    check = select(cases, split="check")
    assert 0.35 <= len(check) / len(cases) <= 0.45
    assert len(select(cases, split="tune")) + len(check) == len(cases)
    for subset in (check, select(check, lang="zh")):
        labelled = {label for c in subset for label in c.labels}
        assert labelled == PACK_IDS
        assert sum(1 for c in subset if not c.labels) >= 10


@pytest.mark.parametrize("lang", [None, "zh"], ids=["check", "check-zh"])
def test_ci_gate_every_rule_on_the_check_split(lang: str | None) -> None:
    """Never tuned on: precision >= 0.95 and recall >= 0.90 for every rule."""
    report = score_cases(load_rules([PACK_DIR]), select(_cases(), split="check", lang=lang))
    failures = report.failures(min_precision=MIN_PRECISION, min_recall=MIN_RECALL)
    assert not failures, render_eval(report, failures=failures)
    assert {r.rule_id for r in report.rules} == PACK_IDS


def test_the_tuning_split_passes_the_same_gate() -> None:
    report = score_cases(load_rules([PACK_DIR]), select(_cases(), split="tune"))
    failures = report.failures(min_precision=MIN_PRECISION, min_recall=MIN_RECALL)
    assert not failures, render_eval(report, failures=failures)


def test_the_real_articles_get_exactly_their_labels() -> None:
    folder = shared_path("story", "articles")
    expected = [json.loads(line) for line in (folder / "labels.jsonl").read_text("utf-8").splitlines() if line]
    assert len(expected) == 5
    docs = [{"id": e["file"], "text": (folder / e["file"]).read_text("utf-8")} for e in expected]
    got = {r["id"]: sorted({m["rule"] for m in r["matches"]}) for r in test_documents([PACK_DIR], docs)}
    assert got == {e["file"]: sorted(e["labels"]) for e in expected}


def test_no_longcat_rule_fires_on_unrelated_news() -> None:
    truth = json.loads(shared_path("corpora", "aeb-dev", "ground-truth.json").read_text("utf-8"))
    docs = [{"id": k, "text": v["articleBody"], "url": v.get("url", "")} for k, v in sorted(truth.items())]
    assert len(docs) == 88
    fired = [(r["id"], m["rule"], m["evidence"]) for r in test_documents([PACK_DIR], docs) for m in r["matches"]]
    assert [f for f in fired if f[1].startswith("longcat.")] == []
