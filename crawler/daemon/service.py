"""The daemon (`storywatch run`): every enabled source polled on its own adaptive schedule.

Its life, step by step:

1. Take the instance lock (``storage.daemon_store``): a second daemon on the same database
   refuses to start and names the first (pid, host, start time) -> ``DaemonLocked``, exit code 3.
2. Open the runtime (``crawler.pipeline.runner.open_runtime``): database, rules, worker processes
   for parsing and extraction (under ``fetch.cpu_budget``; nothing CPU-heavy on the loop), the
   database writer process (rules and ingest transactions, group commit, as for `storywatch once`)
   and ONE shared Fetcher, so its global and per-host limits span every source.
3. Start the jobs (``crawler.daemon.jobs.SourceScheduler``): stored timings resume after a
   restart, new and overdue sources are spread over a short window; each poll feeds the adaptive
   policy (``crawler.daemon.schedule``) and moves its job to the next due time. Health changes are logged
   once and queued as one outbox notice for ``alerts.health_channel``.
4. Alongside (``crawler.daemon.ops``): the outbox relay, the config/rule file watcher, a clock
   watchdog with the heartbeat, SIGHUP reloads, and the optional /healthz + /metrics endpoint.
5. Reload (SIGHUP or a changed file): the new config and rules are loaded and validated first;
   a broken file is logged (file:line) and the last good version keeps running. New, removed and
   changed sources are picked up; fetch and alert settings swap in without a restart, and the
   writer process gets the new settings and rules in line with its writes (``Offload.serve_writer``).
6. SIGTERM/SIGINT: stop scheduling, let running polls finish (or cancel them at a network await)
   within ``daemon.shutdown_deadline``, flush due deliveries once, release the lock. Each ingest is
   one transaction, so nothing is half-written. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from crawler import web
from crawler.config import Settings
from crawler.daemon.jobs import SourceScheduler
from crawler.daemon.logs import LOGGER, setup_logging
from crawler.daemon.metrics import Metrics
from crawler.daemon.ops import (
    TICK,
    FileWatcher,
    RelayRunner,
    clock_watchdog,
    install_signals,
    load_config,
    remove_signals,
    wait_tasks,
)
from crawler.errors import StorageError, StorywatchError
from crawler.fetch import Fetcher, fetch_settings
from crawler.pipeline import Runtime, open_runtime, utcnow
from crawler.pipeline.looplag import LoopLag
from crawler.web import WebServer
from storage import daemon_store
from storage.db import Database, open_database

log = logging.getLogger(f"{LOGGER}.daemon")

PAUSE_NOTICE = 3.0  # a pause (suspend, SIGSTOP, blocked loop) longer than this is logged
SNAPSHOT_EVERY = 0.25  # seconds: the /healthz document is rebuilt after a poll at most this often


def daemon_cpu_workers() -> int:
    """Worker processes for parsing and extraction: never the event loop (a hostile page there stalls
    every source, the relay and the health notices), and the CPU budget kills a worker, not the
    daemon. One per core beside the main process, at least one, at most two."""
    return max(1, min(2, (os.cpu_count() or 1) - 1))


class Daemon:
    """``asyncio.run(Daemon(load_settings(path)).run())``: runs until SIGTERM/SIGINT or request_stop()."""

    def __init__(
        self,
        settings: Settings,
        *,
        knobs: Mapping[str, Any] | None = None,
        rng: random.Random | None = None,
        manage_logging: bool = False,
        handle_signals: bool = True,
        tick: float = TICK,
    ) -> None:
        self.settings = settings
        self.config_path = settings.path
        self.knobs = knobs  # schedule.Bounds overrides (tests, tuning)
        self.rng = rng or random.Random()
        self.manage_logging = manage_logging
        self.handle_signals = handle_signals
        self.tick = tick
        self.metrics = Metrics()
        self.loop_lag = LoopLag(on_sample=self.metrics.loop_lag.observe)  # started by run()
        self.state = "starting"
        self.instance: daemon_store.Instance | None = None
        self.jobs: SourceScheduler | None = None
        self.reloads = 0
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fetchers: list[Fetcher] = []  # created by reloads; closed at exit
        self._relay: RelayRunner | None = None
        self._watcher: FileWatcher | None = None
        self._snapshot: dict[str, Any] = {"status": "starting"}
        self._snapshot_at = 0.0  # time.monotonic() of its last refresh
        self._db: Database | None = None
        self.metrics_address: str | None = None  # host:port of daemon.http (the web app), once serving

    # --- control ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: stop gracefully. Second call: stop waiting for running polls."""
        if self._stopping.is_set():
            log.warning("second stop request: cancelling running polls now")
            self._hurry.set()
        self._stopping.set()

    def request_reload(self, reason: str = "SIGHUP") -> None:
        self._spawn(self.reload(reason))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- life -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stopped. Raises DaemonLocked when another daemon holds the database."""
        self.instance = daemon_store.Instance.current(utcnow())
        lock_db = Database(self.settings.database_url)  # the lock first, migrations after
        lock = daemon_store.InstanceLock(lock_db, self.instance)
        try:
            lock.acquire()
            db = self._db = open_database(self.settings.database_url)
            try:
                daemon_store.register_instance(db, self.instance)
                # documents are written by the writer process (as in `storywatch once`); a reload moves
                # it to the new settings and rules (``_apply``)
                opened = open_runtime(self.settings, db=db, cpu_workers=daemon_cpu_workers())
                async with opened as rt:
                    if rt.offload is not None:
                        await rt.offload.warm(writer=True)
                    await self._serve(rt)
            finally:
                with contextlib.suppress(SQLAlchemyError, StorageError):
                    daemon_store.mark_stopped(db, self.instance.id, utcnow())
                db.dispose()
        finally:
            lock.release()
            lock_db.dispose()

    async def _serve(self, rt: Runtime) -> None:
        loop = asyncio.get_running_loop()
        inst = self.instance
        assert inst is not None
        if self.handle_signals:  # first: a SIGTERM while the rest starts is a clean stop once it has
            install_signals(loop, stop=self.request_stop, reload=self.request_reload)
        log.info(
            "storywatch daemon started (pid %d on %s), config %s",
            inst.pid,
            inst.host,
            self.config_path or "<default>",
            extra={"pid": inst.pid, "host": inst.host},
        )
        knobs = dict(self.knobs or {})
        if self.settings.daemon.backoff_cap is not None:
            knobs.setdefault("backoff_cap", self.settings.daemon.backoff_cap)
        server = self._start_metrics(rt.db)  # first: a refused or busy address stops the start cleanly
        self.jobs = SourceScheduler(rt, metrics=self.metrics, knobs=knobs, rng=self.rng)
        self.jobs.on_poll = lambda _o: self._refresh_snapshot(after_poll=True)
        self.jobs.start(self.settings.source_specs())
        self._relay = RelayRunner(rt.db, self.settings, self.metrics)
        self._relay.start()
        if self.settings.daemon.watch_files:
            self._watcher = FileWatcher(self._on_files)
            self._watcher.start(self.settings)
        watchdog = asyncio.create_task(clock_watchdog(self._on_tick, self.tick), name="storywatch-clock")
        self.loop_lag.start()
        self.state = "running"
        self._refresh_snapshot()
        try:
            await self._stopping.wait()
        finally:
            try:
                await self._shutdown(rt, watchdog, server)
            finally:
                if self.handle_signals:
                    remove_signals(loop)

    async def _shutdown(self, rt: Runtime, watchdog: asyncio.Task[None], server: WebServer | None) -> None:
        assert self.jobs is not None and self._relay is not None
        loop = asyncio.get_running_loop()
        budget = self.settings.daemon.shutdown_deadline
        deadline = loop.time() + budget
        self.state = "stopping"
        self.jobs.scheduler.pause()
        watchdog.cancel()
        await self.loop_lag.stop()
        if self._watcher is not None:
            await self._watcher.stop()
        running = set(self.jobs.inflight)
        log.info("stopping: %d poll(s) running, waiting up to %.0f s", len(running), budget)
        reserve = min(5.0, budget / 4)  # kept for the final outbox flush
        await wait_tasks(running | set(self._tasks), deadline - loop.time() - reserve, self._hurry)
        await self._relay.stop(min(2.0, deadline - loop.time()))
        await self._relay.flush(deadline - loop.time())
        self.jobs.scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # AsyncIOScheduler.shutdown runs on the next loop iteration
        if server is not None:
            await asyncio.to_thread(server.stop)
        for fetcher in self._fetchers:
            await fetcher.aclose()
        self.state = "stopped"
        self._refresh_snapshot()
        log.info("stopped cleanly after %d poll(s)", self.jobs.polls)

    # --- reload -----------------------------------------------------------------------------

    async def _on_files(self, paths: list[str]) -> None:
        await self.reload("changed: " + ", ".join(paths))

    async def reload(self, reason: str = "SIGHUP") -> bool:
        """Load and validate the config and rules; apply them, or keep the last good ones."""
        async with self._reload_lock:
            if self.state != "running" or self.jobs is None:
                return False
            try:
                settings, rules = load_config(self.config_path)
                self.jobs.check_bounds(settings.source_specs())
                changed = fetch_settings(settings) != fetch_settings(self.settings)
                fetcher = Fetcher(fetch_settings(settings)) if changed else None
            except StorywatchError as exc:
                log.error(
                    "reload (%s) failed; the last good configuration keeps running: %s",
                    reason,
                    exc,
                    extra={"file": getattr(exc, "file", None)},
                )
                return False
            try:
                await self._apply(self.jobs.rt, settings, rules, fetcher)
                diff = self.jobs.apply_sources(settings.source_specs())
            except (StorywatchError, SQLAlchemyError) as exc:
                log.error("reload (%s) was not applied completely: %s", reason, exc)
                return False
            self.reloads += 1
            log.info(
                "reloaded (%s): %d source(s); +%d -%d ~%d",
                reason,
                len(self.jobs.specs),
                len(diff.added),
                len(diff.removed),
                len(diff.changed) + len(diff.moved),
            )
            self._refresh_snapshot()
            return True

    async def _apply(self, rt: Runtime, settings: Settings, rules: Any, fetcher: Fetcher | None) -> None:
        old = self.settings
        if settings.database_url != old.database_url:
            log.warning(
                "the database setting changed: restart the daemon to use it (still using the old one)"
            )
        if (
            settings.daemon.http != old.daemon.http
            or settings.daemon.misfire_grace != old.daemon.misfire_grace
        ):
            log.warning("daemon.http and daemon.misfire_grace take effect at the next restart")
        rt.settings, rt.rules = settings, rules
        if rt.offload is not None:
            rt.offload.budget = settings.fetch.cpu_budget
            # no await since the swap above: every write submitted from now on runs the new rules in
            # the writer process, every one submitted before runs the old ones
            rt.offload.serve_writer(settings, rules)
        self.settings = settings
        if self.manage_logging and settings.daemon != old.daemon:
            setup_logging(settings.daemon)
        if fetcher is not None:
            self._swap_fetcher(rt, fetcher)
        if settings.alerts != old.alerts and self._relay is not None:
            await self._relay.stop(5.0)
            self._relay = RelayRunner(rt.db, settings, self.metrics)
            self._relay.start()
        if self._watcher is not None:
            self._watcher.retarget(settings)

    def _swap_fetcher(self, rt: Runtime, fetcher: Fetcher) -> None:
        """New fetch settings: new polls use the new Fetcher; the old one closes after running polls."""
        old, rt.fetcher = rt.fetcher, fetcher
        self._fetchers.append(fetcher)
        running = set(self.jobs.inflight) if self.jobs else set()

        async def retire() -> None:
            if running:
                await asyncio.wait(running)
            await old.aclose()

        self._spawn(retire())

    # --- clock, heartbeat, health endpoint -------------------------------------------------------

    def _on_tick(self, paused: float) -> None:
        assert self.jobs is not None and self.instance is not None and self._db is not None
        if paused > PAUSE_NOTICE:
            log.info("resumed after a pause of %.0f s: each overdue source is polled once", paused)
        self.jobs.scheduler.wakeup()
        lag = self.loop_lag.summary()
        self.metrics.loop_lag_p99.set(lag.p99)
        self._spawn(self._heartbeat(self._db, self.instance.id, lag.p99, lag.max))
        self._refresh_snapshot()

    async def _heartbeat(self, db: Database, instance_id: str, p99: float, worst: float) -> None:
        """In a thread: the write may wait for the writer's transaction; the event loop must not."""
        try:
            await asyncio.to_thread(
                daemon_store.heartbeat, db, instance_id, utcnow(), lag_p99=p99, lag_max=worst
            )
        except (SQLAlchemyError, StorageError) as exc:
            log.warning("heartbeat not recorded: %s", exc)

    def _start_metrics(self, db: Database) -> WebServer | None:
        """``daemon.http``: the web dashboard and API, with this daemon's /healthz and /metrics."""
        listen = self.settings.daemon.http
        if not listen:
            return None

        def metrics() -> bytes:
            with contextlib.suppress(SQLAlchemyError):
                self.metrics.set_deliveries(daemon_store.delivery_counts(db))
            return self.metrics.render()

        sock = web.bind(listen, has_token=self.settings.web.token is not None, key="daemon.http")
        app = web.create_app(
            self.settings, db, health=lambda: self._snapshot, metrics=metrics, current=lambda: self.settings
        )
        server = web.WebServer(app, sock).start()
        log.info("serving the dashboard, /api/v1/, /healthz and /metrics on http://%s", server.address)
        self.metrics_address = server.address
        return server

    def _refresh_snapshot(self, *, after_poll: bool = False) -> None:
        """The /healthz document, rebuilt in the loop (the HTTP thread only reads it). After a poll, at
        most every ``SNAPSHOT_EVERY`` seconds: it counts every source's health and sorts the loop-lag
        window, so once per poll cost O(sources) per poll when thousands are due at once."""
        now = time.monotonic()
        if after_poll and now - self._snapshot_at < SNAPSHOT_EVERY:
            return
        self._snapshot_at = now
        inst, jobs = self.instance, self.jobs
        self._snapshot = {
            "status": self.state,
            "pid": inst.pid if inst else None,
            "host": inst.host if inst else None,
            "started": inst.started.isoformat() if inst else None,
            "checked": utcnow().isoformat(),
            "config": self.config_path,
            "sources": len(jobs.specs) if jobs else 0,
            "health": jobs.health_counts() if jobs else {},
            "polls": jobs.polls if jobs else 0,
            "running_polls": len(jobs.inflight) if jobs else 0,
            "reloads": self.reloads,
            "relay": bool(self._relay and self._relay.relay is not None),
            "event_loop_lag": self.loop_lag.summary().as_json(),
            "writer": _writer_state(jobs.rt if jobs else None),
        }

    def health(self) -> dict[str, Any]:
        return dict(self._snapshot)

    @property
    def started(self) -> datetime | None:
        return self.instance.started if self.instance else None


def _writer_state(rt: Runtime | None) -> dict[str, Any]:
    """Who writes the documents: the writer process (its pid) and the writes each writer took so far
    (``thread``: before the process started, or after it died)."""
    offload = rt.offload if rt else None
    if offload is None:
        return {"pid": None, "writes": {}}
    return {"pid": offload.writer_pid if offload.writer_running else None, "writes": dict(offload.writes)}


__all__ = ["Daemon"]
