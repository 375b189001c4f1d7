"""The scheduler role (`storywatch scheduler`, or `storywatch run --role scheduler`).

Its life, step by step:

1. Standby: wait for the leader lock (the embedded daemon's instance lock: one scheduler, or one
   embedded daemon, per database). A standby does not exit: it tries again every few seconds and
   takes over when the leader's session ends (stop, crash, kill -9, a dead machine: the lock's
   session has TCP keepalives on both ends).
2. Leader: migrate, register the instance row, publish the config version (workers reload the same
   rule set), sync the configured sources and give new ones a first due time spread over a short
   window.
3. Every ``scale.tick``: claim due sources (``storage.dispatch.claim_due``: FOR UPDATE SKIP
   LOCKED, a lease and the next generation each) and enqueue ``poll(source, generation)``. A lost
   message only delays its source until the lease expires. Heartbeat every 10 s; a lost lock
   session sends it back to standby.
4. SIGHUP, or a changed config or rule file (``daemon.watch_files``): reload the config and rules,
   publish the new version (the workers reload it), sync and plan the sources. A broken file is
   logged and the last good version keeps running.
5. SIGTERM/SIGINT: stop dispatching, release the lock (a standby takes over), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from crawler.config import Settings
from crawler.daemon.jobs import spread_window
from crawler.daemon.metrics import Metrics
from crawler.daemon.ops import TICK, FileWatcher, install_signals, load_config, remove_signals
from crawler.daemon.schedule import Bounds, spread_start
from crawler.errors import StorageError, StorywatchError
from crawler.pipeline import load_ruleset, rule_files, utcnow
from crawler.scale.broker import config_digest, make_broker, poll_message, redis_client, require_scale
from crawler.scale.stats import ScaleGauges, scale_status
from storage import daemon_store, dispatch
from storage import sources as store_sources
from storage.db import Database, open_database

log = logging.getLogger("storywatch.scheduler")
STANDBY_RETRY = 2.0  # seconds between a standby's tries for the lock


class Scheduler:
    """``asyncio.run(Scheduler(settings).run())``; ``broker`` may be a StubBroker in tests."""

    def __init__(
        self,
        settings: Settings,
        *,
        broker: Any = None,
        handle_signals: bool = True,
        rng: random.Random | None = None,
        standby_retry: float = STANDBY_RETRY,
    ) -> None:
        self.url = require_scale(settings)
        self.settings = settings
        self.broker = broker
        self.handle_signals = handle_signals
        self.rng = rng or random.Random()
        self.standby_retry = standby_retry
        self.metrics = Metrics()
        self.gauges = ScaleGauges(self.metrics.registry)
        self.state = "standby"
        self.dispatched = 0
        self._stopping = asyncio.Event()
        self._db: Database | None = None
        self.metrics_address: str | None = None

    def request_stop(self) -> None:
        self._stopping.set()

    def request_reload(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            install_signals(loop, stop=self.request_stop, reload=self.request_reload)
        self.broker = self.broker or make_broker(self.url)
        watcher = None
        if self.settings.daemon.watch_files:

            async def changed(paths: list[str]) -> None:
                log.info("changed: %s", ", ".join(paths))
                await self.reload()

            watcher = FileWatcher(changed)
            watcher.start(self.settings)
        try:
            while not self._stopping.is_set():
                await self._term()
        finally:
            if watcher is not None:
                await watcher.stop()
            if self.handle_signals:
                remove_signals(loop)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _term(self) -> None:
        """One term: standby until the lock is ours, then lead until stopped or the lock is lost."""
        instance = daemon_store.Instance.current(utcnow())
        lock_db = Database(self.settings.database_url)
        lock = daemon_store.InstanceLock(lock_db, instance)
        try:
            self.state = "standby"
            announced = False
            while not self._stopping.is_set():
                try:
                    if await asyncio.to_thread(lock.try_acquire):
                        break
                except StorageError as exc:
                    log.warning("standby: cannot reach the database for the leader lock: %s", exc)
                if not announced:
                    log.info("standby: another scheduler holds the leader lock; waiting to take over")
                    announced = True
                await self._wait(self.standby_retry)
            else:
                return
            await self._lead(lock, instance)
        finally:
            lock.release()
            lock_db.dispose()

    async def _lead(self, lock: daemon_store.InstanceLock, instance: daemon_store.Instance) -> None:
        db = self._db = open_database(self.settings.database_url)
        server = None
        try:
            server = self._start_http(db)
            daemon_store.register_instance(db, instance)
            self.state = "leading"
            log.info("scheduler leading (pid %d on %s): dispatching due sources", instance.pid, instance.host)
            self._apply(db, self.settings)
            beat = 0.0
            loop = asyncio.get_running_loop()
            while not self._stopping.is_set():
                if loop.time() - beat >= TICK:
                    beat = loop.time()
                    if not await asyncio.to_thread(lock.alive):
                        log.error("the leader lock's database session was lost: back to standby")
                        return
                    daemon_store.heartbeat(db, instance.id, utcnow())
                try:
                    await asyncio.to_thread(self.dispatch_once, db)
                except (SQLAlchemyError, StorageError) as exc:
                    log.warning("dispatch round failed (retrying): %s", exc)
                await self._wait(self.settings.scale.tick)
        finally:
            if server is not None:
                await asyncio.to_thread(server.stop)
            with contextlib.suppress(SQLAlchemyError, StorageError):
                daemon_store.mark_stopped(db, instance.id, utcnow())
            self.state = "stopped" if self._stopping.is_set() else "standby"
            self._db = None
            db.dispose()

    def _apply(self, db: Database, settings: Settings) -> None:
        """Publish the config version; sync the sources and plan the new ones (spread out)."""
        load_ruleset(settings)  # validated here too: a broken rule file fails the start (exit 2)
        version = dispatch.publish_config(
            db, config_digest(settings, rule_files(settings.rule_paths())), utcnow()
        )
        specs = settings.source_specs()
        store_sources.sync_sources(db, specs)
        now = utcnow()
        bounds = [Bounds.from_spec(s) for s in specs]
        window = spread_window(bounds, settings.daemon.startup_spread) if bounds else 0.0
        due = spread_start([s.id for s in specs], window, now, self.rng)
        planned = dispatch.plan_sources(db, due, [s.id for s in specs])
        log.info(
            "config version %d: %d source(s), %d new planned within %.3g s",
            version,
            len(specs),
            planned,
            window,
        )

    def dispatch_once(self, db: Database) -> int:
        """One round: claim due sources in batches and enqueue their polls. Returns polls enqueued."""
        cfg = self.settings.scale
        total = 0
        while True:
            now = utcnow()
            claimed = dispatch.claim_due(db, now=now, lease=cfg.lease, limit=cfg.batch)
            for d in claimed:
                self.broker.enqueue(poll_message(d.source_id, d.generation))
            total += len(claimed)
            if len(claimed) < cfg.batch:
                break
        self.dispatched += total
        if total:
            log.debug("dispatched %d poll(s)", total)
        return total

    async def reload(self) -> None:
        try:
            settings, _ = load_config(self.settings.path)
            require_scale(settings)
        except StorywatchError as exc:
            log.error("reload failed; the last good configuration keeps running: %s", exc)
            return
        self.settings = settings
        if self._db is not None:
            await asyncio.to_thread(self._apply, self._db, settings)

    def _start_http(self, db: Database) -> Any:
        """``daemon.http`` while leading: the web app with the scheduler's /healthz and /metrics
        (the daemon's metrics plus queue depth, latency, workers and dispatch lag)."""
        listen = self.settings.daemon.http
        if not listen:
            return None
        from redis import RedisError

        from crawler import web

        redis = redis_client(self.url)

        def metrics() -> bytes:
            with contextlib.suppress(SQLAlchemyError, StorageError, RedisError):
                self.gauges.set(scale_status(redis, db, utcnow()))
                self.metrics.set_deliveries(daemon_store.delivery_counts(db))
            return bytes(self.metrics.render())

        def health() -> dict[str, Any]:
            return {"status": self.state, "role": "scheduler", "dispatched": self.dispatched}

        sock = web.bind(listen, has_token=self.settings.web.token is not None, key="daemon.http")
        app = web.create_app(self.settings, db, health=health, metrics=metrics, current=lambda: self.settings)
        server = web.WebServer(app, sock).start()
        self.metrics_address = server.address
        log.info("serving the dashboard, /healthz and /metrics on http://%s", server.address)
        return server


__all__ = ["Scheduler"]
