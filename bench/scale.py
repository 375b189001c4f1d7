"""Scale-out cold pass on PostgreSQL + Redis with 1, 2, ... worker processes, beside the embedded mode.

    .venv/bin/python bench/scale.py                      # 200 feeds x 20 entries, workers 1 and 2 (4, 8)
    .venv/bin/python bench/scale.py --feeds 2000 --workers 1 2 4 8

The site is bench/ingest_site.py's (its own process). Each run gets a fresh PostgreSQL schema (and a
flushed Redis database): the embedded mode is `storywatch once` (its article worker processes,
writer process and group commit); scale-out is `storywatch scheduler` plus `storywatch worker
--processes N`, with every source due at start. Throughput is documents over the span of the pass
as the fetch log records it (first fetch start to last fetch end), so process start-up is not
counted in either mode. The scale-out passes run in rounds (``--rounds``, default 2), each round in
the reverse order of the one before (1 2, then 2 1), and each worker count's rate is pooled over its
rounds: this machine's speed drifts during a run, and a single pass of each is a coin toss between
them. Target: 2 worker processes >= 1.6x one (on 2 cores shared with the site
server, PostgreSQL and Redis, that is a lot to ask: the figures say how far it gets).

Beside each pass: CPU per document per role, sampled from /proc over the pass (the workers or
`once` with their children, the scheduler, the site server, our PostgreSQL sessions (found by
their application_name), PostgreSQL's background processes, Redis), and the cores that were ours,
other users' (the machine's busy time from /proc/stat minus ours) and idle. On 2 cores, 2 worker
processes can reach 1.6x one only if the other roles' CPU stays under ~25% of the workers'.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest import process_cpu_s  # noqa: E402
from bench.ingest_site import feed_path, serve  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
TARGET_2X = 1.6
APP = "swbench"  # application_name of the bench's PostgreSQL sessions: their backends' CPU is counted


# --------------------------------------------------------------------------- CPU per role

Snapshot = dict[int, tuple[int, str]]  # pid -> (parent pid, command line)
Role = Callable[[Snapshot], list[int]]


def snapshot() -> Snapshot:
    """Every live process's parent and command line (Linux /proc)."""
    out: Snapshot = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((d / "stat").read_text().rpartition(")")[2].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        out[int(d.name)] = (ppid, cmd)
    return out


def tree(root: int) -> Role:
    """``root`` and its descendants."""

    def pids(snap: Snapshot) -> list[int]:
        found, frontier = [root], {root}
        while frontier:
            frontier = {pid for pid, (ppid, _) in snap.items() if ppid in frontier}
            found.extend(frontier)
        return found

    return pids


def command(prefix: str) -> Role:
    return lambda snap: [pid for pid, (_, cmd) in snap.items() if cmd.startswith(prefix)]


def postgres_aux(snap: Snapshot) -> list[int]:
    """The postmaster and its background processes (WAL writer, checkpointer...), not client backends."""
    return [
        pid
        for pid, (_, cmd) in snap.items()
        if cmd.startswith(("postgres: ", "/usr/lib/postgresql")) and "(" not in cmd
    ]


MACHINE = "machine"  # every process's CPU (/proc/stat): what is not ours is other users' load


def machine_busy_s() -> float:
    """CPU seconds the machine's cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class RoleCPU:
    """CPU seconds per role over time, sampled from /proc in a thread every ``every`` s. A process alive
    at the first sample (the site, Redis, PostgreSQL's background) counts from that sample; one started
    later (workers, their database sessions) from its start. Our PostgreSQL sessions are found by their
    ``application_name`` (``APP``), so other users of the server are left out."""

    def __init__(self, roles: dict[str, Role], every: float = 0.25) -> None:
        self.roles = {
            **roles,
            "postgres": self._backends,
            "postgres bg": postgres_aux,
            "redis": command("redis-server"),
        }
        self.every = every
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._base: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pg: object = None
        self.sessions: list[tuple[float, dict[str, int]]] = []

    def _backends(self, snap: Snapshot) -> list[int]:
        import psycopg

        if self._pg is None:
            self._pg = psycopg.connect(PG_DSN, autocommit=True)
        rows = self._pg.execute(  # type: ignore[attr-defined]
            "SELECT pid, state, wait_event_type FROM pg_stat_activity WHERE application_name = %s", (APP,)
        ).fetchall()
        states = {"running": 0, "waiting on a lock": 0, "idle in transaction": 0}
        for _pid, state, wait in rows:
            if state == "idle in transaction":
                states["idle in transaction"] += 1
            elif state == "active":
                states["waiting on a lock" if wait in ("Lock", "LWLock") else "running"] += 1
        self.sessions.append((time.time(), states))
        return [int(r[0]) for r in rows]

    def sessions_between(self, start: float, end: float) -> dict[str, float]:
        """Our PostgreSQL sessions by state, averaged over the samples from ``start`` to ``end``:
        "waiting on a lock" is a writer stalled behind another's band-key advisory locks (or a row)."""
        picked = [states for t, states in self.sessions if start <= t <= end]
        keys = ("running", "waiting on a lock", "idle in transaction")
        return {k: sum(p[k] for p in picked) / len(picked) if picked else 0.0 for k in keys}

    def __enter__(self) -> RoleCPU:
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        if self._pg is not None:
            self._pg.close()  # type: ignore[attr-defined]

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self, *, first: bool = False) -> None:
        snap = snapshot()
        for role, pids in self.roles.items():
            for pid in pids(snap):
                cpu = process_cpu_s(pid)
                if pid not in self._last and first:
                    self._base[pid] = cpu
                if cpu:
                    self._last[pid] = (role, cpu)
        totals = dict.fromkeys(self.roles, 0.0)
        for pid, (role, cpu) in self._last.items():
            totals[role] += cpu - self._base.get(pid, 0.0)
        totals[MACHINE] = machine_busy_s()
        self.samples.append((time.time(), totals))

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds per role from ``start`` to ``end`` (wall clock), interpolated between samples."""
        return {role: self._at(end, role) - self._at(start, role) for role in [*self.roles, MACHINE]}

    def _at(self, when: float, role: str) -> float:
        prev = self.samples[0]
        for t, totals in self.samples:
            if t >= when:
                t0, v0 = prev[0], prev[1][role]
                return v0 if t == t0 else v0 + (totals[role] - v0) * (when - t0) / (t - t0)
            prev = (t, totals)
        return prev[1][role]


@dataclass(frozen=True)
class Pass:
    """A cold pass: documents, its span (first fetch start to last fetch end), CPU per role in it."""

    documents: int
    start: float
    end: float
    cpu: dict[str, float]
    sessions: dict[str, float]  # our PostgreSQL sessions by state, mean over the pass

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def rate(self) -> float:
        return self.documents / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> Iterator[str]:
        cores = os.cpu_count() or 1
        ours = {r: c for r, c in self.cpu.items() if r != MACHINE}
        total = sum(ours.values())
        docs = max(self.documents, 1)
        per_doc = [f"{r} {1000 * c / docs:.2f}" for r, c in ours.items() if c >= 0.005]
        yield f"    CPU ms per document: {', '.join(per_doc)}; total {1000 * total / docs:.2f}"
        span = self.seconds or float("nan")
        others = max(self.cpu.get(MACHINE, 0.0) - total, 0.0)
        yield (
            f"    cores busy: ours {total / span:.2f}, other users' {others / span:.2f}, "
            f"idle {cores - (total + others) / span:.2f} (of {cores})"
        )
        states = ", ".join(f"{k} {v:.2f}" for k, v in self.sessions.items())
        yield f"    our PostgreSQL sessions (mean): {states}"


def write_config(tmp: Path, url: str, redis: str | None, base: str, feeds: int, concurrency: int) -> Path:
    lines = [
        f'database: "{url}"',
        *([f'broker: "{redis}"'] if redis else []),
        "fetch: {allow_private_networks: ['127.0.0.1/32'], per_host_min_gap: 0s, "
        f"per_host_concurrency: {concurrency}, concurrency: {concurrency}, respect_robots: false}}",
        "alerts: {channels: {console: {type: console}}}",
        "daemon: {watch_files: false, log_level: warning}",
        "scale: {lease: 120s, tick: 0.2s, batch: 1000}",
        "sources:",
        *(
            f'  - {{id: feed-{f:05d}, kind: feed, url: "{base}{feed_path(f)}", interval: 1h}}'
            for f in range(feeds)
        ),
    ]
    path = tmp / "bench.yaml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def schema() -> tuple[str, str]:
    import psycopg

    name = f"swbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return name, f"{PG}?application_name={APP}&options=-csearch_path%3D{name}"


def drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def pass_figures(url: str) -> tuple[int, float, float]:
    """(documents, first fetch start, last fetch end), times as POSIX seconds."""
    from sqlalchemy import func, select

    from storage.db import open_database
    from storage.models import DocumentRow, FetchLogRow

    db = open_database(url, migrate=False)
    try:
        with db.read() as s:
            docs = int(s.scalar(select(func.count()).select_from(DocumentRow)) or 0)
            rows = s.execute(select(FetchLogRow.started_at, FetchLogRow.seconds)).all()
    finally:
        db.dispose()
    if not rows:
        return docs, 0.0, 0.0
    start = min(_posix(r.started_at) for r in rows)
    end = max(_posix(r.started_at) + r.seconds for r in rows)
    return docs, start, end


def _posix(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def measured(url: str, cpu: RoleCPU) -> Pass:
    docs, start, end = pass_figures(url)
    return Pass(docs, start, end, cpu.between(start, end), cpu.sessions_between(start, end))


def storywatch(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    env.pop("STORYWATCH_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-c", "from crawler.cli import main; main()", "--config", str(config), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
        start_new_session=True,
    )


def embedded(tmp: Path, base: str, feeds: int, concurrency: int, site: int) -> Pass:
    name, url = schema()
    try:
        config = write_config(tmp, url, None, base, feeds, concurrency)
        proc = storywatch(config, "once", "--no-deliver", log=tmp / "once.err")
        with RoleCPU({"once": tree(proc.pid), "site": lambda _: [site]}) as cpu:
            proc.wait()
        return measured(url, cpu)
    finally:
        drop(name)


def scale_out(
    tmp: Path,
    base: str,
    feeds: int,
    expected: int,
    workers: int,
    threads: int,
    redis: str,
    concurrency: int,
    site: int,
) -> Pass:
    import redis as redis_lib

    from crawler.config import load_settings
    from storage import dispatch
    from storage import sources as store_sources
    from storage.db import open_database

    redis_lib.Redis.from_url(redis).flushdb()
    name, url = schema()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = write_config(tmp, url, redis, base, feeds, concurrency)
        settings = load_settings(config)
        db = open_database(url)
        specs = settings.source_specs()
        store_sources.sync_sources(db, specs)
        dispatch.plan_sources(db, {s.id: datetime.now(UTC) for s in specs}, [s.id for s in specs])
        db.dispose()
        args = ("worker", "--processes", str(workers), "--threads", str(threads))
        procs.append(storywatch(config, *args, log=tmp / f"worker{workers}.err"))
        procs.append(storywatch(config, "scheduler", log=tmp / f"scheduler{workers}.err"))
        roles = {"workers": tree(procs[0].pid), "scheduler": tree(procs[1].pid), "site": lambda _: [site]}
        with RoleCPU(roles) as cpu:
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                docs = pass_figures(url)[0]
                if _polled(url) >= feeds or docs >= expected:
                    break
                time.sleep(1.0)
        return measured(url, cpu)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # the main process only: it stops Dramatiq's children
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        drop(name)
        redis_lib.Redis.from_url(redis).flushdb()


def _polled(url: str) -> int:
    from sqlalchemy import func, select

    from storage.db import open_database
    from storage.models import SourceRow

    db = open_database(url, migrate=False)
    try:
        with db.read() as s:
            return int(s.scalar(select(func.count()).where(SourceRow.timing.is_not(None))) or 0)
    finally:
        db.dispose()


def pooled(runs: list[Pass]) -> float:
    """Documents over seconds, summed over the passes (a slow pass weighs as much as it lasted)."""
    seconds = sum(r.seconds for r in runs)
    return sum(r.documents for r in runs) / seconds if seconds > 0 else 0.0


def report(passes: dict[int, list[Pass]]) -> None:
    """Each worker count's pooled rate against one process's; 2 / 1 against the target. The
    passes of a round run in turn (the next round in reverse order), so a machine that slows down
    or speeds up during the run (these shared machines do, by up to 1.7x on a fixed CPU loop
    between two seconds) weighs on both sides alike; the per-round ratios show the spread."""
    one = pooled(passes.get(1, []))
    for n, runs in passes.items():
        rounds = " ".join(f"{r.rate:.0f}" for r in runs)
        line = f"{n} worker process(es): {pooled(runs):.0f}/s pooled (rounds: {rounds})"
        if one and n != 1:
            per_round = " ".join(f"{r.rate / b.rate:.2f}x" for r, b in zip(runs, passes[1], strict=False))
            line += f", {pooled(runs) / one:.2f}x one process (per round: {per_round})"
        print(line)
    if one and passes.get(2):
        ratio = pooled(passes[2]) / one
        verdict = "meets" if ratio >= TARGET_2X else "misses"
        print(f"2 processes / 1 process: {ratio:.2f}x ({verdict} the {TARGET_2X}x target)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--entries", type=int, default=20)
    cores = os.cpu_count() or 1
    ap.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[n for n in (1, 2, 4, 8) if n <= max(cores, 2)],
        help="worker process counts (default: 1 and 2, and 4 and 8 where the machine has the cores)",
    )
    ap.add_argument("--threads", type=int, default=8, help="polls at once per worker process")
    ap.add_argument("--concurrency", type=int, default=64, help="fetch.concurrency and per_host_concurrency")
    ap.add_argument(
        "--redis",
        default=os.environ.get("STORYWATCH_BENCH_REDIS", "redis://127.0.0.1:6379/15"),
        help="a Redis database to flush and use (default: $STORYWATCH_BENCH_REDIS, else database 15)",
    )
    ap.add_argument("--no-embedded", action="store_true", help="scale-out only (when profiling it)")
    ap.add_argument(
        "--rounds", type=int, default=2, help="passes per worker count, in turn (ABBA order); default 2"
    )
    args = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve, args=(args.feeds, args.entries, send), daemon=True)
    server.start()
    port = recv.recv()[0]
    assert server.pid is not None
    base = f"http://127.0.0.1:{port}"
    expected = args.feeds * args.entries
    print(f"site: {args.feeds} feeds x {args.entries} entries = {expected} articles; {os.cpu_count()} cores")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if not args.no_embedded:
                once = embedded(Path(tmp), base, args.feeds, args.concurrency, server.pid)
                print(
                    f"embedded (storywatch once, PostgreSQL): {once.documents} documents in "
                    f"{once.seconds:.1f} s = {once.rate:.0f}/s"
                )
                for line in once.lines():
                    print(line)
            passes: dict[int, list[Pass]] = {n: [] for n in args.workers}
            for r in range(args.rounds):
                order = args.workers if r % 2 == 0 else list(reversed(args.workers))  # ABBA: drift cancels
                for n in order:
                    run = scale_out(
                        Path(tmp),
                        base,
                        args.feeds,
                        expected,
                        n,
                        args.threads,
                        args.redis,
                        args.concurrency,
                        server.pid,
                    )
                    passes[n].append(run)
                    print(
                        f"round {r + 1}, scale-out, {n} worker process(es): {run.documents} documents in "
                        f"{run.seconds:.1f} s = {run.rate:.0f}/s"
                    )
                    for line in run.lines():
                        print(line)
            report(passes)
    finally:
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        server.terminate()
        server.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
