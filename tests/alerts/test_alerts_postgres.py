"""The outbox on PostgreSQL: FOR UPDATE SKIP LOCKED claims, lease expiry, the whole alert path.

Each test gets a fresh schema (the ``pg_url`` fixture); skipped with a reason when no server runs.
"""

from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta

from sqlalchemy import select

from crawler.alerts.admin import outbox_depth, show_alert
from crawler.alerts.console import ConsoleChannel
from crawler.alerts.relay import Relay
from crawler.alerts.views import ClaimedDelivery
from storage import outbox_relay
from storage.db import Database, open_database
from storage.models import DeliveryRow
from tests.alertkit import T0, add_document, add_story, alerts_cfg, match, record, run

CFG = alerts_cfg({"a": {"type": "console", "rate_per_second": 1000}})


def claim(db: Database, now: datetime, worker: str, limit: int) -> tuple[ClaimedDelivery, ...]:
    return outbox_relay.claim(db, channel="a", now=now, lease=60, worker=worker, limit=limit)


def _fill(db: Database, n: int) -> None:
    story, docs = add_story(db)
    for i in range(n):
        record(db, CFG, story, docs[0], match(f"Fact {i}: Huawei Ascend 910C."))


def test_claims_skip_rows_locked_by_another_worker(pg_url: str) -> None:
    db = open_database(pg_url)
    other = open_database(pg_url, migrate=False)
    try:
        _fill(db, 10)
        with other.write() as s:  # another worker's open claim transaction holds 4 rows
            locked = s.scalars(
                select(DeliveryRow.id).order_by(DeliveryRow.id).limit(4).with_for_update()
            ).all()
            got = claim(db, T0, "w1", 100)  # does not wait for the locked rows
            assert {d.id for d in got}.isdisjoint(locked) and len(got) == 6
        assert len(claim(db, T0, "w2", 100)) == 4
    finally:
        other.dispose()
        db.dispose()


def test_concurrent_claimers_never_share_a_row(pg_url: str) -> None:
    db = open_database(pg_url)
    _fill(db, 40)
    dbs = [open_database(pg_url, migrate=False) for _ in range(3)]
    claimed: dict[str, list[int]] = {f"w{i}": [] for i in range(3)}
    start = threading.Barrier(3)

    def worker(name: str, wdb: Database) -> None:
        start.wait()
        while rows := claim(wdb, T0, name, 3):
            claimed[name] += [r.id for r in rows]

    threads = [threading.Thread(target=worker, args=(n, d)) for n, d in zip(claimed, dbs, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = [i for v in claimed.values() for i in v]
    assert len(ids) == 40 and len(set(ids)) == 40
    for d in (*dbs, db):
        d.dispose()


def test_an_expired_lease_is_claimed_again(pg_url: str) -> None:
    db = open_database(pg_url)
    _fill(db, 1)
    (first,) = claim(db, T0, "dead", 5)
    assert claim(db, T0 + timedelta(seconds=59), "w", 5) == ()
    (again,) = claim(db, T0 + timedelta(seconds=61), "w", 5)
    assert again.id == first.id and again.tries == 2 and again.idempotency_key == first.idempotency_key
    db.dispose()


def test_record_corroborate_digest_and_relay_on_postgres(pg_url: str) -> None:
    db = open_database(pg_url)
    cfg = alerts_cfg(
        {"a": {"type": "console"}, "d": {"type": "console", "mode": "digest", "digest": "hourly"}}
    )
    story, docs = add_story(db)
    first = record(db, cfg, story, docs[0])
    bufs = {n: io.StringIO() for n in cfg.channels}
    chans = {n: ConsoleChannel(n, cfg.channels[n], stream=bufs[n]) for n in cfg.channels}
    relay = Relay(db, cfg, channels=chans)
    assert run(relay, T0).sent == 1
    with db.write() as s:
        doc2 = add_document(s, story, source="reprint")
    again = record(
        db, cfg, story, doc2, sources=[("wire", None), ("reprint", None)], now=T0 + timedelta(minutes=1)
    )
    assert again.status == "corroborated" and again.source_count == 2
    report = run(relay, T0 + timedelta(hours=1, minutes=1))
    assert report.digests == 1 and report.sent == 2
    assert (
        "now reported by 2 sources" in bufs["a"].getvalue()
        and "1 alert, hourly digest" in bufs["d"].getvalue()
    )
    assert [d.state for d in show_alert(db, first.alert_id).deliveries] == ["sent", "digested", "sent"]
    assert outbox_depth(db).by_state == {"sent": 3, "digested": 1}
    db.dispose()
