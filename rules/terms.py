"""Compile query terms into matchers that find occurrences (character spans) in a field.

* words and phrases match case-insensitively, on word boundaries; spaces, hyphens and underscores
  written in a term match any run (even empty) of spaces/hyphens/underscores in the text, so
  ``"pre-train*"`` finds pretrained, pre-trained and pre trained, and ``LongCat-2.0`` finds
  ``LONGCAT 2.0``. Other punctuation is literal. ``*`` at the end of a word is truncation.
* a number at the edge of a term does not match inside a longer number: ``LongCat-2`` does not
  match ``LongCat-2.5`` and ``50`` does not match ``50,000``.
* CJK characters have no word boundaries: ``华为`` matches inside ``华为昇腾``.
* ``{AMD}`` is case-sensitive; ``/re/i`` is a user regular expression run by RE2 (linear time).

Generated patterns are escaped literals run by the stdlib ``re`` (no backtracking risk); only user
regexes need RE2. Each term also yields a *literal* (a lower-case substring every match contains)
for the prefilter, or None for regexes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import re2

from rules.lang import (
    And,
    AtLeast,
    Exclude,
    ListTerms,
    Near,
    Node,
    Not,
    Or,
    Scope,
    Term,
    regex_options,
    regex_source,
    with_children,
)
from rules.textspans import CJK_RANGES, WORDCH, FieldText

_FLEX_SEP = r"[\s\-‐‑–—_]*"
_WORD_RE = re.compile(rf"[^\W{CJK_RANGES}]")  # a boundary-breaking character (with "_", like RE2's \b)
_PIECE_RE = re.compile(rf"(\s+|[-_‐‑–—]+)|(\*)|({WORDCH}+|[{CJK_RANGES}])|(.)", re.S)


@dataclass(frozen=True)
class TermMatcher:
    key: str  # identical terms share one key, so each is searched once per document
    label: str  # the term as written (shown in evidence spans)
    literal: str | None  # prefilter literal (lower case), None when unknown (regex)
    prefilter: str | None = None  # RE2 pattern of the literal for the prefilter set
    pattern: re.Pattern[str] | None = None  # run on the lower-cased text (or the text if cased)
    cased: bool = False
    regex: object | None = None  # compiled RE2 for user regexes
    left_word: bool = False  # needs a word boundary on the left
    right_word: bool = False
    left_digit: bool = False  # starts with a digit: not inside a longer number
    right_digit: bool = False
    prefix: bool = False  # every match starts with the literal: find it with str.find

    def find(self, ft: FieldText) -> list[tuple[int, int]]:
        """Spans of all matches in the field (non-overlapping, left to right)."""
        if self.literal is not None and self.literal not in ft.lower:
            return []  # a fast substring test rules most terms out
        if self.regex is not None:
            return [m.span() for m in self.regex.finditer(ft.text) if m.end() > m.start()]  # type: ignore[attr-defined]
        assert self.pattern is not None
        text = ft.text if self.cased else ft.lower
        if self.prefix and self.literal:
            return self._find_from_literal(ft, text, self.literal)
        return [m.span() for m in self.pattern.finditer(text) if self._bounded(ft.text, *m.span())]

    def _find_from_literal(self, ft: FieldText, text: str, literal: str) -> list[tuple[int, int]]:
        assert self.pattern is not None
        low, out, last_end = ft.lower, [], 0
        pos = low.find(literal)
        while pos >= 0:
            if pos >= last_end:
                m = self.pattern.match(text, pos)
                if m is not None and self._bounded(ft.text, pos, m.end()):
                    out.append((pos, m.end()))
                    last_end = m.end()
            pos = low.find(literal, pos + 1)
        return out

    def _bounded(self, text: str, s: int, e: int) -> bool:
        if self.left_word and s > 0 and _WORD_RE.match(text, s - 1):
            return False
        if self.right_word and e < len(text) and _WORD_RE.match(text, e):
            return False
        if self.left_digit and s >= 2 and text[s - 1] in ".," and text[s - 2].isdigit():
            return False
        return not (self.right_digit and e + 1 < len(text) and text[e] in ".," and text[e + 1].isdigit())


def compile_term(term: Term) -> TermMatcher:
    if term.kind == "regex":
        compiled = re2.compile(regex_source(term.value, term.flags), regex_options())
        lit = regex_literal(term.value)
        return TermMatcher(
            key=f"r:{term.flags}:{term.value}",
            label=term.text,
            literal=lit,
            prefilter=literal_pattern(lit, False, False) if lit else None,
            regex=compiled,
        )
    cased = term.kind == "cased"
    value = " ".join(term.value.split())
    source, literal, at_start, at_end = _pattern(value if cased else value.lower())
    first, last = value[0], value.rstrip("*")[-1]
    left_word = bool(_WORD_RE.match(first))
    right_word = bool(_WORD_RE.match(last)) and not value.endswith("*")
    return TermMatcher(
        key=f"{'c' if cased else 'w'}:{value if cased else value.lower()}",
        label=term.text,
        literal=literal.lower(),
        prefilter=literal_pattern(literal.lower(), at_start and left_word, at_end and right_word),
        pattern=re.compile(source),
        cased=cased,
        left_word=left_word,
        right_word=right_word,
        left_digit=first.isdigit(),
        right_digit=last.isdigit() and not value.endswith("*"),
        prefix=at_start,
    )


def _pattern(value: str) -> tuple[str, str, bool, bool]:
    """Regex source for a word/phrase, its longest solid piece (the prefilter literal) and
    whether that piece starts / ends the term (only then may the prefilter use a word boundary)."""
    parts: list[str] = []
    solids: list[str] = [""]
    for m in _PIECE_RE.finditer(value):
        sep, star, word, other = m.groups()
        if sep is not None or star is not None:
            parts.append(_FLEX_SEP if sep is not None else f"{WORDCH}*")
            solids.append("")
            continue
        piece = word if word is not None else other
        parts.append(re.escape(piece))
        solids[-1] += piece
    best = max(range(len(solids)), key=lambda i: len(solids[i]))
    return "".join(parts), solids[best], best == 0, best == len(solids) - 1


def regex_literal(body: str, min_length: int = 3) -> str | None:
    """A lower-case literal every match of the regex contains, or None (conservative).

    Only characters outside groups, classes and quantifiers count, and a pattern with a top-level
    ``|`` gets none: ``Zorvex\\s+\\d+`` -> "zorvex"; ``(a|b)c`` -> None.
    """
    runs: list[str] = [""]
    depth, i = 0, 0
    while i < len(body):
        c = body[i]
        if c == "|" and depth == 0:
            return None  # a top-level alternative: nothing is guaranteed
        if c == "\\" and i + 1 < len(body) and not body[i + 1].isalnum() and depth == 0:
            runs[-1] += body[i + 1]
            i += 2
            continue
        if c in "*+?{" and runs[-1]:
            runs[-1] = runs[-1][:-1]  # the quantified character is optional or repeated
        if c == "\\" or c in "[().^$*+?{}]" or depth:
            runs.append("")
            depth += (c == "(") - (c == ")")
            i = _skip_construct(body, i)
            continue
        runs[-1] += c
        i += 1
    best = max(runs, key=len).lower()
    return best if len(best) >= min_length else None


def _skip_construct(body: str, i: int) -> int:
    """Index after the construct starting at ``i`` (an escape, a class, a repetition, or one char)."""
    c = body[i]
    if c == "\\":
        j = i + 2
        if j < len(body) and body[i + 1] in "pPx" and body[j] == "{":
            j = body.find("}", j) + 1 or len(body)
        return j
    if c == "[":
        j = i + 1
        j += 1 if body[j : j + 1] == "^" else 0
        j += 1 if body[j : j + 1] == "]" else 0
        while j < len(body) and body[j] != "]":
            j += 2 if body[j] == "\\" else 1
        return j + 1
    if c == "{":
        return (body.find("}", i) + 1) or len(body)
    return i + 1


def literal_pattern(literal: str, left: bool, right: bool) -> str:
    """RE2 prefilter pattern for one literal (case-insensitive set; ASCII \\b only at term edges)."""
    b_left = r"\b" if left and re.match(r"[a-z0-9]", literal) else ""
    b_right = r"\b" if right and re.search(r"[a-z0-9]$", literal) else ""
    return f"{b_left}{re2.escape(literal)}{b_right}"


@dataclass(frozen=True)
class CompiledLeaf:
    """What one query leaf searches: one term, or every term of a list (with its capture)."""

    key: str
    parts: tuple[tuple[TermMatcher, str | None, str], ...]  # (matcher, capture name, captured value)


def compile_query(node: Node, cache: dict[str, TermMatcher]) -> Node:
    """Attach compiled matchers to every leaf (identical terms share one matcher via ``cache``)."""
    if isinstance(node, Term):
        m = _cached(compile_term(node), cache)
        return replace(node, compiled=CompiledLeaf(m.key, ((m, None, node.text),)))
    if isinstance(node, ListTerms):
        parts = tuple((_cached(compile_term(i.term), cache), node.capture, i.value) for i in node.items)
        key = f"L:{node.capture}:" + "|".join(f"{m.key}={v}" for m, _, v in parts)
        return replace(node, compiled=CompiledLeaf(key, parts))
    return with_children(node, lambda c: compile_query(c, cache))


def _cached(m: TermMatcher, cache: dict[str, TermMatcher]) -> TermMatcher:
    return cache.setdefault(m.key, m)


def required_literals(node: Node) -> list[frozenset[str]]:
    """Prefilter clauses: each clause is a set of prefilter patterns of which one must occur.

    An empty list means "no literal is guaranteed" (e.g. a lone regex): the rule is always a candidate.
    """
    if isinstance(node, Term | ListTerms):
        leaf: CompiledLeaf = node.compiled
        pats = [m.prefilter for m, _, _ in leaf.parts]
        return [frozenset(p for p in pats if p)] if all(pats) else []
    if isinstance(node, Or):
        alts = [required_literals(c) for c in node.children]
        if any(not a for a in alts):
            return []
        return [frozenset().union(*(best_clause(a) for a in alts))]
    if isinstance(node, And):
        return [c for k in node.children if not isinstance(k, Not) for c in required_literals(k)]
    if isinstance(node, Near):
        return required_literals(node.left) + required_literals(node.right)
    if isinstance(node, Exclude):
        return required_literals(node.left)
    if isinstance(node, Scope | AtLeast):
        return required_literals(node.child)
    return []


def best_clause(clauses: list[frozenset[str]], score: Mapping[str, int] | None = None) -> frozenset[str]:
    """The most selective clause: the one whose most common alternative is rarest, then the one
    with fewest alternatives. Rarity is guessed: longer literals, and names (capitals, digits,
    CJK) are rarer than lower-case words."""
    scores = score or {}
    return max(clauses, key=lambda c: (min((scores.get(p, len(p)) for p in c), default=0), -len(c)))


def rarity(matcher: TermMatcher) -> int:
    """Guessed rarity of a matcher's prefilter literal (see best_clause)."""
    literal = matcher.literal or ""
    name_like = any(c.isupper() or c.isdigit() for c in matcher.label) or bool(
        re.search(f"[{CJK_RANGES}]", literal)
    )
    return len(literal) + (8 if name_like else 0)


def leaf_matchers(node: Node) -> list[TermMatcher]:
    """Every matcher of every leaf below ``node`` (compiled queries only)."""
    if isinstance(node, Term | ListTerms):
        leaf: CompiledLeaf = node.compiled
        return [m for m, _, _ in leaf.parts]
    if isinstance(node, And | Or):
        return [m for c in node.children for m in leaf_matchers(c)]
    if isinstance(node, Near | Exclude):
        return leaf_matchers(node.left) + leaf_matchers(node.right)
    if isinstance(node, Not | Scope | AtLeast):
        return leaf_matchers(node.child)
    return []
