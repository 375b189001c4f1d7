"""`storywatch rules eval`: back-testing rules on labelled cases (rules.scoring and its CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli, register_all
from rules.engine import load_rules
from rules.scoring import CaseError, eval_json, parse_cases, render_eval, score_cases, select

register_all(cli)

RULES = """\
version: 1
lists:
  chips:
    capture: vendor
    terms:
      Huawei: [Huawei, Ascend, 昇腾]
      Cambricon: [Cambricon, 寒武纪]
rules:
  - id: chip.trained
    title: a model trained on a named chip
    severity: low
    query: SENT(Zorvex AND @chips AND (train* OR 训练))
  - id: chip.wire
    title: wire only
    severity: low
    query: Zorvex AND benchmark*
    source: {ids: [wire-*]}
"""

CASES = [
    {
        "id": "tp",
        "text": "Zorvex was trained on Ascend chips.",
        "labels": ["chip.trained"],
        "lang": "en",
        "split": "check",
    },
    {
        "id": "tp-zh",
        "text": "Zorvex在昇腾芯片上完成训练。",
        "labels": ["chip.trained"],
        "lang": "zh-CN",
        "split": "check",
    },
    {
        "id": "fn-hedged",
        "text": "Zorvex was reportedly trained on Cambricon chips.",
        "labels": ["chip.trained"],
        "split": "tune",
    },
    {
        "id": "fn-absent",
        "text": "Zorvex runs on Cambricon chips.",
        "labels": ["chip.trained"],
        "split": "tune",
    },
    {
        "id": "fp",
        "text": "Zorvex was trained on Huawei hardware, a rival said.",
        "labels": [],
        "split": "tune",
    },
    {
        "id": "fn-source",
        "text": "Zorvex benchmark results arrived.",
        "source": "blog",
        "labels": ["chip.wire"],
        "split": "tune",
    },
    {"id": "tn", "text": "Nothing to see here.", "labels": [], "split": "check"},
]


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "chips.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.fixture
def cases_file(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in CASES) + "\n", encoding="utf-8")
    return path


def test_scores_per_rule_exact_sets_and_explains_every_miss(rules_file: Path, cases_file: Path) -> None:
    report = score_cases(load_rules([rules_file]), parse_cases(cases_file.read_text("utf-8")))
    scores = {r.rule_id: r for r in report.rules}
    trained = scores["chip.trained"]
    assert (trained.tp, trained.fp, trained.fn) == (2, 1, 2)
    assert trained.precision == pytest.approx(2 / 3)
    assert trained.recall == pytest.approx(0.5)
    wire = scores["chip.wire"]
    assert (wire.tp, wire.fp, wire.fn, wire.precision, wire.recall) == (0, 0, 1, None, 0.0)
    assert (report.cases, report.exact) == (7, 3)
    misses = {m.case_id: m for m in report.misses}
    assert set(misses) == {"fn-hedged", "fn-absent", "fp", "fn-source"}
    assert misses["fn-hedged"].kind == "FN"
    assert misses["fn-hedged"].evidence == "Zorvex was reportedly trained on Cambricon chips."
    assert misses["fn-hedged"].why == "best hit hedged (hedged by 'reportedly')"
    assert misses["fn-absent"].why == "no hit; absent: (train* OR 训练)"
    assert misses["fp"].kind == "FP"
    assert misses["fp"].why == "fired (asserted) vendor=Huawei"
    assert misses["fp"].evidence == "Zorvex was trained on Huawei hardware, a rival said."
    assert misses["fn-source"].why == "its source condition excludes source 'blog'"


def test_thresholds_name_the_rule_and_undefined_ratios_never_fail(rules_file: Path, cases_file: Path) -> None:
    report = score_cases(load_rules([rules_file]), parse_cases(cases_file.read_text("utf-8")))
    assert report.failures() == []
    assert report.failures(min_precision=0.6, min_recall=0.0) == []
    assert report.failures(min_precision=0.95, min_recall=0.9) == [
        "chip.trained: precision 0.67 < 0.95",
        "chip.trained: recall 0.50 < 0.90",
        "chip.wire: recall 0.00 < 0.90",
    ]


def test_split_and_language_subsets(rules_file: Path, cases_file: Path) -> None:
    cases = parse_cases(cases_file.read_text("utf-8"))
    assert [c.id for c in select(cases, split="check")] == ["tp", "tp-zh", "tn"]
    assert [c.id for c in select(cases, split="check", lang="zh")] == ["tp-zh"]
    report = score_cases(load_rules([rules_file]), select(cases, lang="zh"))
    assert (report.cases, report.exact, report.misses) == (1, 1, ())


def test_a_bad_case_line_is_an_error_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(CaseError) as exc:
        parse_cases('{"text": "a", "labels": []}\n{"text": "no labels"}\n', origin="cases.jsonl")
    assert str(exc.value).startswith("cases.jsonl:2:")
    with pytest.raises(CaseError, match=r"cases\.jsonl:1: not a JSON object"):
        parse_cases("{oops\n", origin="cases.jsonl")


def test_labels_naming_no_rule_are_reported_and_fail(rules_file: Path) -> None:
    cases = parse_cases('{"id": "x", "text": "Zorvex", "labels": ["chip.typo"]}\n')
    report = score_cases(load_rules([rules_file]), cases)
    assert report.unknown_labels == ("chip.typo",)
    assert "chip.typo: label names no loaded rule" in report.failures()


def test_render_and_json_report(rules_file: Path, cases_file: Path) -> None:
    report = score_cases(load_rules([rules_file]), parse_cases(cases_file.read_text("utf-8")))
    failures = report.failures(min_recall=0.9)
    text = render_eval(report, failures=failures)
    assert "chip.trained     2    1    2       0.67    0.50" in text
    assert "exact label sets: 3/7 (42.9%)" in text
    assert "  fn-hedged FN chip.trained: best hit hedged (hedged by 'reportedly')" in text
    assert "BELOW THRESHOLD chip.trained: recall 0.50 < 0.90" in text
    data = eval_json(report, failures=failures)
    assert data["rules"][0] == {
        "rule": "chip.trained",
        "tp": 2,
        "fp": 1,
        "fn": 2,
        "precision": pytest.approx(2 / 3),
        "recall": 0.5,
    }
    assert {"case": "fp", "rule": "chip.trained", "kind": "FP"}.items() <= data["misses"][2].items()
    assert data["failures"] == failures


def test_cli_exits_1_below_thresholds_and_0_above(rules_file: Path, cases_file: Path) -> None:
    base = ["rules", "eval", str(cases_file), "--rules", str(rules_file)]
    low = CliRunner().invoke(cli, [*base, "--min-precision", "0.95", "--min-recall", "0.9"])
    assert low.exit_code == 1, low.output
    assert "BELOW THRESHOLD chip.trained: precision 0.67 < 0.95" in low.output
    ok = CliRunner().invoke(
        cli, [*base, "--split", "check", "--min-precision", "0.95", "--min-recall", "0.9"]
    )
    assert ok.exit_code == 0, ok.output
    assert "exact label sets: 3/3 (100.0%)" in ok.output
    as_json = CliRunner().invoke(cli, [*base, "--lang", "zh", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["cases"] == 1


def test_cli_usage_errors(rules_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["rules", "eval", str(bad), "--rules", str(rules_file)])
    assert result.exit_code == 2
    assert f"{bad}:1:" in result.output
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "x", "labels": [], "split": "tune"}\n', encoding="utf-8")
    none = CliRunner().invoke(
        cli, ["rules", "eval", str(good), "--rules", str(rules_file), "--split", "check"]
    )
    assert none.exit_code == 2
    assert "no case matches" in none.output
