"""The rule query language: a lark grammar and the query AST (see rules/README.md, "Query language").

``parse_query(text)`` returns an immutable AST or raises :class:`QuerySyntaxError`, whose ``offset``
is a character offset into ``text``; :mod:`rules.load` turns it into file:line:column.

Precedence, tightest first: terms and ``( )``; field prefixes and ``NOT``; proximity
(``NEAR/n``, ``ONEAR/n``, ``w/s``, ``w/p``); boolean (``AND``, ``OR``, ``NOT/s|c|p``, ``NOTNEAR/n``).
Within one level, different operators may not be mixed without parentheses (``a AND b OR c`` is
an error), and ``~`` is refused with a hint to use ``NEAR/n``.

Kept whole past ~450 lines on purpose: the grammar, its friendly syntax errors and the tree-to-AST
builders change together whenever the language gains a keyword (the regex checks raise this
module's ``QuerySyntaxError`` with the query offset).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Literal

import re2
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from crawler.errors import RuleError
from rules.nodes import (
    And,
    AtLeast,
    Exclude,
    ExcludeScope,
    Fact,
    ListItem,
    ListRef,
    ListTerms,
    Near,
    Node,
    Not,
    Or,
    Scope,
    Term,
    TermKind,
    children,
    has_evidence,
    with_children,
)

__all__ = [
    "And",
    "AtLeast",
    "Exclude",
    "Fact",
    "ListItem",
    "ListRef",
    "ListTerms",
    "Near",
    "Node",
    "Not",
    "Or",
    "QuerySyntaxError",
    "Scope",
    "Term",
    "children",
    "has_evidence",
    "parse_list_entry",
    "parse_query",
    "with_children",
    "with_field",
]

TEXT_FIELDS = ("title", "lead", "top", "body", "text")
META_FIELDS = ("source", "site", "url", "language", "lang", "tag", "kind")
REGEX_FLAGS = "ims"
MIN_TRUNCATION = 3
MAX_REGEX_LENGTH = 2000
RE2_MAX_MEM = 8 << 20  # the size budget of one user regex (RE2 refuses bigger programs)

GRAMMAR = r"""
start: expr
expr: prox (binop prox)*
binop: BOOLOP | NOT
prox: unary (PROXOP unary)*
?unary: NOT unary        -> neg
      | FIELD unary      -> fielded
      | primary
?primary: LPAR expr RPAR           -> group
        | SCOPE LPAR expr RPAR     -> scope
        | ATLEAST unary            -> atleast
        | PHRASE                   -> phrase
        | CASED                    -> cased
        | REGEX                    -> regex
        | LISTREF                  -> listref
        | WORD                     -> word

LPAR: "("
RPAR: ")"
BOOLOP.3: /(AND|OR|NOT\/[scp]|NOTNEAR\/\d+)(?![^\s()])/
NOT.3: /NOT(?![^\s()])/
PROXOP.3: /(NEAR\/\d+|ONEAR\/\d+|[wW]\/[sSpP])(?![^\s()])/
SCOPE.3: /(SENT|PARA|CLAUSE)(?=\s*\()/
ATLEAST.3: /ATLEAST\s*\d+(?![^\s()])/
FIELD.2: /[A-Za-z_]+:/
PHRASE: /"(?:[^"\\\n]|\\.)*"/
CASED: /\{[^{}\n]*\}/
REGEX: /\/(?:[^\/\\\n]|\\.)+\/[a-z]*/
LISTREF: /@[A-Za-z_][A-Za-z0-9_.-]*/
WORD: /[^\s()"{}@\/~:][^\s()"{}~:]*/
%ignore /\s+/
"""

_PARSER = Lark(GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False)


class QuerySyntaxError(RuleError):
    """A query problem at ``offset`` characters into the query text."""

    def __init__(self, message: str, offset: int) -> None:
        self.offset = offset
        super().__init__(message)


def parse_query(text: str) -> Node:
    """Parse one query; raise QuerySyntaxError (with a character offset) on any problem."""
    if not text.strip():
        raise QuerySyntaxError("the query is empty", 0)
    _check_parentheses(text)
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _friendly(exc, text) from None
    node = _build(tree.children[0])
    _check_structure(node, top=True)
    if not has_evidence(node):
        raise QuerySyntaxError(
            "the query can match without any text term (only source/url/tag conditions); "
            "add a term to show as evidence",
            0,
        )
    return node


def _check_parentheses(text: str) -> None:
    stack: list[int] = []
    try:
        for tok in _PARSER.lex(text):
            if tok.type == "LPAR":
                stack.append(tok.start_pos or 0)
            elif tok.type == "RPAR":
                if not stack:
                    raise QuerySyntaxError(
                        "unbalanced parentheses: ')' has no matching '('", tok.start_pos or 0
                    )
                stack.pop()
    except UnexpectedInput as exc:
        raise _friendly(exc, text) from None
    if stack:
        raise QuerySyntaxError("unbalanced parentheses: '(' is never closed", stack[-1])


_TERM_TYPES = {"WORD", "PHRASE", "CASED", "REGEX", "LISTREF", "FIELD", "SCOPE", "ATLEAST", "LPAR", "NOT"}
_OPERATOR_TYPES = {"BOOLOP", "PROXOP", "RPAR"}


def _friendly(exc: UnexpectedInput, text: str) -> QuerySyntaxError:
    pos = exc.pos_in_stream or 0
    if isinstance(exc, UnexpectedCharacters):
        return QuerySyntaxError(_bad_char_message(text[pos]), pos)
    if isinstance(exc, UnexpectedToken):
        return _unexpected_token(exc.token, set(exc.expected), pos)
    return QuerySyntaxError(str(exc).splitlines()[0], pos)


def _bad_char_message(ch: str) -> str:
    return {
        '"': 'unterminated phrase: missing closing "',
        "{": "unterminated case-sensitive term: missing closing }",
        "}": "unexpected '}' without '{'",
        "/": "unterminated regular expression: missing closing /",
        "~": _TILDE_HINT,
        ":": "unexpected ':'; field prefixes are written title:word (quote a term that contains ':')",
    }.get(ch, f"unexpected character {ch!r}")


_TILDE_HINT = (
    "'~' is not supported (Lucene and Brandwatch give it different meanings); "
    "use NEAR/n for proximity, e.g. a NEAR/5 b"
)


def _unexpected_token(tok: Token, expected: set[str], pos: int) -> QuerySyntaxError:
    pos = tok.start_pos if tok.start_pos is not None else pos
    if tok.type == "$END":
        return QuerySyntaxError("unexpected end of query: a term is missing after the last operator", pos)
    if tok.type in _TERM_TYPES and expected & _OPERATOR_TYPES:
        hint = ""
        if str(tok).lower() in ("and", "or", "not", "near"):
            hint = "; operators are written in capitals (AND, OR, NOT, NEAR/n)"
        return QuerySyntaxError(
            f"missing operator before {str(tok)!r}: join terms with AND, OR or NEAR/n, "
            f'or quote a phrase ("a b"){hint}',
            pos,
        )
    return QuerySyntaxError(f"expected a term before {str(tok)!r}", pos)


# --- tree -> AST -------------------------------------------------------------------------------


def _off(item: Tree | Token) -> int:
    if isinstance(item, Token):
        return item.start_pos or 0
    return item.meta.start_pos if not item.meta.empty else 0


def _build(t: Tree | Token) -> Node:
    assert isinstance(t, Tree)
    builder = _BUILDERS.get(str(t.data))
    if builder is None:
        raise QuerySyntaxError(f"internal: unknown node {t.data}", _off(t))
    return builder(t)


def _build_expr(t: Tree) -> Node:
    operands = [_build(c) for c in t.children[0::2]]
    ops = [
        tok
        for c in t.children[1::2]
        if isinstance(c, Tree)
        for tok in c.children[:1]
        if isinstance(tok, Token)
    ]
    if not ops:
        return operands[0]
    families = [_bool_family(op) for op in ops]
    for op, fam in zip(ops, families, strict=True):
        if fam != families[0]:
            first = str(ops[0]) if families[0] != "AND" else "AND"
            raise QuerySyntaxError(
                f"{first} and {op} are mixed without parentheses; add parentheses to say which "
                f"binds first, e.g. (a {first} b) {op} c",
                _off(op),
            )
    fam = families[0]
    if fam == "AND":
        kids = [operands[0]] + [
            Not(o, _off(op)) if str(op) == "NOT" else o for op, o in zip(ops, operands[1:], strict=True)
        ]
        return And(tuple(kids), _off(t))
    if fam == "OR":
        return Or(tuple(operands), _off(t))
    node = operands[0]
    scope, n = _exclusion(str(ops[0]))
    for op, right in zip(ops, operands[1:], strict=True):
        node = Exclude(node, right, scope, n, _off(op))
    return node


def _bool_family(op: Token) -> str:
    s = str(op)
    return "AND" if s in ("AND", "NOT") else s


def _exclusion(op: str) -> tuple[ExcludeScope, int]:
    if op.startswith("NOTNEAR/"):
        return "near", int(op.split("/")[1])
    return {"s": "sentence", "c": "clause", "p": "paragraph"}[op[-1]], 0  # type: ignore[return-value]


def _build_prox(t: Tree) -> Node:
    operands = [_build(c) for c in t.children[0::2]]
    ops = [c for c in t.children[1::2] if isinstance(c, Token)]
    if not ops:
        return operands[0]
    for op in ops:
        if str(op).lower() != str(ops[0]).lower():
            example = f"(a {ops[0]} b) {op} c"
            raise QuerySyntaxError(
                f"{ops[0]} and {op} are mixed without parentheses; add parentheses, e.g. {example}", _off(op)
            )
    for op, o in zip([ops[0], *ops], operands, strict=True):
        if isinstance(o, Not | Fact):
            what = "NOT" if isinstance(o, Not) else f"{o.field}:"
            hint = "; use NOTNEAR/n for 'not near'" if isinstance(o, Not) else ""
            raise QuerySyntaxError(f"{what} cannot be an operand of {op}{hint}", o.offset)
    kind = str(ops[0])
    if kind.lower() in ("w/s", "w/p"):
        scope: Literal["sentence", "paragraph"] = "sentence" if kind.lower() == "w/s" else "paragraph"
        return Scope(scope, And(tuple(operands), _off(t)), _off(ops[0]))
    n = int(kind.split("/")[1])
    node = operands[0]
    for op, right in zip(ops, operands[1:], strict=True):
        node = Near(node, right, n, kind.startswith("ONEAR"), _off(op))
    return node


def _build_neg(t: Tree) -> Node:
    return Not(_build(t.children[1]), _off(t.children[0]))


def _build_fielded(t: Tree) -> Node:
    tok = t.children[0]
    assert isinstance(tok, Token)
    name = str(tok)[:-1].lower()
    if name in META_FIELDS:
        value = t.children[1]
        if not (isinstance(value, Tree) and value.data in ("word", "phrase")):
            raise QuerySyntaxError(
                f"{name}: takes one word or quoted value; use OR between conditions", _off(tok)
            )
        raw = str(value.children[0])
        raw = re.sub(r"\\(.)", r"\1", raw[1:-1]) if value.data == "phrase" else raw
        return Fact("language" if name == "lang" else name, raw, _off(tok))
    child = _build(t.children[1])
    if name not in TEXT_FIELDS:
        known = ", ".join(f"{f}:" for f in TEXT_FIELDS + META_FIELDS)
        raise QuerySyntaxError(f"unknown field {name + ':'!r}; known fields: {known}", _off(tok))
    return with_field(child, name)


def with_field(node: Node, name: str) -> Node:
    """Restrict every text leaf below ``node`` to field ``name`` (an inner prefix wins)."""
    if isinstance(node, Term | ListRef | ListTerms):
        return replace(node, field=name) if node.field == "text" else node
    if isinstance(node, Fact):
        raise QuerySyntaxError(f"{node.field}: cannot be used inside {name}:( ... )", node.offset)
    return with_children(node, lambda c: with_field(c, name))


def _build_group(t: Tree) -> Node:
    return _build(t.children[1])


def _build_scope(t: Tree) -> Node:
    tok = t.children[0]
    kinds: dict[str, Literal["sentence", "paragraph", "clause"]] = {
        "SENT": "sentence",
        "PARA": "paragraph",
        "CLAUSE": "clause",
    }
    return Scope(kinds[str(tok)], _build(t.children[2]), _off(tok))


def _build_atleast(t: Tree) -> Node:
    tok = t.children[0]
    n = int(re.sub(r"\D", "", str(tok)))
    if n < 1:
        raise QuerySyntaxError("ATLEAST needs a count of 1 or more", _off(tok))
    child = _build(t.children[1])
    return AtLeast(n, child, _off(tok))


def _leaf_token(t: Tree) -> Token:
    tok = t.children[0]
    assert isinstance(tok, Token)
    return tok


def _build_word(t: Tree) -> Node:
    tok = _leaf_token(t)
    return make_term("word", str(tok), str(tok), "", _off(tok))


def _build_phrase(t: Tree) -> Node:
    tok = _leaf_token(t)
    value = re.sub(r"\\(.)", r"\1", str(tok)[1:-1])
    return make_term("phrase", str(tok), value, "", _off(tok))


def _build_cased(t: Tree) -> Node:
    tok = _leaf_token(t)
    value = str(tok)[1:-1].strip().strip('"')
    return make_term("cased", str(tok), value, "", _off(tok))


def _build_regex(t: Tree) -> Node:
    tok = _leaf_token(t)
    body, _, flags = str(tok)[1:].rpartition("/")
    return make_term("regex", str(tok), body.replace("\\/", "/"), flags, _off(tok))


def _build_listref(t: Tree) -> Node:
    tok = _leaf_token(t)
    return ListRef(str(tok)[1:], "text", _off(tok))


_BUILDERS = {
    "expr": _build_expr,
    "prox": _build_prox,
    "neg": _build_neg,
    "fielded": _build_fielded,
    "group": _build_group,
    "scope": _build_scope,
    "atleast": _build_atleast,
    "word": _build_word,
    "phrase": _build_phrase,
    "cased": _build_cased,
    "regex": _build_regex,
    "listref": _build_listref,
}


def make_term(kind: TermKind, text: str, value: str, flags: str, offset: int) -> Term:
    """Build and validate one term (truncation rules, regex syntax and size budget)."""
    if not value.strip():
        raise QuerySyntaxError(f"empty term {text}", offset)
    if kind == "regex":
        check_regex(value, flags, offset)
    else:
        _check_truncation(value, offset)
    return Term(kind, text, value, flags, "text", offset)


def _check_truncation(value: str, offset: int) -> None:
    """``*`` ends a word; a lone word needs MIN_TRUNCATION characters before it ("Atlas 9*" is fine)."""
    words = value.split()
    for i, word in enumerate(words):
        if "*" not in word:
            continue
        if word.index("*") != len(word) - 1:
            raise QuerySyntaxError(f"'*' is only allowed at the end of a word (in {word!r})", offset)
        needed = MIN_TRUNCATION if i == 0 else 1
        if len(word.rstrip("*")) < needed:
            raise QuerySyntaxError(
                f"truncation needs at least {needed} characters before '*' (in {word!r})", offset
            )


def regex_options() -> re2.Options:
    opts = re2.Options()
    opts.max_mem = RE2_MAX_MEM
    opts.log_errors = False
    return opts


def check_regex(body: str, flags: str, offset: int) -> None:
    bad = set(flags) - set(REGEX_FLAGS)
    if bad:
        raise QuerySyntaxError(
            f"unknown regular expression flag(s) {''.join(sorted(bad))!r}; use i, m, s", offset
        )
    if len(body) > MAX_REGEX_LENGTH:
        raise QuerySyntaxError(f"regular expression longer than {MAX_REGEX_LENGTH} characters", offset)
    try:
        compiled = re2.compile(regex_source(body, flags), regex_options())
    except re2.error as exc:
        raise QuerySyntaxError(
            f"invalid regular expression (RE2 refused it: {_re2_reason(exc)})", offset
        ) from None
    if compiled.search("") is not None:
        raise QuerySyntaxError("regular expression matches the empty string", offset)


def regex_source(body: str, flags: str) -> str:
    return f"(?{flags}){body}" if flags else body


def _re2_reason(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else b""
    text = (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)).strip()
    if (
        ("escape sequence: \\" in text and text[-1:].isdigit())
        or "perl operator: (?<" in text
        or "(?=" in text
    ):
        text += "; backreferences and look-around are not available in RE2, the linear-time engine"
    elif "too large" in text or "repetition size" in text:
        text += "; the pattern is over the size budget, simplify the repetition"
    return text or "unsupported syntax"


# --- structure checks ----------------------------------------------------------------------------


def _check_structure(node: Node, *, top: bool = False) -> None:
    """NOT must be one operand of an AND with at least one positive operand."""
    if isinstance(node, Not):
        where = "a query" if top else "this position"
        raise QuerySyntaxError(
            f"NOT cannot stand alone in {where}: it needs something to find, e.g. x AND NOT y", node.offset
        )
    if isinstance(node, And):
        if all(isinstance(c, Not) for c in node.children):
            raise QuerySyntaxError("an AND of only NOT terms finds nothing; add a positive term", node.offset)
        for c in node.children:
            _check_structure(c.child if isinstance(c, Not) else c)
        return
    for child in children(node):
        _check_structure(child)


_ENTRY_REGEX = re.compile(r"/(?P<body>.+)/(?P<flags>[a-z]*)", re.S)


def parse_list_entry(text: str) -> Term:
    """One entry of a named list: a word, a phrase (quotes optional), {Cased} or /regex/flags."""
    s = text.strip()
    offset = len(text) - len(text.lstrip())
    m = _ENTRY_REGEX.fullmatch(s)
    if m:
        return make_term("regex", s, m["body"], m["flags"], offset)
    if len(s) > 2 and s[0] == "{" and s[-1] == "}":
        return make_term("cased", s, s[1:-1].strip().strip('"'), "", offset)
    if len(s) > 2 and s[0] == '"' and s[-1] == '"':
        return make_term("phrase", s, s[1:-1], "", offset)
    return make_term("phrase" if any(c.isspace() for c in s) else "word", s, s, "", offset)
