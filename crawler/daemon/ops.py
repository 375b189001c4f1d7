"""What runs beside the daemon's jobs: the outbox relay, the config/rule watcher, the clock
watchdog and heartbeat, signal handlers, and the `storywatch status` report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.config import Settings, load_settings
from crawler.daemon.logs import LOGGER
from crawler.daemon.metrics import Metrics
from crawler.pipeline import load_ruleset, rule_files, utcnow
from storage import daemon_store, outbox_admin
from storage import sources as store_sources
from storage.db import Database, open_database

if TYPE_CHECKING:
    from rules.engine import RuleSet

log = logging.getLogger(f"{LOGGER}.daemon")

TICK = 10.0  # seconds between heartbeats and clock checks
WATCH_DEBOUNCE_MS = 400


# ----------------------------------------------------------------------------- reloading


def load_config(path: str | None) -> tuple[Settings, RuleSet]:
    """Load and validate the config and its rules; raises ConfigError / RuleError (file:line)."""
    settings = load_settings(path)
    return settings, load_ruleset(settings)


def watch_targets(settings: Settings) -> tuple[set[Path], set[Path]]:
    """(files, directories) whose changes mean "reload": the config file, rule files and rule dirs."""
    files = {Path(settings.path).resolve()} if settings.path else set()
    dirs: set[Path] = set()
    for p in settings.rule_paths():
        (dirs if p.is_dir() else files).add(p.resolve())
    files.update(f.resolve() for f in rule_files([d for d in dirs]))
    return files, dirs


class FileWatcher:
    """Calls ``on_change`` when the config file or a rule file changes (watchfiles, debounced)."""

    def __init__(self, on_change: Callable[[list[str]], Awaitable[None]]) -> None:
        self.on_change = on_change
        self._files: set[Path] = set()
        self._dirs: set[Path] = set()
        self._restart = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, settings: Settings) -> None:
        self.retarget(settings)
        self._task = asyncio.create_task(self._run(), name="storywatch-watch")

    def retarget(self, settings: Settings) -> None:
        files, dirs = watch_targets(settings)
        if (files, dirs) != (self._files, self._dirs):
            self._files, self._dirs = files, dirs
            self._restart.set()

    def _wanted(self, path: str) -> bool:
        p = Path(path)
        return p in self._files or (p.parent in self._dirs and p.suffix in (".yaml", ".yml"))

    async def _run(self) -> None:
        try:
            await self._watch()
        except (OSError, RuntimeError) as exc:  # e.g. a watched directory was removed
            log.warning("file watching stopped (%s); SIGHUP still reloads", exc)

    async def _watch(self) -> None:
        from watchfiles import awatch

        while True:
            self._restart = asyncio.Event()
            roots = sorted({str(f.parent) for f in self._files} | {str(d) for d in self._dirs})
            roots = [r for r in roots if Path(r).is_dir()]
            if not roots:
                await self._restart.wait()
                continue
            async for changes in awatch(
                *roots,
                watch_filter=lambda _c, p: self._wanted(p),
                stop_event=self._restart,
                debounce=WATCH_DEBOUNCE_MS,
                recursive=False,
            ):
                await self.on_change(sorted({p for _, p in changes}))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# ----------------------------------------------------------------------------- the relay


class RelayRunner:
    """Runs ``Relay.run_forever`` beside the jobs; flushes due deliveries once at shutdown."""

    def __init__(self, db: Database, settings: Settings, metrics: Metrics) -> None:
        from crawler.alerts.relay import Relay

        self.metrics = metrics
        self.relay: Any = Relay.from_settings(db, settings, on_report=metrics.record_delivery)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="storywatch-relay")

    async def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                await self.relay.run_forever(self._stop)
            except Exception:  # the relay's boundary: a crash is logged and the relay restarted
                log.exception("the alert relay stopped with an error; restarting it in 5 s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 5.0)

    async def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), max(timeout, 0.1))
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def flush(self, timeout: float) -> None:
        """One last pass over every due delivery (bounded by ``timeout``)."""
        if timeout <= 0:
            return
        try:
            report = await asyncio.wait_for(self.relay.run_once(utcnow()), timeout)
        except TimeoutError:
            log.warning(
                "the final outbox flush did not finish within %.1f s; the rest waits for the next start",
                timeout,
            )
            return
        self.metrics.record_delivery(report)


# ----------------------------------------------------------------------------- clock and signals


async def clock_watchdog(on_tick: Callable[[float], None], tick: float = TICK) -> None:
    """Every ``tick`` seconds: ``on_tick(paused_seconds)``.

    ``paused_seconds`` is how much longer than ``tick`` the last sleep took, by the wall clock
    (a suspended laptop: the monotonic clock stops) or the monotonic one (a stopped process, a
    blocked loop). The caller wakes the scheduler, so overdue sources are polled within a tick.
    """
    wall, mono = time.time(), time.monotonic()
    while True:
        await asyncio.sleep(tick)
        now_wall, now_mono = time.time(), time.monotonic()
        paused = max(now_wall - wall, now_mono - mono) - tick
        wall, mono = now_wall, now_mono
        on_tick(max(paused, 0.0))


def install_signals(
    loop: asyncio.AbstractEventLoop, *, stop: Callable[[], None], reload: Callable[[], None]
) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, reload)


def remove_signals(loop: asyncio.AbstractEventLoop) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(sig)


async def wait_tasks(tasks: Iterable[asyncio.Task[Any]], timeout: float, hurry: asyncio.Event) -> None:
    """Wait for ``tasks`` until ``timeout`` or ``hurry``; then cancel what is left (briefly awaited)."""
    pending = {t for t in tasks if not t.done()}
    if pending and timeout > 0:
        hurry_task = asyncio.create_task(hurry.wait())
        deadline = asyncio.get_running_loop().time() + timeout
        while pending and not hurry.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            _, pending = await asyncio.wait(
                pending | {hurry_task}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(hurry_task)
        hurry_task.cancel()
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=2.0)


# ----------------------------------------------------------------------------- status


@dataclass(frozen=True)
class StatusReport:
    """`storywatch status`: the daemon, the outbox and every configured source."""

    daemon: daemon_store.DaemonStatus
    outbox_depth: int
    sources: tuple[store_sources.SourceStatus, ...]
    database: str

    def as_json(self) -> dict[str, Any]:
        return {
            "daemon": self.daemon.as_json(),
            "outbox_depth": self.outbox_depth,
            "database": self.database,
            "sources": [s.as_json() for s in self.sources],
        }


def collect_status(settings: Settings, *, now: datetime | None = None) -> StatusReport:
    from sqlalchemy.engine import make_url

    now = now or utcnow()
    db = open_database(settings.database_url)
    try:
        rows = store_sources.list_sources(db, settings.source_specs(), now=now)
        return StatusReport(
            daemon=daemon_store.daemon_status(db, now=now, stale_after=3 * TICK),
            outbox_depth=outbox_admin.outbox_depth(db).pending,
            sources=tuple(rows),
            database=make_url(settings.database_url).render_as_string(hide_password=True),
        )
    finally:
        db.dispose()


def ask_reload(settings: Settings, *, now: datetime | None = None) -> int | None:
    """Send SIGHUP to the daemon running on ``settings``' database on this host; its pid, or None.

    For `storywatch sources add/remove/import`: with ``daemon.watch_files`` on, the daemon sees
    the edited file by itself; with it off, this is how it learns. Nothing is created: a SQLite
    database that does not exist yet has no daemon.
    """
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return None
    db = open_database(settings.database_url)
    try:
        info = daemon_store.daemon_status(db, now=now or utcnow(), stale_after=3 * TICK)
    finally:
        db.dispose()
    if not info.running or info.pid is None or info.host != socket.gethostname():
        return None
    try:
        os.kill(info.pid, signal.SIGHUP)
    except OSError:  # gone meanwhile, or not ours to signal
        return None
    return info.pid
