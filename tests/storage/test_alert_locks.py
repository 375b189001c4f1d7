"""Alerts under concurrent writers on PostgreSQL: the (rule, evidence) advisory locks.

Two writers recording the same rule and evidence sentence for two different stories (reprints that
dedup missed) must make one alert, not two; an ingest transaction locks all its (rule, evidence)
keys up front in sorted order, so two transactions with overlapping keys in opposite order wait
instead of deadlocking. Each test gets a fresh schema (``pg_url``), skipped with a reason when no
server runs. The race windows are held open on purpose, so the outcome is certain.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from crawler.types import Document, Match
from storage import outbox
from storage.db import Database, open_database
from storage.ingest import IngestItem, IngestResult, ingest_groups
from storage.models import AlertRow
from tests.alertkit import EVIDENCE, T0, add_story, alerts_cfg, match, record

CFG = alerts_cfg({"a": {"type": "console"}})
OTHER = "Meituan also said LongCat-2.0 serves traffic on Huawei Ascend 910C clusters."


@pytest.fixture
def dbs(pg_url: str) -> Iterator[list[Database]]:
    """Three handles on one fresh schema: the test's own and two writers' (separate pools), all with
    one application name, so lock waits of other tests on the same server are not counted."""
    url = f"{pg_url}&application_name=sw_locks_{uuid.uuid4().hex[:12]}"
    handles = [open_database(url)] + [open_database(url, migrate=False) for _ in range(2)]
    try:
        yield handles
    finally:
        for h in handles:
            h.dispose()


def alert_count(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(AlertRow)) or 0)


_WAITERS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND pid IN (SELECT pid FROM pg_stat_activity WHERE application_name = current_setting('application_name'))"
)


def advisory_waiters(db: Database) -> int:
    """How many of this test's transactions wait on an advisory lock."""
    with db.engine.connect() as conn:
        return int(conn.execute(_WAITERS).scalar() or 0)


def wait_blocked_or_done(db: Database, done: threading.Event, waiters: int = 1) -> bool:
    """Until ``waiters`` transactions wait on an advisory lock (True) or the worker is done (False)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if advisory_waiters(db) >= waiters:
            return True
        if done.is_set():
            return False
        time.sleep(0.02)
    pytest.fail("the second writer neither waited on a lock nor finished within 10 s")


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any], threading.Event]:
    """Run ``fn`` in a thread; its result or exception lands in the dict, then the event is set."""
    out: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            out["result"] = fn()
        except Exception as exc:  # surfaced by the test's assertions
            out["error"] = exc
        finally:
            done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out, done


def test_one_evidence_recorded_in_two_stories_at_once_makes_one_alert(dbs: list[Database]) -> None:
    """The second writer's lookup waits for the first's commit, then finds and corroborates its alert."""
    db, first, second = dbs
    s1, d1 = add_story(db, "story one", source="wire")
    s2, d2 = add_story(db, "story two", source="reprint")
    with first.write() as s:
        new = outbox.record_alert(
            s, first, match=match(), story_id=s1, document_id=d1[0], source_count=1,
            sources=[("wire", None)], alerts_cfg=CFG, now=T0,
        )  # fmt: skip
        t, out, done = in_thread(lambda: record(second, CFG, s2, d2[0], sources=[("reprint", None)]))
        blocked = wait_blocked_or_done(db, done)
    t.join(30)
    assert "error" not in out, out.get("error")
    assert (new.status, out["result"].status) == ("new", "corroborated")
    assert alert_count(db) == 1 and out["result"].alert_id == new.alert_id
    assert blocked  # it waited on the first writer's lock


def document(n: int, evidence: str) -> Document:
    body = f"Report number {n} from outlet {n}. {evidence}"
    url = f"https://outlet{n}.example/a/{n}"
    return Document(
        source_id=f"outlet{n}", url=url, canonical_url=url, title=f"report {n}", text=body,
        discovered=T0, content_hash=hashlib.sha256(body.encode()).hexdigest(),
    )  # fmt: skip


def items(first: int, evidences: list[str]) -> list[IngestItem]:
    """One document per evidence sentence, without fingerprints (dedup misses them: a story each)."""
    return [IngestItem(document(first + i, ev), None, (match(ev),)) for i, ev in enumerate(evidences)]


def ingest(db: Database, batch: list[IngestItem]) -> list[IngestResult]:
    return ingest_groups(db, [(batch, T0)], alerts_cfg=CFG, threshold=0.5)[0]


def hold_commits(db: Database) -> tuple[threading.Event, threading.Event]:
    """Make ``db``'s next commits wait: (arrived: a transaction is about to commit, release)."""
    arrived, release = threading.Event(), threading.Event()

    @event.listens_for(db.engine, "commit")
    def _hold(_conn: Any) -> None:
        arrived.set()
        release.wait(30)

    return arrived, release


def test_two_ingest_transactions_with_crossing_reprints_make_one_alert_per_evidence(
    dbs: list[Database],
) -> None:
    """Group commit: each transaction stores two documents whose sentences the other has, in opposite
    order. The second waits at its up-front locks for the first's commit, then only corroborates."""
    db, first, second = dbs
    arrived, release = hold_commits(first)
    t1, out1, _ = in_thread(lambda: ingest(first, items(1, [EVIDENCE, OTHER])))
    assert arrived.wait(30), out1.get("error")
    t2, out2, done2 = in_thread(lambda: ingest(second, items(3, [OTHER, EVIDENCE])))
    blocked = wait_blocked_or_done(db, done2)
    release.set()
    t1.join(30)
    t2.join(30)
    assert "error" not in out1 and "error" not in out2, (out1.get("error"), out2.get("error"))
    assert len({r.story_id for r in out1["result"] + out2["result"]}) == 4
    assert [r.alerts for r in out1["result"]] == [1, 1]
    assert [(r.alerts, r.corroborations) for r in out2["result"]] == [(0, 1), (0, 1)]
    assert alert_count(db) == 2
    assert blocked  # it waited on the first transaction's locks


def test_overlapping_lock_sets_in_opposite_order_do_not_deadlock(dbs: list[Database]) -> None:
    """A blocker holds the key in the middle of both lists; two transactions lock overlapping lists
    in opposite input order and both wait. Locked in input order, each would hold the keys on its
    side of the middle and, once the blocker commits, want the other's (a certain deadlock). Locked
    in one sorted statement, the one waiting holds nothing its rival needs: both complete."""
    db, first, second = dbs
    sentences = [f"Vendor {i} disclosed its chips for LongCat-2.0." for i in range(6)]
    ms: list[Match] = [match(sentence) for sentence in sentences]
    middle, forward, backward = ms[2], ms[:5], [ms[5], *reversed(ms[:5])]

    def lock(handle: Database, matches: list[Match]) -> Callable[[], None]:
        def go() -> None:
            with handle.write() as s:
                outbox.lock_matches(s, matches)
                outbox.lock_matches(s, matches)  # re-entrant: no wait on one's own locks

        return go

    with db.write() as blocker:
        outbox.lock_matches(blocker, [middle])
        t1, out1, done1 = in_thread(lock(first, forward))
        t2, out2, _ = in_thread(lock(second, backward))
        assert wait_blocked_or_done(db, done1, waiters=2), (out1, out2)
    t1.join(30)
    t2.join(30)
    assert not t1.is_alive() and not t2.is_alive()
    assert "error" not in out1 and "error" not in out2, (out1.get("error"), out2.get("error"))
