"""storage.sources.record_polls: the daemon's end of several polls in one transaction stores what
record_fetches and save_timing store one poll at a time (fetch log, validators, streak, schedule)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from crawler.types import SourceResult, SourceSpec, Validators
from storage import sources as store_sources
from storage.db import open_database
from storage.models import FetchLogRow, SourceRow

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _polls(
    prefix: str,
) -> tuple[list[SourceSpec], list[store_sources.FetchRecord], list[store_sources.TimingSave]]:
    specs = [
        SourceSpec(id=f"{prefix}{i}", kind="feed", url=f"http://example.org/{prefix}{i}") for i in range(3)
    ]
    ok = SourceResult(specs[0].id, "ok", new_documents=4, bytes=900)
    failed = SourceResult(specs[1].id, "error", error="HTTP 500")
    records = [
        store_sources.FetchRecord(specs[0], ok, NOW, 200, Validators('"e1"', "Mon"), "hash-1"),
        store_sources.FetchRecord(specs[1], failed, NOW, 500),
    ]
    timings = [  # the third source: a timing without a record (a poll a reload removed)
        store_sources.TimingSave(
            s.id, {"n": i, "items": [NOW.isoformat()]}, health, NOW + timedelta(minutes=i), 60.0 * i
        )
        for i, (s, health) in enumerate(zip(specs, ("ok", "degraded", "new"), strict=True))
    ]
    return specs, records, timings


def _rows(db_url: str, prefix: str) -> tuple[list[Any], list[Any]]:
    db = open_database(db_url)
    with db.read() as s:
        sources = [
            (
                r.id[len(prefix) :],
                r.etag,
                r.last_modified,
                r.body_hash,
                r.error_streak,
                r.health,
                r.timing,
                r.next_due_at,
                r.interval,
            )
            for r in s.scalars(
                select(SourceRow).where(SourceRow.id.like(f"{prefix}%")).order_by(SourceRow.id)
            )
        ]
        logs = [
            (r.source_id[len(prefix) :], r.status, r.http_status, r.bytes, r.new_documents, r.error)
            for r in s.scalars(
                select(FetchLogRow)
                .where(FetchLogRow.source_id.like(f"{prefix}%"))
                .order_by(FetchLogRow.source_id)
            )
        ]
    db.dispose()
    return sources, logs


def test_record_polls_stores_what_one_poll_at_a_time_stores(db_url: str) -> None:
    db = open_database(db_url)
    batch_specs, batch_records, batch_timings = _polls("a")
    single_specs, single_records, single_timings = _polls("b")
    store_sources.sync_sources(db, [*batch_specs, *single_specs])
    store_sources.record_polls(db, batch_records, batch_timings)
    store_sources.record_fetches(db, single_records)
    for t in single_timings:
        store_sources.save_timing(
            db, t.source_id, timing=t.timing, health=t.health, next_due=t.next_due, interval=t.interval
        )
    db.dispose()
    batch, single = _rows(db_url, "a"), _rows(db_url, "b")
    assert batch == single
    sources, logs = batch
    assert [s[5] for s in sources] == ["ok", "degraded", "new"]  # the timing's health wins over the record's
    assert len(logs) == 2 and sources[0][1:4] == ('"e1"', "Mon", "hash-1") and sources[1][4] == 1
