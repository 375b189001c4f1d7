"""kill -9 of the relay before the send, between send and mark, and after the mark: nothing is lost,
at most one duplicate, and the duplicate carries the same idempotency key."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.alerts.admin import show_alert
from crawler.alerts.relay import Relay
from crawler.alerts.views import RelayReport
from storage.db import Database
from tests.alertkit import Receiver, Reply, add_story, alerts_cfg, new_db, record

pytestmark = pytest.mark.slow  # three relay subprocesses, ~3 s each

HELPER = Path(__file__).parents[1] / "data" / "alerts" / "run_relay.py"
REPO = Path(__file__).resolve().parents[2]
LEASE = 1.0


def _start(db_url: str, url: str, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HELPER), db_url, url, *flags],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen[str], what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"relay exited before {what}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def _finish(db: Database, url: str) -> RelayReport:
    """The restarted relay (in this process: a new Relay on the same database, the real clock)."""
    cfg = alerts_cfg({"hook": {"type": "webhook", "url": url, "timeout": 20}}, lease=LEASE)
    return asyncio.run(Relay(db, cfg).run_once())


def _setup(tmp_path: Path, url: str) -> tuple[Database, str, int]:
    db = new_db(tmp_path)
    story, docs = add_story(db)
    cfg = alerts_cfg({"hook": {"type": "webhook", "url": url}})
    alert_id = record(
        db, cfg, story, docs[0], now=datetime.now(UTC)
    ).alert_id  # the relay runs on the real clock
    return db, f"sqlite:///{tmp_path}/t.db", alert_id


def test_killed_before_the_send_it_is_sent_after_restart(tmp_path: Path) -> None:
    with Receiver() as rx:
        db, url, alert_id = _setup(tmp_path, rx.url)
        marker = tmp_path / "claimed"
        proc = _start(url, rx.url, "--stop-after-claim", str(marker))
        _wait_for(marker.exists, proc, "the claim")
        claimed_at = time.monotonic()
        _kill(proc)
        assert rx.requests == []
        (d,) = show_alert(db, alert_id).deliveries
        assert d.state == "sending" and d.tries == 1  # leased by the dead worker
        time.sleep(max(0.0, claimed_at + LEASE + 0.2 - time.monotonic()))  # let the lease expire
        assert _finish(db, rx.url).sent == 1
        assert len(rx.requests) == 1
        (d,) = show_alert(db, alert_id).deliveries
        assert d.state == "sent" and d.tries == 2


def test_killed_between_send_and_mark_at_most_one_duplicate_with_the_same_key(tmp_path: Path) -> None:
    hold = threading.Event()
    with Receiver([Reply(200, hold=hold)]) as rx:
        db, url, alert_id = _setup(tmp_path, rx.url)
        proc = _start(url, rx.url)
        _wait_for(
            rx.arrived.is_set, proc, "the request"
        )  # the receiver has it; the relay waits for the answer
        arrived_at = time.monotonic()
        _kill(proc)
        hold.set()
        assert show_alert(db, alert_id).deliveries[0].state == "sending"
        time.sleep(max(0.0, arrived_at + LEASE + 0.2 - time.monotonic()))
        _finish(db, rx.url)
        assert len(rx.requests) == 2  # the one duplicate
        keys = [r.headers["idempotency-key"] for r in rx.requests]
        assert keys[0] == keys[1] == f"alert-{alert_id}-hook-r0"
        assert rx.requests[0].body == rx.requests[1].body
        assert show_alert(db, alert_id).deliveries[0].state == "sent"
        _finish(db, rx.url)
        assert len(rx.requests) == 2


def test_killed_after_the_mark_nothing_is_repeated(tmp_path: Path) -> None:
    with Receiver() as rx:
        db, url, alert_id = _setup(tmp_path, rx.url)
        marker = tmp_path / "passed"
        proc = _start(url, rx.url, "--stop-after-pass", str(marker))
        _wait_for(marker.exists, proc, "the end of the pass")
        _kill(proc)
        time.sleep(LEASE + 0.2)
        _finish(db, rx.url)
        assert len(rx.requests) == 1
        assert show_alert(db, alert_id).deliveries[0].state == "sent"
