"""Adaptive polling (crawler.daemon.schedule.next_timing) against fixed-interval polling, same request count.

A virtual clock, no sleeping: 1,000 simulated feeds over 7 days (after a 3-day history that the
first poll sees as the feed's backlog). Feed kinds: breaking-story search feeds (a trickle, then
windows of an item every few minutes, then quiet), daily posters (office hours), Poisson publishers
at 2-150 items/day with a day/night cycle, feeds that go quiet for good, and near-dead feeds.
Every poll fails with probability 2%, and 3% of the feeds have a 12-hour outage; both policies face
the same failure model. A poll at time t sees every item published before t.

Budget matching: the adaptive run goes first with the default policy (nominal interval 15 min);
the fixed interval is then COMPUTED so that fixed polling makes the same number of requests
(interval = feeds x duration / adaptive requests), and the fixed run confirms the count.

Run: python bench/schedule.py [--feeds 1000] [--days 7] [--seed 2026] [--nominal 900]
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crawler.daemon.schedule import Bounds, PollOutcome, SourceTiming, next_timing, spread_start

HOUR = 3600.0
DAY = 86400.0
HISTORY = 3 * DAY  # items before t=0: the backlog the first poll sees
BACKLOG = 30  # a feed shows its newest 30 items
TAIL = 2 * DAY  # keep polling after the end so late items get detected
ERROR_RATE = 0.02
OUTAGE_SHARE = 0.03
OUTAGE = 12 * HOUR
EPOCH = datetime(2026, 11, 23, tzinfo=UTC)


@dataclass(frozen=True)
class Feed:
    id: str
    kind: str
    items: tuple[float, ...]  # publication times, seconds from t=0, ascending
    outage: tuple[float, float] | None


@dataclass(frozen=True)
class RunResult:
    requests: int  # requests made in [0, duration)
    latencies: tuple[float, ...]  # one per item published in [0, duration)
    by_kind: dict[str, tuple[float, ...]]
    notices: Counter[str]  # kind->new health, for health changes worth a notice


@dataclass(frozen=True)
class FeedRun:
    ok_polls: list[float]  # times of successful polls, ascending
    requests: int
    notices: Counter[str]


Policy = Callable[[Feed, float, int], FeedRun]  # (feed, first poll, seed) -> FeedRun


# --- the world ---------------------------------------------------------------------------------


def poisson(
    rng: random.Random, rate: Callable[[float], float], peak: float, start: float, end: float
) -> list[float]:
    """A non-homogeneous Poisson process by thinning (rate and peak in items/second)."""
    out: list[float] = []
    t = start
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return out
        if rng.random() * peak <= rate(t):
            out.append(t)


def constant(rate: float) -> Callable[[float], float]:
    return lambda t: rate


def diurnal(base: float, depth: float, phase: float) -> Callable[[float], float]:
    return lambda t: base * (1 + depth * math.sin(2 * math.pi * (t / DAY + phase)))


def office_hours(per_day: float, phase: float) -> Callable[[float], float]:
    def rate(t: float) -> float:
        hour = ((t / DAY + phase) % 1.0) * 24
        return per_day / (10 * HOUR) if 8 <= hour < 18 else 0.0

    return rate


def story_feed(rng: random.Random, start: float, end: float) -> list[float]:
    """A trickle, plus 1-3 breaking stories: an item every 2-15 min for 1-6 h, then a tail."""
    trickle = rng.uniform(0.5, 3) / DAY
    items = poisson(rng, constant(trickle), trickle, start, end)
    for _ in range(rng.randint(1, 3)):
        w0 = rng.uniform(start + DAY, end - DAY)
        length = rng.uniform(1, 6) * HOUR
        rate = 1 / (rng.uniform(2, 15) * 60)
        items += poisson(rng, constant(rate), rate, w0, w0 + length)
        items += poisson(rng, constant(rate / 4), rate / 4, w0 + length, w0 + 3 * length)
    return items


def make_feed(k: int, rng: random.Random, start: float, end: float) -> Feed:
    roll = rng.random()
    if roll < 0.25:
        kind, items = "bursty", story_feed(rng, start, end)
    elif roll < 0.50:  # 1-5 items a day, office hours
        kind, items = (
            "daily",
            poisson(rng, office_hours(rng.uniform(1, 5), rng.random()), 5 / (10 * HOUR), start, end),
        )
    elif roll < 0.80:  # publisher: 2-150 items a day with a day/night cycle
        kind, base = "poisson", math.exp(rng.uniform(math.log(2), math.log(150))) / DAY
        items = poisson(rng, diurnal(base, 0.7, rng.random()), base * 1.7, start, end)
    elif roll < 0.90:  # 5-60 items a day, then silence for good
        kind, base = "goes-quiet", math.exp(rng.uniform(math.log(5), math.log(60))) / DAY
        items = poisson(rng, constant(base), base, start, rng.uniform(-DAY, 4 * DAY))
    else:  # about one item a week
        kind, items = "dead", poisson(rng, constant(1 / (7 * DAY)), 1 / (7 * DAY), start, end)
    outage = None
    if rng.random() < OUTAGE_SHARE:
        o0 = rng.uniform(0, end - TAIL - OUTAGE)
        outage = (o0, o0 + OUTAGE)
    return Feed(f"feed-{k:04d}", kind, tuple(sorted(items)), outage)


def make_world(n: int, days: float, seed: int) -> list[Feed]:
    rng = random.Random(seed)
    return [make_feed(k, rng, -HISTORY, days * DAY + TAIL) for k in range(n)]


def failed(feed: Feed, t: float, rng: random.Random) -> bool:
    return rng.random() < ERROR_RATE or (feed.outage is not None and feed.outage[0] <= t < feed.outage[1])


# --- the two policies ------------------------------------------------------------------------------


def adaptive_policy(bounds: Bounds, end: float) -> Policy:
    def simulate(feed: Feed, first: float, seed: int) -> FeedRun:
        rng, fail_rng = random.Random(seed), random.Random(seed + 1)
        timing = SourceTiming.initial(feed.id, bounds, EPOCH, due=EPOCH + timedelta(seconds=first))
        t, seen, ok_polls, requests, notices = first, -1, [], 0, Counter[str]()
        while t < end + TAIL:
            requests += t < end
            if failed(feed, t, fail_rng):
                outcome = PollOutcome("error", error="HTTP 503", error_kind="http")
            else:
                upto = bisect.bisect_left(feed.items, t)
                lo = max(upto - BACKLOG, 0) if seen < 0 else seen
                times = tuple(EPOCH + timedelta(seconds=x) for x in feed.items[lo:upto])
                outcome, seen = PollOutcome("ok", new_items=len(times), item_times=times), upto
                ok_polls.append(t)
            timing, change = next_timing(timing, outcome, bounds, EPOCH + timedelta(seconds=t), rng)
            if change is not None and change.notify and t < end:
                notices[f"{feed.kind}->{change.new}"] += 1
            t = (timing.next_due - EPOCH).total_seconds()
        return FeedRun(ok_polls, requests, notices)

    return simulate


def fixed_policy(interval: float, end: float) -> Policy:
    def simulate(feed: Feed, first: float, seed: int) -> FeedRun:
        fail_rng = random.Random(seed + 1)
        t, ok_polls, requests = first, [], 0
        while t < end + TAIL:
            requests += t < end
            if not failed(feed, t, fail_rng):
                ok_polls.append(t)
            t += interval
        return FeedRun(ok_polls, requests, Counter())

    return simulate


def latencies(feed: Feed, ok_polls: list[float], end: float) -> list[float]:
    """Publish -> first successful poll after it, for items published in [0, end)."""
    out = []
    for pub in feed.items:
        if 0 <= pub < end:
            k = bisect.bisect_right(ok_polls, pub)
            out.append(ok_polls[k] - pub if k < len(ok_polls) else math.inf)
    return out


def run(world: list[Feed], end: float, seed: int, policy: Policy, starts: dict[str, float]) -> RunResult:
    all_lat: list[float] = []
    by_kind: dict[str, list[float]] = {}
    requests, notices = 0, Counter[str]()
    for k, feed in enumerate(world):
        result = policy(feed, starts[feed.id], seed + 7919 * k)
        requests += result.requests
        notices.update(result.notices)
        lat = latencies(feed, result.ok_polls, end)
        all_lat += lat
        by_kind.setdefault(feed.kind, []).extend(lat)
    return RunResult(requests, tuple(all_lat), {k: tuple(v) for k, v in by_kind.items()}, notices)


def compare(world: list[Feed], bounds: Bounds, end: float, seed: int) -> tuple[RunResult, RunResult, float]:
    """Adaptive first; then fixed polling at the interval that makes the same number of requests."""
    due = spread_start([f.id for f in world], bounds.nominal, EPOCH, random.Random(seed))
    starts = {sid: (d - EPOCH).total_seconds() for sid, d in due.items()}
    ada = run(world, end, seed, adaptive_policy(bounds, end), starts)
    interval = len(world) * end / ada.requests
    spread = {sid: s * interval / bounds.nominal for sid, s in starts.items()}
    return ada, run(world, end, seed, fixed_policy(interval, end), spread), interval


# --- report ------------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def minutes(seconds: float) -> str:
    return f"{seconds / 60:7.1f} min"


def ratios(ada: RunResult, fix: RunResult) -> tuple[float, float]:
    """(median, p95) latency of adaptive over fixed."""
    return (
        pct(ada.latencies, 0.5) / pct(fix.latencies, 0.5),
        pct(ada.latencies, 0.95) / pct(fix.latencies, 0.95),
    )


def report(
    world: list[Feed], args: argparse.Namespace, ada: RunResult, fix: RunResult, interval: float
) -> bool:
    kinds = Counter(f.kind for f in world)
    print(
        f"world: {args.feeds} feeds x {args.days:g} days, seed {args.seed}, {len(ada.latencies)} items "
        f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))} feeds)"
    )
    print(
        f"budget: adaptive ran first (nominal {args.nominal:.0f} s); fixed interval computed to match: "
        f"{interval:.0f} s = {interval / 60:.1f} min"
    )
    print(f"{'':10s}{'requests':>10s}{'median':>13s}{'p95':>13s}{'mean':>13s}{'max':>13s}")
    for name, res in (("fixed", fix), ("adaptive", ada)):
        lat = res.latencies
        print(
            f"{name:10s}{res.requests:10d}{minutes(pct(lat, 0.5)):>13s}{minutes(pct(lat, 0.95)):>13s}"
            f"{minutes(statistics.fmean(lat)):>13s}{minutes(max(lat)):>13s}"
        )
    med, p95 = ratios(ada, fix)
    mean = statistics.fmean(ada.latencies) / statistics.fmean(fix.latencies)
    print(
        f"ratio adaptive/fixed: requests {ada.requests / fix.requests:.3f}, "
        f"median {med:.2f} (target <= 0.50), p95 {p95:.2f} (target <= 1.00), mean {mean:.2f}"
    )
    print("by feed kind, fixed -> adaptive:")
    for kind in sorted(ada.by_kind):
        a, f = ada.by_kind[kind], fix.by_kind[kind]
        if a:
            print(
                f"  {kind:11s}{len(a):7d} items  median {minutes(pct(f, 0.5))} -> {minutes(pct(a, 0.5))}"
                f"   p95 {minutes(pct(f, 0.95))} -> {minutes(pct(a, 0.95))}"
            )
    print(
        "health notices in the adaptive run (feed kind->new health): "
        + (", ".join(f"{k} {v}" for k, v in sorted(ada.notices.items())) or "none")
    )
    return med <= 0.5 and p95 <= 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument(
        "--nominal", type=float, default=900.0, help="nominal interval, seconds (sets the budget)"
    )
    ap.add_argument("--no-sweep", action="store_true", help="skip the exponent sensitivity runs")
    args = ap.parse_args()
    end = args.days * DAY
    world = make_world(args.feeds, args.days, args.seed)
    t0 = time.perf_counter()
    bounds = Bounds(nominal=args.nominal)
    ada, fix, interval = compare(world, bounds, end, args.seed)
    met = report(world, args, ada, fix, interval)
    if not args.no_sweep:
        print("sensitivity to Bounds.exponent (each row: its own budget-matched fixed run):")
        for exponent in (0.4, bounds.exponent, 0.5):
            a, f, i = (
                (ada, fix, interval)
                if exponent == bounds.exponent
                else compare(world, replace(bounds, exponent=exponent), end, args.seed)
            )
            med, p95 = ratios(a, f)
            print(
                f"  exponent {exponent:.2f}: fixed interval {i / 60:5.1f} min, median ratio {med:.2f}, "
                f"p95 ratio {p95:.2f}"
            )
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    print("TARGET MET (median <= 0.5x, p95 <= 1.0x)" if met else "TARGET MISSED")


if __name__ == "__main__":
    main()
