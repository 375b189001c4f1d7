"""Quality gate: every file of feedparser's test corpus (../shared/corpora/feedparser) parses or raises
ParseError -- no other exception, no hang. Each parse runs under a CPU-time alarm (ITIMER_PROF, so it
does not disturb pytest-timeout's SIGALRM); the summary line reports files with entries, ParseErrors and
the total time (run with -s to see it)."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest

from crawler.errors import ParseError
from crawler.feeds import parse_feed

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpora" / "feedparser"
PER_FILE_CPU_SECONDS = 2.0
TOTAL_SECONDS = 60.0
_HEADER = re.compile(rb"^Header:\s*([\w-]+):[ \t]*(.*?)\s*$", re.MULTILINE)

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CORPUS.is_dir(), reason=f"feedparser corpus not found at {CORPUS} (../shared absent)"
    ),
]


class Overtime(BaseException):
    """Raised by the CPU-time alarm; a BaseException so no `except Exception` in feedparser swallows it."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Overtime


@contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    previous = signal.signal(signal.SIGPROF, _on_alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _headers(body: bytes) -> dict[str, str]:
    """The HTTP headers a corpus file asks for in its leading comment ("Header: Content-type: ...")."""
    return {k.decode().lower(): v.decode("latin-1") for k, v in _HEADER.findall(body[:4096])}


def test_every_corpus_file_parses_or_raises_parse_error(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    assert len(files) > 2000, f"expected about 2,100 corpus files, found {len(files)}"
    with_entries = parse_errors = 0
    failures: list[str] = []
    slowest: list[tuple[float, str]] = []
    started = time.perf_counter()
    for path in files:
        body, name = path.read_bytes(), str(path.relative_to(CORPUS))
        t0 = time.perf_counter()
        try:
            with cpu_budget(PER_FILE_CPU_SECONDS):
                feed = parse_feed(
                    body, url=f"http://127.0.0.1:8097/{name}", headers=_headers(body), source_id=name
                )
            with_entries += bool(feed.entries)
        except ParseError:
            parse_errors += 1
        except Overtime:
            failures.append(f"{name}: over {PER_FILE_CPU_SECONDS} s of CPU")
        except Exception as exc:  # the gate itself: report every unexpected exception, not just the first
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        slowest = sorted([*slowest, (time.perf_counter() - t0, name)])[-3:]
    total = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\nfeedparser corpus: {len(files)} files, {with_entries} with entries, "
            f"{parse_errors} ParseError, {len(failures)} failures, {total:.2f} s total; slowest: "
            + ", ".join(f"{n} {s * 1000:.0f} ms" for s, n in reversed(slowest))
        )
    assert failures == []
    assert total < TOTAL_SECONDS
    assert with_entries > 1000  # sanity: the gate really parsed feeds
