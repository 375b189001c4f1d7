"""NegEx-style classification of a rule's evidence terms: asserted, hedged or negated.

A *trigger* (``not``, ``declined to``, ``has yet to``, ``reportedly``, ``may have``, ``未``, ``据称`` ...)
affects the terms that lie in the same clause within a window of words:

* forward triggers (most of them) reach up to ``FORWARD_WORDS`` words after the trigger;
* negations also reach ``BACKWARD_WORDS`` words before it (the subject of a negated verb:
  "Huawei did not respond", "LongCat-2.0 has not yet been evaluated");
* adverbs such as ``reportedly``/``allegedly``/``据称`` reach both ways by the same windows.

Clauses end at ``; :`` and at but/however/while/although/separately...; in Chinese also at ，；。
(see :func:`rules.textspans.split_clauses`). *Pseudo-triggers* ("not only", "no doubt",
"No. 11", 不仅, 未来 ...) are matched first and ignored. A term in a question ("...?") is hedged.
Negated wins over hedged, hedged over asserted.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Literal

from crawler.types import HitStatus
from rules.textspans import tokenize as _tokenize
from rules.textspans import units_to_words

FORWARD_WORDS = 8
BACKWARD_WORDS = 4

Kind = Literal["negated", "hedged", "pseudo"]
Direction = Literal["fwd", "both"]

# Trigger phrases, as written in text (case-insensitive; Chinese without spaces). Words ending in
# n't/n’t (didn't, hasn't...) are negations too.
NEGATIONS: tuple[str, ...] = (
    "not",
    "no",
    "never",
    "none",
    "nobody",
    "no one",
    "nothing",
    "neither",
    "nor",
    "cannot",
    "without",
    "decline to",
    "declined to",
    "declines to",
    "declining to",
    "refuse to",
    "refused to",
    "refuses to",
    "has yet to",
    "have yet to",
    "had yet to",
    "is yet to",
    "are yet to",
    "was yet to",
    "were yet to",
    "yet to",
    "deny",
    "denies",
    "denied",
    "denying",
    "rather than",
    "instead of",
    "ruled out",
    "rules out",
    "unable to",
    "failed to",
    "fails to",
    "fail to",
    "未",
    "没有",
    "没",
    "不",
    "尚未",
    "否认",
    "并未",
    "从未",
    "拒绝",
    "无法",
    "尚无",
    "暂无",
    "并无",
    "无人",
    "没人",
    "未能",
)
HEDGES: tuple[str, ...] = (
    "may",
    "may have",
    "may be",
    "may well",
    "might",
    "could",
    "would",
    "will",
    "shall",
    "can",
    "able to",
    "plan to",
    "plans to",
    "planned to",
    "planning to",
    "aim to",
    "aims to",
    "aimed to",
    "intend to",
    "intends to",
    "intended to",
    "hope to",
    "hopes to",
    "hoped to",
    "expected to",
    "set to",
    "unlikely",
    "once",
    "if",
    "whether",
    "analyst speculates",
    "analysts speculate",
    "analysts speculated",
    "speculate",
    "speculates",
    "speculated",
    "speculation that",
    "believed to",
    "thought to",
    "suspected",
    "rumour that",
    "rumours that",
    "rumor that",
    "rumors that",
    "rumoured to",
    "rumored to",
    "estimate",
    "estimated",
    "estimates",
    "so that",
    "in order to",
    "speculation",
    "speculative",
    "rumour",
    "rumours",
    "rumor",
    "rumors",
    "ready to",
    "capable of",
    "believe",
    "believes",
    "think",
    "thinks",
    "suspect",
    "suspects",
    "guess",
    "guesses",
    "assume",
    "assumes",
    "assumed",
    "must have",
    "appears to",
    "appear to",
    "seems to",
    "seem to",
    "apparently",
    "unclear",
    "hinted",
    "hints",
    "implied",
    "suggested",
    "suggests",
    "social media posts",
    "social media post",
    "weibo post",
    "weibo posts",
    "online posts",
    "viral post",
    "deleted post",
    "或将",
    "被认为",
    "普遍认为",
    "外界认为",
    "considering",
    "weighing",
    "exploring",
    "mulling",
    "考虑",
    "有意",
    "洽谈",
    "探讨",
    "claim",
    "claims",
    "claimed that",
    "want",
    "wants",
    "urged",
    "urges",
    "hope",
    "hopes",
    "如果",
    "假如",
    "倘若",
    "若",
    "一旦",
    "希望",
    "打算",
    "准备",
    "即将",
    "将于",
    "能否",
    "声称",
    "据说",
    "传言",
    "消息称",
    "爆料",
    "有望",
    "可能",
    "计划",
    "预计",
    "或许",
    "也许",
    "猜测",
    "推测",
    "是否",
    "估计",
)
BOTH_WAYS: tuple[str, ...] = (
    "reportedly",
    "allegedly",
    "purportedly",
    "supposedly",
    "rumoured",
    "rumored",
    "unconfirmed",
    "unverified",
    "unsubstantiated",
    "likely",
    "probably",
    "possibly",
    "perhaps",
    "would require",
    "would need",
    "would take",
    "would cost",
    "未经证实",
    "未获证实",
    "未经核实",
    "坊间",
    "据称",
    "传闻",
    "据传",
    "疑似",
    "网传",
)
PSEUDO: tuple[str, ...] = (
    "not only",
    "not just",
    "not least",
    "no doubt",
    "without doubt",
    "nothing but",
    "whether or not",
    "if any",
    "once again",
    "once more",
    "at once",
    "not to mention",
    "can't wait",
    "no longer than",
    # a failed reproduction is an outcome, not the absence of an event
    "failed to reproduce",
    "failed to replicate",
    "unable to reproduce",
    "unable to replicate",
    "could not reproduce",
    "could not replicate",
    "couldn't reproduce",
    "couldn't replicate",
    "未能复现",
    "无法复现",
    "不仅",
    "不但",
    "不断",
    "不少",
    "不同",
    "不久",
    "不错",
    "不管",
    "不论",
    "不过",
    "未来",
    "不只",
    "毫不",
    "不得不",
    "若干",
)


@dataclass(frozen=True)
class Trigger:
    kind: Kind
    first: int  # index of its first token in the clause scan
    last: int  # index of its last token
    direction: Direction
    text: str


def _key(phrase: str) -> tuple[str, ...]:
    return tuple(text.lower() for s, e, _ in _tokenize(phrase) for text in [phrase[s:e]])


def _table() -> dict[str, list[tuple[tuple[str, ...], Kind, Direction]]]:
    rows: list[tuple[str, Kind, Direction]] = [(p, "pseudo", "fwd") for p in PSEUDO]
    rows += [(p, "negated", "both") for p in NEGATIONS]
    # Chinese modal hedges follow the subject they hedge (LongCat-2.0的复现工作预计明年启动): both ways
    rows += [(p, "hedged", "fwd" if p.isascii() else "both") for p in HEDGES]
    rows += [(p, "hedged", "both") for p in BOTH_WAYS]
    table: dict[str, list[tuple[tuple[str, ...], Kind, Direction]]] = {}
    for phrase, kind, direction in rows:
        key = _key(phrase)
        table.setdefault(key[0], []).append((key, kind, direction))
    for entries in table.values():  # longest first: "has yet to" before "yet to", "not only" before "not"
        entries.sort(key=lambda e: -len(e[0]))
    return table


_TABLE = _table()
_LATIN_FIRST = frozenset(k for k in _TABLE if k.isascii())
_CJK_FIRST = frozenset(k for k in _TABLE if not k.isascii())
_EDGE_PUNCT = "\"'“”‘’()[]{}.,;:!?…-–—"
_NO_TRIGGERS: tuple[Trigger, ...] = ()


@dataclass(frozen=True)
class ClauseScan:
    """The tokens of one clause (start offsets, unit prefix sums) and its triggers."""

    starts: tuple[int, ...]
    units: tuple[int, ...]  # units[i] = units of tokens before token i
    triggers: tuple[Trigger, ...]


def might_trigger(low: str) -> bool:
    """Cheap test on a lower-cased clause: could it contain a trigger at all?"""
    if any(ch in low for ch in _CJK_FIRST):
        return True
    return any(
        (w := word.strip(_EDGE_PUNCT)) in _LATIN_FIRST or w.endswith(("n't", "n’t")) for word in low.split()
    )


def scan_clause(text: str, start: int, end: int, lower: str | None = None) -> ClauseScan:
    """Tokenize one clause and find its negation/hedge triggers (pseudo-triggers dropped).

    ``lower`` is the lower-cased ``text`` (same length) when the caller has it already.
    """
    low = lower[start:end] if lower is not None else text[start:end].lower()
    if not might_trigger(low):
        return ClauseScan((), (), _NO_TRIGGERS)
    tokens = _tokenize(text, start, end)
    words = (
        [low[s - start : e - start] for s, e, _ in tokens]
        if len(low) == end - start
        else [text[s:e].lower() for s, e, _ in tokens]
    )
    units = [0]
    for t in tokens:
        units.append(units[-1] + t[2])
    triggers: list[Trigger] = []
    i = 0
    while i < len(words):
        found = _match_at(words, i, text, tokens)
        if found is None:
            i += 1
            continue
        length, kind, direction = found
        if kind != "pseudo":
            written = text[tokens[i][0] : tokens[i + length - 1][1]]
            triggers.append(Trigger(kind, i, i + length - 1, direction, written))
        i += length
    return ClauseScan(tuple(t[0] for t in tokens), tuple(units), tuple(triggers))


def _match_at(
    words: list[str], i: int, text: str, tokens: list[tuple[int, int, int]]
) -> tuple[int, Kind, Direction] | None:
    word = words[i]
    for seq, kind, direction in _TABLE.get(word, ()):
        if tuple(words[i : i + len(seq)]) == seq:
            if seq == ("no",) and _is_number_sign(text, tokens, i):
                return 1, "pseudo", "fwd"  # "No. 11"
            if seq == ("may",) and text[tokens[i][0]] == "M":
                return 1, "pseudo", "fwd"  # the month
            return len(seq), kind, direction
    if word.endswith(("n't", "n’t")):
        return 1, "negated", "both"
    return None


def _is_number_sign(text: str, tokens: list[tuple[int, int, int]], i: int) -> bool:
    end = tokens[i][1]
    return text[end : end + 1] == "." and i + 1 < len(tokens) and text[tokens[i + 1][0]].isdigit()


def classify(scan: ClauseScan, start: int, end: int, *, question: bool = False) -> HitStatus:
    """Status of the term at ``[start, end)`` (offsets inside the scanned clause)."""
    if not scan.triggers:
        return "hedged" if question else "asserted"
    kinds = {t.kind for t in reaching(scan, start, end)}
    if "negated" in kinds:
        return "negated"
    if "hedged" in kinds or question:
        return "hedged"
    return "asserted"


def reaching(scan: ClauseScan, start: int, end: int) -> list[Trigger]:
    """The triggers of the clause whose window reaches the term at ``[start, end)``."""
    if not scan.triggers:
        return []
    first = bisect_left(scan.starts, start)  # first token of the term
    after = bisect_left(scan.starts, end)  # first token after the term
    out = []
    for t in scan.triggers:
        if t.first >= after:  # the trigger follows the term
            gap = scan.units[t.first] - scan.units[after]
            if t.direction == "both" and units_to_words(gap) <= BACKWARD_WORDS:
                out.append(t)
        elif t.last < first:  # the trigger precedes the term
            gap = scan.units[first] - scan.units[t.last + 1]
            if units_to_words(gap) <= FORWARD_WORDS:
                out.append(t)
    return out
