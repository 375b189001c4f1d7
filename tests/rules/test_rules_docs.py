"""rules/README.md documents every keyword of the rule format: operators, fields, schema keys."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from rules import README_PATH, SCHEMA_PATH
from rules.lang import _PARSER, GRAMMAR, META_FIELDS, TEXT_FIELDS, QuerySyntaxError, parse_query

README = README_PATH.read_text(encoding="utf-8")

# Every operator spelling of the grammar, by terminal. A new terminal or a new alternative in
# one of these terminals makes test_operator_list_matches_the_grammar fail until it is listed
# here, and then test_operators_are_documented fails until README.md documents it.
OPERATORS = {
    "BOOLOP": ["AND", "OR", "NOT/s", "NOT/c", "NOT/p", "NOTNEAR/3"],
    "NOT": ["NOT"],
    "PROXOP": ["NEAR/3", "ONEAR/3", "w/s", "w/p"],
    "SCOPE": ["SENT", "PARA", "CLAUSE"],
    "ATLEAST": ["ATLEAST 2"],
}
NON_OPERATOR_TERMINALS = {"LPAR", "RPAR", "FIELD", "PHRASE", "CASED", "REGEX", "LISTREF", "WORD"}


def _doc_form(spelling: str) -> str:
    return spelling.replace("/3", "/n").replace(" 2", " n")


def _spellings(alternative: str) -> int:
    """How many operators one regex alternative spells: NOT\\/[scp] -> 3, [wW]\\/[sSpP] -> 2."""
    classes = re.findall(r"\[([^\]]+)\]", alternative)
    return len({c.lower() for c in classes[-1]}) if classes else 1


def _terminals() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z]+)(?:\.\d+)?:\s*(.+)$", GRAMMAR, re.M))


def test_operator_list_matches_the_grammar() -> None:
    terminals = _terminals()
    assert set(terminals) == set(OPERATORS) | NON_OPERATOR_TERMINALS
    for name in ("BOOLOP", "PROXOP"):
        alternatives = re.search(r"/\((.*?)\)\(\?!", terminals[name])
        assert alternatives is not None
        count = sum(_spellings(alt) for alt in alternatives.group(1).split("|"))
        assert count == len(OPERATORS[name]), f"{name} changed: update OPERATORS"
    for name, spellings in OPERATORS.items():
        for spelling in spellings:
            tokens = list(_PARSER.lex(spelling + ("(" if name == "SCOPE" else "")))
            assert tokens[0].type == name, spelling


@pytest.mark.parametrize("spelling", [_doc_form(s) for v in OPERATORS.values() for s in v])
def test_operators_are_documented(spelling: str) -> None:
    assert f"`{spelling}" in README or f" {spelling} " in README, spelling


def test_rejected_tilde_is_documented() -> None:
    with pytest.raises(QuerySyntaxError, match="use NEAR/n"):
        parse_query("a ~ b")
    assert "| `~` |" in README


@pytest.mark.parametrize("field", TEXT_FIELDS + META_FIELDS)
def test_fields_are_documented(field: str) -> None:
    assert f"`{field}:`" in README


def _schema_words(node: Any) -> set[str]:
    words: set[str] = set()
    if isinstance(node, dict):
        words |= set(node.get("properties", {}))
        words |= {str(v) for v in node.get("enum", [])}
        for value in node.values():
            words |= _schema_words(value)
    elif isinstance(node, list):
        for value in node:
            words |= _schema_words(value)
    return words


@pytest.mark.parametrize("word", sorted(_schema_words(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))))
def test_schema_keys_and_values_are_documented(word: str) -> None:
    assert f"`{word}`" in README, f"rules/README.md does not document `{word}`"


def test_worked_examples_parse() -> None:
    block = README.split("## Worked examples", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    queries = [q.strip() for q in re.split(r"^#.*$", block, flags=re.M) if q.strip()]
    assert len(queries) >= 5
    for query in queries:
        parse_query(query)
