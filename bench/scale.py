"""Scale-out cold pass on PostgreSQL + Redis with 1, 2, ... worker processes, beside the embedded mode.

    .venv/bin/python bench/scale.py                      # 200 feeds x 20 entries, workers 1 and 2
    .venv/bin/python bench/scale.py --feeds 2000 --workers 1 2 4 8

The site is bench/ingest_site.py's (its own process). Each run gets a fresh PostgreSQL schema (and a
flushed Redis database): the embedded mode is `storywatch once` (its article worker processes,
writer process and group commit); scale-out is `storywatch scheduler` plus `storywatch worker
--processes N`, with every source due at start. Throughput is documents over the span of the pass
as the fetch log records it (first fetch start to last fetch end), so process start-up is not
counted in either mode. Target: 2 worker processes >= 1.6x one (on 2 cores shared with the site
server, PostgreSQL and Redis, that is a lot to ask: the figures say how far it gets).
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
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest_site import feed_path, serve  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
TARGET_2X = 1.6


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
    return name, f"{PG}?options=-csearch_path%3D{name}"


def drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def pass_figures(url: str) -> tuple[int, float]:
    """(documents, seconds from the first fetch start to the last fetch end)."""
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
        return docs, 0.0
    start = min(r.started_at for r in rows)
    end = max(r.started_at.timestamp() + r.seconds for r in rows)
    return docs, end - start.timestamp()


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


def embedded(tmp: Path, base: str, feeds: int, concurrency: int) -> tuple[int, float]:
    name, url = schema()
    try:
        config = write_config(tmp, url, None, base, feeds, concurrency)
        proc = storywatch(config, "once", "--no-deliver", log=tmp / "once.err")
        proc.wait()
        return pass_figures(url)
    finally:
        drop(name)


def scale_out(
    tmp: Path, base: str, feeds: int, expected: int, workers: int, threads: int, redis: str, concurrency: int
) -> tuple[int, float]:
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
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            docs, _ = pass_figures(url)
            polled = _polled(url)
            if polled >= feeds or docs >= expected:
                break
            time.sleep(1.0)
        return pass_figures(url)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--entries", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=8, help="polls at once per worker process")
    ap.add_argument("--concurrency", type=int, default=64, help="fetch.concurrency and per_host_concurrency")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="a Redis database to flush and use")
    args = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve, args=(args.feeds, args.entries, send), daemon=True)
    server.start()
    port = recv.recv()[0]
    base = f"http://127.0.0.1:{port}"
    expected = args.feeds * args.entries
    print(f"site: {args.feeds} feeds x {args.entries} entries = {expected} articles; {os.cpu_count()} cores")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            docs, secs = embedded(Path(tmp), base, args.feeds, args.concurrency)
            rate = docs / secs if secs else 0.0
            print(f"embedded (storywatch once, PostgreSQL): {docs} documents in {secs:.1f} s = {rate:.0f}/s")
            rates: dict[int, float] = {}
            for n in args.workers:
                docs, secs = scale_out(
                    Path(tmp), base, args.feeds, expected, n, args.threads, args.redis, args.concurrency
                )
                rates[n] = docs / secs if secs else 0.0
                print(
                    f"scale-out, {n} worker process(es): {docs} documents in {secs:.1f} s = {rates[n]:.0f}/s"
                )
            if 1 in rates and 2 in rates and rates[1]:
                ratio = rates[2] / rates[1]
                verdict = "meets" if ratio >= TARGET_2X else "misses"
                print(f"2 processes / 1 process: {ratio:.2f}x ({verdict} the {TARGET_2X}x target)")
    finally:
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        server.terminate()
        server.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
