"""Adaptive polling (crawler.schedule.next_timing) against fixed-interval polling, same request count.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crawler.schedule import Bounds, PollOutcome, SourceTiming, next_timing, spread_start  # noqa: E402

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
    requests: int
    latencies: tuple[float, ...]  # one per item published in [0, duration)
    by_kind: dict[str, tuple[float, ...]]
    notices: Counter[str]


# --- the world ---------------------------------------------------------------------------------


def poisson(rng: random.Random, rate: Callable[[float], float], peak: float, start: float, end: float) -> list[float]:
    """A non-homogeneous Poisson process by thinning (rate and peak in items/second)."""
    out, t = [], start
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return out
        if rng.random() * peak <= rate(t):
            out.append(t)


def diurnal(base: float, depth: float, phase: float) -> Callable[[float], float]:
    return lambda t: base * (1 + depth * math.sin(2 * math.pi * (t / DAY + phase)))


def office_hours(per_day: float, phase: float) -> Callable[[float], float]:
    def rate(t: float) -> float:
        hour = ((t / DAY + phase) % 1.0) * 24
        return per_day / (10 * HOUR) if 8 <= hour < 18 else 0.0

    return rate


def make_feed(k: int, rng: random.Random, start: float, end: float) -> Feed:
    roll = rng.random()
    if roll < 0.25:  # breaking-story search feed
        kind = "bursty"
        trickle = rng.uniform(0.5, 3) / DAY
        items = poisson(rng, lambda t: trickle, trickle, start, end)
        for _ in range(rng.randint(1, 3)):
            w0 = rng.uniform(start + DAY, end - DAY)
            length = rng.uniform(1, 6) * HOUR
            gap = rng.uniform(2, 15) * 60
            items += poisson(rng, lambda t, g=gap: 1 / g, 1 / gap, w0, w0 + length)
            items += poisson(rng, lambda t, g=gap: 1 / (4 * g), 1 / (4 * gap), w0 + length, w0 + 3 * length)
    elif roll < 0.50:  # daily poster, office hours
        kind = "daily"
        rate = office_hours(rng.uniform(1, 5), rng.random())
        items = poisson(rng, rate, 5 / (10 * HOUR), start, end)
    elif roll < 0.80:  # publisher, Poisson with a day/night cycle
        kind = "poisson"
        base = math.exp(rng.uniform(math.log(2), math.log(150))) / DAY
        items = poisson(rng, diurnal(base, 0.7, rng.random()), base * 1.7, start, end)
    elif roll < 0.90:  # posts, then goes quiet for good
        kind = "goes-quiet"
        stop = rng.uniform(-DAY, 4 * DAY)
        base = math.exp(rng.uniform(math.log(5), math.log(60))) / DAY
        items = poisson(rng, lambda t: base, base, start, stop)
    else:  # (nearly) dead
        kind = "dead"
        items = poisson(rng, lambda t: 1 / (7 * DAY), 1 / (7 * DAY), start, end)
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


def simulate_adaptive(feed: Feed, bounds: Bounds, first: float, end: float, seed: int) -> tuple[list[float], int, Counter[str]]:
    """Poll times that succeeded, requests before `end`, and the notices raised."""
    rng, fail_rng = random.Random(seed), random.Random(seed + 1)
    timing = SourceTiming.initial(feed.id, bounds, EPOCH, due=EPOCH + timedelta(seconds=first))
    t, seen, ok_polls, requests, notices = first, None, [], 0, Counter[str]()
    while t < end + TAIL:
        requests += t < end
        if failed(feed, t, fail_rng):
            outcome = PollOutcome("error", error="HTTP 503", error_kind="http")
        else:
            upto = bisect.bisect_left(feed.items, t)
            lo = max(upto - BACKLOG, 0) if seen is None else seen
            times = tuple(EPOCH + timedelta(seconds=x) for x in feed.items[lo:upto])
            outcome = PollOutcome("ok", new_items=len(times), item_times=times)
            seen = upto
            ok_polls.append(t)
        timing, change = next_timing(timing, outcome, bounds, EPOCH + timedelta(seconds=t), rng)
        if change is not None and change.notify and t < end:
            notices[f"{feed.kind}->{change.new}"] += 1
        t = (timing.next_due - EPOCH).total_seconds()
    return ok_polls, requests, notices


def simulate_fixed(feed: Feed, interval: float, first: float, end: float, seed: int) -> tuple[list[float], int]:
    fail_rng = random.Random(seed + 1)
    t, ok_polls, requests = first, [], 0
    while t < end + TAIL:
        requests += t < end
        if not failed(feed, t, fail_rng):
            ok_polls.append(t)
        t += interval
    return ok_polls, requests


def latencies(feed: Feed, ok_polls: list[float], end: float) -> list[float]:
    """Publish -> first successful poll after it, for items published in [0, end)."""
    out = []
    for pub in feed.items:
        if 0 <= pub < end:
            k = bisect.bisect_right(ok_polls, pub)
            out.append(ok_polls[k] - pub if k < len(ok_polls) else math.inf)
    return out


def run(world: list[Feed], end: float, seed: int, policy: Callable[[Feed, float, int], tuple[list[float], int]],
        starts: dict[str, float]) -> RunResult:
    all_lat: list[float] = []
    by_kind: dict[str, list[float]] = {}
    requests = 0
    for k, feed in enumerate(world):
        ok_polls, n = policy(feed, starts[feed.id], seed + 7919 * k)
        requests += n
        lat = latencies(feed, ok_polls, end)
        all_lat += lat
        by_kind.setdefault(feed.kind, []).extend(lat)
    return RunResult(requests, tuple(all_lat), {k: tuple(v) for k, v in by_kind.items()}, Counter())


# --- report ------------------------------------------------------------------------------------------


def pct(values: tuple[float, ...] | list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def minutes(seconds: float) -> str:
    return f"{seconds / 60:7.1f} min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--nominal", type=float, default=900.0)
    args = ap.parse_args()
    end = args.days * DAY
    world = make_world(args.feeds, args.days, args.seed)
    bounds = Bounds(nominal=args.nominal)
    due = spread_start([f.id for f in world], bounds.nominal, EPOCH, random.Random(args.seed))
    starts = {sid: (d - EPOCH).total_seconds() for sid, d in due.items()}
    notices: Counter[str] = Counter()

    def adaptive(feed: Feed, first: float, seed: int) -> tuple[list[float], int]:
        polls, n, raised = simulate_adaptive(feed, bounds, first, end, seed)
        notices.update(raised)
        return polls, n

    t0 = time.perf_counter()
    ada = run(world, end, args.seed, adaptive, starts)
    t_ada = time.perf_counter() - t0
    interval = args.feeds * end / ada.requests
    fixed_starts = {sid: s * interval / bounds.nominal for sid, s in starts.items()}
    t0 = time.perf_counter()
    fix = run(world, end, args.seed, lambda f, first, seed: simulate_fixed(f, interval, first, end, seed), fixed_starts)
    t_fix = time.perf_counter() - t0
    report(world, args, ada, fix, interval, notices, t_ada, t_fix)


def report(world: list[Feed], args: argparse.Namespace, ada: RunResult, fix: RunResult, interval: float,
           notices: Counter[str], t_ada: float, t_fix: float) -> None:
    kinds = Counter(f.kind for f in world)
    print(f"world: {args.feeds} feeds x {args.days:g} days, seed {args.seed}, {len(ada.latencies)} items; "
          + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print(f"budget: adaptive ran first (nominal {args.nominal:.0f} s); fixed interval computed to match: "
          f"{interval:.0f} s = {interval / 60:.1f} min")
    print(f"{'':10s}{'requests':>10s}{'median':>13s}{'p95':>13s}{'mean':>13s}{'max':>13s}")
    for name, res in (("fixed", fix), ("adaptive", ada)):
        lat = res.latencies
        print(f"{name:10s}{res.requests:10d}{minutes(pct(lat, 0.5)):>13s}{minutes(pct(lat, 0.95)):>13s}"
              f"{minutes(statistics.fmean(lat)):>13s}{minutes(max(lat)):>13s}")
    med = pct(ada.latencies, 0.5) / pct(fix.latencies, 0.5)
    p95 = pct(ada.latencies, 0.95) / pct(fix.latencies, 0.95)
    print(f"ratio adaptive/fixed: requests {ada.requests / fix.requests:.3f}, median {med:.2f} (target <= 0.50), "
          f"p95 {p95:.2f} (target <= 1.00), mean {statistics.fmean(ada.latencies) / statistics.fmean(fix.latencies):.2f}")
    print("median latency by feed kind (fixed -> adaptive):")
    for kind in sorted(ada.by_kind):
        a, f = ada.by_kind[kind], fix.by_kind[kind]
        if a:
            print(f"  {kind:11s} {len(a):6d} items {minutes(pct(f, 0.5))} -> {minutes(pct(a, 0.5))}   "
                  f"p95 {minutes(pct(f, 0.95))} -> {minutes(pct(a, 0.95))}")
    print("notices raised by the adaptive run (kind->health): "
          + (", ".join(f"{k} {v}" for k, v in sorted(notices.items())) or "none"))
    print(f"simulation time: adaptive {t_ada:.1f} s, fixed {t_fix:.1f} s")
    ok = med <= 0.5 and p95 <= 1.0
    print("TARGET MET" if ok else "TARGET MISSED")


if __name__ == "__main__":
    main()
