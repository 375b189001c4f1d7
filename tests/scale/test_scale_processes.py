"""Scale-out mode with real processes (`storywatch scheduler`, `worker`, Redis, PostgreSQL):
politeness across 4 worker processes, kill -9 of workers and a relay during a cold pass, and scheduler
failover (concurrent starters, kill -9 of the leader, Redis FLUSHALL). Sized to a few seconds each."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.config import load_settings
from storage.db import Database
from tests.alertkit import Receiver
from tests.scalekit import (
    LoggingSite,
    documents,
    max_in_flight,
    min_gap,
    outcome,
    plan_now,
    received_keys,
    sources,
    start,
    stop,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


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


def test_kill_9_of_a_random_worker_or_relay_every_few_seconds_during_a_cold_pass_loses_nothing(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    """Two worker groups and two relays delivering to a webhook; every 3 s a random worker group,
    then a random relay, then a random worker group is killed -9 (and started again) while a cold
    pass runs. At the end every document is stored, every source has a future next_due and no
    lease, and every alert was delivered, with duplicates (a relay killed between send and mark)
    no more than the relay kills, each under the same idempotency key. The full-size version (10 s
    apart, at least 6 kills) is `bench/chaos.py`."""
    import random

    lease = 15.0
    rng = random.Random(15)
    with LoggingSite(delay=0.25) as site, Receiver() as hooks:  # 120 requests, 2 at a time: about 15 s
        feeds = {f"f{i:02d}": site.feed(f"f{i:02d}", 4) for i in range(24)}
        config = write_config(
            tmp_path,
            pg_url,
            redis_url,
            feeds,
            "per_host_concurrency: 2, per_host_min_gap: 0s, deadline: 5s",  # a killed hold frees in 10 s
            f"lease: {lease}s, tick: 0.2s",
            rules=True,
            alerts="{lease: 5s, relay_interval: 0.5s, channels: {hook: {type: webhook, "
            f'url: "{hooks.url}", rate_per_second: 50}}}}}}',
        )
        db = plan_now(config)
        worker: tuple[str, ...] = ("worker", "-p", "1", "-t", "2")
        roles = {"w0": worker, "w1": worker, "r0": ("relay",), "r1": ("relay",)}
        sched = start(tmp_path, config, "scheduler", log="scheduler")
        procs = {name: start(tmp_path, config, *args, log=f"{name}-0") for name, args in roles.items()}
        killed = []
        try:
            wait_for(lambda: documents(db) >= 4, 60, "the first documents")
            for k, among in enumerate((["w0", "w1"], ["r0", "r1"], ["w0", "w1"])):
                time.sleep(3.0)
                name = rng.choice(among)
                stop(procs[name], signal.SIGKILL)  # a worker's leased polls are never finished
                procs[name] = start(tmp_path, config, *roles[name], log=f"{name}-{k + 1}")
                killed.append(name)
            assert documents(db) < 96, "the kills happened during the pass"
            wait_for(lambda: documents(db) == 96, lease + 90, "every document")
            wait_for(lambda: outcome(db, datetime.now(UTC)).leases == 0, lease + 30, "no lease left")
            wait_for(lambda: delivered(db, hooks), 60, "every delivery sent and received")
        finally:
            for p in (*procs.values(), sched):
                stop(p)
    now = datetime.now(UTC)
    end = outcome(db, now)
    assert end.future_due == end.sources == len(feeds) and end.stale_leases == 0
    assert all(r.health == "ok" for r in sources(db))
    assert end.alerts > 0 and end.alerts_sent == end.alerts and end.unsent == 0
    received = received_keys(hooks)
    assert set(received) == end.keys
    relay_kills = sum(name.startswith("r") for name in killed)
    dup = len(received) - len(set(received))
    print(
        f"killed {killed}: {end.documents} documents, {end.alerts} alerts, {len(received)} POSTs ({dup} dup)"
    )
    assert dup <= relay_kills, received
    no_traceback(tmp_path, "scheduler", *(f"{name}-0" for name in roles if name.startswith("r")))
    db.dispose()


def delivered(db: Database, hooks: Receiver) -> bool:
    end = outcome(db, datetime.now(UTC))
    return end.alerts > 0 and end.unsent == 0 and end.keys <= set(received_keys(hooks))


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
            # kill -9 first: the leader commits a generation before it enqueues the poll, so a flush
            # between the two would miss a message enqueued just after it
            stop(schedulers[leader], signal.SIGKILL)
            # the queued poll messages are lost: FLUSHALL as far as storywatch can tell (it uses this
            # one database), without wiping the other databases of a Redis shared by test runs
            redis.Redis.from_url(redis_url).flushdb()
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
