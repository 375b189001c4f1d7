"""The query language: grammar, AST, and error messages with offsets."""

from __future__ import annotations

import pytest

from rules.lang import (
    And,
    AtLeast,
    Exclude,
    Fact,
    ListRef,
    Near,
    Not,
    Or,
    QuerySyntaxError,
    Scope,
    Term,
    parse_list_entry,
    parse_query,
)


def _error(query: str) -> tuple[int, str]:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query)
    return info.value.offset, info.value.message


def test_terms() -> None:
    assert parse_query("disclos*") == Term("word", "disclos*", "disclos*")
    assert parse_query('"Huawei Ascend"') == Term("phrase", '"Huawei Ascend"', "Huawei Ascend")
    assert parse_query("{AMD}") == Term("cased", "{AMD}", "AMD")
    assert parse_query("/MLU\\d{3}/i") == Term("regex", "/MLU\\d{3}/i", "MLU\\d{3}", "i")
    assert parse_query("@vendors") == ListRef("vendors")
    assert parse_query("美团") == Term("word", "美团", "美团")


def test_boolean_and_scoped_operators() -> None:
    a, b, c = (Term("word", x, x, offset=o) for x, o in (("a", 0), ("b", 6), ("c", 12)))
    assert parse_query("a AND b AND c") == And((a, b, c))
    assert parse_query("a OR b") == Or((a, Term("word", "b", "b", offset=5)))
    q = parse_query("a AND NOT b")
    assert isinstance(q, And) and isinstance(q.children[1], Not)
    assert parse_query("a NOT b") == And((a, Not(Term("word", "b", "b", offset=6), 2)))
    assert parse_query("a NOT/s b") == Exclude(a, Term("word", "b", "b", offset=8), "sentence", 0, 2)
    assert parse_query("a NOT/c b").scope == "clause"  # type: ignore[union-attr]
    assert parse_query("a NOT/p b").scope == "paragraph"  # type: ignore[union-attr]
    q = parse_query("a NOTNEAR/4 b")
    assert isinstance(q, Exclude) and (q.scope, q.n) == ("near", 4)


def test_proximity_binds_tighter_than_boolean() -> None:
    q = parse_query("a NEAR/3 b AND c")
    assert isinstance(q, And) and isinstance(q.children[0], Near)
    near = q.children[0]
    assert (near.n, near.ordered) == (3, False)
    assert parse_query("a ONEAR/2 b").ordered  # type: ignore[union-attr]
    q = parse_query("a w/s b w/s c")
    assert isinstance(q, Scope) and q.kind == "sentence" and len(q.child.children) == 3  # type: ignore[union-attr]
    assert parse_query("a w/p b").kind == "paragraph"  # type: ignore[union-attr]


def test_sent_para_atleast_and_fields() -> None:
    q = parse_query("SENT(a AND b) OR PARA(c)")
    assert isinstance(q, Or) and [s.kind for s in q.children] == ["sentence", "paragraph"]  # type: ignore[union-attr]
    q = parse_query("ATLEAST 3 @longcat")
    assert isinstance(q, AtLeast) and q.n == 3 and isinstance(q.child, ListRef)
    q = parse_query("title:(a OR body:b) AND tag:leaderboard")
    assert isinstance(q, And)
    inner = q.children[0]
    assert isinstance(inner, Or) and [t.field for t in inner.children] == ["title", "body"]  # type: ignore[union-attr]
    assert q.children[1] == Fact("tag", "leaderboard", 24)
    assert parse_query("a AND lang:zh").children[1] == Fact("language", "zh", 6)  # type: ignore[union-attr]


def test_keywords_are_words_inside_other_words() -> None:
    q = parse_query("ANDROID AND ORACLE AND NOTION AND NEARBY")
    assert [t.value for t in q.children] == ["ANDROID", "ORACLE", "NOTION", "NEARBY"]  # type: ignore[union-attr]
    assert parse_query("Gb/s") == Term("word", "Gb/s", "Gb/s")


@pytest.mark.parametrize(
    ("query", "offset", "message"),
    [
        (
            "a AND b OR c",
            8,
            "AND and OR are mixed without parentheses; add parentheses to say which binds first, "
            "e.g. (a AND b) OR c",
        ),
        (
            "a OR b AND c",
            7,
            "OR and AND are mixed without parentheses; add parentheses to say which binds first, "
            "e.g. (a OR b) AND c",
        ),
        (
            "a AND b NOT/s c",
            8,
            "AND and NOT/s are mixed without parentheses; add parentheses to say which binds "
            "first, e.g. (a AND b) NOT/s c",
        ),
        (
            "a NEAR/3 b ONEAR/2 c",
            11,
            "NEAR/3 and ONEAR/2 are mixed without parentheses; add parentheses, e.g. (a NEAR/3 b) ONEAR/2 c",
        ),
        (
            "a ~ b",
            2,
            "'~' is not supported (Lucene and Brandwatch give it different meanings); use NEAR/n for "
            "proximity, e.g. a NEAR/5 b",
        ),
        (
            '"a b"~3',
            5,
            "'~' is not supported (Lucene and Brandwatch give it different meanings); use NEAR/n for "
            "proximity, e.g. a NEAR/5 b",
        ),
        ("(a AND b", 0, "unbalanced parentheses: '(' is never closed"),
        ("a AND b)", 7, "unbalanced parentheses: ')' has no matching '('"),
        ("SENT(a AND (b)", 4, "unbalanced parentheses: '(' is never closed"),
        (
            "a b",
            2,
            "missing operator before 'b': join terms with AND, OR or NEAR/n, or quote a phrase (\"a b\")",
        ),
        (
            "a and b",
            2,
            "missing operator before 'and': join terms with AND, OR or NEAR/n, or quote a phrase "
            '("a b"); operators are written in capitals (AND, OR, NOT, NEAR/n)',
        ),
        ("a AND", 2, "unexpected end of query: a term is missing after the last operator"),
        ("AND a", 0, "expected a term before 'AND'"),
        ("NOT a", 0, "NOT cannot stand alone in a query: it needs something to find, e.g. x AND NOT y"),
        (
            "a OR NOT b",
            5,
            "NOT cannot stand alone in this position: it needs something to find, e.g. x AND NOT y",
        ),
        ("NOT a AND NOT b", 0, "an AND of only NOT terms finds nothing; add a positive term"),
        ("a NEAR/2 NOT b", 9, "NOT cannot be an operand of NEAR/2; use NOTNEAR/n for 'not near'"),
        ("a NEAR/2 tag:x", 9, "tag: cannot be an operand of NEAR/2"),
        (
            "tag:x AND source:y",
            0,
            "the query can match without any text term (only source/url/tag conditions); "
            "add a term to show as evidence",
        ),
        (
            "author:x",
            0,
            "unknown field 'author:'; known fields: title:, lead:, top:, body:, text:, source:, site:, "
            "url:, language:, lang:, tag:, kind:",
        ),
        ("tag:(a OR b)", 0, "tag: takes one word or quoted value; use OR between conditions"),
        ('"abc', 0, 'unterminated phrase: missing closing "'),
        ("{AMD", 0, "unterminated case-sensitive term: missing closing }"),
        ("a AND /x", 6, "unterminated regular expression: missing closing /"),
        ("a*", 0, "truncation needs at least 3 characters before '*' (in 'a*')"),
        ("dis*los", 0, "'*' is only allowed at the end of a word (in 'dis*los')"),
        ("/x/q", 0, "unknown regular expression flag(s) 'q'; use i, m, s"),
        ("/a*/", 0, "regular expression matches the empty string"),
        (
            "/(?<=a)b/",
            0,
            "invalid regular expression (RE2 refused it: invalid perl operator: (?<=; backreferences "
            "and look-around are not available in RE2, the linear-time engine)",
        ),
        ("   ", 0, "the query is empty"),
        ("ATLEAST 0 a", 0, "ATLEAST needs a count of 1 or more"),
    ],
)
def test_errors(query: str, offset: int, message: str) -> None:
    assert _error(query) == (offset, message)


def test_pathological_regex_is_valid() -> None:
    assert parse_query("/(a+)+$/").kind == "regex"  # type: ignore[union-attr]


def test_list_entries() -> None:
    assert parse_list_entry("Ascend") == Term("word", "Ascend", "Ascend")
    assert parse_list_entry("Moore Threads") == Term("phrase", "Moore Threads", "Moore Threads")
    assert parse_list_entry('"Atlas 9*"') == Term("phrase", '"Atlas 9*"', "Atlas 9*")
    assert parse_list_entry("{AMD}") == Term("cased", "{AMD}", "AMD")
    assert parse_list_entry("/MLU\\d+/i") == Term("regex", "/MLU\\d+/i", "MLU\\d+", "i")
    with pytest.raises(QuerySyntaxError):
        parse_list_entry("x*")
