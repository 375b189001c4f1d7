"""kill -9 loses nothing (issue 15, acceptance 5), full size: a cold pass in scale-out mode while a
random worker or relay is killed -9 every 10 s (and started again), then every condition checked.

    .venv/bin/python bench/chaos.py --redis redis://127.0.0.1:6379/3
    .venv/bin/python bench/chaos.py --feeds 80 --interval 10 --min-kills 6 --no-baseline

The site is tests/scalekit.py's LoggingSite (one host, every answer ``--delay`` seconds late, at
most ``--concurrency`` at once: 60 feeds x 9 articles at 4 / 0.5 s is a pass of about 75 s); the
alerts go to a webhook channel on a local receiver that logs every POST's idempotency key. Two
worker groups (``storywatch worker -p 1 -t 2``) and two relays run beside one scheduler; from the
first stored document until the pass is complete, every ``--interval`` seconds one of them is
killed -9 with its process group and started again: a worker group at random (``--seed``), and
every third time a relay at random instead.

At the end (after the leases and the outbox have had time to settle) it prints, and checks:

- documents stored = feeds x entries;
- every source has a future next_due; no dispatch lease left, none past its end, and no outbox row
  still "sending" past its lease;
- every alert's deliveries are "sent", and every delivery's idempotency key reached the receiver
  at least once; duplicate POSTs (the same key again) no more than the kills;
- at least ``--min-kills`` kills landed during the pass.

It exits 1 if any fails. With the baseline (default), the same pass without kills runs first, and
the pass time under kills is printed as a ratio of it. Each pass has a fresh PostgreSQL schema and
flushes the Redis database given (use your own).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.alertkit import Receiver, Reply  # noqa: E402
from tests.scalekit import (  # noqa: E402
    LoggingSite,
    Outcome,
    documents,
    outcome,
    plan_now,
    received_keys,
    start,
    stop,
    write_config,
)

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
WORKER = ("worker", "-p", "1", "-t", "2")
ROLES: dict[str, tuple[str, ...]] = {"w0": WORKER, "w1": WORKER, "r0": ("relay",), "r1": ("relay",)}


@dataclass
class Pass:
    expected: int
    seconds: float = 0.0  # first stored document to the last
    kills: list[tuple[float, str]] = field(default_factory=list)  # (seconds into the pass, role)
    end: Outcome | None = None
    received: list[str] = field(default_factory=list)


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A PostgreSQL schema of its own for one pass (dropped afterwards); yields its database URL."""
    import psycopg

    name = f"swchaos_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{PG}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def settle(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.5)
    return pred()


def run_pass(args: argparse.Namespace, tmp: Path, *, kill: bool) -> Pass:
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    rng = random.Random(args.seed)
    with (
        LoggingSite(delay=args.delay) as site,
        Receiver(default=Reply(delay=0.02)) as hooks,
        fresh_schema() as url,
    ):
        words = "engineers described the computing cluster"
        feeds = {f"f{i:03d}": site.feed(f"f{i:03d}", args.entries, words=words) for i in range(args.feeds)}
        config = write_config(
            tmp,
            url,
            args.redis,
            feeds,
            f"per_host_concurrency: {args.concurrency}, per_host_min_gap: 0s, deadline: 5s",
            f"lease: {args.lease}s, tick: 0.5s",
            timing="interval: 1h",
            rules=True,
            alerts=f"{{lease: 10s, relay_interval: 0.5s, channels: {{hook: {{type: webhook, "
            f'url: "{hooks.url}", rate_per_second: 50}}}}}}',
        )
        run = Pass(expected=len(feeds) * args.entries)
        db = plan_now(config)
        procs = {"scheduler": start(tmp, config, "scheduler", log="scheduler")}
        procs |= {name: start(tmp, config, *cmd, log=f"{name}-0") for name, cmd in ROLES.items()}
        try:
            if not settle(lambda: documents(db) > 0, 120):
                raise SystemExit("no document stored in 120 s: see the logs in " + str(tmp))
            first = next_kill = time.monotonic()
            while (stored := documents(db)) < run.expected and time.monotonic() - first < args.timeout:
                if kill and time.monotonic() - next_kill >= args.interval:  # the pass is still on
                    next_kill = time.monotonic()
                    kind = "r" if len(run.kills) % 3 == 2 else "w"  # every third kill a relay
                    name = rng.choice([role for role in sorted(ROLES) if role.startswith(kind)])
                    stop(procs[name], signal.SIGKILL)
                    procs[name] = start(tmp, config, *ROLES[name], log=f"{name}-{len(run.kills) + 1}")
                    run.kills.append((next_kill - first, name))
                    print(f"  {next_kill - first:5.1f} s: kill -9 {name} ({stored} documents stored)")
                time.sleep(0.5)
            run.seconds = time.monotonic() - first
            settle(lambda: outcome(db, datetime.now(UTC)).leases == 0, args.lease + 60)
            settle(lambda: _delivered(outcome(db, datetime.now(UTC)), received_keys(hooks)), 120)
        finally:
            for proc in procs.values():
                stop(proc)
        run.end = outcome(db, datetime.now(UTC))
        run.received = received_keys(hooks)
        db.dispose()
    return run


def _delivered(end: Outcome, received: list[str]) -> bool:
    return end.unsent == 0 and end.keys <= set(received)


def report(run: Pass, min_kills: int) -> list[tuple[str, bool]]:
    """Every acceptance condition as (what was measured, whether it holds)."""
    end = run.end
    assert end is not None
    received = set(run.received)
    dups = len(run.received) - len(received)
    relay_kills = sum(name.startswith("r") for _, name in run.kills)
    missing = len(end.keys - received)
    return [
        (f"documents stored: {end.documents} of {run.expected}", end.documents == run.expected),
        (f"sources with a future next_due: {end.future_due} of {end.sources}", end.future_due == end.sources),
        (
            f"leases left: {end.leases}; past their end (dispatch and outbox): {end.stale_leases}",
            end.leases == 0 and end.stale_leases == 0,
        ),
        (
            f"alerts delivered: {end.alerts_sent} of {end.alerts}; deliveries not sent: {end.unsent}",
            end.alerts > 0 and end.alerts_sent == end.alerts and end.unsent == 0,
        ),
        (
            f"deliveries received at least once: {len(end.keys) - missing} of {len(end.keys)}",
            missing == 0,
        ),
        (
            f"duplicate POSTs (same idempotency key): {dups}, kills {len(run.kills)} "
            f"(of them relays {relay_kills})",
            dups <= len(run.kills),
        ),
        (f"kills during the pass: {len(run.kills)} (at least {min_kills})", len(run.kills) >= min_kills),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--feeds", type=int, default=60)
    ap.add_argument("--entries", type=int, default=9, help="articles per feed")
    ap.add_argument("--delay", type=float, default=0.5, help="seconds the site takes per answer")
    ap.add_argument("--concurrency", type=int, default=4, help="fetch.per_host_concurrency")
    ap.add_argument("--lease", type=float, default=20.0, help="scale.lease, seconds")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between kills")
    ap.add_argument("--min-kills", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds the pass may take")
    ap.add_argument("--seed", type=int, help="which processes are killed (default: a new one, printed)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the pass without kills")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="a Redis database to flush and use")
    args = ap.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    print(
        f"{args.feeds} feeds x {args.entries} articles, site {args.delay} s per answer, "
        f"{args.concurrency} at once; kill -9 every {args.interval:g} s (--seed {args.seed}); "
        f"{os.cpu_count()} cores"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="swchaos") as tmp:
        base = None
        if not args.no_baseline:
            (Path(tmp) / "base").mkdir()
            base = run_pass(args, Path(tmp) / "base", kill=False)
            print(f"baseline pass, no kills: {base.seconds:.1f} s")
        (Path(tmp) / "chaos").mkdir()
        run = run_pass(args, Path(tmp) / "chaos", kill=True)
        ratio = f" ({run.seconds / base.seconds:.2f}x the baseline)" if base and base.seconds else ""
        print(
            f"pass under kill -9: {run.seconds:.1f} s{ratio}, kills at "
            + ", ".join(f"{t:.0f} s {name}" for t, name in run.kills)
        )
        checks = report(run, args.min_kills)
        for what, ok in checks:
            print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        failed = [what for what, ok in checks if not ok]
        if failed:
            print(f"{len(failed)} condition(s) failed; logs were in {tmp}", file=sys.stderr)
            keep = Path(tempfile.mkdtemp(prefix="swchaos-logs-"))
            for log in Path(tmp).rglob("*.err"):
                (keep / f"{log.parent.name}-{log.name}").write_bytes(log.read_bytes())
            print(f"worker, relay and scheduler logs copied to {keep}", file=sys.stderr)
            return 1
    print("every condition holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
