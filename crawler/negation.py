"""NegEx-style classification of a rule's evidence terms: asserted, hedged or negated.

A *trigger* (``not``, ``declined to``, ``has yet to``, ``reportedly``, ``may have``, ``未``, ``据称`` ...)
affects the terms that lie in the same clause within a window of words:

* forward triggers (most of them) reach up to ``FORWARD_WORDS`` words after the trigger;
* negations also reach ``BACKWARD_WORDS`` words before it (the subject of a negated verb:
  "Huawei did not respond", "LongCat-2.0 has not yet been evaluated");
* adverbs such as ``reportedly``/``allegedly``/``据称`` reach both ways by the same windows.

Clauses end at ``; :`` and at but/however/while/although/separately...; in Chinese also at ，；。
(see :func:`crawler.textspans.split_clauses`). *Pseudo-triggers* ("not only", "no doubt",
"No. 11", 不仅, 未来 ...) are matched first and ignored. A term in a question ("...?") is hedged.
Negated wins over hedged, hedged over asserted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from crawler.textspans import WORDCH, units_to_words
from crawler.textspans import tokenize as _tokenize
from crawler.types import HitStatus

FORWARD_WORDS = 8
BACKWARD_WORDS = 4

Kind = Literal["negated", "hedged", "pseudo"]
Direction = Literal["fwd", "bwd", "both"]

# (pattern, kind, direction). Patterns are regex fragments; Latin ones get word boundaries.
NEGATIONS: tuple[str, ...] = (
    r"not", r"no", r"never", r"none", r"nobody", r"no one", r"nothing", r"neither", r"nor",
    r"cannot", r"without", r"\w+n['’]t", r"declined? to", r"declines to", r"declining to",
    r"refused? to", r"refuses to", r"(?:has|have|had|is|are|was|were) yet to", r"yet to",
    r"den(?:y|ies|ied|ying)", r"rather than", r"instead of", r"ruled out", r"rules out",
    r"未", r"没有", r"没", r"不", r"尚未", r"否认", r"并未", r"从未", r"拒绝", r"无法",
)
HEDGES: tuple[str, ...] = (
    r"may have", r"may be", r"may well", r"might", r"could", r"would", r"will", r"shall",
    r"plan(?:s|ned|ning)? to", r"aim(?:s|ed)? to", r"intend(?:s|ed)? to", r"hope(?:s|d)? to",
    r"expected to", r"set to", r"likely", r"unlikely", r"possibly", r"probably", r"perhaps",
    r"once", r"if", r"whether", r"analysts? speculated?", r"speculat(?:e|es|ed)", r"speculation that",
    r"believed to", r"thought to", r"suspected", r"rumou?r(?:s|ed)? (?:that|to)", r"estimated?",
    r"estimates", r"so that", r"in order to",
    r"可能", r"计划", r"预计", r"或许", r"也许", r"猜测", r"推测", r"有望", r"是否", r"估计",
)
BOTH_WAYS: tuple[tuple[str, Kind], ...] = (
    (r"reportedly", "hedged"), (r"allegedly", "hedged"), (r"purportedly", "hedged"),
    (r"supposedly", "hedged"), (r"rumou?red", "hedged"), (r"unconfirmed", "hedged"),
    (r"unverified", "hedged"), (r"unsubstantiated", "hedged"), (r"据称", "hedged"),
    (r"传闻", "hedged"), (r"据传", "hedged"), (r"疑似", "hedged"), (r"网传", "hedged"),
)
PSEUDO: tuple[str, ...] = (
    r"not only", r"not just", r"not least", r"no doubt", r"without doubt", r"nothing but",
    r"whether or not", r"if any", r"once again", r"once more", r"at once", r"no\.\s?\d+",
    r"not to mention", r"could not be happier",
    r"不仅", r"不但", r"不断", r"不少", r"不同", r"不久", r"不错", r"不管", r"不论", r"不过", r"未来",
    r"不只", r"毫不", r"不得不",
)


@dataclass(frozen=True)
class Trigger:
    kind: Kind
    start: int
    end: int
    direction: Direction
    text: str


def _bounded(pattern: str) -> str:
    if re.match(r"[\u3040-\u9fff]", pattern):
        return pattern
    return rf"(?<!{WORDCH}){pattern}(?!{WORDCH})"


def _table() -> list[tuple[str, Kind, Direction]]:
    rows: list[tuple[str, Kind, Direction]] = [(p, "pseudo", "fwd") for p in PSEUDO]
    rows += [(p, "negated", "both") for p in NEGATIONS]
    rows += [(p, "hedged", "fwd") for p in HEDGES]
    rows += [(p, kind, "both") for p, kind in BOTH_WAYS]
    # Longest literal first, so "has yet to" wins over "yet to" and "not only" over "not".
    return sorted(rows, key=lambda r: -len(r[0]))


_ROWS = _table()
_TRIGGER_RE = re.compile("|".join(f"(?P<g{i}>{_bounded(p)})" for i, (p, _, _) in enumerate(_ROWS)), re.I)


def find_triggers(text: str, start: int, end: int) -> tuple[Trigger, ...]:
    """Negation/hedge triggers inside ``text[start:end]`` (pseudo-triggers dropped)."""
    found = []
    for m in _TRIGGER_RE.finditer(text, start, end):
        assert m.lastgroup is not None
        _, kind, direction = _ROWS[int(m.lastgroup[1:])]
        if kind != "pseudo":
            found.append(Trigger(kind, m.start(), m.end(), direction, m.group()))
    return tuple(found)


def _gap_words(text: str, a: int, b: int) -> int:
    return units_to_words(sum(t[2] for t in _tokenize(text, a, b))) if b > a else 0


def _reaches(text: str, trig: Trigger, start: int, end: int) -> bool:
    if start >= trig.end:  # the term follows the trigger
        return trig.direction in ("fwd", "both") and _gap_words(text, trig.end, start) <= FORWARD_WORDS
    if end <= trig.start:  # the term precedes the trigger
        back = trig.direction == "both"
        return back and _gap_words(text, end, trig.start) <= BACKWARD_WORDS
    return False  # the trigger is inside the term itself


def classify(
    text: str, start: int, end: int, triggers: tuple[Trigger, ...], *, question: bool = False
) -> HitStatus:
    """Status of the term ``text[start:end]`` given the triggers of its clause."""
    reached = {t.kind for t in triggers if _reaches(text, t, start, end)}
    if "negated" in reached:
        return "negated"
    if "hedged" in reached or question:
        return "hedged"
    return "asserted"


STATUS_ORDER: dict[HitStatus, int] = {"asserted": 0, "hedged": 1, "negated": 2}
