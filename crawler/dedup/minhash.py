"""Near-duplicate fingerprints: MinHash signatures and LSH band hashes of article text. Pure, no I/O.

A document's main text (the pipeline passes extracted article text, never HTML) is normalised
(:func:`crawler.dedup.text.normalize_text`) and cut into shingles: ``word_k`` consecutive words, or,
when at least a quarter of its characters are CJK/Thai/Burmese/Khmer (scripts written without
spaces), ``char_k`` consecutive characters with spaces and punctuation removed. A text shorter than
one shingle is one shingle; a text without any word character has no shingles and gets an *empty*
fingerprint (no bands, similarity 0 to everything), so it never joins a story by similarity.

The signature is datasketch's ``affine32`` MinHash (the datasketch >= 2.0 default scheme, its
permutations for ``seed=1``; datasketch itself is only imported by the tests and benches), computed
here in one vectorised numpy pass instead of datasketch's per-shingle Python hash loop; the shingle
hash (a polynomial hash of each word's UTF-8 bytes, :func:`word_units`, / the code point of each
character, combined by multiply-shift) is ours.
``tests/dedup/test_dedup.py`` checks the signature equals ``datasketch.MinHash(..., hashfunc=<our
shingle hash>)`` bit for bit.

LSH: the ``num_perm`` values are cut into ``bands`` bands of ``num_perm // bands`` rows; each band
becomes one non-negative 63-bit integer (fits a signed BIGINT), the key of ``minhash_bands``. Two
texts with Jaccard similarity ``s`` share at least one band with probability
``1 - (1 - s**rows)**bands`` (:func:`candidate_probability`); candidates are then verified with
:func:`estimate_jaccard` against a threshold.

Changing ``num_perm``, ``bands``, ``word_k`` or ``char_k`` changes every fingerprint: stored bands
and signatures must then be rebuilt (signatures of different lengths compare as similarity 0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from crawler.dedup.text import fold_words, word_bytes
from crawler.errors import ConfigError

SEED = 1  # datasketch permutation seed: part of the stored format
# Defaults measured by bench/dedup.py (syndicated reprints of real articles): 120 permutations in
# 40 bands of 3 rows make texts of Jaccard 0.4 LSH candidates with probability 0.93 (0.5: 0.995)
# while unrelated texts (Jaccard ~0.01) almost never are; a verified estimate >= THRESHOLD joins
# a story. The 128/32/0.5 placeholders missed the trimmed reprints (recall 0.91-0.97).
NUM_PERM = 120
BANDS = 40
WORD_K = 5
CHAR_K = 4
THRESHOLD = 0.4
_U32 = npt.NDArray[np.uint32]
_U64 = npt.NDArray[np.uint64]
_MASK63 = np.uint64((1 << 63) - 1)
_WORD_RE = re.compile(r"\w+")
_UNSPACED_RE = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f\u1000-\u109f\u1780-\u17ff]"
)
UNSPACED_RATIO = 0.25  # share of non-space characters above which character shingles are used
# Fixed random 64-bit multipliers (part of the stored format): shingle positions and band rows.
_CONSTS = np.random.RandomState(20261123).randint(0, 1 << 62, size=64, dtype=np.uint64) * np.uint64(
    2
) + np.uint64(1)
_SHINGLE_MULT = _CONSTS[:16]
_BAND_MULT = _CONSTS[16:64]
_BAND_SALT = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Fingerprint:
    """The MinHash signature (``num_perm`` little-endian uint32) and its LSH band hashes.

    An empty signature (``b""``, no bands) marks a text without shingles: it matches nothing.
    """

    signature: bytes
    bands: tuple[int, ...]

    @property
    def num_perm(self) -> int:
        return len(self.signature) // 4

    @property
    def empty(self) -> bool:
        return not self.signature


def fingerprint(
    text: str,
    *,
    num_perm: int = NUM_PERM,
    bands: int = BANDS,
    word_k: int = WORD_K,
    char_k: int = CHAR_K,
    folded: str | None = None,
) -> Fingerprint:
    """The fingerprint of one document's main text (see the module docstring); ``folded`` is
    ``normalize.fold_text(text)`` when the caller already has it."""
    _check_layout(num_perm, bands)
    shingles = shingle_hashes(text, word_k=word_k, char_k=char_k, folded=folded)
    if shingles.size == 0:
        return Fingerprint(signature=b"", bands=())
    signature = minhash(shingles, num_perm=num_perm)
    return Fingerprint(signature=signature.astype("<u4").tobytes(), bands=band_tuple(signature, bands))


def shingle_hashes(
    text: str, *, word_k: int = WORD_K, char_k: int = CHAR_K, folded: str | None = None
) -> _U32:
    """The 32-bit hash of every shingle of ``text`` (duplicates kept, order of appearance).

    Shingles read only the ``\\w+`` runs of the folded text: ``fold_words(text)``, or ``folded``
    (``fold_text(text)``, which has the same runs) when the caller has it.
    """
    if folded is None:
        folded = fold_words(text)  # normalize_text as far as \w+ runs go (all that shingles read)
    if is_unspaced(folded):
        chars = "".join(_WORD_RE.findall(folded))
        units = _fmix32(np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32))
        return _combine(units, char_k)
    return _combine(word_units(folded), word_k)


def word_units(text: str) -> _U32:
    """The 32-bit hash of every ``\\w+`` run of ``text``, in order, in one vectorised pass.

    Each word's hash is ``fmix32`` of the polynomial ``sum(byte[j] * P**j) mod 2**32`` over its
    UTF-8 bytes (:func:`word_unit_reference` is the plain-Python spec). With ``P`` odd, ``P`` is
    invertible mod 2**32, so the sum over a word at offset ``s`` of the whole text's
    ``byte[i] * P**i`` times ``P**-s`` is that word's polynomial, whatever its position: one
    running sum and a few array operations for all words instead of a call per word.
    """
    data = np.frombuffer(b"\0" + word_bytes(text, separator=0) + b"\0", dtype=np.uint8)  # separators: 0
    inside = data.view(np.bool_)
    starts = np.flatnonzero(inside[1:] > inside[:-1]) + 1  # a word byte after a separator
    if starts.size == 0:
        return np.empty(0, dtype=np.uint32)
    ends = np.flatnonzero(inside[:-1] > inside[1:])  # a word byte before a separator
    powers, inverses = _powers(data.size)
    running = np.cumsum(data * powers[: data.size], dtype=np.uint32)  # wraps mod 2**32
    return _fmix32((running[ends] - running[starts - 1]) * inverses[starts])


_P = 0x01000193  # the FNV-1 32-bit prime: odd, so invertible mod 2**32
_P_INV = pow(_P, -1, 1 << 32)
_POWERS: list[tuple[_U32, _U32]] = []


def _powers(n: int) -> tuple[_U32, _U32]:
    """``P**i`` and ``P**-i`` mod 2**32 for i < n (at least; grown by doubling, kept)."""
    if not _POWERS or _POWERS[0][0].size < n:
        size = max(n, 2 * _POWERS[0][0].size if _POWERS else 1 << 16)
        up = np.full(size, _P, dtype=np.uint32)
        up[0] = 1
        down = np.full(size, _P_INV, dtype=np.uint32)
        down[0] = 1
        _POWERS[:] = [(np.cumprod(up, dtype=np.uint32), np.cumprod(down, dtype=np.uint32))]
    return _POWERS[0]


def word_unit_reference(word: bytes) -> int:
    """One word's unit hash in plain Python (the spec :func:`word_units` vectorises)."""
    poly = sum(b * pow(_P, j, 1 << 32) for j, b in enumerate(word)) % (1 << 32)
    return int(_fmix32(np.array([poly], dtype=np.uint32))[0])


def is_unspaced(text: str) -> bool:
    """Whether ``text`` is mostly written in a script without spaces between words."""
    if text.isascii() or _UNSPACED_RE.search(text) is None:
        return False
    nonspace = len(text) - sum(map(text.count, " \n\t\r"))
    return len(_UNSPACED_RE.findall(text)) >= UNSPACED_RATIO * nonspace


def _combine(units: _U32, k: int) -> _U32:
    """Multiply-shift hash of each run of ``k`` units: high 32 bits of sum(unit[i+j] * M[j])."""
    if units.size == 0:
        return np.empty(0, dtype=np.uint32)
    k = max(1, min(k, units.size, _SHINGLE_MULT.size))
    wide = units.astype(np.uint64)
    count = units.size - k + 1
    acc = wide[:count] * _SHINGLE_MULT[0]
    for j in range(1, k):
        acc += wide[j : j + count] * _SHINGLE_MULT[j]
    return (acc >> np.uint64(32)).astype(np.uint32)


def shingle_hash_reference(units: Sequence[int]) -> int:
    """One shingle's hash from its unit hashes, in plain Python (the spec :func:`_combine` vectorises)."""
    total = sum(int(u) * int(m) for u, m in zip(units, _SHINGLE_MULT, strict=False)) % (1 << 64)
    return total >> 32


def _fmix32(values: _U32) -> _U32:
    """MurmurHash3's 32-bit finalizer (the pre-mix of datasketch's affine32 scheme)."""
    h = values.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _fmix64(values: _U64) -> _U64:
    h = values.copy()
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@lru_cache(maxsize=8)
def _permutations(num_perm: int) -> tuple[_U32, _U32]:
    """datasketch's ``affine32`` permutations for ``SEED``, drawn as ``MinHash._init_permutations``
    draws them (odd ``a``, any ``b``; ``tests/dedup/test_dedup.py`` checks them against datasketch's own).
    Drawn here because importing datasketch imports scipy: ~0.3 s and ~25 MB in every process."""
    gen = np.random.RandomState(SEED)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def minhash(shingles: _U32, *, num_perm: int = NUM_PERM) -> _U32:
    """datasketch ``affine32`` MinHash of precomputed 32-bit shingle hashes: min over (a*fmix(h)+b)."""
    a, b = _permutations(num_perm)
    values = np.multiply(a[:, None], _fmix32(shingles)[None, :])  # (num_perm, n), wraps mod 2**32
    values += b[:, None]
    return values.min(axis=1)


def band_hashes(signatures: _U32, bands: int) -> npt.NDArray[np.int64]:
    """Band hashes of a ``(n, num_perm)`` array of signatures: an ``(n, bands)`` array, each >= 0."""
    n, num_perm = signatures.shape
    _check_layout(num_perm, bands)
    rows = num_perm // bands
    grid = signatures.reshape(n, bands, rows).astype(np.uint64)
    acc = (grid * _BAND_MULT[:rows]).sum(axis=2, dtype=np.uint64)
    acc += (np.arange(1, bands + 1, dtype=np.uint64) * _BAND_SALT)[None, :]
    return (_fmix64(acc) & _MASK63).astype(np.int64)


def band_tuple(signature: _U32, bands: int) -> tuple[int, ...]:
    return tuple(band_hashes(signature[None, :], bands)[0].tolist())


def _check_layout(num_perm: int, bands: int) -> None:
    if bands < 1 or num_perm < bands or num_perm % bands or num_perm // bands > _BAND_MULT.size:
        raise ConfigError(
            f"num_perm={num_perm} cannot be cut into {bands} equal bands (of at most "
            f"{_BAND_MULT.size} rows): choose bands dividing num_perm",
            key="dedup.bands",
        )


def signature_array(signature: bytes) -> _U32:
    return np.frombuffer(signature, dtype="<u4").astype(np.uint32)


def fingerprint_from_signature(signature: bytes, *, bands: int = BANDS) -> Fingerprint:
    """Rebuild a fingerprint from stored signature bytes (e.g. to re-band after a config change)."""
    if not signature:
        return Fingerprint(signature=b"", bands=())
    return Fingerprint(signature=signature, bands=band_tuple(signature_array(signature), bands))


def estimate_jaccard(a: Fingerprint | bytes, b: Fingerprint | bytes) -> float:
    """Estimated Jaccard similarity: the share of equal MinHash values (0.0 if empty or incomparable)."""
    sa = a.signature if isinstance(a, Fingerprint) else a
    sb = b.signature if isinstance(b, Fingerprint) else b
    if not sa or len(sa) != len(sb):
        return 0.0
    return float(np.count_nonzero(signature_array(sa) == signature_array(sb))) / (len(sa) // 4)


def estimate_jaccard_many(fp: Fingerprint, signatures: Sequence[bytes]) -> list[float]:
    """:func:`estimate_jaccard` of ``fp`` against many stored signatures at once."""
    if fp.empty:
        return [0.0] * len(signatures)
    mine = signature_array(fp.signature)
    comparable = [i for i, s in enumerate(signatures) if len(s) == len(fp.signature)]
    scores = [0.0] * len(signatures)
    if comparable:
        stack = np.frombuffer(b"".join(signatures[i] for i in comparable), dtype="<u4")
        equal = (stack.reshape(len(comparable), mine.size) == mine).sum(axis=1)
        for i, hits in zip(comparable, equal.tolist(), strict=True):
            scores[i] = hits / mine.size
    return scores


def candidate_probability(similarity: float, *, num_perm: int = NUM_PERM, bands: int = BANDS) -> float:
    """Probability that two texts of Jaccard ``similarity`` share at least one band."""
    rows = num_perm // bands
    return float(1.0 - (1.0 - similarity**rows) ** bands)


__all__ = [
    "BANDS",
    "CHAR_K",
    "NUM_PERM",
    "THRESHOLD",
    "WORD_K",
    "Fingerprint",
    "band_hashes",
    "candidate_probability",
    "estimate_jaccard",
    "estimate_jaccard_many",
    "fingerprint",
    "fingerprint_from_signature",
    "minhash",
    "shingle_hashes",
    "word_unit_reference",
    "word_units",
]
