"""Scale-out mode with real processes (`storywatch scheduler`, `worker`, Redis, PostgreSQL):
politeness across 4 worker processes, kill -9 of a worker during a cold pass, and scheduler
failover (concurrent starters, kill -9 of the leader, Redis FLUSHALL). Sized to a few seconds each."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crawler.config import load_settings
from storage import dispatch
from storage import sources as store_sources
from storage.db import Database, open_database
from storage.models import DocumentRow, SourceRow
from tests.scalekit import LoggingSite, max_in_flight, min_gap

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RULES = (
    "version: 1\nrules:\n  - id: test.cluster\n    title: Cluster details\n    severity: medium\n"
    "    query: '\"computing cluster\"'\n"
)


def write_config(
    tmp: Path,
    pg_url: str,
    redis_url: str,
    feeds: dict[str, str],
    fetch: str,
    scale: str,
    timing: str = "interval: 60s",
    rules: bool = False,
) -> Path:
    sources = "".join(
        f'  - {{id: {sid}, kind: feed, url: "{url}", {timing}}}\n' for sid, url in feeds.items()
    )
    path = tmp / "scale.yaml"
    rule_line = ""
    if rules:
        (tmp / "rules.yaml").write_text(RULES, "utf-8")
        rule_line = f'rules: {{paths: ["{tmp / "rules.yaml"}"]}}\n'
    path.write_text(
        f'database: "{pg_url}"\nbroker: "{redis_url}"\n{rule_line}'
        f'fetch: {{allow_private_networks: ["127.0.0.1/32"], respect_robots: false, {fetch}}}\n'
        "alerts: {channels: {ops: {type: console}}}\n"
        "daemon: {watch_files: false, log_level: debug}\n"
        f"scale: {{{scale}}}\nsources:\n{sources}",
        "utf-8",
    )
    return path


def start(tmp: Path, config: Path, *args: str, log: str) -> subprocess.Popen[str]:
    """A storywatch role in its own process group (so kill -9 reaches Dramatiq's children too)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("STORYWATCH_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-c", "from crawler.cli import main; main()", "--config", str(config), *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=open(tmp / f"{log}.out", "w"),
        stderr=open(tmp / f"{log}.err", "w"),
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """``sig`` to the role's main process (SIGKILL: to its whole group, Dramatiq's children too),
    then SIGKILL to whatever is left of the group: no test leaves a process behind. Dramatiq's
    worker processes must get SIGTERM once, from their parent (a second one makes them exit
    uncleanly), as systemd's KillMode=mixed does."""
    try:
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)
        elif proc.poll() is None:
            proc.send_signal(sig)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def plan_now(config: Path) -> Database:
    """Every configured source due now (the scheduler would spread new ones over a minute)."""
    settings = load_settings(config)
    db = open_database(settings.database_url)
    specs = settings.source_specs()
    store_sources.sync_sources(db, specs)
    dispatch.plan_sources(db, {}, [s.id for s in specs])
    with db.write() as s:  # due now, whether or not a scheduler planned them already
        s.execute(SourceRow.__table__.update().values(next_due_at=datetime.now(UTC)))
    return db


def documents(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(DocumentRow)) or 0)


def sources(db: Database) -> list[SourceRow]:
    with db.read() as s:
        return list(s.scalars(select(SourceRow).order_by(SourceRow.id)).all())


def no_traceback(tmp: Path, *logs: str) -> None:
    for name in logs:
        err = (tmp / f"{name}.err").read_text("utf-8")
        assert "Traceback" not in err, f"{name}:\n{err[-3000:]}"


def test_politeness_holds_across_four_worker_processes_and_a_429_pauses_every_worker(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    per_host, gap, retry_after = 2, 0.3, 2
    with LoggingSite(delay=0.4) as site:  # slower than the gap: two requests overlap, never three
        feeds = {f"f{i}": site.feed(f"f{i}", 2) for i in range(8)}
        site.answer_once("/f0.xml", 429, {"Retry-After": str(retry_after)})
        config = write_config(
            tmp_path,
            pg_url,
            redis_url,
            feeds,
            f"per_host_concurrency: {per_host}, per_host_min_gap: {gap}s",
            "lease: 30s, tick: 0.2s",
            "interval: 3s, min_interval: 1s",  # the sources the 429 held back are tried again soon
        )
        db = plan_now(config)
        procs = [
            start(tmp_path, config, "worker", "--processes", "4", "--threads", "4", log="worker"),
            start(tmp_path, config, "scheduler", log="scheduler"),
        ]
        try:
            wait_for(lambda: documents(db) >= 16, 90, "the documents of every feed")
            from crawler.scale import redis_client, scale_status

            status = scale_status(redis_client(redis_url), db, datetime.now(UTC))
            assert status.workers == 4  # each worker process's heartbeat; not the scheduler's
        finally:
            for p in procs:
                stop(p)
        log = site.requests()
    no_traceback(tmp_path, "scheduler")
    assert max_in_flight(log) <= per_host
    starts = [r.start for r in log]
    close = [(a, b) for a, b in itertools.pairwise(log) if b.start - a.start < 0.95 * gap]
    print(f"{len(log)} requests, min gap between starts {min_gap(log):.4f} s (per_host_min_gap {gap} s)")
    assert min_gap(log) >= 0.95 * gap, [(round(b.start - a.start, 3), a.path, b.path) for a, b in close]
    workers = {
        line.split("[PID ")[1].split("]")[0]
        for line in (tmp_path / "worker.err").read_text().splitlines()
        if "storywatch.worker" in line and "[PID " in line
    }
    assert len(workers) >= 2, "the polls were spread over several worker processes"
    assert starts
    (paused,) = [r for r in log if r.status == 429]
    during = [r for r in log if paused.end + 0.05 < r.start < paused.start + 0.95 * retry_after]
    assert during == [], "a request started while the host was paused"
    assert any(r.start >= paused.start + retry_after for r in log), "polling went on after the pause"
    db.dispose()


def test_a_hosts_gap_counts_from_when_the_headers_were_written_however_long_the_sender_stalled(
    redis_url: str,
) -> None:
    """Two workers' gates on one host (gap 0.1 s). The first takes its turn, then its process stalls
    0.3 s before its headers are written (a loaded machine): the second's turn comes a gap after
    that write, not a gap after the first took its turn."""
    from crawler.scale import RedisHostGate, redis_client

    gap, stall = 0.1, 0.3
    first, second = (
        RedisHostGate(redis_client(redis_url), per_host=2, min_gap=gap, global_limit=4) for _ in range(2)
    )

    async def run() -> tuple[float, float]:
        token = await first.before_send("site.example")
        waiting = asyncio.create_task(second.before_send("site.example"))
        await asyncio.sleep(stall)
        assert not waiting.done(), "the second start came while the first was still being sent"
        first.after_send("site.example", token)
        written = time.monotonic()
        second.after_send("site.example", await waiting)
        return written, time.monotonic()

    written, turn = asyncio.run(run())
    assert turn - written >= 0.95 * gap


def test_kill_9_of_a_random_worker_every_few_seconds_during_a_cold_pass_loses_nothing(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    """Two worker groups and a relay; every 3 s one group, at random, is killed -9 (and started
    again), three times, while a cold pass runs. At the end every document is stored, every source
    has a future next_due and no lease, and every alert was delivered, with duplicates (the relay is
    never killed here) none."""
    import random

    lease, kills = 15.0, 3
    rng = random.Random(15)
    with LoggingSite(delay=0.25) as site:  # 120 requests, 2 at a time: a pass of about 15 s
        feeds = {f"f{i:02d}": site.feed(f"f{i:02d}", 4) for i in range(24)}
        config = write_config(
            tmp_path,
            pg_url,
            redis_url,
            feeds,
            "per_host_concurrency: 2, per_host_min_gap: 0s, deadline: 5s",  # a killed hold frees in 10 s
            f"lease: {lease}s, tick: 0.2s",
            rules=True,
        )
        db = plan_now(config)
        sched = start(tmp_path, config, "scheduler", log="scheduler")
        relay = start(tmp_path, config, "relay", log="relay")
        groups = {g: start(tmp_path, config, "worker", "-p", "1", "-t", "2", log=f"w{g}-0") for g in (0, 1)}
        try:
            wait_for(lambda: documents(db) >= 4, 60, "the first documents")
            for k in range(kills):
                time.sleep(3.0)
                g = rng.choice([0, 1])
                stop(groups[g], signal.SIGKILL)  # its leased polls are never finished
                groups[g] = start(tmp_path, config, "worker", "-p", "1", "-t", "2", log=f"w{g}-{k + 1}")
            assert documents(db) < 96, "the kills happened during the pass"
            wait_for(lambda: documents(db) == 96, lease + 90, "every document")
            wait_for(lambda: all(r.dispatch_until is None for r in sources(db)), lease + 30, "no lease left")
            wait_for(lambda: _alerts_sent(db), 60, "every alert delivered")
        finally:
            for p in (*groups.values(), relay, sched):
                stop(p)
    now = datetime.now(UTC)
    rows = sources(db)
    assert all(r.next_due_at is not None and r.next_due_at > now for r in rows)
    assert all(r.health == "ok" for r in rows)
    # the console channel prints each delivery with its idempotency key: every one printed, and
    # duplicates (a relay killed between send and mark) at most the kills (here the relay lives)
    out = (tmp_path / "relay.out").read_text("utf-8").splitlines()
    printed = [line.rsplit("[", 1)[1].rstrip("]") for line in out if line.startswith("--- [storywatch]")]
    assert set(printed) == _delivery_keys(db) and len(printed) == len(set(printed)) and _alert_count(db) > 0
    no_traceback(tmp_path, "scheduler", "relay")
    db.dispose()


def _alert_count(db: Database) -> int:
    from storage.models import AlertRow

    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(AlertRow)) or 0)


def _delivery_keys(db: Database) -> set[str]:
    from storage.models import DeliveryRow

    with db.read() as s:
        return set(s.execute(select(DeliveryRow.idempotency_key)).scalars().all())


def _alerts_sent(db: Database) -> bool:
    from storage.models import DeliveryRow

    with db.read() as s:
        states = s.execute(select(DeliveryRow.state)).scalars().all()
    with db.read() as s:
        alerted = s.scalar(
            select(func.count(func.distinct(DeliveryRow.alert_id))).where(DeliveryRow.kind == "alert")
        )
    return bool(states) and set(states) == {"sent"} and alerted == _alert_count(db)


def test_failover_concurrent_starters_kill_9_of_the_leader_and_a_redis_flushall(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    """Three schedulers start at once on an empty database: one leads, two wait (no traceback).
    The leader dispatches every source; Redis loses the messages (FLUSHALL) and the leader is
    killed -9 before any worker runs. A standby takes over; once the leases expire, every source is
    dispatched again and polled."""
    import redis

    lease = 5.0
    with LoggingSite() as site:
        feeds = {f"f{i}": site.feed(f"f{i}", 2) for i in range(6)}
        config = write_config(
            tmp_path,
            pg_url,
            redis_url,
            feeds,
            "per_host_concurrency: 4, per_host_min_gap: 0s",
            f"lease: {lease}s, tick: 0.2s",
        )
        schedulers = [start(tmp_path, config, "scheduler", log=f"s{i}") for i in range(3)]
        db = Database(load_settings(config).database_url)
        worker = None
        try:
            wait_for(
                lambda: sum("scheduler leading" in (tmp_path / f"s{i}.err").read_text() for i in range(3)),
                60,
                "a leader",
            )
            time.sleep(1.0)
            logs = {i: (tmp_path / f"s{i}.err").read_text() for i in range(3)}
            (leader,) = [i for i, text in logs.items() if "scheduler leading" in text]
            assert all("standby" in logs[i] for i in logs if i != leader)
            assert all(p.poll() is None for p in schedulers), "standbys wait, they do not exit"
            plan = plan_now(config)  # every source due now: the leader dispatches all of them
            wait_for(lambda: all(r.generation == 1 for r in sources(plan)), 30, "the first dispatch")
            redis.Redis.from_url(redis_url).flushall()  # the queued poll messages are lost
            stop(schedulers[leader], signal.SIGKILL)
            killed = time.monotonic()
            worker = start(tmp_path, config, "worker", "-p", "1", "-t", "4", log="worker")
            wait_for(
                lambda: all(r.last_status == "ok" for r in sources(plan)), lease + 60, "every source polled"
            )
            took = time.monotonic() - killed
            print(f"after kill -9 of the leader and FLUSHALL, every source polled again in {took:.1f} s")
            assert took <= lease + 60
            assert all(r.generation >= 2 for r in sources(plan))  # dispatched again by the new leader
            plan.dispose()
        finally:
            if worker is not None:
                stop(worker)
            for p in schedulers:
                stop(p)
            db.dispose()
    no_traceback(tmp_path, "s0", "s1", "s2", "worker")
