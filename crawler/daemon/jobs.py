"""The daemon's jobs: one APScheduler job per source, and what a finished poll changes.

``SourceScheduler`` owns an ``AsyncIOScheduler`` with its own in-memory job store (never shared
with another scheduler). Each job is ``run_source`` -> :func:`poll_outcome` ->
``schedule.next_timing`` -> the job moved to the policy's ``next_due`` -> the fetch record and the
timing saved by the database writer. Polls that start together read their sources' states in one
query, and polls that end while a save runs share the next one (as `storywatch once` batches them).
``coalesce``, ``max_instances=1`` and ``misfire_grace_time`` make a paused process or a sleeping
laptop run each overdue source once; a run later than the grace is re-planned within a short
spread window instead of being dropped. A health change is logged once and, when a human should
hear about it, queued as ONE outbox notice for ``alerts.health_channel``.

The pure adapters between the pipeline and the schedule policy live here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from crawler.daemon.logs import LOGGER, source_extra
from crawler.daemon.metrics import Metrics
from crawler.daemon.schedule import (
    Bounds,
    HealthChange,
    PollOutcome,
    ScheduleStateError,
    SourceTiming,
    next_timing,
    spread_start,
)
from crawler.errors import ConfigError
from crawler.pipeline import GroupWriter, Runtime, SourceOutcome, run_source, storage_write
from crawler.types import SourceSpec
from storage import daemon_store
from storage import sources as store_sources

log = logging.getLogger(f"{LOGGER}.daemon")

STARTUP_SPREAD = 60.0  # new and overdue sources start within this many seconds (or one interval)
STATE_GROUP = 500  # sources' states read in one query, at most
SAVE_GROUP = 256  # polls' records and timings saved in one transaction, at most
_Saved = tuple[list[store_sources.FetchRecord], store_sources.TimingSave | None]


# ----------------------------------------------------------------------------- pure adapters


def poll_outcome(outcome: SourceOutcome) -> PollOutcome:
    """The pipeline's SourceOutcome as the schedule policy's PollOutcome."""
    res = outcome.result
    status = {"ok": "ok", "not-modified": "not_modified", "skipped": "not_modified"}.get(res.status, "error")
    return PollOutcome(
        status=status,  # type: ignore[arg-type]
        new_items=max(res.new_documents, len(outcome.item_times)),
        item_times=outcome.item_times,
        retry_after=outcome.retry_after,
        max_age=outcome.cache_max_age,
        feed_ttl=outcome.hints.ttl_seconds,
        update_period=outcome.hints.update_period_seconds,
        error=res.error,
        error_kind=outcome.error_kind if status == "error" else None,
    )


def spread_window(bounds: Iterable[Bounds], spread: float = STARTUP_SPREAD) -> float:
    """How long a batch of new or overdue sources is spread over: one nominal interval, <= ``spread``."""
    return min([b.nominal for b in bounds] + [spread])


def plan_start(
    specs: Sequence[SourceSpec],
    bounds: Mapping[str, Bounds],
    stored: Mapping[str, Mapping[str, Any]],
    now: datetime,
    rng: random.Random,
    spread: float = STARTUP_SPREAD,
) -> tuple[dict[str, SourceTiming], list[tuple[str, str]]]:
    """First timings: stored ones resume, new and overdue ones are spread; unreadable ones reset.

    Returns the timings and (source id, problem) pairs for timings that had to be reset.
    """
    resumed: dict[str, SourceTiming] = {}
    problems: list[tuple[str, str]] = []
    for spec in specs:
        raw = stored.get(spec.id)
        if not raw:
            continue
        try:
            resumed[spec.id] = replace(SourceTiming.from_dict(raw), source_id=spec.id)
        except ScheduleStateError as exc:
            problems.append((spec.id, str(exc)))
    waiting = [s.id for s in specs if s.id not in resumed or resumed[s.id].next_due <= now]
    slots = spread_start(waiting, spread_window((bounds[s.id] for s in specs), spread), now, rng)
    out: dict[str, SourceTiming] = {}
    for spec in specs:
        b = bounds[spec.id]
        if spec.id in resumed:
            t = resumed[spec.id]
            latest = now + timedelta(seconds=b.cap)  # a shrunk max_interval applies at once
            out[spec.id] = replace(t, next_due=slots.get(spec.id, min(t.next_due, latest)))
        else:
            out[spec.id] = SourceTiming.initial(spec.id, b, now, slots[spec.id])
    return out, problems


def health_notice(change: HealthChange, spec: SourceSpec | None, timing: SourceTiming) -> tuple[str, str]:
    """The title and text of a health-change notice."""
    if change.new == "ok":
        title = f"storywatch: source {change.source_id} recovered ({change.old} -> ok)"
    else:
        title = f"storywatch: source {change.source_id} is {change.new} (was {change.old})"
    lines = [change.reason]
    if spec is not None:
        lines.append(f"URL: {spec.url}")
    lines.append(f"Next poll: {timing.next_due:%Y-%m-%d %H:%M:%S} UTC")
    return title, "\n".join(lines)


@dataclass(frozen=True)
class SourceDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]  # settings changed, timing kept
    moved: tuple[str, ...]  # URL or kind changed: timing reset

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.moved)


def diff_sources(old: Mapping[str, SourceSpec], new: Mapping[str, SourceSpec]) -> SourceDiff:
    common = [sid for sid in new if sid in old and new[sid] != old[sid]]
    moved = tuple(s for s in common if (old[s].url, old[s].kind) != (new[s].url, new[s].kind))
    return SourceDiff(
        added=tuple(s for s in new if s not in old),
        removed=tuple(s for s in old if s not in new),
        changed=tuple(s for s in common if s not in moved),
        moved=moved,
    )


# ----------------------------------------------------------------------------- the scheduler


class SourceScheduler:
    """The per-source jobs and their timings: what runs when, and what a finished poll changes."""

    def __init__(
        self,
        rt: Runtime,
        *,
        metrics: Metrics,
        knobs: Mapping[str, Any] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.rt = rt
        self.metrics = metrics
        self.knobs = dict(knobs or {})
        self.rng = rng or random.Random()
        self.specs: dict[str, SourceSpec] = {}
        self.bounds: dict[str, Bounds] = {}
        self.timings: dict[str, SourceTiming] = {}
        self.inflight: set[asyncio.Task[Any]] = set()
        self.polls = 0
        self.on_poll: Callable[[SourceOutcome], None] | None = None
        self._states = GroupWriter(self._read_states, max_size=STATE_GROUP)
        self._saves = GroupWriter(self._write_saves, max_size=SAVE_GROUP)
        grace = rt.settings.daemon.misfire_grace
        self.scheduler = AsyncIOScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, round(grace))},
        )
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self.scheduler.add_listener(self._on_busy, EVENT_JOB_MAX_INSTANCES)

    # --- set-up -----------------------------------------------------------------------


    @property
    def _spread(self) -> float:
        return self.rt.settings.daemon.startup_spread
    def bounds_for(self, spec: SourceSpec) -> Bounds:
        """The policy's bounds for ``spec``; ConfigError naming the source when they make no sense."""
        try:
            return Bounds.from_spec(spec, **self.knobs)
        except ConfigError as exc:
            raise ConfigError(f"source {spec.id!r}: {exc}", key=f"sources.{spec.id}") from exc

    def check_bounds(self, specs: Sequence[SourceSpec]) -> None:
        for spec in specs:
            self.bounds_for(spec)

    def start(self, specs: Sequence[SourceSpec]) -> None:
        """Sync the sources table, plan the first polls and start the scheduler."""
        store_sources.sync_sources(self.rt.db, specs)
        now = self.rt.clock()
        self.specs = {s.id: s for s in specs}
        self.bounds = {s.id: self.bounds_for(s) for s in specs}
        stored = store_sources.load_timings(self.rt.db)
        self.timings, problems = plan_start(specs, self.bounds, stored, now, self.rng, self._spread)
        for sid, problem in problems:
            log.warning("stored schedule unreadable, starting afresh: %s", problem, extra=source_extra(sid))
        for sid, timing in self.timings.items():
            self.metrics.set_health(sid, timing.health)
            self._add_job(sid, timing.next_due)
        self.scheduler.start()
        log.info(
            "scheduling %d source(s); first polls within %.3g s",
            len(specs),
            spread_window(self.bounds.values()) if specs else 0,
        )

    def _add_job(self, sid: str, due: datetime) -> None:
        cap = self.bounds[sid].cap  # fallback cadence only: every run moves the job to next_due
        self.scheduler.add_job(
            self._job,
            IntervalTrigger(seconds=cap, jitter=cap * 0.1, timezone="UTC"),
            args=[sid],
            id=sid,
            name=sid,
            next_run_time=due,
            replace_existing=True,
        )

    def reschedule(self, sid: str, due: datetime) -> None:
        with contextlib.suppress(JobLookupError):  # removed by a reload while it ran
            self.scheduler.modify_job(sid, next_run_time=due)

    # --- reload -------------------------------------------------------------------------

    def apply_sources(self, specs: Sequence[SourceSpec]) -> SourceDiff:
        """Add, remove and update jobs for a new source list (running polls finish as they are)."""
        new = {s.id: s for s in specs}
        diff = diff_sources(self.specs, new)
        if diff.empty:
            return diff
        store_sources.sync_sources(self.rt.db, specs)
        now = self.rt.clock()
        for sid in diff.removed:
            self.specs.pop(sid, None)
            self.bounds.pop(sid, None)
            self.timings.pop(sid, None)
            self.reschedule_removed(sid)
        for sid in (*diff.changed, *diff.moved):
            self.specs[sid], self.bounds[sid] = new[sid], self.bounds_for(new[sid])
        fresh = [s for s in specs if s.id in diff.added or s.id in diff.moved]
        self._start_fresh(fresh, now)
        for sid in diff.changed:
            latest = now + timedelta(seconds=self.bounds[sid].cap)
            if self.timings[sid].next_due > latest:
                self.timings[sid] = replace(self.timings[sid], next_due=latest)
                self.reschedule(sid, latest)
        return diff

    def _start_fresh(self, specs: Sequence[SourceSpec], now: datetime) -> None:
        for spec in specs:
            self.specs[spec.id], self.bounds[spec.id] = spec, self.bounds_for(spec)
        stored = {
            k: v
            for k, v in store_sources.load_timings(self.rt.db).items()
            if k in {s.id for s in specs} and self.timings.get(k) is None
        }
        timings, problems = plan_start(specs, self.bounds, stored, now, self.rng, self._spread)
        for sid, problem in problems:
            log.warning("stored schedule unreadable, starting afresh: %s", problem, extra=source_extra(sid))
        for sid, timing in timings.items():
            old = self.timings.get(sid)
            if old is not None:  # URL or kind changed: keep the health, poll the new URL soon
                timing = replace(
                    timing,
                    health=old.health,
                    error_streak=old.error_streak,
                    error_since=old.error_since,
                    last_error=old.last_error,
                )
            self.timings[sid] = timing
            self.metrics.set_health(sid, timing.health)
            self._add_job(sid, timing.next_due)

    def reschedule_removed(self, sid: str) -> None:
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(sid)

    # --- a poll ---------------------------------------------------------------------------

    async def _job(self, sid: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        try:
            await self.poll(sid)
        except asyncio.CancelledError:
            log.info("poll cancelled by shutdown (nothing of it was stored)", extra=source_extra(sid))
        finally:
            self.inflight.discard(task)

    async def poll(self, sid: str) -> None:
        spec = self.specs.get(sid)
        if spec is None:
            return
        records: list[store_sources.FetchRecord] = []
        try:
            state = await self._states.submit(sid)
            outcome = await run_source(self.rt, spec, state=state, record=records.append)
            self.polls += 1
            await self._after_poll(spec, outcome, records)
        except Exception:  # per-source boundary for what run_source cannot record (database down...)
            log.exception("could not record the poll; retrying soon", extra=source_extra(sid))
            self._retry_soon(sid)
            return
        if self.on_poll is not None:
            self.on_poll(outcome)

    def _retry_soon(self, sid: str) -> None:
        bounds = self.bounds.get(sid)
        if bounds is not None:
            self.reschedule(sid, self.rt.clock() + timedelta(seconds=bounds.min_interval))

    async def _after_poll(
        self, spec: SourceSpec, outcome: SourceOutcome, records: list[store_sources.FetchRecord]
    ) -> None:
        """The next timing, metrics, logs, the job moved to its next due time, then the poll's fetch
        record and timing saved (``_save``) and a health notice."""
        sid = spec.id
        current, timing, bounds = self.specs.get(sid), self.timings.get(sid), self.bounds.get(sid)
        if current is None or timing is None or bounds is None:
            await self._save(records, None)
            return  # removed by a reload while it ran
        if (current.url, current.kind) != (spec.url, spec.kind):
            await self._save(records, None)
            return  # moved by a reload while it ran: the new URL's plan stands
        now = self.rt.clock()
        new, change = next_timing(timing, poll_outcome(outcome), bounds, now, self.rng)
        self.timings[sid] = new  # what this process knows first, then what the database keeps
        self.metrics.record_poll(outcome)
        self.metrics.set_health(sid, new.health)
        _log_poll(outcome, new)
        self.reschedule(sid, new.next_due)
        saved = store_sources.TimingSave(sid, new.to_dict(), new.health, new.next_due, new.interval)
        await self._save(records, saved)
        if change is not None:
            await self._announce(change, spec, new)

    async def _save(
        self, records: list[store_sources.FetchRecord], timing: store_sources.TimingSave | None
    ) -> None:
        """Write a poll's fetch record (after its documents) and its new timing, by the writer (never on
        the event loop); polls that end while a save runs share the next one (one transaction)."""
        await self._saves.submit((records, timing))

    async def _write_saves(self, items: list[_Saved]) -> list[None]:
        records, timings = [r for rs, _ in items for r in rs], [t for _, t in items if t is not None]
        if self.rt.offload is None:
            await asyncio.to_thread(store_sources.record_polls, self.rt.db, records, timings)
        else:
            await self.rt.offload.write(storage_write(self.rt, store_sources.record_polls, records, timings))
        return [None] * len(items)

    async def _read_states(self, ids: list[str]) -> list[store_sources.SourceState]:
        """The stored states of the sources about to be polled (validators, body hash, last snapshot):
        in a thread, one query for the polls that start together (a start or a resume polls many)."""
        states = await asyncio.to_thread(store_sources.source_states, self.rt.db, ids)
        return [states[sid] for sid in ids]

    async def _announce(self, change: HealthChange, spec: SourceSpec, timing: SourceTiming) -> None:
        """Log the change once; queue one notice when a human should hear about it."""
        level = logging.INFO if change.new in ("ok", "new") else logging.WARNING
        extra = source_extra(change.source_id, health=change.new, old_health=change.old)
        log.log(level, "health %s -> %s: %s", change.old, change.new, change.reason, extra=extra)
        alerts = self.rt.settings.alerts
        if not (change.notify and alerts.health_channel):
            return
        key = daemon_store.notice_key(change.source_id, change.new, change.at)
        title, text = health_notice(change, spec, timing)
        enqueue = functools.partial(
            daemon_store.enqueue_notice, self.rt.db, key=key, title=title, text=text, alerts_cfg=alerts
        )
        queued = await asyncio.to_thread(enqueue, now=change.at)
        if queued:
            self.metrics.notices.labels(change.source_id).inc()

    def _on_missed(self, event: JobExecutionEvent) -> None:
        """A run later than misfire_grace (paused process, sleeping laptop): poll once, soon."""
        sid = event.job_id
        if sid not in self.bounds:
            return
        now = self.rt.clock()
        late = (now - event.scheduled_run_time).total_seconds()
        due = now + timedelta(seconds=self.rng.uniform(0, spread_window(self.bounds.values(), self._spread)))
        log.info(
            "missed its poll by %.0f s (process paused or asleep?): one poll soon, no catch-up burst",
            late,
            extra=source_extra(sid, next_due=due.isoformat(timespec="seconds")),
        )
        self.timings[sid] = replace(self.timings[sid], next_due=due)
        self.reschedule(sid, due)

    def _on_busy(self, event: JobSubmissionEvent) -> None:
        """Due while its previous poll still runs (a reload re-planned it): try again shortly."""
        self._retry_soon(event.job_id)

    # --- state ------------------------------------------------------------------------------

    def health_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in list(self.timings.values()):
            counts[t.health] = counts.get(t.health, 0) + 1
        return counts


def _log_poll(outcome: SourceOutcome, timing: SourceTiming) -> None:
    res = outcome.result
    extra = source_extra(
        res.source_id,
        next_due=timing.next_due.isoformat(timespec="seconds"),
        interval=round(timing.interval, 1),
    )
    if res.status == "error":
        log.debug("poll failed: %s", res.error, extra={**extra, "error_kind": outcome.error_kind})
    elif res.new_documents or res.new_alerts:
        log.info(
            "%d new document(s), %d new alert(s)",
            res.new_documents,
            res.new_alerts,
            extra={**extra, "new_documents": res.new_documents, "new_alerts": res.new_alerts},
        )
    else:
        log.debug("polled: %s", res.status, extra=extra)
    for warning in res.warnings[:5]:
        log.debug("warning: %s", warning, extra=extra)


__all__ = [
    "SourceDiff",
    "SourceScheduler",
    "diff_sources",
    "health_notice",
    "plan_start",
    "poll_outcome",
    "spread_window",
]
