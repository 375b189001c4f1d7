"""Article extraction benchmark: storywatch's extractor against trafilatura on the same pages.

    python bench/extract.py [--passes 3] [--worst 10]

Corpus: ../shared/corpora/aeb-dev (88 pages of the Article Extraction Benchmark, scored like upstream;
see bench/aeb.py). Speed = pages per second for decoding + parsing + extraction from the raw bytes
(gunzip and file I/O excluded), best of ``--passes`` passes, on one pinned core. The class/id cache of
the extractor is cleared before every pass, so repeated passes are not faster than the first.
trafilatura (the baseline, from the ``bench`` extra) is run the way upstream runs it:
``trafilatura.extract(html_text, include_comments=False)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.aeb import Page, PageScore, Scores, aggregate, corpus_dir, load_pages, score_page  # noqa: E402
from crawler.errors import ParseError  # noqa: E402
from crawler.extract.article import extract_article  # noqa: E402
from crawler.extract.dom import clear_hint_cache  # noqa: E402

Extractor = Callable[[Page], str]


def storywatch(page: Page) -> str:
    try:
        return extract_article(page.html, url=page.url).text
    except ParseError:
        return ""


def trafilatura_extractor() -> Extractor | None:
    try:
        import trafilatura
    except ImportError:
        return None
    texts = {}

    def run(page: Page) -> str:
        if page.id not in texts:  # upstream decodes first; decoding is not part of its timing
            texts[page.id] = page.html.decode("utf-8", errors="replace")
        return trafilatura.extract(texts[page.id], include_comments=False) or ""

    return run


def measure(extract: Extractor, pages: list[Page], passes: int) -> tuple[list[PageScore], float, float]:
    """Per-page scores, and the best wall-clock and CPU pages/s over ``passes`` passes."""
    scores = [score_page(page.truth, extract(page)) for page in pages]
    best_wall = best_cpu = float("inf")
    for _ in range(passes):
        clear_hint_cache()
        wall, cpu = time.perf_counter(), time.process_time()
        for page in pages:
            extract(page)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return scores, len(pages) / best_wall, len(pages) / best_cpu


def report(name: str, scores: list[PageScore], wall: float, cpu: float) -> Scores:
    total = aggregate(scores)
    below = sum(1 for s in scores if s.f1 < 0.5)
    print(
        f"{name:<11} F1={total.f1:.4f} precision={total.precision:.4f} recall={total.recall:.4f} "
        f"mean-page-F1={total.mean_page_f1:.4f} pages<0.5={below:<2} "
        f"{wall:7.1f} pages/s (CPU time: {cpu:7.1f} pages/s)"
    )
    return total


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--worst", type=int, default=0, help="list the N lowest-scoring pages")
    args = parser.parse_args()
    directory = corpus_dir(REPO)
    if not directory.is_dir():
        print(f"corpus not found: {directory} (it lives in ../shared, outside the repository)")
        return 1
    pin_one_core()
    pages = list(load_pages(directory))
    print(f"{len(pages)} pages from {directory}, best of {args.passes} passes, one core")
    sw_scores, sw_wall, sw_cpu = measure(storywatch, pages, args.passes)
    sw = report("storywatch", sw_scores, sw_wall, sw_cpu)
    baseline = trafilatura_extractor()
    if baseline is None:
        print("trafilatura not installed (pip install 'storywatch[bench]'): no baseline")
    else:
        tf_scores, tf_wall, tf_cpu = measure(baseline, pages, args.passes)
        tf = report("trafilatura", tf_scores, tf_wall, tf_cpu)
        speed = f"speed x{sw_wall / tf_wall:.1f} (CPU x{sw_cpu / tf_cpu:.1f})"
        print(f"ratio       {speed}, F1 {sw.f1 - tf.f1:+.4f}")
    for page, score in sorted(zip(pages, sw_scores, strict=True), key=lambda x: x[1].f1)[: args.worst]:
        print(f"  {score.f1:.3f} p={score.precision:.3f} r={score.recall:.3f} {page.id[:12]} {page.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
