"""History and rescans into the same timeline: archives, sitemaps, search slices, snapshots.

``job.run_backfill`` is `storywatch backfill` (its methods live in ``archives``, its rate limit in
``throttle``); ``rescan.run_rescan`` is `storywatch rescan`.
"""

from __future__ import annotations

from crawler.backfill.job import (
    METHODS,
    BackfillOptions,
    BackfillReport,
    ProgressEvent,
    ProgressFn,
    Window,
    run_backfill,
)
from crawler.backfill.rescan import RescanOptions, RescanReport, run_rescan

__all__ = [
    "METHODS",
    "BackfillOptions",
    "BackfillReport",
    "ProgressEvent",
    "ProgressFn",
    "RescanOptions",
    "RescanReport",
    "Window",
    "run_backfill",
    "run_rescan",
]
