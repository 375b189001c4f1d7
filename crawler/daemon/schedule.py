"""When to poll each source next, and how healthy it is: the pure scheduling policy.

No I/O and no wall clock: every function takes ``now`` (an aware UTC datetime) and, where it
draws jitter, a ``random.Random``. The daemon owns the clock, the RNG and the storage; it calls
:func:`next_timing` after every poll and stores :meth:`SourceTiming.to_dict` in ``sources.timing``.

The policy, in four rules:

1. Follow the posting rate. Two estimates of the rate of new items: a *burst* rate (items in the
   last ``burst_window``, exponentially weighted, read from the last 20 arrival times) and a
   *trend* rate (an exponentially forgetting Poisson estimate over ``memory``, with one
   pseudo-item per ``nominal`` interval as prior). The larger one wins, so a breaking story speeds
   polling up at once and quiet slows it down gradually. The interval is
   ``nominal * (expected gap / nominal) ** exponent``. Exponent 0.5 is the square-root rule, which
   minimises the mean detection delay for a given number of requests; the default 0.45 gives up a
   little of that for a shorter tail (bench/schedule.py prints both). Jittered up to ``jitter``
   earlier so sources that started together drift apart, then clamped to the bounds.
2. Honour the server. Never sooner than Cache-Control max-age / Expires, RSS ``ttl`` or
   ``sy:updatePeriod`` (each clamped to ``max_interval`` so a silly hint cannot silence a source),
   nor sooner than Retry-After (clamped to the back-off cap).
3. Back off on errors, never give up. Delay ``d = base * 2 ** (streak - 1)`` capped at ``cap``
   (``base``: the healthy interval before the errors, at most ``nominal``), drawn uniformly from
   ``[d/2, d]`` ("equal jitter": retries spread out, yet every retry really backs off);
   Retry-After wins when larger. There is no disabled state: after 1,000 errors the source is
   still polled every ``cap/2 .. cap``.
4. Say so once. Health is ``new -> ok | degraded (1-2 errors) | failing (>= 3 errors, or errors
   for longer than ``failing_after``) | stale (no new item for ``stale_factor`` times the usual
   silence and at least ``stale_floor``; only once the source has a history)``, in that order of
   precedence (failing > stale > degraded > ok). :func:`next_timing` returns a
   :class:`HealthChange` only when the state changes; :attr:`HealthChange.notify` says whether a
   human should hear about it (into failing or stale, and out of them back to ok).

Selector misses (``error_kind="selector"``: a watched page loads but its CSS selector matches
nothing) count as errors for health (so they become ``failing`` after 3 polls, with the reason
"selector matched nothing") but do NOT back off: the server is fine, so the page keeps its normal
adaptive cadence, which slows down by itself since no new items are seen.

Kept whole past ~450 lines on purpose: one pure policy whose three sections (the decision, the
posting-rate estimate, the health states) read and write the same ``SourceTiming`` fields; split,
every section would import the others' private statistics.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, get_args

from crawler.errors import ConfigError, StorageError
from crawler.types import Health, SourceSpec

__all__ = [
    "Bounds",
    "HealthChange",
    "PollOutcome",
    "ScheduleStateError",
    "SourceTiming",
    "next_timing",
    "spread_start",
]

RECENT_LIMIT = 20  # arrival times remembered per source
SILENCE_MEMORY = 14 * 86400.0  # time constant of the usual-silence statistics (bursts don't wash it out)
HISTORY_GAPS = 3  # gaps needed before a source can be called stale...
HISTORY_SPAN = 2 * 86400.0  # ...and the time they must cover (one burst is not a history)
QUIET_ITEMS = 2.0  # a source silent for s seconds posts at most about this many items per s
MAX_DOUBLINGS = 60  # 2**60 times anything is past every cap; keeps the arithmetic finite

OutcomeStatus = Literal["ok", "not_modified", "error"]


class ScheduleStateError(StorageError):
    """A stored SourceTiming could not be read back; reset it with SourceTiming.initial()."""


@dataclass(frozen=True)
class Bounds:
    """Per-source limits (from the config) and the policy's knobs. All durations in seconds."""

    min_interval: float = 60.0
    max_interval: float = 6 * 3600.0
    nominal: float = 900.0  # the interval for a source that posts about once per nominal interval
    backoff_cap: float | None = None  # None: max(max_interval, 1 h)
    stale_factor: float = 5.0  # stale after this many times the usual silence...
    stale_floor: float = 86400.0  # ...and never before this
    failing_errors: int = 3  # consecutive errors that make a source failing
    failing_after: float = 3600.0  # or errors for this long
    burst_window: float = 3600.0  # time constant of the burst rate
    memory: float = 3 * 86400.0  # time constant of the trend rate
    exponent: float = 0.45  # interval ~ expected gap ** exponent (0.5: square-root rule; see bench)
    jitter: float = 0.1  # each healthy interval is shortened by up to this fraction

    def __post_init__(self) -> None:
        positive = ("min_interval", "max_interval", "nominal", "burst_window", "memory", "failing_after")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"must be > 0, got {getattr(self, name)!r}", key=name)
        if self.min_interval > self.max_interval:
            raise ConfigError(f"min_interval {self.min_interval} > max_interval {self.max_interval}")
        if self.backoff_cap is not None and self.backoff_cap < self.min_interval:
            raise ConfigError(f"must be >= min_interval, got {self.backoff_cap}", key="backoff_cap")
        if self.failing_errors < 1 or self.stale_factor < 1 or self.stale_floor < 0:
            raise ConfigError("failing_errors and stale_factor must be >= 1, stale_floor >= 0")
        if not (0 <= self.jitter < 1 and 0 < self.exponent <= 1):
            raise ConfigError("jitter must be in [0, 1) and exponent in (0, 1]")

    @property
    def cap(self) -> float:
        """The longest error back-off (and the clamp on Retry-After)."""
        return self.backoff_cap if self.backoff_cap is not None else max(self.max_interval, 3600.0)

    @classmethod
    def from_spec(cls, spec: SourceSpec, **knobs: Any) -> Bounds:
        """Bounds for one configured source; ``knobs`` override the policy defaults."""
        nominal = min(max(spec.interval, spec.min_interval), spec.max_interval)
        return cls(min_interval=spec.min_interval, max_interval=spec.max_interval, nominal=nominal, **knobs)


@dataclass(frozen=True)
class PollOutcome:
    """What one poll found out, as the scheduler needs it. Durations in seconds."""

    status: OutcomeStatus
    new_items: int = 0  # may exceed len(item_times): items without a date
    item_times: tuple[datetime, ...] = ()  # publication times of the new items
    retry_after: float | None = None  # Retry-After header
    max_age: float | None = None  # Cache-Control max-age, or Expires minus Date
    feed_ttl: float | None = None  # RSS <ttl>
    update_period: float | None = None  # sy:updatePeriod / sy:updateFrequency
    error: str | None = None
    error_kind: str | None = None  # "selector": see the module docstring; anything else backs off

    def __post_init__(self) -> None:
        if self.status not in get_args(OutcomeStatus):
            raise ValueError(
                f"PollOutcome.status must be one of {get_args(OutcomeStatus)}, got {self.status!r}"
            )
        if self.new_items < 0:
            raise ValueError(f"PollOutcome.new_items must be >= 0, got {self.new_items}")

    @property
    def selector_miss(self) -> bool:
        return self.status == "error" and self.error_kind == "selector"


@dataclass(frozen=True)
class HealthChange:
    """A source's health changed; emitted once per change."""

    source_id: str
    old: Health
    new: Health
    at: datetime
    reason: str

    @property
    def notify(self) -> bool:
        """True for changes a human should hear about: trouble starts, or trouble ends."""
        return self.new in ("failing", "stale") or (self.old in ("failing", "stale") and self.new == "ok")


@dataclass(frozen=True)
class SourceTiming:
    """What the scheduler remembers about one source between polls (JSON-serialisable)."""

    source_id: str
    next_due: datetime
    interval: float  # the delay chosen at the last decision, seconds
    health: Health = "new"
    last_poll: datetime | None = None
    last_success: datetime | None = None
    first_success: datetime | None = None  # when we started seeing the feed (for the silence)
    recent_items: tuple[datetime, ...] = ()  # last RECENT_LIMIT arrival times, ascending
    error_streak: int = 0
    error_since: datetime | None = None
    last_error: str | None = None
    base_interval: float = 0.0  # healthy interval before the current error streak
    trend_count: float = 0.0  # exponentially decayed item count (time constant Bounds.memory)
    trend_exposure: float = 0.0  # exponentially decayed observed seconds
    gap_sum: float = 0.0  # decayed sum of gaps between items
    gap_sq_sum: float = 0.0  # decayed sum of squared gaps
    gaps_seen: int = 0

    @classmethod
    def initial(
        cls, source_id: str, bounds: Bounds, now: datetime, due: datetime | None = None
    ) -> SourceTiming:
        """A never-polled source, due at ``due`` (see :func:`spread_start`) or now."""
        return cls(source_id=source_id, next_due=due or now, interval=bounds.nominal)

    @property
    def last_new_item(self) -> datetime | None:
        return self.recent_items[-1] if self.recent_items else None

    @property
    def usual_silence(self) -> float | None:
        """The silence a random observer usually sees (E[gap^2]/E[gap]); None without history."""
        if self.gaps_seen < HISTORY_GAPS or self.gap_sum < HISTORY_SPAN:
            return None
        return self.gap_sq_sum / self.gap_sum

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (datetimes as ISO 8601). Every field is a scalar but ``recent_items``:
        no ``dataclasses.asdict`` (its deep copy of every value was most of this call's cost, once
        per poll)."""
        out: dict[str, Any] = {}
        for f in _FIELDS:
            value = getattr(self, f)
            out[f] = value.isoformat() if isinstance(value, datetime) else value
        out["recent_items"] = [t.isoformat() for t in self.recent_items]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceTiming:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, bad values raise ScheduleStateError."""
        known = {f.name for f in fields(cls)}
        try:
            timing = cls(**{k: _decode(k, v) for k, v in data.items() if k in known})
            if timing.health not in get_args(Health) or not math.isfinite(timing.interval):
                raise ValueError(f"health {timing.health!r}, interval {timing.interval!r}")
        except (TypeError, ValueError) as exc:
            raise ScheduleStateError(f"source {data.get('source_id')!r}: bad stored timing: {exc}") from exc
        return timing


_FIELDS = tuple(f.name for f in fields(SourceTiming))
_DATETIME_KEYS = ("next_due", "last_poll", "last_success", "first_success", "error_since")


_FLOAT_KEYS = ("interval", "base_interval", "trend_count", "trend_exposure", "gap_sum", "gap_sq_sum")


def _decode(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in _DATETIME_KEYS:
        return _parse_time(value)
    if key == "recent_items":
        return tuple(_parse_time(v) for v in value)
    if key in _FLOAT_KEYS:
        return float(value)
    if key in ("error_streak", "gaps_seen"):
        return int(value)
    return value


def _parse_time(value: str) -> datetime:
    return _aware(datetime.fromisoformat(value))


def _aware(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (storage and feeds sometimes drop the zone)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- the decision --------------------------------------------------------------------------------


def next_timing(
    timing: SourceTiming, outcome: PollOutcome, bounds: Bounds, now: datetime, rng: random.Random
) -> tuple[SourceTiming, HealthChange | None]:
    """Fold one poll's outcome into the timing; return it and the health change, if any.

    ``now`` must be timezone-aware (naive datetimes cannot be compared with stored aware ones).
    """
    if now.tzinfo is None:
        raise ValueError(f"next_timing needs an aware datetime for now, got {now!r}")
    if outcome.status == "error":
        updated = _after_error(timing, outcome, bounds, now, rng)
    else:
        updated = _after_success(timing, outcome, bounds, now, rng)
    health, reason = _classify(timing, updated, outcome, bounds, now)
    if health == timing.health:
        return updated, None
    change = HealthChange(timing.source_id, timing.health, health, now, reason)
    return replace(updated, health=health), change


def _after_success(
    timing: SourceTiming, outcome: PollOutcome, bounds: Bounds, now: datetime, rng: random.Random
) -> SourceTiming:
    stats = _observe(timing, outcome, bounds, now)
    rate = _rate(stats, 0.0, _silence(stats, timing.first_success, now), bounds, now)
    delay = max(_healthy_interval(rate, bounds, rng), _hint_floor(outcome, bounds))
    return replace(
        timing,
        **stats._asdict(),
        next_due=now + timedelta(seconds=delay),
        interval=delay,
        last_poll=now,
        last_success=now,
        first_success=timing.first_success or now,
        error_streak=0,
        error_since=None,
        last_error=None,
        base_interval=delay,
    )


def _after_error(
    timing: SourceTiming, outcome: PollOutcome, bounds: Bounds, now: datetime, rng: random.Random
) -> SourceTiming:
    streak = timing.error_streak + 1
    base = timing.base_interval if timing.error_streak else timing.interval
    if outcome.selector_miss:  # the server is fine: keep the normal cadence, no back-off
        since = (now - timing.last_success).total_seconds() if timing.last_success else 0.0
        stats = _Stats.of(timing)
        rate = _rate(stats, since, _silence(stats, timing.first_success, now), bounds, now)
        delay = _healthy_interval(rate, bounds, rng)
    else:
        delay = _backoff(base, streak, bounds, rng)
    delay = max(delay, _hint_floor(outcome, bounds))
    return replace(
        timing,
        next_due=now + timedelta(seconds=delay),
        interval=delay,
        last_poll=now,
        error_streak=streak,
        error_since=timing.error_since or now,
        last_error=outcome.error or outcome.error_kind or "error",
        base_interval=base,
    )


def _backoff(base: float, streak: int, bounds: Bounds, rng: random.Random) -> float:
    """Equal-jitter exponential back-off: uniform in [d/2, d], d = base * 2**(streak-1) <= cap."""
    start = min(max(base, bounds.min_interval), bounds.nominal)
    ceiling = min(bounds.cap, start * 2.0 ** min(streak - 1, MAX_DOUBLINGS))
    return max(bounds.min_interval, rng.uniform(ceiling / 2, ceiling))


def _hint_floor(outcome: PollOutcome, bounds: Bounds) -> float:
    """The server's "not before": cache hints clamped to max_interval, Retry-After to the cap."""
    cache = max(_usable(outcome.max_age), _usable(outcome.feed_ttl), _usable(outcome.update_period))
    return max(min(cache, bounds.max_interval), min(_usable(outcome.retry_after), bounds.cap))


def _usable(hint: float | None) -> float:
    """A hint in seconds, or 0.0 when absent, negative, NaN or infinite."""
    return hint if hint is not None and math.isfinite(hint) and hint > 0 else 0.0


# --- the posting rate ------------------------------------------------------------------------------


class _Stats(NamedTuple):
    """The posting statistics of a SourceTiming (field names match it)."""

    recent_items: tuple[datetime, ...]
    trend_count: float
    trend_exposure: float
    gap_sum: float
    gap_sq_sum: float
    gaps_seen: int

    @classmethod
    def of(cls, timing: SourceTiming) -> _Stats:
        return cls(*(getattr(timing, name) for name in cls._fields))


def _healthy_interval(rate: float, bounds: Bounds, rng: random.Random) -> float:
    """The interval a posting rate (items/s) asks for, jittered and clamped to the bounds."""
    raw = bounds.nominal * (1.0 / (rate * bounds.nominal)) ** bounds.exponent
    jittered = raw * (1.0 - bounds.jitter * rng.random())
    return min(max(jittered, bounds.min_interval), bounds.max_interval)


def _silence(stats: _Stats, first_success: datetime | None, now: datetime) -> float:
    """Seconds since the last new item (or since we started watching, if there never was one)."""
    last = stats.recent_items[-1] if stats.recent_items else first_success
    return max((now - last).total_seconds(), 0.0) if last is not None else 0.0


def _rate(stats: _Stats, since_success: float, silence: float, bounds: Bounds, now: datetime) -> float:
    """Items per second: the larger of the burst rate and the trend rate.

    Burst: items of the last burst_window or so, each weighing exp(-age / burst_window).
    Trend: exponentially forgetting count / observed time (time constant ``memory``), with one
    pseudo-item per nominal interval as prior, assuming nothing new in the last ``since_success``;
    and at most QUIET_ITEMS per ``silence`` (forgetting alone cannot go below one item per memory,
    so without this a dead feed would never reach max_interval).
    """
    burst = _burst_weight(stats.recent_items, bounds.burst_window, now) / bounds.burst_window
    count, exposure = _decay(stats.trend_count, stats.trend_exposure, max(since_success, 0.0), bounds.memory)
    trend = (count + 1.0) / (exposure + bounds.nominal)
    if silence > 0:
        trend = min(trend, QUIET_ITEMS / silence)
    return max(burst, trend)


def _burst_weight(recent: tuple[datetime, ...], window: float, now: datetime) -> float:
    """Sum of exp(-age / window) over recent items, plus the items the bounded tuple dropped.

    When the tuple is full, older items are assumed to have arrived at the density of the retained
    ones; without that, a feed posting 500 items an hour would look like 20 an hour.
    """
    weight = 0.0
    for t in reversed(recent):
        age = max((now - t).total_seconds(), 0.0)
        if age > 12 * window:  # older items weigh < 1e-5 each
            return weight
        weight += math.exp(-age / window)
    if len(recent) == RECENT_LIMIT:
        density = (len(recent) - 1) / max((recent[-1] - recent[0]).total_seconds(), 1.0)
        weight += density * window * math.exp(-max((now - recent[0]).total_seconds(), 0.0) / window)
    return weight


def _decay(count: float, exposure: float, elapsed: float, memory: float) -> tuple[float, float]:
    keep = math.exp(-elapsed / memory)
    return count * keep, exposure * keep + memory * (1.0 - keep)


def _observe(timing: SourceTiming, outcome: PollOutcome, bounds: Bounds, now: datetime) -> _Stats:
    """Fold the new items of a successful poll into the rate and silence statistics."""
    times = _arrival_times(timing, outcome, now)
    if timing.last_success is not None:
        elapsed = (now - timing.last_success).total_seconds()
    else:  # first success: the feed's backlog tells us about the past
        elapsed = (now - times[0]).total_seconds() if times else 0.0
    count, exposure = _decay(timing.trend_count, timing.trend_exposure, max(elapsed, 0.0), bounds.memory)
    count += sum(math.exp(-(now - t).total_seconds() / bounds.memory) for t in times)
    gap_sum, gap_sq_sum, gaps = timing.gap_sum, timing.gap_sq_sum, timing.gaps_seen
    previous = timing.last_new_item
    for t in times:
        if previous is not None and t >= previous:
            gap = (t - previous).total_seconds()
            keep = math.exp(-gap / SILENCE_MEMORY)
            gap_sum, gap_sq_sum, gaps = gap_sum * keep + gap, gap_sq_sum * keep + gap * gap, gaps + 1
        previous = t if previous is None else max(previous, t)
    recent = tuple(sorted(timing.recent_items + times))[-RECENT_LIMIT:] if times else timing.recent_items
    return _Stats(recent, count, exposure, gap_sum, gap_sq_sum, gaps)


def _arrival_times(timing: SourceTiming, outcome: PollOutcome, now: datetime) -> tuple[datetime, ...]:
    """Publication times clamped to now; undated items count as published mid-way since last poll."""
    dated = [min(_aware(t), now) for t in outcome.item_times]
    undated = max(outcome.new_items - len(dated), 0)
    if undated:
        since = timing.last_success or timing.last_poll or now
        dated += [since + (now - since) / 2] * undated
    return tuple(sorted(dated))


# --- health ------------------------------------------------------------------------------------------


def _classify(
    before: SourceTiming, timing: SourceTiming, outcome: PollOutcome, bounds: Bounds, now: datetime
) -> tuple[Health, str]:
    """The health after this poll, with a one-line reason. Precedence: failing > stale > degraded > ok.

    Stale outranks degraded so that one transient error on a quiet source does not make it
    "stale" twice (stale -> degraded -> stale would send the same notice again).
    """
    streak, since = timing.error_streak, timing.error_since or now
    what = "selector matched nothing" if outcome.selector_miss else timing.last_error
    retry = f"retrying in {_human(timing.interval)}"
    if streak >= bounds.failing_errors or (streak and (now - since).total_seconds() >= bounds.failing_after):
        where = f"{streak} consecutive errors since {since:%Y-%m-%d %H:%M}Z"
        return "failing", f"{where}: {what}; {retry} (at most every {_human(bounds.cap)})"
    stale = _stale_reason(timing, bounds, now)
    if stale is not None:
        return "stale", stale
    if streak:
        return "degraded", f"{streak} consecutive error(s): {what}; {retry}"
    if before.error_streak:
        return "ok", f"recovered after {before.error_streak} consecutive error(s): {before.last_error}"
    return "ok", "new items again" if before.health == "stale" else "polled successfully"


def _stale_reason(timing: SourceTiming, bounds: Bounds, now: datetime) -> str | None:
    """Why the source is stale, or None: silent far longer than usual (needs a history)."""
    last, usual = timing.last_new_item, timing.usual_silence
    if last is None or usual is None:
        return None
    silence = (now - last).total_seconds()
    if silence <= max(bounds.stale_floor, bounds.stale_factor * usual):
        return None
    return f"no new item for {_human(silence)} (usual silence about {_human(usual)})"


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# --- start-up ----------------------------------------------------------------------------------------


def spread_start(
    source_ids: Iterable[str], interval: float, now: datetime, rng: random.Random
) -> dict[str, datetime]:
    """First due times spread evenly over ``[now, now + interval)``, one random slot per source.

    Stratified, not merely random: source k of n (in shuffled order) is due in slot k of n, at a
    random point inside it, so no two slots' worth of sources ever fire together.
    """
    ids = list(dict.fromkeys(source_ids))
    rng.shuffle(ids)
    n = len(ids)
    return {sid: now + timedelta(seconds=interval * (k + rng.random()) / n) for k, sid in enumerate(ids)}
