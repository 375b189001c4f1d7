"""Text geometry for the rules engine: paragraphs, sentences, clauses and word tokens, as offsets.

Everything here works on character offsets into the original string, so evidence spans can be
reported exactly. Chinese (and other CJK) text has no spaces: every CJK character is one token.

Distances are measured in *units*: a Latin word (letters/digits, with inner ``.``/``,``/``'``, so
``2.0``, ``9,000`` and ``Meituan's`` are one word) is 2 units, a CJK character is 1 unit. A gap of
``n`` words therefore allows ``n`` Latin words or ``2n`` CJK characters (two characters make roughly
one Chinese word). See rules/README.md, "Chinese text".

Sentence splitting is a small regex splitter: ``. ! ?`` followed by space and a character that
is not lower case (abbreviations, initials and "No. 5" excepted), ``。！？`` anywhere, and every
line break. It is used *locally*: :class:`FieldText` finds the sentence around an offset by
scanning outwards, so a 5 KB article costs only where a rule looks. sentencex splits whole
documents about twice as fast (bench/rules.py prints both) but returns strings, not offsets
(on the aeb-dev corpus 8 of 88 articles do not re-join to the original text), and cannot look
up one sentence.
"""

from __future__ import annotations

import re
from bisect import bisect_right, insort
from collections.abc import Iterator

CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u3005"
# A "word character" that is not CJK: letters and digits of alphabetic scripts.
WORDCH = rf"[^\W_{CJK_RANGES}]"
CJK_CHAR = re.compile(rf"[{CJK_RANGES}]")
TOKEN_RE = re.compile(rf"[{CJK_RANGES}]|{WORDCH}+(?:[.,'’]{WORDCH}+)*")
WORD_UNITS = 2
CJK_UNITS = 1

_PARA_RE = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_ABBREVIATIONS = (
    *("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "inc", "ltd", "co", "corp", "bros", "vs"),
    *("etc", "al", "e.g", "i.e", "u.s", "u.k", "a.m", "p.m", "fig", "jan", "feb"),
    *("mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "gov", "gen", "col", "lt"),
    *("sgt", "capt", "rep", "sen", "rev", "est", "approx", "dept", "univ"),
)
_NOT_AFTER = "".join(rf"(?<!\b{re.escape(a)}\.)" for a in _ABBREVIATIONS)
_CLOSERS = "[\"'”’)\\]]*"
# Sentence ends: CJK terminators anywhere; . ! ? before white space and a character that is not
# lower case (not after an abbreviation, an initial -- a lone letter, not the s of "Huawei's." --, or
# "No." before a number); every line break.
_SENT_END_RE = re.compile(
    rf"[。！？]+[”’」』）)\"']*"
    rf"|[!?]+{_CLOSERS}(?=\s)"
    rf"|\.+(?i:{_NOT_AFTER})(?<!(?<![\w'’])[A-Za-z]\.)(?!(?<=\b[Nn]o\.)\s*\d){_CLOSERS}(?=\s+(?![a-z])|\s*$)"
    rf"|(?<=\S)…+{_CLOSERS}(?=\s+(?![a-z])|\s*$)"
    r"|\n"
)
_SENT_END_CANDIDATE = re.compile(r"[.!?\n。！？…]")
_CLAUSE_CUT_RE = re.compile(  # run on lower-cased text
    r"[;；:：，,。!?！？]|\s[-–—]+\s"
    r"|\b(?:but|however|although|though|while|whereas|except|separately|meanwhile|nevertheless"
    r"|nonetheless|instead)\b"
    r"|但是|但|然而|不过|而是"
)
# English commas do not end a clause (NegEx does not stop there); Chinese commas do, except after
# a word that introduces hearsay or a condition (据传，... 网传，... 如果，...): what follows is
# what the rumour says, so it stays in the rumour's clause.
_ENGLISH_SOFT = frozenset({",", "!", "?"})
_CJK_INTRODUCERS = re.compile(
    r"(?:据传|网传|传闻|传言|据称|据说|消息称|声称|爆料称?|坊间传|猜测|推测|估计|预计|如果|假如|倘若|若|一旦|可能)\s*$"
)

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
    for c in _SENT_END_CANDIDATE.finditer(text, start, end):
        if c.start() < pos:
            continue
        m = _SENT_END_RE.match(text, c.start(), end)
        if m:
            _add_trimmed(spans, text, pos, m.end())
            pos = m.end()
    _add_trimmed(spans, text, pos, end)
    return spans


def _add_trimmed(spans: list[Span], text: str, start: int, end: int) -> None:
    seg = text[start:end]
    stripped = seg.strip()
    if stripped:
        s = start + (len(seg) - len(seg.lstrip()))
        spans.append((s, s + len(stripped)))


def split_clauses(text: str, start: int, end: int, lower: str | None = None) -> list[Span]:
    """Clause spans inside one sentence: cut at ; : and but/however/while/although/separately...

    For Chinese, also at ，；。 and 但/但是/然而/不过. English commas do not cut. ``lower`` is
    the lower-cased ``text`` when the caller has it already.
    """
    low = lower if lower is not None else lower_same_length(text)
    spans: list[Span] = []
    pos = start
    for m in _CLAUSE_CUT_RE.finditer(low, start, end):
        cut = m.group()
        if cut in _ENGLISH_SOFT and not _cjk_context(text, m.start()):
            continue
        if cut in "，," and _CJK_INTRODUCERS.search(text, max(start, m.start() - 4), m.start()):
            continue
        spans.append((pos, m.start()))
        pos = m.end() if not cut[0].isalpha() else m.start()
    spans.append((pos, end))
    return [s for s in spans if s[1] > s[0]] or [(start, end)]


def _cjk_context(text: str, i: int) -> bool:
    return i > 0 and is_cjk(text[i - 1])


def _trimmed(text: str, start: int, end: int) -> list[Span]:
    out: list[Span] = []
    _add_trimmed(out, text, start, end)
    return out


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


_MARGIN = 64  # characters of look-ahead context past a scan window
_WINDOW = 256


class FieldText:
    """Lazy geometry of one field (title or body) of one document: a per-document cache.

    Sentences and paragraphs are found *around* the offsets asked for (a local scan that widens
    until it finds a boundary), so a long document costs only where rules look at it.
    """

    def __init__(self, text: str, lead_sentences: int = 3) -> None:
        self.text = text
        self.lead_sentences = lead_sentences
        self._lower: str | None = None
        self._sentences: list[Span] = []  # found so far, sorted
        self._paragraphs: list[Span] = []
        self._clauses: dict[int, list[Span]] = {}  # by sentence start
        self._lead_end: int | None = None

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = lower_same_length(self.text)
        return self._lower

    def sentence_at(self, offset: int) -> Span:
        """The (trimmed) sentence containing ``offset``."""
        found = _known(self._sentences, offset)
        if found is None:
            found = _trim(self.text, self._back(_SENT_END_RE, offset), self._forward(_SENT_END_RE, offset))
            insort(self._sentences, found)
        return found

    def paragraph_at(self, offset: int) -> Span:
        """The (trimmed) paragraph containing ``offset``."""
        found = _known(self._paragraphs, offset)
        if found is None:
            start, end = self._back(_PARA_RE, offset), self._forward(_PARA_RE, offset, at_start=True)
            found = _trim(self.text, start, end)
            insort(self._paragraphs, found)
        return found

    def _boundaries(self, pattern: re.Pattern[str], lo: int, hi: int) -> Iterator[re.Match[str]]:
        """Boundary matches starting in [lo, hi) (context up to _MARGIN characters past hi)."""
        stop = min(len(self.text), hi + _MARGIN)
        if pattern is not _SENT_END_RE:
            yield from (m for m in pattern.finditer(self.text, lo, stop) if m.start() < hi)
            return
        pos = lo  # cheap scan for terminator characters, then the full check only there
        for c in _SENT_END_CANDIDATE.finditer(self.text, lo, hi):
            if c.start() < pos:
                continue
            m = pattern.match(self.text, c.start(), stop)
            if m:
                pos = m.end()
                yield m

    def _back(self, pattern: re.Pattern[str], x: int) -> int:
        """End of the last boundary at or before ``x`` (0 if none)."""
        width = _WINDOW
        while True:
            lo = max(0, x - width)
            before = [e for m in self._boundaries(pattern, lo, x) if (e := m.end()) <= x]
            if before or lo == 0:
                return before[-1] if before else 0
            width *= 4

    def _forward(self, pattern: re.Pattern[str], x: int, at_start: bool = False) -> int:
        """End (or start, for paragraph breaks) of the first boundary after ``x`` (len if none)."""
        n = len(self.text)
        width = _WINDOW
        while True:
            hi = min(n, x + width)
            for m in self._boundaries(pattern, x, hi):
                if m.end() > x:
                    return m.start() if at_start else m.end()
            if hi == n:
                return n
            width *= 4

    def clauses(self, sentence: Span) -> list[Span]:
        if sentence[0] not in self._clauses:
            self._clauses[sentence[0]] = split_clauses(self.text, *sentence, lower=self.lower)
        return self._clauses[sentence[0]]

    def clause_at(self, offset: int) -> tuple[Span, Span]:
        """(sentence, clause) containing ``offset``."""
        sent = self.sentence_at(offset)
        clauses = self.clauses(sent)
        i = max(0, bisect_right([c[0] for c in clauses], offset) - 1)
        return sent, clauses[i]

    def lead_end(self) -> int:
        """End of the lead: the first paragraph, at most its first ``lead_sentences`` sentences."""
        if self._lead_end is None:
            text = self.text
            first = len(text) - len(text.lstrip())
            p_end = self.paragraph_at(first)[1] if first < len(text) else 0
            end, pos = p_end, first
            for _ in range(self.lead_sentences):
                if pos >= p_end:
                    break
                end = min(self.sentence_at(pos)[1], p_end)
                pos = end + 1
                while pos < p_end and text[pos].isspace():
                    pos += 1
            self._lead_end = end if pos < p_end else p_end
        return self._lead_end

    def gap_words(self, left_end: int, right_start: int, limit: int | None = None) -> int:
        """Words strictly between two offsets (CJK: 2 characters = 1 word, rounded up).

        With ``limit``, counting stops as soon as the gap is known to exceed it.
        """
        units = 0
        cap = None if limit is None else (limit + 1) * WORD_UNITS
        for m in TOKEN_RE.finditer(self.text, left_end, max(left_end, right_start)):
            units += CJK_UNITS if m.end() - m.start() == 1 and CJK_CHAR.match(m.group()) else WORD_UNITS
            if cap is not None and units >= cap:
                break
        return units_to_words(units)


def _known(spans: list[Span], offset: int) -> Span | None:
    i = bisect_right(spans, (offset, 1 << 62)) - 1
    if i >= 0 and spans[i][0] <= offset < spans[i][1]:
        return spans[i]
    return None


def _trim(text: str, start: int, end: int) -> Span:
    seg = text[start:end]
    stripped = seg.strip()
    if not stripped:
        return (start, end)
    s = start + (len(seg) - len(seg.lstrip()))
    return (s, s + len(stripped))
