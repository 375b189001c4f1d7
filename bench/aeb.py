"""Scoring of the Article Extraction Benchmark (Scrapinghub/Zyte), re-implemented to match upstream.

Upstream (``evaluate.py`` of scrapinghub/article-extraction-benchmark) tokenises with ``\\w+``
(case kept), builds word 4-gram shingles (a text shorter than 4 tokens gives one shorter shingle,
an empty text none), counts TP/FP/FN over the shingle multisets and normalises them per page so
that long pages weigh no more than short ones. Precision is averaged over the pages where something
was predicted (tp + fp > 0), recall over the pages that have a ground truth (tp + fn > 0), and the
reported F1 is the harmonic mean of those two averages. ``mean_page_f1`` (the mean of per-page F1)
is reported too, as a stricter second view.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_TOKEN_RE = re.compile(r"\w+")
NGRAM = 4


@dataclass(frozen=True)
class Page:
    id: str
    url: str
    html: bytes  # decompressed bytes as served
    truth: str


@dataclass(frozen=True)
class PageScore:
    tp: float
    fp: float
    fn: float

    @property
    def precision(self) -> float:
        if self.fp == self.fn == 0:
            return 1.0
        if self.tp == self.fp == 0:
            return 0.0
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        if self.fp == self.fn == 0:
            return 1.0
        if self.tp == self.fn == 0:
            return 0.0
        return self.tp / (self.tp + self.fn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float  # upstream definition: harmonic mean of the averaged precision and recall
    mean_page_f1: float
    pages: int


def shingles(text: str, n: int = NGRAM) -> Counter[tuple[str, ...]]:
    tokens = _TOKEN_RE.findall(text or "")
    grams = (tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)))
    return Counter(g for g in grams if g)


def score_page(truth: str, predicted: str) -> PageScore:
    true_sh, pred_sh = shingles(truth), shingles(predicted)
    tp = float(sum((true_sh & pred_sh).values()))
    fp = float(sum((pred_sh - true_sh).values()))
    fn = float(sum((true_sh - pred_sh).values()))
    total = tp + fp + fn
    if total > 0:
        tp, fp, fn = tp / total, fp / total, fn / total
    return PageScore(tp, fp, fn)


def aggregate(page_scores: list[PageScore]) -> Scores:
    precisions = [s.precision for s in page_scores if s.tp + s.fp > 0]
    recalls = [s.recall for s in page_scores if s.tp + s.fn > 0]
    p = sum(precisions) / len(precisions) if precisions else 0.0
    r = sum(recalls) / len(recalls) if recalls else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    mean_f1 = sum(s.f1 for s in page_scores) / len(page_scores) if page_scores else 0.0
    return Scores(p, r, f1, mean_f1, len(page_scores))


def corpus_dir(repo_root: Path) -> Path:
    """Where the dev half lives: ``<repo>/../shared/corpora/aeb-dev``."""
    return repo_root.parent / "shared" / "corpora" / "aeb-dev"


def load_pages(directory: Path) -> Iterator[Page]:
    truth = json.loads((directory / "ground-truth.json").read_text(encoding="utf-8"))
    for page_id in sorted(truth):
        html = gzip.decompress((directory / "html" / f"{page_id}.html.gz").read_bytes())
        item = truth[page_id]
        yield Page(page_id, item.get("url", ""), html, item.get("articleBody", ""))
