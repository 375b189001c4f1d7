"""Text geometry for the rules engine: paragraphs, sentences, clauses and word tokens, as offsets.

Everything here works on character offsets into the original string, so evidence spans can be
reported exactly. Chinese (and other CJK) text has no spaces: every CJK character is one token.

Distances are measured in *units*: a Latin word (letters/digits, with inner ``.``/``,``/``'``, so
``2.0``, ``9,000`` and ``Meituan's`` are one word) is 2 units, a CJK character is 1 unit. A gap of
``n`` words therefore allows ``n`` Latin words or ``2n`` CJK characters (two characters make roughly
one Chinese word). See rules/README.md, "Chinese text".

Sentence splitting is a small regex splitter (faster than sentencex on our bench, and it returns
offsets): ``. ! ?`` followed by space and a non-lower-case character (abbreviations and initials
excepted), ``。！？`` anywhere, and every line break. Paragraphs are separated by blank lines.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u3005"
# A "word character" that is not CJK: letters and digits of alphabetic scripts.
WORDCH = rf"[^\W_{CJK_RANGES}]"
CJK_CHAR = re.compile(rf"[{CJK_RANGES}]")
TOKEN_RE = re.compile(rf"[{CJK_RANGES}]|{WORDCH}+(?:[.,'’]{WORDCH}+)*")
WORD_UNITS = 2
CJK_UNITS = 1

_PARA_RE = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENT_END_RE = re.compile(r"[。！？]+[”’」』）)\"']*|[.!?]+[\"'”’)\]]*(?=\s)|\n")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st inc ltd co corp vs etc e.g i.e u.s u.k fig jan feb mar apr jun jul "
    "aug sep sept oct nov dec gov gen col lt sgt rep sen est approx dept univ".split()
)
_CLAUSE_CUT_RE = re.compile(
    r"[;；:：，,。!?！？]|\s[-–—]+\s"
    r"|\b(?:but|however|although|though|while|whereas|except|separately|meanwhile|nevertheless"
    r"|nonetheless|instead)\b"
    r"|但是|但|然而|不过|而是",
    re.IGNORECASE,
)
# English commas do not end a clause (NegEx does not stop there); Chinese commas do.
_ENGLISH_SOFT = frozenset({",", "!", "?"})

Span = tuple[int, int]


def is_cjk(ch: str) -> bool:
    return bool(CJK_CHAR.match(ch))


def split_paragraphs(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Paragraph spans (blank-line separated), whitespace trimmed, empty ones dropped."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    pos = start
    for m in _PARA_RE.finditer(text, start, end):
        spans.extend(_trimmed(text, pos, m.start()))
        pos = m.end()
    spans.extend(_trimmed(text, pos, end))
    return spans


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans inside ``text[start:end]``, whitespace trimmed."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    pos = start
    for m in _SENT_END_RE.finditer(text, start, end):
        stop = m.end()
        if text[m.start()] == "." and not _ends_sentence(text, m.start(), stop, end):
            continue
        spans.extend(_trimmed(text, pos, stop))
        pos = stop
    spans.extend(_trimmed(text, pos, end))
    return spans


def _ends_sentence(text: str, dot: int, stop: int, end: int) -> bool:
    """A '.' ends a sentence unless it follows an abbreviation/initial or lower case follows."""
    nxt = stop
    while nxt < end and text[nxt].isspace():
        nxt += 1
    if nxt < end and text[nxt].islower():
        return False
    word_start = dot
    while word_start > 0 and (text[word_start - 1].isalnum() or text[word_start - 1] == "."):
        word_start -= 1
    word = text[word_start:dot].lower()
    if word == "no" and nxt < end and text[nxt].isdigit():
        return False  # "No. 11"
    return not (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()))


def split_clauses(text: str, start: int, end: int) -> list[Span]:
    """Clause spans inside one sentence: cut at ; : and but/however/while/although/separately...

    For Chinese, also at ，；。 and 但/但是/然而/不过. English commas do not cut.
    """
    spans: list[Span] = []
    pos = start
    for m in _CLAUSE_CUT_RE.finditer(text, start, end):
        if m.group() in _ENGLISH_SOFT and not _cjk_context(text, m.start()):
            continue
        spans.append((pos, m.start()))
        pos = m.end() if not m.group()[0].isalpha() else m.start()
    spans.append((pos, end))
    return [s for s in spans if s[1] > s[0]] or [(start, end)]


def _cjk_context(text: str, i: int) -> bool:
    return i > 0 and is_cjk(text[i - 1])


def _trimmed(text: str, start: int, end: int) -> list[Span]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if end > start else []


def tokenize(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int, int]]:
    """Tokens as (start, end, units): Latin words are 2 units, CJK characters 1 unit."""
    end = len(text) if end is None else end
    out = []
    for m in TOKEN_RE.finditer(text, start, end):
        s, e = m.span()
        out.append((s, e, CJK_UNITS if e - s == 1 and is_cjk(text[s]) else WORD_UNITS))
    return out


def units_to_words(units: int) -> int:
    """Convert a unit count to words, rounding up (3 CJK characters = 2 words)."""
    return -(-units // WORD_UNITS)


def lower_same_length(text: str) -> str:
    """``text.lower()`` with the guarantee that offsets do not move."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)


@dataclass
class FieldText:
    """Lazy geometry of one field (title or body) of one document; a per-document cache."""

    text: str
    lead_sentences: int = 3
    _sentences: list[Span] | None = None
    _sent_starts: list[int] | None = None
    _paragraphs: list[Span] | None = None
    _para_starts: list[int] | None = None
    _tokens: list[tuple[int, int, int]] | None = None
    _tok_starts: list[int] | None = None
    _tok_units: list[int] | None = None
    _lower: str | None = None
    _clauses: dict[int, list[Span]] = field(default_factory=dict)

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = lower_same_length(self.text)
        return self._lower

    @property
    def sentences(self) -> list[Span]:
        if self._sentences is None:
            self._sentences = split_sentences(self.text) or [(0, len(self.text))]
            self._sent_starts = [s for s, _ in self._sentences]
        return self._sentences

    @property
    def paragraphs(self) -> list[Span]:
        if self._paragraphs is None:
            self._paragraphs = split_paragraphs(self.text) or [(0, len(self.text))]
            self._para_starts = [s for s, _ in self._paragraphs]
        return self._paragraphs

    def sentence_index(self, offset: int) -> int:
        self.sentences
        assert self._sent_starts is not None
        return max(0, bisect_right(self._sent_starts, offset) - 1)

    def paragraph_index(self, offset: int) -> int:
        self.paragraphs
        assert self._para_starts is not None
        return max(0, bisect_right(self._para_starts, offset) - 1)

    def clauses(self, sentence: int) -> list[Span]:
        if sentence not in self._clauses:
            s, e = self.sentences[sentence]
            self._clauses[sentence] = split_clauses(self.text, s, e)
        return self._clauses[sentence]

    def clause_index(self, offset: int) -> tuple[int, int]:
        """(sentence index, clause index) of an offset."""
        sent = self.sentence_index(offset)
        starts = [s for s, _ in self.clauses(sent)]
        return sent, max(0, bisect_right(starts, offset) - 1)

    def lead_end(self) -> int:
        """End offset of the lead: the first paragraph, at most its first ``lead_sentences`` sentences."""
        p_start, p_end = self.paragraphs[0]
        inside = [s for s in self.sentences if p_start <= s[0] < p_end]
        if len(inside) > self.lead_sentences:
            return inside[self.lead_sentences - 1][1]
        return p_end

    def _ensure_tokens(self) -> None:
        if self._tokens is None:
            self._tokens = tokenize(self.text)
            self._tok_starts = [t[0] for t in self._tokens]
            units = [0]
            for t in self._tokens:
                units.append(units[-1] + t[2])
            self._tok_units = units

    def gap_words(self, left_end: int, right_start: int) -> int:
        """Words strictly between two offsets (CJK: 2 characters = 1 word, rounded up)."""
        if right_start <= left_end:
            return 0
        self._ensure_tokens()
        assert self._tok_starts is not None and self._tok_units is not None
        first = bisect_left(self._tok_starts, left_end)
        last = bisect_left(self._tok_starts, right_start)
        return units_to_words(self._tok_units[last] - self._tok_units[first]) if last > first else 0
