"""What changed on a watched page: sentence/line multisets with volatile text masked. Pure, no I/O.

A snapshot (the text of the page's watched region) is cut into units: its lines, and each line
into sentences (:func:`crawler.dedup.text.sentence_texts`), so a table row is one unit and a
paragraph that gains a sentence gains one unit. Two snapshots are compared as MULTISETS of unit
keys, so reordering is not a change and a repeated line added once more is. A key is the unit
with volatile text masked, then normalised (:func:`crawler.dedup.text.normalize_text`, punctuation
dropped):

* relative times: "5 minutes ago", "2 hrs ago", "just now", "yesterday", "刚刚", "5分钟前", "昨天";
* counters: "1,234 views", "12K likes", "9,123 votes", "Views: 1.2M", "3.4万 阅读";
* clock times and dates: "10:42", "10:42 am UTC", "Nov 23, 2026", "23 November 2026", ISO dates
  and timestamps, "11/23/2026", "2026年11月23日";
* ad-slot lines: units that start with "Advertisement", "Sponsored", "Promoted" or "Ad:";
* the source's own ``ignore`` regexes (config ``sources[].ignore``), applied first.

So a line that differs only in masked text is unchanged, and a unit that is nothing but masked
text ("5 minutes ago") is ignored entirely. Added/removed units are reported as they read in the
new/old snapshot (whitespace collapsed), in page order.

The first snapshot of a page (``old is None``) is a *baseline*: it returns an empty
:class:`~crawler.types.PageChange`, so subscribing to a page never alerts on its whole content.
The caller knows it is a baseline because it passed ``None``; it stores the snapshot and alerts
from the next one on. An empty previous snapshot (``old == ""``) is not a baseline: everything
on the page is then added.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from crawler.dedup.text import content_hash, normalize_text, sentence_texts
from crawler.errors import ConfigError
from crawler.types import Document, PageChange, SourceSpec

_MASK = "\u2400"  # a placeholder no page contains; normalize_text keeps it
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_COUNTED = (
    r"views?|likes?|comments?|shares?|votes?|reads?|replies|repl(?:y|ies)|retweets?|reposts?|"
    r"followers?|subscribers?|downloads?|stars?|forks?|reactions?|points?|upvotes?|clicks?|plays?|"
    r"watching|readers?|reviews?|ratings?|answers?"
)
_NUMBER = r"\d[\d,.\u00a0\u202f']*\s*(?:[kmb万亿千]\+?)?\+?"
_VOLATILE = [
    # relative times
    r"\b(?:(?:about|over|almost|nearly|less than)\s+)?(?:\d+|an?|one|a few|several)\s*"
    r"(?:s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|wks?|weeks?|mos?|months?|y|yrs?|years?)"
    r"\s+ago\b",
    r"\b(?:just now|moments? ago|yesterday|today|tonight)\b",
    r"刚刚|\d+\s*(?:秒|分钟|小时|天|周|个月|年)前|昨天|前天|今天",
    # counters: "1,234 views", "Views: 1.2M", "3.4万 阅读"
    rf"(?<![\w.]){_NUMBER}\s*(?:{_COUNTED})\b",
    rf"\b(?:{_COUNTED})\s*[:：]?\s*{_NUMBER}",
    rf"{_NUMBER}\s*(?:次)?(?:阅读|浏览|点赞|评论|转发|收藏|观看)",
    # dates and timestamps (ISO first, so its time part is taken with it)
    r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?",
    r"\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日",
    rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?(?:\s+\d{{4}})?",
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}(?:,?\s+\d{{4}})?",
    r"\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b\d{1,2}\.\d{1,2}\.\d{4}\b",  # not version numbers like 2.0.1
    # clock times: "10:42", "10:42:05 pm", "9am", "10:42 UTC"
    r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?(?:\s*(?:utc|gmt|[ecmp][sd]t|cet|cest|bst|jst|hkt))?\b",
    r"\b\d{1,2}\s*[ap]\.?m\.?(?=\W|$)",
]
_VOLATILE_RE = re.compile("|".join(f"(?:{p})" for p in _VOLATILE), re.IGNORECASE)
_AD_RE = re.compile(r"^\W*(?:(?:advertisement|sponsored|promoted)\b|ad\s*(?:[:|-]|$))", re.IGNORECASE)
_MASK_RUN_RE = re.compile(r"\s*\u2400(?:[\s,;·|/-]*\u2400)*\s*")  # "10:42, Nov 23" -> one mask
_KEY_TOKEN_RE = re.compile(r"[\w\u2400]+")
_CONTENT_RE = re.compile(r"[^\W\u2400]", re.UNICODE)  # a word character that is not the mask


def normalize_snapshot(text: str) -> str:
    """A snapshot as stored: NFKC, each line's whitespace collapsed, blank lines dropped."""
    lines = (" ".join(line.split()) for line in unicodedata.normalize("NFKC", text).splitlines())
    return "\n".join(line for line in lines if line)


def diff_snapshots(old: str | None, new: str, *, ignore: Sequence[str] = ()) -> PageChange:
    """The units added to and removed from a page between two snapshots (see the module docstring).

    ``ignore`` holds the source's regular expressions of volatile text (Python ``re`` syntax, as
    config validation checks them; matched case-insensitively). Raises ConfigError if one is invalid.
    """
    if old is None:
        return PageChange(added=(), removed=())
    patterns = _compile(tuple(ignore))
    old_units, new_units = _units(old, patterns), _units(new, patterns)
    return PageChange(added=_extra(new_units, old_units), removed=_extra(old_units, new_units))


def _units(text: str, patterns: tuple[re.Pattern[str], ...]) -> list[tuple[str, str]]:
    """(key, unit) for every unit of ``text`` that has content once volatile text is masked."""
    out: list[tuple[str, str]] = []
    for line in normalize_snapshot(text).splitlines():
        for unit in sentence_texts(line):
            key = mask_volatile(unit, patterns)
            if _CONTENT_RE.search(key):
                out.append((key, unit))
    return out


def mask_volatile(unit: str, patterns: Sequence[re.Pattern[str]] = ()) -> str:
    """The comparison key of one unit: user patterns, ad slots and built-in volatile text masked."""
    for pattern in patterns:
        unit = pattern.sub(_MASK, unit)
    if _AD_RE.match(unit):
        return _MASK
    masked = _MASK_RUN_RE.sub(f" {_MASK} ", _VOLATILE_RE.sub(_MASK, unit))
    return " ".join(_KEY_TOKEN_RE.findall(normalize_text(masked)))  # punctuation does not count


def _extra(these: list[tuple[str, str]], those: list[tuple[str, str]]) -> tuple[str, ...]:
    """Units of ``these`` beyond the count of their key in ``those``, in order."""
    budget = Counter(key for key, _ in those)
    out: list[str] = []
    for key, unit in these:
        if budget[key] > 0:
            budget[key] -= 1
        else:
            out.append(unit)
    return tuple(out)


@lru_cache(maxsize=256)
def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ConfigError(f"ignore pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    return tuple(compiled)


__all__ = ["diff_snapshots", "mask_volatile", "normalize_snapshot"]


def page_document(
    spec: SourceSpec, added: str, *, now: datetime, taken_at: datetime | None = None
) -> Document:
    """The text a page snapshot added, as a document: one identity per (source, added text),
    shared by live polling and the web-archive backfill so neither stores the other's twice."""
    digest = content_hash(f"{spec.id}\n{added}")
    return Document(
        source_id=spec.id,
        url=spec.url,
        canonical_url=f"{spec.url}#storywatch-{digest[:20]}",
        title=f"{spec.id}: page changed",
        text=added,
        discovered=now,
        content_hash=digest,
        published=taken_at,
        origin="page",
        entry_id=f"snapshot:{digest[:20]}",
        source_kind=spec.kind,
        source_tags=spec.tags,
    )
