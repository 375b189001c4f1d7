"""`storywatch rules test` logic: JSON results, the human report, inline test results."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from crawler.cli import register_all
from crawler.cli.base import cli
from rules.engine import load_rules
from rules.testing import (
    doc_input,
    inline_test_report,
    lint_and_test,
    render_report,
    run_inline_tests,
    test_documents,
)

register_all(cli)
PACK = Path(__file__).resolve().parents[2] / "rules" / "packs" / "longcat.yaml"

RULES = """version: 1
lists:
  vendors:
    capture: vendor
    terms: {Huawei: [Huawei, Ascend]}
rules:
  - id: t.vendor
    title: Vendor named
    severity: high
    query: SENT(LongCat AND @vendors)
    tests:
      - text: LongCat runs on Ascend.
        fires: true
        captures: {vendor: Huawei}
      - name: wrong on purpose
        text: LongCat may run on Ascend.
        fires: true
      - text: LongCat does not run on Ascend.
        fires: false
        status: hedged
"""


def _path(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


def test_documents_json_lists_only_firing_matches(tmp_path: Path) -> None:
    docs = [
        {"id": "a", "title": "t", "text": "Intro. LongCat runs on Huawei Ascend chips.", "source": "wire"},
        {"id": "b", "title": "t", "text": "LongCat reportedly runs on Ascend."},
    ]
    assert test_documents([_path(tmp_path)], docs) == [
        {
            "id": "a",
            "matches": [
                {
                    "rule": "t.vendor",
                    "severity": "high",
                    "status": "asserted",
                    "evidence": "LongCat runs on Huawei Ascend chips.",
                    "field": "body",
                    "spans": [[0, 7, "LongCat"], [16, 22, "Huawei"], [23, 29, "Ascend"]],
                    "captures": {"vendor": "Huawei"},
                }
            ],
        },
        {"id": "b", "matches": []},
    ]


def test_doc_input_reads_source_forms_and_dates() -> None:
    d = doc_input(
        {
            "id": "x",
            "text": "t",
            "source": {"id": "lm", "kind": "page", "tags": ["leaderboard"]},
            "published": "2026-11-23T10:00:00Z",
            "url": "https://x.test",
        }
    )
    assert (d.source_id, d.source_kind, d.source_tags, d.url) == (
        "lm",
        "page",
        ("leaderboard",),
        "https://x.test",
    )
    assert d.published is not None and d.published.year == 2026
    assert doc_input({"text": "t", "source": "wire"}).source_id == "wire"


def test_report_highlights_terms_and_shows_suppressed_hits(tmp_path: Path) -> None:
    docs = [
        {"id": "a", "title": "T", "text": "LongCat runs on Ascend."},
        {"id": "b", "title": "U", "text": "LongCat reportedly runs on Ascend."},
        {"id": "c", "title": "V", "text": "Nothing here."},
    ]
    report = render_report([_path(tmp_path)], docs)
    plain = report.plain
    assert "FIRES [high] t.vendor (asserted)  vendor=Huawei" in plain
    assert "no    [high] t.vendor (hedged)" in plain
    assert "no rule fires" in plain
    styled = {plain[s.start : s.end] for s in report.spans if "underline" in str(s.style)}
    assert {"LongCat", "Ascend"} <= styled


def test_inline_test_results_and_report(tmp_path: Path) -> None:
    results = run_inline_tests(load_rules([_path(tmp_path)]))
    assert [(r.index, r.passed, r.status) for r in results] == [
        (1, True, "asserted"),
        (2, False, "hedged"),
        (3, False, "negated"),
    ]
    report = inline_test_report(results)
    path = _path(tmp_path)
    assert report.splitlines() == [
        f"{path}:15: [t.vendor] test 2 (wrong on purpose): expected fires: true, got false "
        "(best hit hedged: 'LongCat may run on Ascend.')",
        f"{path}:18: [t.vendor] test 3: expected status hedged, got negated",
        "1 passed, 2 failed",
    ]


def test_lint_and_test(tmp_path: Path) -> None:
    report, ok = lint_and_test([_path(tmp_path)])
    assert not ok and report.endswith("1 passed, 2 failed")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nrules:\n  - id: a\n    title: t\n    severity: low\n    query: a b\n", "utf-8"
    )
    report, ok = lint_and_test([bad])
    assert not ok
    assert (
        report == f"{bad}:6:14: [a] missing operator before 'b': join terms with AND, OR or NEAR/n, "
        'or quote a phrase ("a b")\n1 error(s)'
    )


def test_rules_lint_command_runs_the_inline_tests(tmp_path: Path) -> None:
    failing = CliRunner().invoke(cli, ["rules", "lint", str(_path(tmp_path))])
    assert failing.exit_code == 1
    assert failing.output.splitlines()[-1] == "1 passed, 2 failed"
    assert f"{_path(tmp_path)}:18: [t.vendor] test 3: expected status hedged, got negated" in failing.output
    pack = CliRunner().invoke(cli, ["rules", "lint", str(PACK)])
    assert pack.exit_code == 0, pack.output
    assert pack.output.strip().endswith("passed, 0 failed")
