"""crawler.dedup.minhash: MinHash fingerprints (datasketch-compatible), LSH bands, similarity estimates."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from crawler.dedup import minhash as dedup
from crawler.dedup import normalize_text
from crawler.dedup import text as normalize
from crawler.dedup.minhash import (
    Fingerprint,
    candidate_probability,
    estimate_jaccard,
    estimate_jaccard_many,
    fingerprint,
    fingerprint_from_signature,
    shingle_hash_reference,
    shingle_hashes,
)
from crawler.errors import ConfigError

DATA = Path(__file__).parents[1] / "data" / "dedup"
EN = (DATA / "en_article.txt").read_text(encoding="utf-8")
ZH = (DATA / "zh_article.txt").read_text(encoding="utf-8")


def _reprint(text: str, outlet: str) -> str:
    """A syndicated copy: new headline, byline, boilerplate, last paragraph trimmed, curly quotes."""
    paragraphs = text.strip().split("\n\n")[:-1]
    return "\n\n".join(
        [
            f"LongCat-2.0 arrives with 1.6 trillion parameters | {outlet}",
            f"By Staff Writer, {outlet}",
            *paragraphs,
            "Read more: the week in AI",
            f"© 2026 {outlet}. All rights reserved.",
        ]
    ).replace("'", "\u2019")


def _exact_jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_hashes(a).tolist()), set(shingle_hashes(b).tolist())
    return len(sa & sb) / len(sa | sb)


def test_signature_is_datasketch_affine32_minhash_of_our_shingles() -> None:
    for text in (EN, ZH):
        shingles = [int(h) for h in shingle_hashes(text)]
        reference = MinHash(num_perm=dedup.NUM_PERM, seed=dedup.SEED, scheme="affine32", hashfunc=int)
        reference.update_batch(shingles)
        ours = np.frombuffer(fingerprint(text).signature, dtype="<u4")
        assert np.array_equal(ours, reference.hashvalues)


def test_permutations_are_datasketchs_affine32_permutations() -> None:
    for num_perm in (dedup.NUM_PERM, 64, 7):
        a, b = MinHash(num_perm=num_perm, seed=dedup.SEED, scheme="affine32").permutations
        ours_a, ours_b = dedup._permutations(num_perm)
        assert ours_a.dtype == ours_b.dtype == np.uint32
        assert np.array_equal(ours_a, a) and np.array_equal(ours_b, b)


def test_word_shingles_hash_words_by_the_reference_formula() -> None:
    words = ["meituan", "has", "released", "longcat", "2", "0", "a", "mixture", "of", "experts", "language"]
    units = [dedup.word_unit_reference(w.encode()) for w in words]
    expected = [shingle_hash_reference(units[i : i + 5]) for i in range(len(units) - 4)]
    assert shingle_hashes(" ".join(words)).tolist() == expected


@pytest.mark.parametrize(
    "text",
    [
        "Meituan's LongCat-2.0: 50,000 cards (domestic)...",
        "  leading and trailing  ",
        "naïve café — über_straße «quoted» 5×3 ½",
        "x",
        "",
        "!!! ---",
        "a" * 70_000 + " b",  # longer than the first table of powers
    ],
)
def test_word_units_are_the_reference_hash_of_each_regex_word(text: str) -> None:
    words = [w.encode() for w in re.findall(r"\w+", text)]
    assert dedup.word_units(text).tolist() == [dedup.word_unit_reference(w) for w in words]
    assert normalize.word_tokens(text) == words


def test_chinese_uses_character_shingles() -> None:
    assert dedup.is_unspaced(normalize_text(ZH))
    assert not dedup.is_unspaced(normalize_text(EN))
    chars = "美团发布了"
    units = [int(u) for u in dedup._fmix32(np.array([ord(c) for c in chars], dtype=np.uint32))]
    assert shingle_hashes(chars, char_k=4).tolist() == [
        shingle_hash_reference(units[0:4]),
        shingle_hash_reference(units[1:5]),
    ]


@pytest.mark.parametrize("text", [EN, ZH])
def test_reprints_are_near_duplicates_and_estimates_track_exact_jaccard(text: str) -> None:
    copy = (
        _reprint(text, "Tech Ledger")
        if text is EN
        else "美团大模型新闻\n\n" + text.replace("美团", "美团公司")
    )
    exact = _exact_jaccard(text, copy)
    estimate = estimate_jaccard(fingerprint(text), fingerprint(copy))
    assert estimate >= dedup.THRESHOLD
    assert abs(estimate - exact) < 0.15  # 120 permutations: standard error <= 0.046
    assert set(fingerprint(text).bands) & set(fingerprint(copy).bands)  # an LSH candidate


def test_unrelated_texts_are_not_similar() -> None:
    other = " ".join(
        random.Random(3).choice(["alpha", "beta", "gamma", "delta", "omega"]) for _ in range(300)
    )
    assert estimate_jaccard(fingerprint(EN), fingerprint(other)) < 0.1
    assert estimate_jaccard(fingerprint(EN), fingerprint(ZH)) < 0.1


def test_estimates_on_generated_pairs_stay_within_sampling_error() -> None:
    rng = random.Random(2026)
    vocab = [f"w{i}" for i in range(3000)]
    for _ in range(20):
        base = [rng.choice(vocab) for _ in range(400)]
        edited = base[: rng.randint(150, 400)] + [rng.choice(vocab) for _ in range(rng.randint(0, 150))]
        a, b = " ".join(base), " ".join(edited)
        assert abs(estimate_jaccard(fingerprint(a), fingerprint(b)) - _exact_jaccard(a, b)) < 0.15


def test_same_normalised_text_same_fingerprint() -> None:
    assert fingerprint(EN) == fingerprint(EN.upper().replace("\n\n", "\n"))


def test_bands_fit_a_signed_bigint_and_match_the_layout() -> None:
    fp = fingerprint(EN, num_perm=128, bands=32)
    assert fp.num_perm == 128 and len(fp.bands) == 32
    assert all(0 <= h < 2**63 for h in fp.bands)
    assert len(set(fp.bands)) == 32


def test_stored_format_is_stable() -> None:
    """Pins the on-disk format: changing it silently would orphan every stored band and signature."""
    golden = json.loads((DATA / "golden_fingerprint.json").read_text(encoding="utf-8"))
    fp = fingerprint(EN, num_perm=golden["num_perm"], bands=golden["bands"])
    assert hashlib.sha256(fp.signature).hexdigest() == golden["signature_sha256"]
    assert list(fp.bands[:4]) == golden["first_bands"]


def test_signature_round_trip_rebuilds_bands() -> None:
    fp = fingerprint(EN)
    assert fingerprint_from_signature(fp.signature, bands=dedup.BANDS) == fp
    rebanded = fingerprint_from_signature(fp.signature, bands=24)
    assert rebanded == fingerprint(EN, bands=24)


def test_empty_and_short_texts() -> None:
    for nothing in ("", "   ", "— … !!!"):
        fp = fingerprint(nothing)
        assert fp.empty and fp.bands == () and estimate_jaccard(fp, fp) == 0.0
    short = fingerprint("LongCat 2.0 released")  # fewer words than one shingle: one shingle
    assert not short.empty
    assert estimate_jaccard(short, fingerprint("longcat 2.0 RELEASED!")) == 1.0
    assert estimate_jaccard(short, fingerprint("LongCat 2.0 delayed")) < 0.1


def test_incomparable_signatures_score_zero() -> None:
    assert estimate_jaccard(fingerprint(EN, num_perm=64, bands=16), fingerprint(EN)) == 0.0


def test_estimate_many_matches_one_by_one() -> None:
    fp = fingerprint(EN)
    others = [fingerprint(_reprint(EN, "A")), fingerprint(ZH), fingerprint(EN, num_perm=64, bands=16), fp]
    many = estimate_jaccard_many(fp, [o.signature for o in others])
    assert many == [estimate_jaccard(fp, o) for o in others]
    assert many[-1] == 1.0
    assert estimate_jaccard_many(Fingerprint(b"", ()), [fp.signature]) == [0.0]


@pytest.mark.parametrize(("num_perm", "bands"), [(128, 30), (10, 20), (128, 0), (512, 2)])
def test_bad_layout_is_a_config_error(num_perm: int, bands: int) -> None:
    with pytest.raises(ConfigError, match=r"dedup\.bands"):
        fingerprint(EN, num_perm=num_perm, bands=bands)


def test_candidate_probability_is_the_lsh_s_curve() -> None:
    low, mid, high = (candidate_probability(s) for s in (0.05, 0.4, 0.8))
    assert low < 0.01 < mid < high
    assert candidate_probability(0.4) == pytest.approx(1 - (1 - 0.4**3) ** 40)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
@hyp_settings(max_examples=300, deadline=None)
def test_fingerprint_of_the_fold_text_output_is_the_fingerprint_of_the_text(text: str) -> None:
    # the worker folds an article once (fold_text) for both its content hash and its fingerprint
    folded = normalize.fold_text(text)
    assert fingerprint(text, folded=folded) == fingerprint(text)
    assert normalize.content_hash(text, folded=folded) == normalize.content_hash(text)
    assert normalize.content_hash(text) == hashlib.sha256(normalize_text(text).encode()).hexdigest()
