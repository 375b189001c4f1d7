"""The outbox relay: claim due deliveries, render, send, then mark. Nothing is lost to a crash.

One pass (:meth:`Relay.run_once`), numbered:

1. alerts still being corroborated get a "still developing" ``repeat`` row per channel once the
   channel's ``repeat_interval`` has passed since their last notice (crawler.alerts.repeats);
2. held digest rows whose period is over become ONE digest delivery per channel and period;
3. every enabled channel, concurrently and independently: skip it while it is paused (429) or in
   its quiet hours; lease up to a batch of its due rows; for each, wait for the channel's rate
   limit, render the payload (sandboxed templates), send with the delivery's idempotency key
   and what earlier attempts recorded (``progress``: e.g. email recipients that accepted);
4. success -> ``sent`` (with per-recipient detail); a permanent error or a template error ->
   ``failed`` (never retried, shown by ``alerts show``); a temporary error -> ``pending`` again
   after exponential back-off with jitter, or exactly ``Retry-After`` when the receiver gave one
   (which also pauses the whole channel that long), and ``dead`` once ``max_tries`` is used up;
   a partial delivery (some recipients refused for now) is a temporary error whose progress is
   stored, so the retry goes to the rest only. A temporary error ends that channel's batch (the
   rest is given back untouched); other channels never wait for it and are never re-sent
   because of it.

Kill -9 at any point: before the send the lease expires and the row is sent by the next relay;
between send and mark the row is sent again once (same idempotency key, so receivers can drop
it); after the mark nothing is repeated.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from crawler.alerts import routing
from crawler.alerts.base import Channel, PartialDeliveryError, build_channel, channel_failure, channel_secrets
from crawler.alerts.render import Renderer
from crawler.alerts.views import Attempt, ClaimedDelivery, RelayReport
from crawler.bounds import redact
from crawler.config import AlertsConfig, ChannelConfig, Settings
from crawler.errors import DeliveryError, StorywatchError, TemporaryDeliveryError
from storage import outbox_relay
from storage.db import Database

log = logging.getLogger("storywatch.alerts")
MAX_BATCH = 50
_LOST = "delivery %s to %s: lease lost (expired and claimed by another relay); its outcome there stands"
ClaimHook = Callable[[str, Sequence[ClaimedDelivery]], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Relay:
    """Delivers the outbox. One per process; several may share a PostgreSQL database.

    ``pacer`` replaces this process's per-channel rate limit with a shared one (every relay
    process together keeps ``rate_per_second``). ``channels`` overrides the channel objects built
    from the config (e.g. a console channel
    writing to a buffer); ``on_claim`` is called after each lease with the claimed rows.
    """

    def __init__(
        self,
        db: Database,
        cfg: AlertsConfig,
        *,
        channels: Mapping[str, Channel] | None = None,
        renderer: Renderer | None = None,
        template_dir: Path | None = None,
        worker_id: str | None = None,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        backoff_factor: float | None = None,
        rng: random.Random | None = None,
        on_claim: ClaimHook | None = None,
        on_report: Callable[[RelayReport], None] | None = None,
        pacer: Callable[[str, ChannelConfig], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.on_report = on_report  # called after every pass of run_forever (metrics)
        self.cfg = cfg
        self.renderer = renderer or Renderer(template_dir)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        # alerts.retry_backoff unless given here (tests)
        self.backoff_base = cfg.retry_backoff.first if backoff_base is None else backoff_base
        self.backoff_cap = cfg.retry_backoff.cap if backoff_cap is None else backoff_cap
        self.backoff_factor = cfg.retry_backoff.factor if backoff_factor is None else backoff_factor
        self._rng = rng or random.Random()
        self._given = dict(channels or {})
        self._on_claim = on_claim
        self._paused: dict[str, datetime] = {}
        self._last_send: dict[str, float] = {}
        self._unavailable: dict[str, str] = {}
        self._secrets = {name: channel_secrets(c) for name, c in cfg.channels.items()}
        for values in self._secrets.values():  # log records are scrubbed of them too
            redact.register_values(*values)
        self._pacer = pacer  # shared pacing (several relay processes, crawler.scale); None: this process
        self._pass_start: dict[str, tuple[datetime, float]] = {}  # channel -> (its pass's now, monotonic)

    # ------------------------------------------------------------------ public API

    @classmethod
    def from_settings(cls, db: Database, settings: Settings, **kw: Any) -> Relay:
        """A relay for ``settings``: relative template paths resolve next to the config file."""
        base = Path(settings.path).parent if settings.path else None
        return cls(db, settings.alerts, template_dir=base, **kw)

    async def run_once(self, now: datetime | None = None) -> RelayReport:
        """One pass over the outbox at ``now`` (default: the clock)."""
        now = now or _utcnow()
        channels = self._open()
        try:
            repeats = await asyncio.to_thread(outbox_relay.compose_repeats, self.db, self.cfg, now)
            digests = await asyncio.to_thread(outbox_relay.compose_digests, self.db, self.cfg.channels, now)
            passes = [self._channel_pass(name, ch, now) for name, ch in channels.items()]
            results = await asyncio.gather(*passes)
        finally:
            await self._close(channels)
        attempts = tuple(a for r in results for a in r)
        return self._report(attempts, digests, repeats, now)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: one loop per channel (a slow channel delays only itself)."""
        channels = self._open()
        try:
            loops = [
                self._loop(stop, functools.partial(self._pass_at, n, c, stop)) for n, c in channels.items()
            ]
            loops.append(self._loop(stop, self._compose_pass))
            await asyncio.gather(*loops)
        finally:
            await self._close(channels)

    # ------------------------------------------------------------------ passes

    async def _loop(self, stop: asyncio.Event, step: Callable[[datetime], Awaitable[object]]) -> None:
        while not stop.is_set():
            try:
                result = await step(_utcnow())
                if self.on_report is not None and isinstance(result, list) and result:
                    self.on_report(RelayReport(attempts=tuple(result)))
            except (StorywatchError, SQLAlchemyError) as exc:  # boundary: log, keep the loop alive
                log.error("alert relay pass failed: %s", exc)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.cfg.relay_interval)

    async def _pass_at(
        self, name: str, channel: Channel, stop: asyncio.Event, now: datetime
    ) -> list[Attempt]:
        return await self._channel_pass(name, channel, now, stop)

    async def _compose_pass(self, now: datetime) -> list[Attempt]:
        await asyncio.to_thread(outbox_relay.compose_repeats, self.db, self.cfg, now)
        await asyncio.to_thread(outbox_relay.compose_digests, self.db, self.cfg.channels, now)
        return []

    async def _channel_pass(
        self, name: str, channel: Channel, now: datetime, stop: asyncio.Event | None = None
    ) -> list[Attempt]:
        cfg = self.cfg.channels[name]
        if self._paused.get(name, now) > now or routing.quiet_until(name, cfg, now):
            return []
        self._pass_start[name] = (now, time.monotonic())
        rows = await asyncio.to_thread(
            outbox_relay.claim,
            self.db,
            channel=name,
            now=now,
            lease=self.cfg.lease,
            worker=self.worker_id,
            limit=self._batch(channel, cfg),
        )
        if self._on_claim is not None:
            self._on_claim(name, rows)
        attempts: list[Attempt] = []
        for i, row in enumerate(rows):
            if stop is not None and stop.is_set():
                return attempts + await self._give_back(name, rows[i:], None)
            if channel.rate_limited:
                await self._pace(name, cfg)
            attempt, halt, until = await self._deliver(name, channel, cfg, row, now)
            attempts.append(attempt)
            if halt:
                return attempts + await self._give_back(name, rows[i + 1 :], until)
        return attempts

    async def _give_back(
        self, name: str, rows: Sequence[ClaimedDelivery], until: datetime | None
    ) -> list[Attempt]:
        await asyncio.to_thread(
            outbox_relay.release,
            self.db,
            [r.id for r in rows],
            worker=self.worker_id,
            held_at=self._held_at(name),
            until=until,
        )
        return [Attempt(r.id, name, "released") for r in rows]

    async def _deliver(
        self, name: str, channel: Channel, cfg: ChannelConfig, row: ClaimedDelivery, now: datetime
    ) -> tuple[Attempt, bool, datetime | None]:
        """Send one row; returns (attempt, stop this channel's batch?, paused until)."""
        try:
            msg = self.renderer.render(name, cfg, row.payload, idempotency_key=row.idempotency_key)
            result = await channel.send(msg, idempotency_key=row.idempotency_key, progress=row.detail)
        except Exception as exc:  # the channel's boundary: anything it raises is a failed delivery
            error = channel_failure(name, exc, self._secrets.get(name, ()))
            if isinstance(error, TemporaryDeliveryError):
                return await self._temporary(name, cfg, row, error, now)
            text = self._text(name, error)
            await self._failed(row, text, permanent=True, retry_at=now, cfg=cfg)
            log.warning("delivery %s to %s failed permanently: %s", row.id, name, text)
            return Attempt(row.id, name, "failed", text), False, None
        marked = await asyncio.to_thread(
            outbox_relay.mark_sent,
            self.db,
            row.id,
            worker=self.worker_id,
            held_at=self._held_at(name),
            now=now,
            detail=result.detail,
            warning=result.warning,
        )
        if not marked:
            log.warning(_LOST, row.id, name)
            return (
                Attempt(row.id, name, "lost", "the lease expired before the outcome was recorded"),
                False,
                None,
            )
        if result.warning:
            log.warning("delivery %s to %s partly failed: %s", row.id, name, result.warning)
        else:
            about = f"alert {row.alert_id}" if row.alert_id is not None else "no alert"
            log.info("delivery %s to %s sent (%s, %s, try %s)", row.id, name, row.kind, about, row.tries)
        return Attempt(row.id, name, "partial" if result.partial else "sent", result.warning), False, None

    def _text(self, name: str, error: DeliveryError) -> str:
        """The error's message as stored and logged: scrubbed of the channel's secrets."""
        return redact.scrub(str(error), self._secrets.get(name, ()))

    async def _temporary(
        self, name: str, cfg: ChannelConfig, row: ClaimedDelivery, exc: TemporaryDeliveryError, now: datetime
    ) -> tuple[Attempt, bool, datetime | None]:
        delay = self.backoff(row.tries, exc.retry_after)
        retry_at = now + timedelta(seconds=delay)
        progress = exc.detail if isinstance(exc, PartialDeliveryError) else None
        text = self._text(name, exc)
        state = await self._failed(row, text, permanent=False, retry_at=retry_at, cfg=cfg, progress=progress)
        until = None
        if exc.retry_after is not None:  # the receiver asked us to wait: pause the whole channel
            until = retry_at
            self._paused[name] = until
            await asyncio.to_thread(outbox_relay.pause_channel, self.db, name, until)
        log.info("delivery %s to %s: %s; %s", row.id, name, text, state)
        outcome = {"dead": "dead", outbox_relay.LOST: "lost"}.get(state, "retry")
        return Attempt(row.id, name, outcome, text), True, until  # type: ignore[arg-type]

    async def _failed(
        self,
        row: ClaimedDelivery,
        error: str,
        *,
        permanent: bool,
        retry_at: datetime,
        cfg: ChannelConfig,
        progress: Mapping[str, Any] | None = None,
    ) -> str:
        state: str = await asyncio.to_thread(
            outbox_relay.mark_failed,
            self.db,
            row.id,
            worker=self.worker_id,
            held_at=self._held_at(row.channel),
            error=error,
            permanent=permanent,
            retry_at=retry_at,
            max_tries=cfg.max_tries,
            detail=progress,
        )
        if state == outbox_relay.LOST:
            log.warning(_LOST, row.id, row.channel)
        return state

    # ------------------------------------------------------------------ helpers

    def _held_at(self, name: str) -> datetime:
        """Now on the clock of this channel's pass (its ``now`` plus the time since it started):
        the moment at which an outcome is recorded, checked against the lease."""
        start, started = self._pass_start.get(name, (_utcnow(), time.monotonic()))
        return start + timedelta(seconds=time.monotonic() - started)

    def backoff(self, tries: int, retry_after: float | None) -> float:
        """Seconds before the next try: Retry-After when given, else ``alerts.retry_backoff`` (first,
        first*factor, ... up to cap) with jitter (50-100%)."""
        if retry_after is not None:
            return retry_after
        raw = min(self.backoff_cap, self.backoff_base * self.backoff_factor ** max(0, tries - 1))
        return raw * (0.5 + self._rng.random() / 2)

    def _batch(self, channel: Channel, cfg: ChannelConfig) -> int:
        """Rows per lease: as many as the rate limit lets us send in a quarter of the lease."""
        if not channel.rate_limited:
            return MAX_BATCH
        return max(1, min(MAX_BATCH, int(cfg.rate_per_second * self.cfg.lease / 4)))

    async def _pace(self, name: str, cfg: ChannelConfig) -> None:
        if self._pacer is not None:
            await self._pacer(name, cfg)
            return
        gap = 1.0 / cfg.rate_per_second
        wait = self._last_send.get(name, -gap) + gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send[name] = time.monotonic()

    def _open(self) -> dict[str, Channel]:
        out: dict[str, Channel] = {}
        for name, cfg in self.cfg.channels.items():
            if not cfg.enabled:
                continue
            try:
                out[name] = self._given.get(name) or build_channel(name, cfg)
                self._unavailable.pop(name, None)
            except Exception as exc:  # e.g. apprise not installed: its rows wait, others go on
                why = self._text(name, channel_failure(name, exc, self._secrets.get(name, ())))
                self._unavailable[name] = why
                log.error("alert channel %s unavailable: %s", name, why)
        return out

    async def _close(self, channels: Mapping[str, Channel]) -> None:
        for name, ch in channels.items():
            if name not in self._given:
                try:
                    await ch.aclose()
                except Exception as exc:  # closing a channel never ends the relay
                    log.warning("alert channel %s did not close cleanly: %s", name, type(exc).__name__)

    def _report(
        self, attempts: tuple[Attempt, ...], digests: int, repeats: int, now: datetime
    ) -> RelayReport:
        paused = {n: t for n, t in self._paused.items() if t > now}
        return RelayReport(
            attempts, digests=digests, repeats=repeats, paused=paused, unavailable=dict(self._unavailable)
        )
