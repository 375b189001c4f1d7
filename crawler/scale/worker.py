"""The worker role: ``poll(source_id, generation)`` messages run through the unchanged pipeline.

A worker process has one ``Shared`` (the config and rules, reloaded when the scheduler publishes a
new version, the database handle, the Redis client) and one writer thread; each Dramatiq worker
thread has an event loop and a ``WorkerState`` of its own (its runtime, with a guarded ``Fetcher``
whose politeness and robots.txt cache live in Redis, ``crawler.scale.politeness``). Measured: 139
vs 79 documents/s for one process of 8 threads against one shared loop, since a thread waiting for
PostgreSQL no longer holds up the others' parsing.

A poll, step by step:

1. every ``VERSION_CHECK`` seconds per process, the config version in PostgreSQL: newer than ours,
   reload the config and rule files (their digest must match the published one, or the last good
   set keeps running and it is logged);
2. the ticket: the source's stored timing, only if ``generation`` is still its current one (a
   duplicate or stale message ends here);
3. ``crawler.pipeline.run_source``: fetch, parse, extract, dedup, rules; the documents go to the
   process's writer thread, which writes the documents of every poll waiting for it in ONE ingest
   transaction (group commit, ``crawler.scale.groupcommit``; ON CONFLICT and the band-key advisory
   locks keep concurrent writers correct);
4. the adaptive schedule (``crawler.daemon.schedule``) picks the next due time; the poll's final
   write (``storage.dispatch.finish_polls``: its fetch record, then its schedule and the freed lease
   only if the generation still matches) is grouped with other polls' in one transaction too; a
   health change is logged once and queued as one notice, like the embedded daemon does.

A worker killed -9 loses only what its writer had not committed: those polls keep their leases and
are dispatched again when the leases expire.
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
from typing import Any, cast

import dramatiq
from redis import RedisError

from crawler.config import Settings, load_settings
from crawler.daemon.jobs import health_notice, poll_outcome
from crawler.daemon.schedule import Bounds, SourceTiming, next_timing
from crawler.fetch import Fetcher, fetch_settings
from crawler.pipeline import Runtime, load_ruleset, rule_files, run_source, store_groups
from crawler.pipeline.runtime import Group
from crawler.scale.broker import KEYS, POLL_QUEUE, config_digest, now_ms, redis_client, require_scale
from crawler.scale.groupcommit import ThreadedGroupWriter, WriterThread
from crawler.scale.politeness import RedisHostGate, RedisRobotsCache
from crawler.types import SourceSpec
from storage import daemon_store, dispatch
from storage.db import Database, open_database
from storage.ingest import IngestResult
from storage.sources import FetchRecord

log = logging.getLogger("storywatch.worker")
LATENCY_SAMPLES = 200  # the last N message latencies per queue, for /metrics and `status`


VERSION_CHECK = 2.0  # seconds between a process's reads of the config version (a poll checks it)
GROUP_DOCS = 256  # documents in one grouped ingest transaction, at most
GROUP_POLLS = 64  # polls' final writes in one transaction, at most
GROUP_LINGER = 0.05  # seconds a write that finds the writer idle waits for others to join it


class Shared:
    """What the threads of one worker process share: the config and rules (reloaded when the
    scheduler publishes a new version), the database handle, the Redis client and, with
    ``group_commit``, the writer thread (``crawler.scale.groupcommit``)."""

    def __init__(self, settings: Settings, db: Database | None = None, *, group_commit: bool = False) -> None:
        self.url = require_scale(settings)
        self.redis = redis_client(self.url)
        # migrations are safe from several processes; the threads of a process share one handle
        self.db = db or open_database(settings.database_url)
        self.lock = threading.Lock()
        self.settings = settings
        self.rules = load_ruleset(settings)
        self.specs: dict[str, SourceSpec] = {s.id: s for s in settings.source_specs()}
        self.version = self._published_if_same(settings)
        self.checked = time.monotonic()
        self.writer = PollWriter(self) if group_commit else None

    def _published_if_same(self, settings: Settings) -> int | None:
        """The published version when it describes these very files (no reload needed), else None."""
        current = dispatch.config_version(self.db)
        if current is None:
            return None
        try:
            same = config_digest(settings, rule_files(settings.rule_paths())) == current[1]
        except OSError:
            return None
        return current[0] if same else None

    def runtime(self) -> Runtime:
        """A runtime for the writer: the current config and rules; it never fetches."""
        return Runtime(self.settings, self.db, cast(Fetcher, None), self.rules)

    def maybe_check_version(self) -> None:
        if time.monotonic() - self.checked >= VERSION_CHECK:
            self.check_version()

    def check_version(self) -> None:
        """The config version in PostgreSQL is newer than ours: reload the config and rule files (their
        digest must match the published one, or it is logged); a broken file keeps the last good set."""
        with self.lock:
            self.checked = time.monotonic()
            current = dispatch.config_version(self.db)
            if current is None or current[0] == self.version:
                return
            version, digest = current
            try:
                settings = load_settings(self.settings.path)
                rules = load_ruleset(settings)
                mine = config_digest(settings, rule_files(settings.rule_paths()))
            except Exception as exc:  # boundary: a broken file keeps the last good set running
                log.error(
                    "config version %d: reload failed, the last good set keeps running: %s", version, exc
                )
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
            self.settings, self.rules = settings, rules
            self.specs = {s.id: s for s in settings.source_specs()}
            self.version = version
            log.info("config version %d loaded (%d sources)", version, len(self.specs))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class PollWriter:
    """Group commit for one worker process: the documents of several polls in one ingest transaction,
    and their final writes (fetch records, fenced schedules) in one more, on one writer thread."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.thread = WriterThread()
        loop = self.thread.loop
        self.documents: ThreadedGroupWriter[Group, list[IngestResult]] = ThreadedGroupWriter(
            lambda groups: store_groups(shared.runtime(), groups),
            loop=loop,
            max_size=GROUP_DOCS,
            size=lambda g: len(g[0]),
            linger=GROUP_LINGER,
        )
        self.finishes: ThreadedGroupWriter[dispatch.Finish, bool] = ThreadedGroupWriter(
            lambda items: dispatch.finish_polls(shared.db, items),
            loop=loop,
            max_size=GROUP_POLLS,
            linger=GROUP_LINGER,
        )

    def close(self) -> None:
        self.thread.close()


class WorkerState:
    """One event loop's worker (one per Dramatiq thread): a runtime with a guarded ``Fetcher`` of its
    own (an HTTP client belongs to one loop) over the process's ``Shared`` config, rules, database
    and writer. ``WorkerState(settings)`` alone makes its own ``Shared`` and writes inline."""

    def __init__(
        self, settings: Settings, db: Database | None = None, *, shared: Shared | None = None
    ) -> None:
        self.shared = shared or Shared(settings, db)
        self.db = self.shared.db
        self.rng = random.Random()
        self.rt = self._runtime()

    def _runtime(self) -> Runtime:
        shared = self.shared
        f = shared.settings.fetch
        gate = RedisHostGate(
            shared.redis,
            per_host=f.per_host_concurrency,
            min_gap=f.per_host_min_gap,
            global_limit=f.concurrency,
            hold_ttl=f.deadline + 5.0,  # one request never holds its slot longer than its deadline
        )
        fs = fetch_settings(shared.settings)
        robots = RedisRobotsCache(shared.redis, ttl=fs.robots_ttl, error_ttl=fs.robots_error_ttl)
        return self._writing(
            Runtime(shared.settings, shared.db, Fetcher(fs, gate=gate, robots=robots), shared.rules)
        )

    def _writing(self, rt: Runtime) -> Runtime:
        if self.shared.writer is not None:
            rt.store_group = self.shared.writer.documents
        return rt

    def _check_version(self) -> None:
        self.shared.check_version()
        self._follow()

    def _follow(self) -> None:
        """Take up the config and rules the process reloaded (a new Fetcher if its settings changed)."""
        old, shared = self.rt, self.shared
        if old.settings is shared.settings and old.rules is shared.rules:
            return
        if fetch_settings(shared.settings) != fetch_settings(old.settings):
            self.rt = self._runtime()  # the old Fetcher is left to running polls
        else:
            self.rt = self._writing(replace(old, settings=shared.settings, rules=shared.rules))

    # --- a poll -----------------------------------------------------------------------------

    async def poll(self, source_id: str, generation: int, enqueued_ms: int | None = None) -> str:
        """One dispatched poll; returns what happened: done, stale, fenced or unknown."""
        if enqueued_ms is not None:
            self._record_latency(now_ms() - enqueued_ms)
        self.shared.maybe_check_version()
        self._follow()
        spec = self.shared.specs.get(source_id)
        if spec is None:
            log.warning("poll of unknown source %s (removed from the config?): skipped", source_id)
            return "unknown"
        ticket = dispatch.poll_ticket(self.db, source_id, generation)
        if ticket is None:
            log.debug("stale poll message %s generation %d: skipped", source_id, generation)
            return "stale"
        rt = self.rt
        records: list[FetchRecord] = []
        outcome = await run_source(rt, spec, record=records.append)
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
        finish = dispatch.Finish(
            source_id,
            generation=generation,
            timing=new.to_dict(),
            health=new.health,
            next_due=new.next_due,
            interval=new.interval,
            record=records[0] if records else None,
        )
        writer = self.shared.writer
        fresh = (
            await writer.finishes.submit(finish) if writer else dispatch.finish_polls(self.db, [finish])[0]
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
        with self.shared.redis.pipeline() as pipe:
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


class FlushWrites(dramatiq.Middleware):
    """Dramatiq middleware: once the worker threads have finished their messages at shutdown, the
    process's grouped writes still queued are written before it exits."""

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        with _SHARED_LOCK:
            shared, _SHARED[:] = list(_SHARED), []
        for one in shared:
            one.close()


_LOCAL = threading.local()  # per Dramatiq worker thread: its own event loop and WorkerState
_SHARED: list[Shared] = []  # the process's Shared, made by the first poll
_SHARED_LOCK = threading.Lock()


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


def _process_shared() -> Shared:
    with _SHARED_LOCK:
        if not _SHARED:
            settings = load_settings(os.environ.get("STORYWATCH_CONFIG"))
            _SHARED.append(Shared(settings, group_commit=True))
        return _SHARED[0]


async def _poll_here(source_id: str, generation: int, enqueued: int | None) -> None:
    state: WorkerState | None = getattr(_LOCAL, "state", None)
    if state is None:
        shared = _process_shared()
        state = _LOCAL.state = WorkerState(shared.settings, shared=shared)
    started = time.monotonic()
    result = await state.poll(source_id, generation, enqueued)
    log.debug("poll %s gen %d: %s in %.2f s", source_id, generation, result, time.monotonic() - started)


__all__ = ["FlushWrites", "PollWriter", "Shared", "WorkerHeartbeat", "WorkerState", "poll"]
