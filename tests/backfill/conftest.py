"""The ``site`` fixture of the backfill and rescan tests: a fresh ``HistorySite`` per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backfillkit import HistorySite, history_site


@pytest.fixture
def site() -> Iterator[HistorySite]:
    s = history_site()
    try:
        yield s
    finally:
        s.close()
