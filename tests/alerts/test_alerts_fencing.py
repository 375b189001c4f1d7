"""Outbox lease fencing on SQLite and PostgreSQL: a relay whose lease expired cannot overwrite the
outcome recorded by the relay that re-claimed the row (``storage.outbox_relay``), and a real
``Relay`` whose send outlived its lease records nothing."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta

from sqlalchemy import select

from crawler.alerts.console import ConsoleChannel
from crawler.alerts.relay import Relay
from crawler.alerts.views import ClaimedDelivery
from crawler.errors import TemporaryDeliveryError
from storage import outbox_relay as orl
from storage.db import Database, open_database
from storage.models import DeliveryRow
from tests.alertkit import T0, add_story, alerts_cfg, match, record

CFG = alerts_cfg({"a": {"type": "console", "rate_per_second": 1000}})
LEASE = 60.0


def _one(db: Database) -> int:
    story, docs = add_story(db)
    record(db, CFG, story, docs[0], match("Fact: Huawei Ascend 910C."))
    with db.read() as s:
        return int(s.scalar(select(DeliveryRow.id)) or 0)


def _claim(db: Database, worker: str, at: timedelta) -> tuple[ClaimedDelivery, ...]:
    return orl.claim(db, channel="a", now=T0 + at, lease=LEASE, worker=worker, limit=5)


def _row(db: Database, rid: int) -> DeliveryRow:
    with db.read() as s:
        row = s.get(DeliveryRow, rid)
        assert row is not None
        return row


def test_an_expired_relay_cannot_overwrite_the_reclaimers_outcome(db_url: str) -> None:
    db = open_database(db_url)
    rid = _one(db)
    (first,) = _claim(db, "old", timedelta(0))
    (again,) = _claim(db, "new", timedelta(seconds=LEASE + 1))  # the old lease expired
    assert again.id == first.id == rid
    at = T0 + timedelta(seconds=LEASE + 2)
    assert orl.mark_sent(db, rid, worker="new", held_at=at, now=at, detail={"by": "new"})
    # the old relay wakes up and tries every way of recording an outcome: none changes the row
    late = at + timedelta(seconds=1)
    failed = orl.mark_failed(
        db, rid, worker="old", held_at=late, error="late", permanent=True, retry_at=late, max_tries=5
    )
    assert failed == orl.LOST
    assert not orl.mark_sent(db, rid, worker="old", held_at=late, now=late, detail={"by": "old"})
    assert orl.release(db, [rid], worker="old", held_at=late, until=None) == 0
    row = _row(db, rid)
    assert (row.state, row.detail, row.last_error, row.tries) == ("sent", {"by": "new"}, None, 2)
    db.dispose()


def test_the_old_relay_loses_even_before_the_row_is_reclaimed_and_the_new_one_then_wins(db_url: str) -> None:
    db = open_database(db_url)
    rid = _one(db)
    _claim(db, "old", timedelta(0))
    expired = T0 + timedelta(seconds=LEASE + 1)
    assert not orl.mark_sent(db, rid, worker="old", held_at=expired, now=expired, detail=None)
    assert _row(db, rid).state == "sending"
    _claim(db, "new", timedelta(seconds=LEASE + 2))
    at = T0 + timedelta(seconds=LEASE + 3)
    state = orl.mark_failed(
        db, rid, worker="new", held_at=at, error="503", permanent=False, retry_at=at, max_tries=5
    )
    assert state == "pending" and _row(db, rid).last_error == "503"
    db.dispose()


def test_the_holder_records_while_its_lease_lasts(db_url: str) -> None:
    db = open_database(db_url)
    rid = _one(db)
    _claim(db, "w", timedelta(0))
    assert orl.release(db, [rid], worker="w", held_at=T0 + timedelta(seconds=LEASE - 1), until=None) == 1
    row = _row(db, rid)
    assert (row.state, row.tries, row.leased_by) == ("pending", 0, None)
    db.dispose()


class _SlowThenFail(ConsoleChannel):
    """Sends slowly (the lease runs out meanwhile), then fails temporarily."""

    async def send(self, msg, *, idempotency_key, progress=None):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.3)
        raise TemporaryDeliveryError("receiver busy", channel="a")


def test_a_relay_whose_send_outlived_its_lease_records_nothing(db_url: str) -> None:
    """A relay with a 0.1 s lease: while its send runs, another relay re-claims and sends the row;
    the first one's late failure must not turn the other's ``sent`` back into ``pending``."""
    db = open_database(db_url)
    rid = _one(db)
    cfg = alerts_cfg({"a": {"type": "console", "rate_per_second": 1000}}, lease="0.1s")
    slow = Relay(
        db, cfg, channels={"a": _SlowThenFail("a", cfg.channels["a"], stream=io.StringIO())}, worker_id="slow"
    )

    async def race() -> None:
        from datetime import UTC, datetime

        task = asyncio.create_task(slow.run_once(datetime.now(UTC)))
        await asyncio.sleep(0.15)  # the slow relay's lease has expired; its send still runs
        now = datetime.now(UTC)
        (row,) = orl.claim(db, channel="a", now=now, lease=60, worker="fast", limit=5)
        assert orl.mark_sent(db, row.id, worker="fast", held_at=now, now=now, detail={"by": "fast"})
        report = await task
        assert [a.outcome for a in report.attempts] == ["lost"]

    asyncio.run(race())
    row = _row(db, rid)
    assert (row.state, row.detail, row.last_error) == ("sent", {"by": "fast"}, None)
    db.dispose()
