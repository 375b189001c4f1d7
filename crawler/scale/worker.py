"""The worker role: ``poll(source_id, generation)`` messages run through the unchanged pipeline.

One ``WorkerState`` per Dramatiq worker thread, each thread with an event loop of its own (measured:
139 vs 79 documents/s for one process of 8 threads against one shared loop, since a thread waiting
for PostgreSQL no longer holds up the others' parsing): the config and rules, one guarded
``Fetcher`` whose politeness and robots.txt cache live in Redis (``crawler.scale.politeness``);
the threads of a process share one database handle.

A poll, step by step:

1. the config version in PostgreSQL is newer than ours: reload the config and rule files (their
   digest must match the published one, or the last good set keeps running and it is logged);
2. the ticket: the source's stored timing, only if ``generation`` is still its current one (a
   duplicate or stale message ends here);
3. ``crawler.pipeline.run_source``: fetch, parse, extract, dedup, rules, one ingest transaction
   (ON CONFLICT and the band-key advisory locks keep concurrent writers correct), the fetch record;
4. the adaptive schedule (``crawler.daemon.schedule``) picks the next due time; ``finish_poll``
   saves it and frees the lease only if the generation still matches (fencing); a health change
   is logged once and queued as one notice, like the embedded daemon does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import threading
import time
from dataclasses import replace
from typing import Any

import dramatiq
from redis import RedisError

from crawler.config import Settings, load_settings
from crawler.daemon.jobs import health_notice, poll_outcome
from crawler.daemon.schedule import Bounds, SourceTiming, next_timing
from crawler.fetch import Fetcher, fetch_settings
from crawler.pipeline import Runtime, load_ruleset, rule_files, run_source
from crawler.scale.broker import KEYS, POLL_QUEUE, config_digest, now_ms, redis_client, require_scale
from crawler.scale.politeness import RedisHostGate, RedisRobotsCache
from crawler.types import SourceSpec
from storage import daemon_store, dispatch
from storage.db import Database, open_database

log = logging.getLogger("storywatch.worker")
LATENCY_SAMPLES = 200  # the last N message latencies per queue, for /metrics and `status`


class WorkerState:
    """What one worker process keeps between polls."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.url = require_scale(settings)
        self.redis = redis_client(self.url)
        # migrations are safe from several processes; threads of one process share one handle
        self.db = db or open_database(settings.database_url)
        self.rng = random.Random()
        self.version: int | None = None
        self.rt = self._runtime(settings, load_ruleset(settings))
        self.specs: dict[str, SourceSpec] = {s.id: s for s in settings.source_specs()}

    def _runtime(self, settings: Settings, rules: Any) -> Runtime:
        f = settings.fetch
        gate = RedisHostGate(
            self.redis,
            per_host=f.per_host_concurrency,
            min_gap=f.per_host_min_gap,
            global_limit=f.concurrency,
            hold_ttl=f.deadline + 5.0,  # one request never holds its slot longer than its deadline
        )
        fs = fetch_settings(settings)
        robots = RedisRobotsCache(self.redis, ttl=fs.robots_ttl, error_ttl=fs.robots_error_ttl)
        return Runtime(settings, self.db, Fetcher(fs, gate=gate, robots=robots), rules)

    # --- config version -------------------------------------------------------------------

    def _check_version(self) -> None:
        current = dispatch.config_version(self.db)
        if current is None or current[0] == self.version:
            return
        version, digest = current
        try:
            settings = load_settings(self.rt.settings.path)
            rules = load_ruleset(settings)
            mine = config_digest(settings, rule_files(settings.rule_paths()))
        except Exception as exc:  # boundary: a broken file keeps the last good set running
            log.error("config version %d: reload failed, the last good set keeps running: %s", version, exc)
            self.version = version
            return
        if mine != digest:
            log.error(
                "config version %d: this machine's config or rule files differ from the scheduler's "
                "(digest %s, published %s); copy the same files here. Running what is on disk.",
                version,
                mine[:12],
                digest[:12],
            )
        old = self.rt
        self.rt = replace(old, settings=settings, rules=rules)
        if fetch_settings(settings) != fetch_settings(old.settings):
            self.rt = self._runtime(settings, rules)  # the old Fetcher is left to running polls
        self.specs = {s.id: s for s in settings.source_specs()}
        self.version = version
        log.info("config version %d loaded (%d sources)", version, len(self.specs))

    # --- a poll -----------------------------------------------------------------------------

    async def poll(self, source_id: str, generation: int, enqueued_ms: int | None = None) -> str:
        """One dispatched poll; returns what happened: done, stale, fenced or unknown."""
        if enqueued_ms is not None:
            self._record_latency(now_ms() - enqueued_ms)
        self._check_version()
        spec = self.specs.get(source_id)
        if spec is None:
            log.warning("poll of unknown source %s (removed from the config?): skipped", source_id)
            return "unknown"
        ticket = dispatch.poll_ticket(self.db, source_id, generation)
        if ticket is None:
            log.debug("stale poll message %s generation %d: skipped", source_id, generation)
            return "stale"
        rt = self.rt
        outcome = await run_source(rt, spec)
        now = rt.clock()
        knobs = (
            {} if rt.settings.daemon.backoff_cap is None else {"backoff_cap": rt.settings.daemon.backoff_cap}
        )
        bounds = Bounds.from_spec(spec, **knobs)
        timing = (
            replace(SourceTiming.from_dict(ticket.timing), source_id=source_id)
            if ticket.timing
            else SourceTiming.initial(source_id, bounds, now, now)
        )
        new, change = next_timing(timing, poll_outcome(outcome), bounds, now, self.rng)
        fresh = dispatch.finish_poll(
            self.db,
            source_id,
            generation,
            timing=new.to_dict(),
            health=new.health,
            next_due=new.next_due,
            interval=new.interval,
        )
        if not fresh:
            log.info("poll of %s outlived its lease (dispatched again): schedule not saved", source_id)
            return "fenced"
        if change is not None:
            self._announce(change, spec, new)
        return "done"

    def _announce(self, change: Any, spec: SourceSpec, timing: SourceTiming) -> None:
        level = logging.INFO if change.new in ("ok", "new") else logging.WARNING
        log.log(level, "[%s] health %s -> %s: %s", change.source_id, change.old, change.new, change.reason)
        alerts = self.rt.settings.alerts
        if change.notify and alerts.health_channel:
            title, text = health_notice(change, spec, timing)
            key = daemon_store.notice_key(change.source_id, change.new, change.at)
            daemon_store.enqueue_notice(
                self.db, key=key, title=title, text=text, alerts_cfg=alerts, now=change.at
            )

    def _record_latency(self, ms: int) -> None:
        key = f"{KEYS}:latency:{POLL_QUEUE}"
        with self.redis.pipeline() as pipe:
            pipe.lpush(key, max(ms, 0)).ltrim(key, 0, LATENCY_SAMPLES - 1).expire(key, 600).execute()


HEARTBEAT = 10.0  # seconds between a worker process's heartbeats (``storywatch:workers``)


class WorkerHeartbeat(dramatiq.Middleware):
    """Dramatiq middleware: each worker process writes ``host:pid`` with the time into
    ``storywatch:workers`` every 10 s (Dramatiq's own heartbeats also count every process that only
    enqueues, such as the scheduler). Read by ``crawler.scale.stats``."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._stop = threading.Event()
        self._member = f"{socket.gethostname()}:{os.getpid()}"

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self._member = f"{socket.gethostname()}:{os.getpid()}"
        threading.Thread(target=self._beat, name="storywatch-heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()
        with contextlib.suppress(RedisError):  # best effort: the entry ages out of the count anyway
            redis_client(self.url).zrem(f"{KEYS}:workers", self._member)

    def _beat(self) -> None:
        client = redis_client(self.url)
        while not self._stop.is_set():
            with contextlib.suppress(RedisError):
                client.zadd(f"{KEYS}:workers", {self._member: now_ms()})
            self._stop.wait(HEARTBEAT)


_LOCAL = threading.local()  # per Dramatiq worker thread: its own event loop and WorkerState
_DB: list[Database] = []
_DB_LOCK = threading.Lock()


def poll(source_id: str, generation: int) -> None:
    """The ``poll`` actor's body, run by each Dramatiq worker thread on an event loop of its own
    (with its own HTTP client): while one thread waits for PostgreSQL, another parses."""
    from dramatiq.middleware import CurrentMessage

    message = CurrentMessage.get_current_message()
    enqueued = getattr(message, "message_timestamp", None)
    loop = getattr(_LOCAL, "loop", None)
    if loop is None:
        loop = _LOCAL.loop = asyncio.new_event_loop()
    loop.run_until_complete(_poll_here(source_id, generation, enqueued))


async def _poll_here(source_id: str, generation: int, enqueued: int | None) -> None:
    state: WorkerState | None = getattr(_LOCAL, "state", None)
    if state is None:
        settings = load_settings(os.environ.get("STORYWATCH_CONFIG"))
        with _DB_LOCK:
            if not _DB:
                _DB.append(open_database(settings.database_url))
        state = _LOCAL.state = WorkerState(settings, _DB[0])
    started = time.monotonic()
    result = await state.poll(source_id, generation, enqueued)
    log.debug("poll %s gen %d: %s in %.2f s", source_id, generation, result, time.monotonic() - started)


__all__ = ["WorkerHeartbeat", "WorkerState", "poll"]
