"""The polling policy (crawler.daemon.schedule): adaptive intervals, hints, back-off, health, start-up spread.

Everything runs on a virtual clock: the tests choose ``now`` and drive the policy poll after poll.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
import statistics
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

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
from crawler.types import SourceSpec

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0
BOUNDS = Bounds()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ok(
    times: list[datetime] | tuple[datetime, ...] = (),
    /,
    *,
    retry_after: float | None = None,
    max_age: float | None = None,
    feed_ttl: float | None = None,
    update_period: float | None = None,
) -> PollOutcome:
    return PollOutcome(
        "ok",
        new_items=len(times),
        item_times=tuple(times),
        retry_after=retry_after,
        max_age=max_age,
        feed_ttl=feed_ttl,
        update_period=update_period,
    )


def error(
    message: str = "HTTP 503", kind: str = "http", /, *, retry_after: float | None = None
) -> PollOutcome:
    return PollOutcome("error", error=message, error_kind=kind, retry_after=retry_after)


class Feed:
    """A simulated feed: a poll at time t sees the items published since the previous successful poll."""

    def __init__(self, items: list[datetime], backlog: int = 30) -> None:
        self.items = sorted(items)
        self.backlog = backlog  # how many items the first poll sees
        self.seen = -1

    def poll(self, now: datetime) -> PollOutcome:
        upto = bisect.bisect_right(self.items, now)
        lo = max(upto - self.backlog, 0) if self.seen < 0 else self.seen
        self.seen = upto
        return ok(self.items[lo:upto])


def follow(
    timing: SourceTiming, feed: Feed, until: datetime, bounds: Bounds = BOUNDS, seed: int = 1
) -> tuple[SourceTiming, list[tuple[datetime, float]], list[HealthChange]]:
    """Poll at the policy's own due times until ``until``; return the timing, (time, interval)s, changes."""
    rng, polls, changes = random.Random(seed), [], []
    while timing.next_due < until:
        now = timing.next_due
        timing, change = next_timing(timing, feed.poll(now), bounds, now, rng)
        polls.append((now, timing.interval))
        changes += [change] if change else []
    return timing, polls, changes


def intervals_between(polls: list[tuple[datetime, float]], start: datetime, end: datetime) -> list[float]:
    return [iv for t, iv in polls if start <= t < end]


def every(start: datetime, step: float, count: int) -> list[datetime]:
    return [start + timedelta(seconds=step * k) for k in range(count)]


# --- adaptive interval ------------------------------------------------------------------------------


def test_interval_shrinks_during_a_burst_and_grows_when_quiet() -> None:
    daily = every(at(-3 * DAY + 4 * HOUR), DAY, 8)  # one item a day at noon, days -3..4
    burst_start = at(5 * DAY)
    burst = every(burst_start, 3 * MIN, 60)  # a breaking story: an item every 3 minutes for 3 hours
    feed = Feed(daily + burst)
    _, polls, _ = follow(SourceTiming.initial("s", BOUNDS, T0), feed, at(9 * DAY))

    quiet = statistics.median(intervals_between(polls, at(3 * DAY), at(4 * DAY)))
    during = statistics.median(
        intervals_between(polls, burst_start + timedelta(hours=1), at(5 * DAY + 3 * HOUR))
    )
    after_6h = statistics.median(intervals_between(polls, at(5 * DAY + 9 * HOUR), at(5 * DAY + 12 * HOUR)))
    after_3d = statistics.median(intervals_between(polls, at(8 * DAY), at(9 * DAY)))
    assert during < quiet / 4, (during, quiet)
    assert during < after_6h < after_3d, (during, after_6h, after_3d)
    assert all(BOUNDS.min_interval <= iv <= BOUNDS.max_interval for _, iv in polls)


def test_a_busier_feed_is_polled_more_often() -> None:
    medians = []
    for per_day in (2, 24, 288):
        feed = Feed(every(at(-3 * DAY), DAY / per_day, int(10 * per_day)))
        _, polls, _ = follow(SourceTiming.initial("s", BOUNDS, T0), feed, at(5 * DAY))
        medians.append(statistics.median(intervals_between(polls, at(3 * DAY), at(5 * DAY))))
    assert medians[0] > medians[1] > medians[2], medians


@pytest.mark.parametrize("bounds", [BOUNDS, Bounds(min_interval=300, max_interval=1200, nominal=600)])
def test_interval_stays_within_bounds_at_the_extremes(bounds: Bounds) -> None:
    flood = every(at(-3000), 0.3, 10_000)  # 10,000 items in the last 50 minutes
    fast, _ = next_timing(SourceTiming.initial("s", bounds, T0), ok(flood), bounds, T0, random.Random(1))
    assert fast.interval == bounds.min_interval

    dead = Feed([at(-DAY)])  # one old item, then nothing for 60 days
    timing, polls, _ = follow(SourceTiming.initial("s", bounds, T0), dead, at(60 * DAY), bounds)
    assert all(bounds.min_interval <= iv <= bounds.max_interval for _, iv in polls)
    assert timing.interval == bounds.max_interval


def test_a_storm_is_measured_beyond_the_remembered_arrival_times() -> None:
    daily = Feed(every(at(-7 * DAY + 4 * HOUR), DAY, 7))
    quiet, _, _ = follow(SourceTiming.initial("s", BOUNDS, T0), daily, at(2 * DAY))
    now = quiet.next_due
    intervals = []
    for count in (50, 500):  # items in the last 30 minutes; only 20 arrival times are remembered
        storm = every(now - timedelta(minutes=30), 1800 / count, count)
        stormy, _ = next_timing(quiet, ok(storm), BOUNDS, now, random.Random(1))
        intervals.append(stormy.interval)
    assert intervals[1] < intervals[0] / 2 < quiet.interval / 2, intervals


def test_first_poll_learns_from_the_backlog() -> None:
    rng = random.Random(1)
    start = SourceTiming.initial("s", BOUNDS, T0)
    busy, change = next_timing(start, ok(every(at(-2 * HOUR), 240, 30)), BOUNDS, T0, rng)
    sparse, _ = next_timing(start, ok(every(at(-60 * DAY), 2 * DAY, 30)), BOUNDS, T0, rng)
    assert busy.interval < BOUNDS.nominal < sparse.interval
    assert change is not None and (change.old, change.new, change.notify) == ("new", "ok", False)


def test_undated_items_count_and_future_dates_are_clamped() -> None:
    rng = random.Random(1)
    warm, _ = next_timing(SourceTiming.initial("s", BOUNDS, T0), ok(), BOUNDS, T0, rng)
    now = at(HOUR)
    quiet, _ = next_timing(warm, ok(), BOUNDS, now, random.Random(2))
    undated, _ = next_timing(warm, PollOutcome("ok", new_items=20), BOUNDS, now, random.Random(2))
    future, _ = next_timing(warm, ok([at(400 * DAY)]), BOUNDS, now, random.Random(2))
    assert undated.interval < quiet.interval
    assert future.last_new_item == now


# --- server hints ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("hint", ["max_age", "feed_ttl", "update_period"])
def test_cache_hints_are_honoured_and_clamped_to_max_interval(hint: str) -> None:
    busy = every(at(-HOUR), 30, 120)  # would poll at min_interval without the hint
    start = SourceTiming.initial("s", BOUNDS, T0)
    plain, _ = next_timing(start, ok(busy), BOUNDS, T0, random.Random(1))
    polite, _ = next_timing(start, ok(busy, **{hint: 2 * HOUR}), BOUNDS, T0, random.Random(1))
    silly, _ = next_timing(start, ok(busy, **{hint: 365 * DAY}), BOUNDS, T0, random.Random(1))
    junk, _ = next_timing(start, ok(busy, **{hint: -5.0}), BOUNDS, T0, random.Random(1))
    nan, _ = next_timing(start, ok(busy, **{hint: math.nan}), BOUNDS, T0, random.Random(1))
    assert plain.interval < 2 * HOUR
    assert polite.interval == 2 * HOUR and polite.next_due == T0 + timedelta(hours=2)
    assert silly.interval == BOUNDS.max_interval
    assert junk.interval == nan.interval == plain.interval


def test_retry_after_wins_when_larger_and_is_clamped_to_the_cap() -> None:
    healthy, _ = next_timing(SourceTiming.initial("s", BOUNDS, T0), ok(), BOUNDS, T0, random.Random(1))
    first_error, _ = next_timing(healthy, error(), BOUNDS, at(MIN), random.Random(1))
    told, _ = next_timing(healthy, error("HTTP 429", retry_after=3 * HOUR), BOUNDS, at(MIN), random.Random(1))
    absurd, _ = next_timing(healthy, error("HTTP 429", retry_after=1e12), BOUNDS, at(MIN), random.Random(1))
    assert first_error.interval < 3 * HOUR
    assert told.interval == 3 * HOUR
    assert absurd.interval == BOUNDS.cap and absurd.next_due == at(MIN) + timedelta(seconds=BOUNDS.cap)
    on_success, _ = next_timing(healthy, ok(retry_after=2 * HOUR), BOUNDS, at(MIN), random.Random(1))
    assert on_success.interval == 2 * HOUR

    deep = healthy  # deep into a streak, a short Retry-After does not cut the back-off short
    for k in range(12):
        deep, _ = next_timing(deep, error(), BOUNDS, at(k * DAY), random.Random(k))
    short, _ = next_timing(deep, error(retry_after=60), BOUNDS, at(20 * DAY), random.Random(5))
    assert short.interval >= BOUNDS.cap / 2


# --- errors: back-off that never gives up -------------------------------------------------------------


def error_streak(seed: int, count: int, bounds: Bounds = BOUNDS) -> list[SourceTiming]:
    """A healthy source, then ``count`` consecutive errors, each polled when due."""
    rng = random.Random(seed)
    timing, _ = next_timing(SourceTiming.initial("s", bounds, T0), ok(), bounds, T0, rng)
    timings = []
    for _ in range(count):
        timing, _ = next_timing(timing, error(), bounds, timing.next_due, rng)
        timings.append(timing)
    return timings


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    runs = [error_streak(seed, 12) for seed in range(200)]
    medians = []
    for k in range(12):
        values = [run[k].interval for run in runs]
        for run in runs:  # base: the healthy interval before the streak (itself jittered per seed)
            ceiling = min(BOUNDS.cap, min(run[k].base_interval, BOUNDS.nominal) * 2**k)
            assert ceiling / 2 <= run[k].interval <= ceiling, (k, run[k])
        assert len(set(values)) > 150, "retries must be jittered, not synchronised"
        medians.append(statistics.median(values))
    growth = [b / a for a, b in itertools.pairwise(medians) if b < BOUNDS.cap * 0.7]
    assert len(growth) >= 4 and all(1.6 < g < 2.4 for g in growth), growth


def test_a_thousand_errors_never_disable_the_source() -> None:
    timings = error_streak(7, 1000)
    dues = [t.next_due for t in timings]
    assert all(b > a for a, b in itertools.pairwise(dues))
    assert all(math.isfinite(t.interval) for t in timings)
    tail = [t.interval for t in timings[20:]]
    assert all(BOUNDS.cap / 2 <= iv <= BOUNDS.cap for iv in tail)
    assert dues[-1] - T0 > timedelta(seconds=980 * BOUNDS.cap / 2)  # months of retries, still going
    last = timings[-1]
    assert (last.health, last.error_streak, last.last_error) == ("failing", 1000, "HTTP 503")
    now = last.next_due
    fresh = every(now - timedelta(hours=1), 5 * MIN, 12)  # the feed is back, with news
    recovered, change = next_timing(last, ok(fresh), BOUNDS, now, random.Random(1))
    assert recovered.interval < BOUNDS.nominal and recovered.error_streak == 0
    assert change is not None and (change.old, change.new) == ("failing", "ok")


# --- health ----------------------------------------------------------------------------------------------


def test_one_notice_when_failing_starts_and_one_on_recovery() -> None:
    rng = random.Random(3)
    timing = SourceTiming.initial("wire", BOUNDS, T0)
    changes: list[HealthChange] = []
    outcomes = [ok()] * 3 + [error("connect timeout", "timeout")] * 500 + [ok()] * 3
    for outcome in outcomes:
        timing, change = next_timing(timing, outcome, BOUNDS, timing.next_due, rng)
        changes += [change] if change else []
    assert [(c.old, c.new) for c in changes] == [
        ("new", "ok"),
        ("ok", "degraded"),
        ("degraded", "failing"),
        ("failing", "ok"),
    ]
    notices = [c for c in changes if c.notify]
    assert [(c.new, c.source_id) for c in notices] == [("failing", "wire"), ("ok", "wire")]
    assert "3 consecutive errors" in notices[0].reason and "connect timeout" in notices[0].reason
    assert "recovered after 500" in notices[1].reason


def test_errors_that_last_long_enough_mean_failing() -> None:
    bounds = Bounds(failing_errors=10, failing_after=HOUR)
    timing, _ = next_timing(SourceTiming.initial("s", bounds, T0), ok(), bounds, T0, random.Random(1))
    timing, first = next_timing(timing, error(), bounds, at(MIN), random.Random(1))
    timing, second = next_timing(timing, error(), bounds, at(2 * HOUR), random.Random(1))
    assert first is not None and first.new == "degraded"
    assert second is not None and (second.old, second.new) == ("degraded", "failing")


def hourly_then_silent(days_of_history: int = 5) -> Feed:
    """An item every hour for some days (all in the first poll's backlog), then nothing."""
    return Feed(every(at(-days_of_history * DAY), HOUR, days_of_history * 24), backlog=1000)


def test_stale_is_announced_once_after_a_long_silence_and_cleared_by_new_items() -> None:
    feed = hourly_then_silent()
    timing, _, changes = follow(SourceTiming.initial("s", BOUNDS, T0), feed, at(6 * DAY))
    stale = [c for c in changes if c.new == "stale"]
    assert len(stale) == 1 and stale[0].notify
    assert BOUNDS.stale_floor <= (stale[0].at - at(-HOUR)).total_seconds() < BOUNDS.stale_floor + 6 * HOUR
    assert "no new item for" in stale[0].reason
    feed.items.append(at(6 * DAY + HOUR))
    timing, _, changes = follow(timing, feed, at(7 * DAY))
    assert [(c.old, c.new, c.notify) for c in changes] == [("stale", "ok", True)]


def test_a_transient_error_on_a_stale_source_does_not_repeat_the_notice() -> None:
    timing, _, _ = follow(SourceTiming.initial("s", BOUNDS, T0), hourly_then_silent(), at(3 * DAY))
    assert timing.health == "stale"
    rng = random.Random(1)
    timing, during = next_timing(timing, error(), BOUNDS, timing.next_due, rng)
    timing, after = next_timing(timing, ok(), BOUNDS, timing.next_due, rng)
    assert during is None and after is None and timing.health == "stale"


def test_no_stale_without_history_or_within_the_usual_silence() -> None:
    newborn = Feed([at(-HOUR)])  # a single item, then 30 silent days: nothing to compare with
    timing, _, changes = follow(SourceTiming.initial("a", BOUNDS, T0), newborn, at(30 * DAY))
    assert timing.health == "ok" and not [c for c in changes if c.new == "stale"]

    # a story feed: bursts of 20 items separated by 4-day silences; 3 days of quiet is usual for it
    bursts = [t for k in range(6) for t in every(at(-24 * DAY + 4 * k * DAY), 5 * MIN, 20)]
    timing, _, changes = follow(SourceTiming.initial("b", BOUNDS, T0), Feed(bursts), at(3 * DAY))
    assert not [c for c in changes if c.new == "stale"]


def test_selector_misses_count_as_failing_without_backing_off() -> None:
    feed = hourly_then_silent(3)
    timing, _, _ = follow(SourceTiming.initial("page", BOUNDS, T0), feed, at(HOUR))
    healthy = timing.interval
    rng, changes, intervals = random.Random(1), [], []
    for _ in range(20):
        timing, change = next_timing(
            timing, error("no match for #prices", "selector"), BOUNDS, timing.next_due, rng
        )
        changes += [change] if change else []
        intervals.append(timing.interval)
    assert [(c.old, c.new) for c in changes] == [("ok", "degraded"), ("degraded", "failing")]
    assert "selector matched nothing" in changes[1].reason
    assert max(intervals) < 4 * healthy, (healthy, intervals)  # no doubling: the server is fine
    backed_off = error_streak(1, 20)[-1].interval
    assert max(intervals) < backed_off


# --- start-up spread ---------------------------------------------------------------------------------


def test_spread_start_spreads_a_thousand_sources_over_the_interval() -> None:
    ids = [f"source-{k}" for k in range(1000)]
    due = spread_start(ids, 900.0, T0, random.Random(42))
    offsets = sorted((d - T0).total_seconds() for d in due.values())
    assert set(due) == set(ids)
    assert offsets[0] >= 0 and offsets[-1] < 900
    assert max(b - a for a, b in itertools.pairwise(offsets)) <= 2 * 900 / 1000
    per_9s = [bisect.bisect_left(offsets, s + 9) - bisect.bisect_left(offsets, s) for s in range(0, 900, 9)]
    assert max(per_9s) <= 11  # 10 per 9 s on average, never a crowd
    assert due == spread_start(ids, 900.0, T0, random.Random(42))
    assert due != spread_start(ids, 900.0, T0, random.Random(43))
    assert len(spread_start(ids + ids[:10], 900.0, T0, random.Random(1))) == 1000


# --- state, inputs ------------------------------------------------------------------------------------------


def test_timing_round_trips_through_json_and_decides_the_same() -> None:
    feed = Feed(every(at(-2 * DAY), 20 * MIN, 200))
    timing, _, _ = follow(SourceTiming.initial("s", BOUNDS, T0), feed, at(DAY))
    timing, _ = next_timing(timing, error(), BOUNDS, timing.next_due, random.Random(1))
    stored = json.loads(json.dumps(timing.to_dict()))
    restored = SourceTiming.from_dict(stored)
    assert restored == timing
    now = restored.next_due
    assert next_timing(restored, ok(), BOUNDS, now, random.Random(9)) == next_timing(
        timing, ok(), BOUNDS, now, random.Random(9)
    )
    naive = dict(stored, next_due="2026-11-23T08:00:00")
    assert SourceTiming.from_dict(naive).next_due == T0


@pytest.mark.parametrize(
    "change",
    [
        {"next_due": None},  # missing
        {"next_due": "yesterday"},
        {"interval": "soon"},
        {"interval": math.inf},
        {"health": "disabled"},
        {"recent_items": ["2026-13-01"]},
    ],
)
def test_a_corrupt_stored_timing_raises_a_typed_error(change: dict[str, object]) -> None:
    data = {**SourceTiming.initial("s", BOUNDS, T0).to_dict(), **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ScheduleStateError, match="'s'"):
        SourceTiming.from_dict(data)


def test_bounds_are_validated_and_built_from_the_source_spec() -> None:
    with pytest.raises(ConfigError):
        Bounds(min_interval=600, max_interval=60)
    with pytest.raises(ConfigError, match="backoff_cap"):
        Bounds(backoff_cap=1.0)
    spec = SourceSpec(id="s", kind="feed", url="https://example.org/feed", interval=10, min_interval=120)
    bounds = Bounds.from_spec(spec, exponent=0.5)
    assert (bounds.nominal, bounds.min_interval, bounds.exponent) == (120, 120, 0.5)
    assert Bounds(max_interval=600).cap == HOUR and replace(BOUNDS, backoff_cap=2 * HOUR).cap == 2 * HOUR


def test_naive_now_and_bad_outcomes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_timing(
            SourceTiming.initial("s", BOUNDS, T0), ok(), BOUNDS, datetime(2026, 11, 23), random.Random()
        )
    with pytest.raises(ValueError):
        PollOutcome("maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PollOutcome("ok", new_items=-1)
