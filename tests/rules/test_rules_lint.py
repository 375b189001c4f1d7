"""Malformed rule files: exact file:line:column and message, never a crash or a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.errors import RuleError
from rules.engine import lint_paths, load_rules
from rules.testing import lint_report

DATA = Path(__file__).parents[1] / "data" / "rules"


def _lines(name: str) -> list[str]:
    path = DATA / name
    return [str(e).replace(str(path), name) for e in lint_paths([path])]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "bad_yaml.yaml",
            "bad_yaml.yaml:6:1: invalid YAML: found unexpected end of stream "
            "(while scanning a quoted scalar at line 4, column 12)",
        ),
        (
            "unbalanced.yaml",
            "unbalanced.yaml:7:11: [x.unbalanced] unbalanced parentheses: '(' is never closed",
        ),
        (
            "mixed_and_or.yaml",
            "mixed_and_or.yaml:6:32: [x.mixed] AND and OR are mixed without parentheses; "
            "add parentheses to say which binds first, e.g. (a AND b) OR c",
        ),
        (
            "tilde.yaml",
            "tilde.yaml:7:23: [x.tilde] '~' is not supported (Lucene and Brandwatch give it different "
            "meanings); use NEAR/n for proximity, e.g. a NEAR/5 b",
        ),
        (
            "invalid_regex.yaml",
            "invalid_regex.yaml:6:24: [x.regex] invalid regular expression (RE2 refused it: missing ]: [0-9)",
        ),
        (
            "backreference.yaml",
            "backreference.yaml:6:25: [x.backref] invalid regular expression (RE2 refused it: invalid escape "
            "sequence: \\1; backreferences and look-around are not available in RE2, the linear-time engine)",
        ),
        (
            "regex_budget.yaml",
            "regex_budget.yaml:8:13: [x.budget] invalid regular expression (RE2 refused it: pattern too large "
            "- compile failed; the pattern is over the size budget, simplify the repetition)",
        ),
    ],
)
def test_single_error_position_and_message(name: str, expected: str) -> None:
    assert _lines(name) == [expected]


def test_unknown_keyword_suggests_and_reports_missing_key() -> None:
    assert _lines("unknown_keyword.yaml") == [
        "unknown_keyword.yaml:3:5: [x.unknown] rule is missing the required key 'severity'",
        "unknown_keyword.yaml:5:5: [x.unknown] unknown key 'severty' in rule (did you mean 'severity'?)",
    ]


def test_all_errors_of_a_file_are_collected_in_order() -> None:
    assert _lines("many_errors.yaml") == [
        "many_errors.yaml:3:22: truncation needs at least 3 characters before '*' (in 'a*')",
        "many_errors.yaml:7:15: [x.first] severity must be one of info, low, medium, high, critical, not 'urgent'",
        "many_errors.yaml:8:13: [x.first] unknown list '@vendorz' (lists in this file: @vendors)",
        "many_errors.yaml:9:25: [x.first] fire_on item must be one of asserted, hedged, negated, not 'sure'",
        "many_errors.yaml:13:28: [x.second] NOT cannot be an operand of NEAR/3; use NOTNEAR/n for 'not near'",
        "many_errors.yaml:15:9: [x.second] test is missing the required key 'fires'",
        "many_errors.yaml:16:9: [x.first] duplicate rule id 'x.first' (first defined at many_errors.yaml:5)",
        "many_errors.yaml:20:5: rule is missing the required key 'id'",
    ]


def test_load_rules_raises_the_first_error_with_its_context() -> None:
    path = DATA / "mixed_and_or.yaml"
    with pytest.raises(RuleError) as info:
        load_rules([path])
    err = info.value
    assert (err.file, err.line, err.column, err.rule_id) == (str(path), 6, 32, "x.mixed")
    assert err.message.startswith("AND and OR are mixed")


def test_directory_of_malformed_files_reports_every_file() -> None:
    errors = lint_paths([DATA])
    assert {Path(e.file or "").name for e in errors} == {p.name for p in DATA.glob("*.yaml")}


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    errors = lint_paths([tmp_path / "nope.yaml", tmp_path])
    assert [e.message for e in errors] == [
        "no such rule file or directory",
        "no rule files (*.yaml, *.yml) in this directory",
    ]


def test_lint_report_format() -> None:
    errors = [
        RuleError("bad", file="r.yaml", line=3, column=7, rule_id="a.b"),
        RuleError("worse", file="r.yaml", line=9, column=1),
    ]
    assert lint_report(errors) == "r.yaml:3:7: [a.b] bad\nr.yaml:9:1: worse"


@pytest.mark.parametrize(
    ("snippet", "line", "column", "message"),
    [
        (
            "version: 2\nrules: []\n",
            1,
            10,
            "version must be 1 (the rule format version this storywatch reads)",
        ),
        ("rules: []\n", 1, 1, "the rule file is missing the required key 'version'"),
        (
            "version: 1\nrules:\n  - id: Bad Id\n    title: t\n    severity: low\n    query: x\n",
            3,
            9,
            "id 'Bad Id' is not valid: rule ids are lower-case words joined by . - _ (e.g. longcat.vendor-disclosed)",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    title: t\n    severity: low\n    query: x\n    fire_on: asserted\n",
            7,
            14,
            "fire_on must be a list, not a string",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    title: t\n    severity: low\n    query: x\n    query: y\n",
            7,
            5,
            "duplicate key 'query' in rule",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    title: t\n    severity: low\n    query: '  '\n",
            6,
            12,
            "query must not be empty",
        ),
    ],
)
def test_schema_errors(tmp_path: Path, snippet: str, line: int, column: int, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(snippet, encoding="utf-8")
    errors = lint_paths([path])
    assert [(e.line, e.column, e.message) for e in errors][:1] == [(line, column, message)]


def test_error_inside_block_scalar_points_at_the_character(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\nrules:\n  - id: a\n    title: t\n    severity: low\n"
        "    query: |\n      (LongCat OR Longcat)\n        AND\n        Huawei b\n",
        encoding="utf-8",
    )
    [err] = lint_paths([path])
    assert (err.line, err.column) == (9, 16)
    assert err.message.startswith("missing operator before 'b'")


def test_pathological_regex_is_accepted_and_lint_is_fast(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\nrules:\n  - id: a\n    title: t\n    severity: low\n    query: '/(a+)+$/ OR /(a|aa)+$/'\n",
        encoding="utf-8",
    )
    assert lint_paths([path]) == []
