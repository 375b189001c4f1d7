"""Quality gate: crawler.extract.article on the dev half of the Article Extraction Benchmark (../shared).

Scored exactly like upstream (bench/aeb.py, shared with bench/extract.py). Speed is measured by
``python bench/extract.py``, never asserted here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.aeb import aggregate, corpus_dir, load_pages, score_page  # noqa: E402
from crawler.errors import ParseError  # noqa: E402
from crawler.extract.article import extract_article  # noqa: E402

MIN_F1 = 0.94
CORPUS = corpus_dir(REPO)  # SHARED / "corpora" / "aeb-dev"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(
        not CORPUS.is_dir(), reason=f"AEB corpus not available ({CORPUS}; ../shared is absent)"
    ),
]


def test_article_extraction_quality_on_aeb_dev() -> None:
    pages = list(load_pages(CORPUS))
    assert len(pages) == 88
    scores = []
    failures = []
    for page in pages:
        try:
            text = extract_article(page.html, url=page.url).text
        except ParseError as exc:
            failures.append(f"{page.id}: {exc}")
            text = ""
        scores.append(score_page(page.truth, text))
    total = aggregate(scores)
    worst = sorted(zip(scores, pages, strict=True), key=lambda pair: pair[0].f1)[:5]
    detail = "; ".join(f"{s.f1:.2f} {p.url}" for s, p in worst)
    assert not failures, failures
    assert total.f1 >= MIN_F1, f"F1 {total.f1:.4f} < {MIN_F1} (worst: {detail})"
    assert total.mean_page_f1 >= MIN_F1, f"mean page F1 {total.mean_page_f1:.4f} < {MIN_F1} (worst: {detail})"
