"""Routing and timing, pure: which channels an alert goes to, and when each may send.

- Routes: ``alerts.routes`` is a list of (rule globs, severities, labels) -> channels. No route
  configured = every enabled channel. A disabled channel never receives anything.
- Immediate channels send as soon as the relay runs, except during ``quiet_hours`` (local time in
  the channel's ``timezone``): a delivery is held until the quiet period ends.
- Digest channels hold every delivery until the end of the period (``hourly``: the next top of the
  hour; ``daily``: the next ``digest_at`` local time), then ONE message summarises the period.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crawler.config import AlertsConfig, ChannelConfig
from crawler.errors import ConfigError

HELD_UNTIL_RELEASED = datetime(9999, 1, 1, tzinfo=UTC)  # backfill digests wait for release_held()


@dataclass(frozen=True)
class Schedule:
    """When a new delivery may go out: ``pending`` at ``at``, or ``held`` for a digest until ``at``."""

    state: str  # pending | held
    at: datetime


def routed_channels(
    cfg: AlertsConfig, *, rule_id: str, severity: str, labels: Mapping[str, str]
) -> tuple[str, ...]:
    """The enabled channels that should receive an alert of this rule, in config order."""
    enabled = [name for name, ch in cfg.channels.items() if ch.enabled]
    if not cfg.routes:
        return tuple(enabled)
    wanted: set[str] = set()
    for route in cfg.routes:
        if not any(fnmatch.fnmatchcase(rule_id, pat) for pat in route.rules):
            continue
        if route.severity and severity not in route.severity:
            continue
        if any(labels.get(k) != v for k, v in route.labels.items()):
            continue
        wanted.update(route.channels)
    return tuple(name for name in enabled if name in wanted)


def zone(name: str, cfg: ChannelConfig) -> ZoneInfo:
    try:
        return ZoneInfo(cfg.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {cfg.timezone!r}", key=f"alerts.channels.{name}.timezone"
        ) from exc


def _clock(value: str, key: str) -> time:
    try:
        hh, mm = value.strip().split(":")
        return time(int(hh), int(mm))
    except ValueError as exc:
        raise ConfigError(f"{value!r} is not a time of day (use HH:MM)", key=key) from exc


def quiet_window(name: str, cfg: ChannelConfig) -> tuple[time, time] | None:
    if not cfg.quiet_hours:
        return None
    key = f"alerts.channels.{name}.quiet_hours"
    parts = cfg.quiet_hours.split("-")
    if len(parts) != 2:
        raise ConfigError(f"{cfg.quiet_hours!r} is not a time range (use e.g. 22:00-07:00)", key=key)
    return _clock(parts[0], key), _clock(parts[1], key)


def _next_local(local: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first wall-clock ``at`` strictly after ``local``, as UTC."""
    cand = datetime.combine(local.date(), at, tzinfo=tz)
    if cand <= local:
        cand = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
    return cand.astimezone(UTC)


def quiet_until(name: str, cfg: ChannelConfig, now: datetime) -> datetime | None:
    """The end of the quiet period ``now`` falls in (UTC), or None when sending is allowed."""
    window = quiet_window(name, cfg)
    if window is None:
        return None
    start, end = window
    tz = zone(name, cfg)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    inside = (start <= t < end) if start <= end else (t >= start or t < end)
    return _next_local(local, end, tz) if inside and start != end else None


def digest_period(name: str, cfg: ChannelConfig, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) in UTC of the digest period that contains ``now``; end is exclusive."""
    tz = zone(name, cfg)
    local = now.astimezone(tz)
    if cfg.digest == "hourly":
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        return start, start + timedelta(hours=1)
    end = _next_local(local, _clock(cfg.digest_at, f"alerts.channels.{name}.digest_at"), tz)
    end_local = end.astimezone(tz)
    start_local = datetime.combine(end_local.date() - timedelta(days=1), end_local.time(), tzinfo=tz)
    return start_local.astimezone(UTC), end


def period_label(name: str, cfg: ChannelConfig, start: datetime | None, end: datetime) -> str:
    tz = zone(name, cfg)
    fmt = "%Y-%m-%d %H:%M"
    head = f"{cfg.digest} digest" if cfg.mode == "digest" else "summary"
    frm = f"{start.astimezone(tz).strftime(fmt)} to " if start else "until "
    return f"{head}, {frm}{end.astimezone(tz).strftime(fmt)} ({cfg.timezone})"


def schedule(name: str, cfg: ChannelConfig, now: datetime, *, hold: bool = False) -> Schedule:
    """When a delivery created ``now`` for this channel may go out.

    ``hold`` (backfill/rescan with policy ``digest``) holds it for an explicit release.
    """
    if hold:
        return Schedule("held", HELD_UNTIL_RELEASED)
    if cfg.mode == "digest":
        return Schedule("held", digest_period(name, cfg, now)[1])
    return Schedule("pending", quiet_until(name, cfg, now) or now)


def silence_matches(
    matcher: Mapping[str, object], *, rule_id: str, story_id: int, labels: Mapping[str, str]
) -> bool:
    """A silence matcher: ``{"rule": glob, "story": id, "labels": {k: v}}``; absent keys match all."""
    rule = matcher.get("rule")
    if isinstance(rule, str) and not fnmatch.fnmatchcase(rule_id, rule):
        return False
    story = matcher.get("story")
    if story is not None and story != story_id:
        return False
    want = matcher.get("labels") or {}
    return not (isinstance(want, Mapping) and any(labels.get(str(k)) != v for k, v in want.items()))


def validate(cfg: AlertsConfig) -> None:
    """Check what pydantic cannot: time zones, HH:MM times, quiet-hour ranges. Raises ConfigError."""
    for name, ch in cfg.channels.items():
        zone(name, ch)
        quiet_window(name, ch)
        _clock(ch.digest_at, f"alerts.channels.{name}.digest_at")
