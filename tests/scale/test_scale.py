"""Scale-out mode in one process: the dispatch lease and its generation on both backends, the
scheduler on a StubBroker, a worker's poll against a local site (PostgreSQL + Redis), the config
errors. The real worker processes are in test_scale_processes.py."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from crawler.config import load_settings
from crawler.errors import ConfigError
from crawler.scale import Scheduler, WorkerState, require_scale
from crawler.scale.broker import POLL_QUEUE
from crawler.types import SourceSpec
from storage import dispatch
from storage import sources as store_sources
from storage.db import Database, open_database
from storage.models import DocumentRow, SourceRow
from tests.scalekit import LoggingSite
from tests.sitekit import Site, article_page, rss

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _sources(db: Database, n: int, due: datetime = T0) -> list[str]:
    ids = [f"s{i}" for i in range(n)]
    store_sources.sync_sources(db, [SourceSpec(sid, "feed", f"https://example.org/{sid}") for sid in ids])
    dispatch.plan_sources(db, dict.fromkeys(ids, due), ids)
    return ids


# ----------------------------------------------------------------------------- storage.dispatch


def test_a_due_source_is_leased_once_with_the_next_generation_until_its_lease_expires(db_url: str) -> None:
    db = open_database(db_url)
    _sources(db, 3)
    first = dispatch.claim_due(db, now=T0, lease=60, limit=10)
    assert sorted((d.source_id, d.generation) for d in first) == [("s0", 1), ("s1", 1), ("s2", 1)]
    assert dispatch.claim_due(db, now=T0 + timedelta(seconds=59), lease=60, limit=10) == []
    stats = dispatch.dispatch_stats(db, T0 + timedelta(seconds=1))
    assert (stats.due, stats.leased) == (0, 3)
    # a lost message: the lease expires and the source is dispatched again, with a new generation
    again = dispatch.claim_due(db, now=T0 + timedelta(seconds=61), lease=60, limit=10)
    assert {d.generation for d in again} == {2}
    # the first worker's late write is fenced; the current one's applies and frees the lease
    late = dict(timing={"x": 1}, health="ok", next_due=T0 + timedelta(hours=1), interval=60.0)
    assert not dispatch.finish_poll(db, "s0", 1, **late)
    assert dispatch.poll_ticket(db, "s0", 1) is None
    assert dispatch.poll_ticket(db, "s0", 2) is not None
    assert dispatch.finish_poll(db, "s0", 2, **late)
    with db.read() as s:
        row = s.get(SourceRow, "s0")
        assert row is not None and row.dispatch_until is None and row.next_due_at == T0 + timedelta(hours=1)
    db.dispose()


def test_grouped_final_writes_save_every_fetch_record_and_fence_each_schedule_alone(db_url: str) -> None:
    from crawler.types import SourceResult

    db = open_database(db_url)
    ids = _sources(db, 3)
    claimed = {d.source_id: d.generation for d in dispatch.claim_due(db, now=T0, lease=60, limit=10)}
    with db.write() as s:  # s1's lease expired and it was dispatched again meanwhile
        s.execute(SourceRow.__table__.update().where(SourceRow.id == "s1").values(generation=9))
    due = T0 + timedelta(hours=1)
    finishes = [
        dispatch.Finish(
            sid,
            generation=claimed[sid],
            timing={"n": i},
            health="ok",
            next_due=due,
            interval=60.0,
            record=store_sources.FetchRecord(
                SourceSpec(sid, "feed", f"https://example.org/{sid}"), SourceResult(sid, "ok"), T0
            ),
        )
        for i, sid in enumerate(ids)
    ]
    assert dispatch.finish_polls(db, finishes) == [True, False, True]
    with db.read() as s:
        rows = {r.id: r for r in s.scalars(select(SourceRow))}
    assert {sid for sid, r in rows.items() if r.last_fetch_at is not None} == set(ids)  # every record
    assert rows["s1"].timing is None and rows["s1"].dispatch_until is not None  # fenced: lease kept
    assert all(rows[sid].dispatch_until is None and rows[sid].timing for sid in ("s0", "s2"))
    db.dispose()


def test_sources_not_configured_any_more_are_never_dispatched(db_url: str) -> None:
    db = open_database(db_url)
    _sources(db, 3)
    dispatch.plan_sources(db, {}, ["s0", "s1"])
    assert {d.source_id for d in dispatch.claim_due(db, now=T0, lease=60, limit=10)} == {"s0", "s1"}
    db.dispose()


def test_concurrent_schedulers_never_claim_the_same_source(pg_url: str) -> None:
    db = open_database(pg_url)
    _sources(db, 200)
    dbs = [open_database(pg_url, migrate=False) for _ in range(4)]
    got: list[list[str]] = [[] for _ in dbs]
    start = threading.Barrier(len(dbs))

    def claimer(i: int) -> None:
        start.wait()
        while batch := dispatch.claim_due(dbs[i], now=T0, lease=60, limit=7):
            got[i] += [d.source_id for d in batch]

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(dbs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [sid for g in got for sid in g]
    assert len(ids) == 200 and len(set(ids)) == 200
    for d in (*dbs, db):
        d.dispose()


def test_the_config_version_goes_up_only_when_the_files_change(db_url: str) -> None:
    db = open_database(db_url)
    assert dispatch.config_version(db) is None
    assert dispatch.publish_config(db, "a" * 64, T0) == 1
    assert dispatch.publish_config(db, "a" * 64, T0) == 1
    assert dispatch.publish_config(db, "b" * 64, T0) == 2
    assert dispatch.config_version(db) == (2, "b" * 64)
    db.dispose()


def test_migration_0006_adds_the_lease_columns_to_existing_sources(db_url: str) -> None:
    from alembic import command

    from storage.db import alembic_config

    db = Database(db_url)
    with db.engine.begin() as conn:
        cfg = alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        conn.execute(
            text(
                "INSERT INTO sources (id, kind, url, health, error_streak, created_at)"
                " VALUES ('old', 'feed', 'u', 'ok', 0, :at)"
            ),
            {"at": T0},
        )
    db.upgrade()
    with db.read() as s:
        row = s.execute(text("SELECT generation, dispatch_until FROM sources WHERE id = 'old'")).one()
        assert tuple(row) == (0, None)
    db.dispose()


# ----------------------------------------------------------------------------- configuration


def _config(tmp: Path, body: str) -> Path:
    path = tmp / "storywatch.yaml"
    path.write_text(body, "utf-8")
    return path


def test_scale_out_on_sqlite_is_refused_with_exit_2(tmp_path: Path) -> None:
    path = _config(tmp_path, f'database: "sqlite:///{tmp_path}/sw.db"\nbroker: "redis://127.0.0.1:6379/0"\n')
    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        require_scale(load_settings(path))
    for command in ("scheduler", "worker", "relay"):
        proc = subprocess.run(
            [sys.executable, "-c", "from crawler.cli import main; main()", "--config", str(path), command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "needs PostgreSQL" in proc.stderr and "Traceback" not in proc.stderr


def test_without_a_broker_scale_out_names_the_missing_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="broker: redis://"):
        require_scale(load_settings(_config(tmp_path, "sources: []\n")))
    with pytest.raises(ConfigError, match="Redis URL"):
        load_settings(_config(tmp_path, 'broker: "amqp://x"\n'))


# ----------------------------------------------------------------------------- scheduler and worker


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as s:
        yield s


def publish(site: Site, feed: str, n: int) -> None:
    items = []
    for i in range(n):
        path = f"/{feed}/a{i}"
        body = [f"{feed} report {i}: engineers described the computing cluster in detail, number {i}."]
        site.add(path, article_page(f"{feed} story {i}", body))
        items.append({"title": f"{feed} story {i}", "link": site.url(path), "guid": f"{feed}-{i}"})
    site.add(f"/{feed}.xml", rss(items), "application/rss+xml")


def scale_config(
    tmp: Path, pg_url: str, redis_url: str, feeds: list[str], base: str, extra: str = ""
) -> Path:
    sources = "".join(f'  - {{id: {f}, kind: feed, url: "{base}/{f}.xml", interval: 60s}}\n' for f in feeds)
    return _config(
        tmp,
        f'database: "{pg_url}"\nbroker: "{redis_url}"\n'
        'fetch: {allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s, per_host_concurrency: 8}\n'
        "alerts: {channels: {ops: {type: console}}}\n"
        f"scale: {{lease: 30s, tick: 0.2s}}\n{extra}sources:{chr(10) + sources if sources else ' []'}\n",
    )


def test_the_scheduler_enqueues_each_due_source_once_and_a_worker_polls_it(
    tmp_path: Path, pg_url: str, redis_url: str, site: Site
) -> None:
    from dramatiq.brokers.stub import StubBroker

    feeds = ["fa", "fb", "fc"]
    for f in feeds:
        publish(site, f, 3)
    settings = load_settings(scale_config(tmp_path, pg_url, redis_url, feeds, site.base))
    broker = StubBroker()
    broker.declare_queue(POLL_QUEUE)
    sched = Scheduler(settings, broker=broker, handle_signals=False)
    db = open_database(pg_url)
    sched._apply(db, settings)
    with db.write() as s:  # every source due now (the start spreads them over a minute)
        s.execute(SourceRow.__table__.update().values(next_due_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert sched.dispatch_once(db) == 3
    assert sched.dispatch_once(db) == 0  # leased: not enqueued twice
    messages = [broker.queues[POLL_QUEUE].get_nowait() for _ in range(3)]
    polls = sorted(_args(m) for m in messages)
    assert [p[0] for p in polls] == feeds and {p[1] for p in polls} == {1}

    async def work() -> list[str]:
        state = WorkerState(settings)
        try:
            done = [await state.poll(sid, gen) for sid, gen in polls]
            done.append(await state.poll("fa", 1))  # a duplicate message: the lease is free again
            return done
        finally:
            await state.rt.fetcher.aclose()

    assert asyncio.run(work()) == ["done", "done", "done", "done"]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(DocumentRow)) == 9
        rows = s.scalars(select(SourceRow)).all()
    now = datetime.now(UTC)
    assert all(r.dispatch_until is None and r.next_due_at and r.next_due_at > now for r in rows)
    assert {r.health for r in rows} == {"ok"}
    db.dispose()


def test_the_threads_of_a_worker_process_share_one_writer_that_groups_their_polls(
    tmp_path: Path, pg_url: str, redis_url: str, site: Site
) -> None:
    """Four threads, each with its own loop, poll at once; their documents and final writes go
    through the process's one writer thread, several polls per transaction."""
    from crawler.scale.worker import Shared

    feeds = [f"g{i}" for i in range(8)]
    for f in feeds:
        publish(site, f, 3)
    settings = load_settings(scale_config(tmp_path, pg_url, redis_url, feeds, site.base))
    db = open_database(pg_url)
    store_sources.sync_sources(db, settings.source_specs())
    dispatch.plan_sources(db, dict.fromkeys(feeds, datetime.now(UTC) - timedelta(seconds=1)), feeds)
    claimed = dispatch.claim_due(db, now=datetime.now(UTC), lease=30, limit=20)
    shared = Shared(settings, group_commit=True)
    assert shared.writer is not None
    results: list[str] = []
    barrier = threading.Barrier(4)

    def thread(mine: list[dispatch.Dispatch]) -> None:
        async def work() -> list[str]:
            state = WorkerState(settings, shared=shared)
            barrier.wait()
            try:
                return list(await asyncio.gather(*(state.poll(d.source_id, d.generation) for d in mine)))
            finally:
                await state.rt.fetcher.aclose()

        results.extend(asyncio.run(work()))

    threads = [threading.Thread(target=thread, args=(claimed[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    shared.close()
    assert sorted(results) == ["done"] * 8
    docs, ends = shared.writer.documents.group, shared.writer.finishes.group
    assert (docs.items, ends.items) == (8, 8)
    assert docs.flushes < docs.items and ends.flushes < ends.items  # grouped
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(DocumentRow)) == 24
        rows = s.scalars(select(SourceRow)).all()
    assert all(r.dispatch_until is None and r.timing and r.last_fetch_at for r in rows)
    shared.db.dispose()
    db.dispose()


def _args(message: bytes) -> tuple[str, int]:
    import json

    data = json.loads(message)
    return data["args"][0], data["args"][1]


def test_a_worker_drops_a_stale_message_and_fences_a_poll_that_outlived_its_lease(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    with LoggingSite(delay=0.5) as slow:  # every answer takes 0.5 s: the poll is still running
        slow.feed("fa", 1)
        settings = load_settings(scale_config(tmp_path, pg_url, redis_url, ["fa"], slow.base))
        db = open_database(pg_url)
        store_sources.sync_sources(db, settings.source_specs())
        dispatch.plan_sources(db, {"fa": datetime.now(UTC) - timedelta(seconds=1)}, ["fa"])
        (d,) = dispatch.claim_due(db, now=datetime.now(UTC), lease=30, limit=5)

        async def work() -> tuple[str, str]:
            state = WorkerState(settings)
            try:
                stale = await state.poll("fa", d.generation - 1)
                running = asyncio.create_task(state.poll("fa", d.generation))
                await asyncio.sleep(0.3)  # the ticket is read; the feed is being fetched
                with db.write() as s:  # the lease expired and the scheduler dispatched it again
                    s.execute(SourceRow.__table__.update().values(generation=SourceRow.generation + 1))
                return stale, await running
            finally:
                await state.rt.fetcher.aclose()

        assert asyncio.run(work()) == ("stale", "fenced")
    with db.read() as s:
        row = s.get(SourceRow, "fa")
        assert row is not None and row.dispatch_until is not None and row.timing is None  # not saved
        assert s.scalar(select(func.count()).select_from(DocumentRow)) == 1  # documents are kept
    db.dispose()


def test_the_systemd_units_run_the_roles_and_let_a_standby_come_back() -> None:
    docs = REPO / "docs"
    embedded = (docs / "storywatch.service").read_text("utf-8")
    prevent = next(line for line in embedded.splitlines() if line.startswith("RestartPreventExitStatus="))
    assert "3" not in prevent.split("=", 1)[1].split(), "exit 3 (the lock is held) must be retried"
    assert "StartLimitIntervalSec=0" in embedded
    for unit, command in (
        ("storywatch-scheduler.service", "storywatch scheduler"),
        ("storywatch-worker@.service", "storywatch worker"),
        ("storywatch-relay.service", "storywatch relay"),
    ):
        text_ = (docs / unit).read_text("utf-8")
        assert command in text_ and "RestartPreventExitStatus=2\n" in text_
        assert unit.split("@")[0].removesuffix(".service") in (REPO / "README.md").read_text("utf-8")


# ----------------------------------------------------------------------------- shared politeness


def test_two_relays_pacers_keep_one_channel_rate_together(redis_url: str) -> None:
    """Two relay processes' pacers (two clients) sending on one channel at 20/s: 21 sends take
    about a second together, not half of it."""
    import time

    from crawler.config import ChannelConfig
    from crawler.scale import RedisPacer, redis_client

    cfg = ChannelConfig(type="console", rate_per_second=20)
    pacers = [RedisPacer(redis_client(redis_url)), RedisPacer(redis_client(redis_url))]
    stamps: list[float] = []

    async def send(pacer: RedisPacer, n: int) -> None:
        for _ in range(n):
            await pacer("ops", cfg)
            stamps.append(time.monotonic())

    async def both() -> None:
        await asyncio.wait_for(asyncio.gather(send(pacers[0], 11), send(pacers[1], 10)), 10)

    asyncio.run(both())
    stamps.sort()
    assert stamps[-1] - stamps[0] >= 0.95 * 20 / 20
    assert min(b - a for a, b in itertools.pairwise(stamps)) >= 0.045


def test_robots_txt_verdicts_are_shared_through_redis_with_their_ttl(redis_url: str) -> None:
    from crawler.fetch import RobotsRules
    from crawler.scale import RedisRobotsCache, redis_client

    loads: list[str] = []

    async def load(url: str) -> RobotsRules:
        loads.append(url)
        return RobotsRules.parse(b"User-agent: *\nDisallow: /private\n")

    async def check() -> tuple[bool, bool]:
        first = RedisRobotsCache(redis_client(redis_url), ttl=60, error_ttl=5)
        other = RedisRobotsCache(redis_client(redis_url), ttl=60, error_ttl=5)  # another process
        await first.rules_for("https://example.org/a", load)
        rules = await other.rules_for("https://example.org/private/x", load)
        return rules.allows("https://example.org/private/x", "sw"), rules.allows(
            "https://example.org/a", "sw"
        )

    assert asyncio.run(check()) == (False, True)
    assert loads == ["https://example.org/robots.txt"]  # loaded once for both
    ttl = redis_client(redis_url).pttl("storywatch:robots:https://example.org/robots.txt")
    assert 55_000 < ttl <= 60_000


def test_a_worker_reloads_the_rules_when_the_scheduler_publishes_a_new_version(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    from crawler.pipeline import rule_files
    from crawler.scale.broker import config_digest

    rules = tmp_path / "rules.yaml"
    rule = "version: 1\nrules:\n  - id: {id}\n    title: T\n    severity: low\n    query: 'cluster'\n"
    rules.write_text(rule.format(id="first.rule"), "utf-8")
    path = scale_config(
        tmp_path, pg_url, redis_url, [], "http://127.0.0.1:1", f'rules: {{paths: ["{rules}"]}}\n'
    )
    db = open_database(pg_url)

    def publish() -> int:
        s = load_settings(path)
        return dispatch.publish_config(db, config_digest(s, rule_files(s.rule_paths())), datetime.now(UTC))

    assert publish() == 1
    state = WorkerState(load_settings(path))
    state._check_version()
    assert [r.id for r in state.rt.rules.rules] == ["first.rule"]
    rules.write_text(rule.format(id="second.rule"), "utf-8")
    state._check_version()  # the files changed but no new version was published: nothing happens
    assert [r.id for r in state.rt.rules.rules] == ["first.rule"]
    assert publish() == 2
    state._check_version()
    assert [r.id for r in state.rt.rules.rules] == ["second.rule"]
    asyncio.run(state.rt.fetcher.aclose())
    db.dispose()


def test_a_host_slot_held_by_a_worker_killed_9_frees_itself_after_its_hold(redis_url: str) -> None:
    """A worker killed -9 inside a request never releases its slot: the slot expires with its hold
    (the request's deadline), even while other workers keep the host busy."""
    import signal
    import time

    from crawler.scale import RedisHostGate, redis_client

    code = (
        "import asyncio, sys, time\nfrom crawler.scale import RedisHostGate, redis_client\n"
        f"gate = RedisHostGate(redis_client({redis_url!r}), per_host=1, min_gap=0, global_limit=4, hold_ttl=1.5)\n"
        "async def hold():\n    async with gate.slot('example.org'):\n"
        "        print('held', flush=True)\n        time.sleep(60)\nasyncio.run(hold())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    killed = time.monotonic()
    gate = RedisHostGate(redis_client(redis_url), per_host=1, min_gap=0, global_limit=4, hold_ttl=1.5)

    async def busy_then_take() -> float:
        other = RedisHostGate(redis_client(redis_url), per_host=2, min_gap=0, global_limit=4)
        async with other.slot("example.org"):  # traffic on the host meanwhile renews nothing
            pass
        async with gate.slot("example.org"):
            return time.monotonic() - killed

    waited = asyncio.run(asyncio.wait_for(busy_then_take(), 10))
    assert waited <= 1.5 + 0.5


def test_the_scheduler_leads_publishes_a_new_version_when_a_rule_file_changes_and_stops(
    tmp_path: Path, pg_url: str
) -> None:
    from dramatiq.brokers.stub import StubBroker

    rules = tmp_path / "rules.yaml"
    rule = "version: 1\nrules:\n  - id: {id}\n    title: T\n    severity: low\n    query: 'cluster'\n"
    rules.write_text(rule.format(id="first.rule"), "utf-8")
    path = scale_config(
        tmp_path,
        pg_url,
        "redis://127.0.0.1:1/0",  # never contacted: the broker is a StubBroker, no metrics
        [],
        "http://127.0.0.1:1",
        f'rules: {{paths: ["{rules}"]}}\ndaemon: {{watch_files: true}}\n',
    )
    broker = StubBroker()
    broker.declare_queue(POLL_QUEUE)
    sched = Scheduler(load_settings(path), broker=broker, handle_signals=False)
    db = open_database(pg_url)

    async def scenario() -> tuple[Any, Any]:
        task = asyncio.create_task(sched.run())
        for _ in range(100):
            if dispatch.config_version(db) is not None:
                break
            await asyncio.sleep(0.1)
        first = dispatch.config_version(db)
        await asyncio.sleep(0.5)  # the watcher is watching
        rules.write_text(rule.format(id="second.rule"), "utf-8")
        for _ in range(100):
            if (dispatch.config_version(db) or (0, ""))[0] == 2:
                break
            await asyncio.sleep(0.1)
        second = dispatch.config_version(db)
        sched.request_stop()
        await asyncio.wait_for(task, 10)
        return first, second

    first, second = asyncio.run(scenario())
    assert first is not None and first[0] == 1
    assert second is not None and second[0] == 2 and second[1] != first[1]
    assert sched.state == "stopped"
    db.dispose()


def test_metrics_and_status_show_queue_depth_latency_workers_and_dispatch_lag(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    """The scheduler's /metrics and `storywatch status --json`: a poll waiting in the queue, a
    worker heartbeat, latency samples and a due source that waits."""
    import json
    import urllib.request

    from crawler.scale import make_broker, poll_message, redis_client
    from crawler.scale.broker import now_ms

    path = scale_config(
        tmp_path, pg_url, redis_url, ["fa", "fb"], "http://127.0.0.1:1", 'daemon: {http: "127.0.0.1:0"}\n'
    )
    settings = load_settings(path)
    db = open_database(pg_url)
    store_sources.sync_sources(db, settings.source_specs())
    dispatch.plan_sources(db, {"fa": datetime.now(UTC) - timedelta(seconds=30)}, ["fa"])
    broker = make_broker(redis_url)
    broker.declare_queue(POLL_QUEUE)
    broker.enqueue(poll_message("fb", 1))  # waiting: nobody consumes it
    client = redis_client(redis_url)
    client.zadd("storywatch:workers", {"box:1": now_ms(), "box:2": now_ms() - 600_000})  # one gone
    client.lpush("storywatch:latency:poll", 200, 400)
    sched = Scheduler(settings, broker=broker, handle_signals=False)
    server = sched._start_http(db)  # what the leader serves (no dispatch round: "fa" stays due)
    assert server is not None
    try:
        text_ = urllib.request.urlopen(f"http://{sched.metrics_address}/metrics", timeout=10).read().decode()
    finally:
        server.stop()
    values = dict(
        line.rsplit(" ", 1) for line in text_.splitlines() if line.startswith("storywatch_") and " " in line
    )
    assert float(values['storywatch_queue_depth{queue="poll"}']) == 1
    assert float(values['storywatch_queue_latency_seconds{queue="poll"}']) == 0.3
    assert float(values["storywatch_workers"]) == 1
    assert float(values["storywatch_sources_due"]) == 1
    assert float(values["storywatch_dispatch_lag_seconds"]) >= 29
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from crawler.cli import main; main()",
            "--config",
            str(path),
            "status",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    scale = json.loads(proc.stdout)["scale"]
    assert scale["queue_depth"] == {"poll": 1} and scale["workers"] == 1 and scale["due"] == 1
    db.dispose()


def test_without_dramatiq_installed_the_roles_say_what_to_install(tmp_path: Path) -> None:
    path = _config(
        tmp_path, 'database: "postgresql+psycopg://x@127.0.0.1/x"\nbroker: "redis://127.0.0.1:1/0"\n'
    )
    code = "import sys; sys.modules['dramatiq'] = None\nfrom crawler.cli import main; main()"
    for command in ("scheduler", "worker", "relay", "status"):
        proc = subprocess.run(
            [sys.executable, "-c", code, "--config", str(path), command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if command == "status":  # the database is unreachable first: exit 3, still no traceback
            assert "Traceback" not in proc.stderr, proc.stderr
            continue
        assert proc.returncode == 2, proc.stderr
        assert "pip install 'storywatch[scale]'" in proc.stderr and "Traceback" not in proc.stderr
