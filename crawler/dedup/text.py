"""Text identity: folding, normalised text, content hashes, word tokens and sentence keys. Pure, no I/O.

:func:`normalize_text` (NFKC, quotes and dashes unified, zero-width characters dropped,
lower-cased, whitespace collapsed) and :func:`content_hash` (its SHA-256): the same normalised
text is one document. :func:`sentence_texts` (the rules engine's one sentence splitter, whitespace
collapsed) and :func:`sentence_key` give the unit and the key that decide whether an evidence
sentence is new to a story.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from rules.textspans import split_sentences

_TEXT_TABLE = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2039\u203a\u0060\u00b4", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb\u300c\u300d\u300e\u300f", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d", "-"),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", None),
    }
)


_TEXT_CHARS_RE = re.compile("[" + re.escape("".join(map(chr, _TEXT_TABLE))) + "]")
_TEXT_MAP = {chr(k): v or "" for k, v in _TEXT_TABLE.items()}


def _text_char(match: re.Match[str]) -> str:
    return _TEXT_MAP[match.group()]


def fold_text(text: str) -> str:
    """:func:`normalize_text` without the whitespace collapsing (for tokenisers that ignore it)."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():  # a regex substitution is ~4x faster than str.translate with a dict table
        text = _TEXT_CHARS_RE.sub(_text_char, text)
    return text.lower()


_INVISIBLE_RE = re.compile("[" + "".join(chr(k) for k, v in _TEXT_TABLE.items() if v is None) + "]")


def fold_words(text: str) -> str:
    """:func:`fold_text` as far as word characters go: the same ``\\w+`` runs, ~30% cheaper.

    NFKC, invisible characters (zero-width, soft hyphen) dropped, lower-cased; the quotes and dashes
    that :func:`fold_text` unifies are non-word characters either way, so they are left alone.
    """
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = _INVISIBLE_RE.sub("", text)
    return text.lower()


# word_bytes: ASCII bytes that are not word characters become separators; every byte >= 0x80 is kept (it
# belongs to a multi-byte character, and non-word non-ASCII characters were replaced before encoding).
_WORD_BYTES = {
    sep: bytes(b if b >= 0x80 or chr(b).isalnum() or b == 0x5F else sep for b in range(256))
    for sep in (0, 0x20)
}
_NON_WORD_NON_ASCII_RE = re.compile(r"[^\x00-\x7f\w]")


def word_bytes(text: str, *, separator: int = 0x20) -> bytes:
    """``text`` in UTF-8 with every non-word character (not ``\\w``) replaced by the byte
    ``separator`` (a space, or 0): its words are the runs of other bytes."""
    if not text.isascii():
        text = _NON_WORD_NON_ASCII_RE.sub(" ", text)
    return text.encode("utf-8", "surrogatepass").translate(_WORD_BYTES[separator])


def word_tokens(text: str) -> list[bytes]:
    """The UTF-8 bytes of every ``\\w+`` run of ``text``, in order: ``re.findall(r"\\w+", text)``,
    encoded, computed ~3x faster (a byte translation table and ``bytes.split``, no match objects)."""
    return word_bytes(text).split()


def normalize_text(text: str) -> str:
    """NFKC, quotes/dashes unified, zero-width characters dropped, lower-cased, whitespace collapsed."""
    return " ".join(fold_text(text).split())


def content_hash(text: str, *, folded: str | None = None) -> str:
    """SHA-256 (hex) of :func:`normalize_text`: the same normalised text is one document.

    ``folded`` is ``fold_text(text)`` when the caller already has it (the fingerprint reads it too).
    """
    folded = fold_text(text) if folded is None else folded
    return hashlib.sha256(" ".join(folded.split()).encode("utf-8")).hexdigest()


def sentence_texts(text: str) -> list[str]:
    """The sentences of ``text`` (:func:`rules.textspans.split_sentences`), whitespace collapsed.

    Lines first, then ``.!?`` + space (not after Mr./U.S./initials, not before lower case) and
    ``。！？``; empty pieces are dropped.
    """
    return [" ".join(text[s:e].split()) for s, e in split_sentences(text)]


def sentence_key(sentence: str) -> str:
    """A key for "the same sentence": SHA-256 (hex) of its normalised words, punctuation ignored."""
    return hashlib.sha256(b" ".join(word_tokens(fold_text(sentence)))).hexdigest()


__all__ = [
    "content_hash",
    "entry_key",
    "fold_text",
    "fold_words",
    "normalize_text",
    "sentence_key",
    "sentence_texts",
    "word_bytes",
    "word_tokens",
]


def entry_key(entry_id: str, title: str, summary: str) -> str:
    """The sighting key of a feed entry *version*: its id plus a digest of its title and summary.

    A feed that edits an entry in place (a correction, "UPDATE 2-" in the headline, a new summary)
    keeps its guid; the changed digest makes the pipeline read the entry's article again, and
    the article is then re-read on its changed sentences only.
    """
    digest = hashlib.sha1(f"{normalize_text(title)}\n{normalize_text(summary)}".encode()).hexdigest()[:12]
    return f"{entry_id}@{digest}"
