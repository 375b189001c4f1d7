"""The daemon's throughput against `storywatch once`, in one run: the path users run, measured.

    python bench/daemon.py                 # 2,000 feeds x 20 entries (issue 15's target)
    python bench/daemon.py --quick         # 200 x 20

The local site of bench/ingest.py (bench/ingest_site.py, in its own process) serves F feeds of E
entries. Then, one after the other, each on a fresh SQLite database in a temporary directory, with the
same settings (every feed a source, the default LongCat rule pack, a console channel, private
networks allowed for 127.0.0.1, per-host gap 0, per-host concurrency 2, 32 sources at once):

1. ``storywatch once --no-deliver`` as a subprocess;
2. ``storywatch run`` as a subprocess with ``daemon.startup_spread: 0`` (every source due at start),
   stopped with SIGTERM once every article is stored.

For both, the database is polled (read-only) every 0.1 s: documents/s is counted from the first stored
document to the last (start-up, migrations and rule loading excluded), and CPU per document is the CPU
of the command and every process it started, sampled from /proc until the last document is stored
(start-up included; the main process's share is printed too). ``--profile DIR`` runs each command's
main process under cProfile (DIR/once.prof, DIR/daemon.prof; the figures are then inflated).
Targets (issue 15): the daemon's rate >= 0.9x once's, its CPU per document within 10% of once's.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest import Site, _receive, process_cpu_s  # noqa: E402
from bench.ingest_site import serve  # noqa: E402

STORYWATCH = Path(sys.executable).with_name("storywatch")
TARGET_RATE, TARGET_CPU = 0.9, 1.10
PROFILED = """
import cProfile, signal, sys, time
from crawler.cli import main
out, sys.argv = sys.argv[1], ["storywatch", *sys.argv[2:]]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `once` stopped by the bench (the daemon: its own)
profile = cProfile.Profile(time.thread_time)  # the main thread's CPU (not the wait for other processes)
try:
    profile.runcall(main)
finally:
    profile.dump_stats(out)
"""  # `storywatch ARGS` under cProfile, saved however it exits (`python -m cProfile` loses a sys.exit)


@dataclass(frozen=True)
class Run:
    what: str
    documents: int
    first_s: float  # seconds from the command's start to its first stored document
    span_s: float  # first stored document -> last
    cpu_s: float  # the command and its processes, start-up included
    main_cpu_s: float  # the command's own process (the event loop; its threads)

    @property
    def rate(self) -> float:
        return self.documents / self.span_s if self.span_s > 0 else float("nan")

    @property
    def cpu_ms_per_doc(self) -> float:
        return 1000 * self.cpu_s / self.documents if self.documents else float("nan")


def write_config(site: Site, tmp: Path) -> Path:
    config = {
        "database": f"sqlite:///{tmp}/storywatch.db",
        "data_dir": str(tmp),
        "fetch": {
            "allow_private_networks": ["127.0.0.1/32"],
            "per_host_min_gap": 0,
            "per_host_concurrency": 2,
            "concurrency": 32,
        },
        "daemon": {"startup_spread": 0, "watch_files": False},
        "alerts": {"channels": {"console": {"type": "console"}}},
        "sources": [
            {"id": f"feed-{f:05d}", "kind": "feed", "url": u} for f, u in enumerate(site.feed_urls())
        ],
    }
    path = tmp / "storywatch.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM documents").fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet, or busy
        return 0


def _tree(root: int) -> list[int]:
    """``root`` and every process it started, still alive (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree.extend(frontier)
    return tree


class TreeCPU:
    """CPU of a process tree, sampled: each process's last reading counts (worker processes exit
    before the command does, and a process reparented on exit is not reaped by us)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, float] = {}

    def sample(self) -> None:
        for pid in _tree(self.root):
            cpu = process_cpu_s(pid)
            if cpu:
                self.seen[pid] = max(cpu, self.seen.get(pid, 0.0))

    @property
    def total(self) -> float:
        return float(sum(self.seen.values()))

    @property
    def main(self) -> float:
        return self.seen.get(self.root, 0.0)


def measure(what: str, args: list[str], site: Site, timeout: float, profile: Path | None = None) -> Run:
    with tempfile.TemporaryDirectory(prefix=f"sw-bench-{what}-") as name:
        tmp = Path(name)
        config = write_config(site, tmp)
        db = tmp / "storywatch.db"
        t0 = time.perf_counter()
        log = (tmp / "output.log").open("wb")
        command = [str(STORYWATCH), "--config", str(config), *args]
        if profile is not None:  # the main process only (cProfile's overhead inflates every figure)
            command = [sys.executable, "-c", PROFILED, str(profile / f"{what}.prof"), *command[1:]]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        first = last = None
        seen = 0
        cpu = TreeCPU(proc.pid)
        try:
            while time.perf_counter() - t0 < timeout:
                cpu.sample()
                n = _count(db)
                now = time.perf_counter()
                if n and first is None:
                    first = now
                if n > seen:
                    seen, last = n, now
                if n >= site.documents or proc.poll() is not None:
                    cpu.sample()
                    break
                time.sleep(0.1)
        finally:
            _stop(proc, server=args[0] == "run")
            log.close()
        if seen < site.documents:
            tail = (tmp / "output.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"{what}: {seen} of {site.documents} documents stored; output:\n{tail}")
        assert first is not None and last is not None
        return Run(what, seen, first - t0, last - first, cpu.total, cpu.main)


def _stop(proc: subprocess.Popen[bytes], *, server: bool) -> None:
    """SIGTERM the daemon (it stops its processes itself); let `once` finish (a SIGTERM kills it at once
    and leaves its writer and worker processes running, orphaned); past 120 s, SIGKILL its tree."""
    if server and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        for pid in reversed(_tree(proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--feeds", type=int, default=2000)
    ap.add_argument("--entries", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="200 feeds x 20 entries")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds allowed per command")
    ap.add_argument(
        "--profile", type=Path, help="write DIR/once.prof and DIR/daemon.prof (cProfile of each main process)"
    )
    args = ap.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.feeds, args.entries = 200, 20
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve, args=(args.feeds, args.entries, send), daemon=True)
    server.start()
    port, _routes, _bytes, origin = _receive(recv, server, "the site server")
    site = Site(f"http://127.0.0.1:{port}", args.feeds, args.entries, server.pid)
    print(f"site: {args.feeds} feeds x {args.entries} entries = {site.documents} articles ({origin})")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on this machine skews every figure)")
    try:
        once = measure("once", ["once", "--no-deliver"], site, args.timeout, args.profile)
        daemon = measure("daemon", ["run"], site, args.timeout, args.profile)
    finally:
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        server.terminate()
        server.join()
    for r in (once, daemon):
        print(
            f"{r.what:7}: {r.documents} documents in {r.span_s:6.2f} s from the first one "
            f"({r.rate:7.1f} docs/s; first after {r.first_s:5.2f} s); CPU {r.cpu_s:6.1f} s = "
            f"{r.cpu_ms_per_doc:.2f} ms per document (main process {r.main_cpu_s:.1f} s, the others "
            f"{r.cpu_s - r.main_cpu_s:.1f} s)"
        )
    rate, cpu = daemon.rate / once.rate, daemon.cpu_ms_per_doc / once.cpu_ms_per_doc
    for label, value, ok, target in (
        ("rate", rate, rate >= TARGET_RATE, f">= {TARGET_RATE}x"),
        ("CPU per doc", cpu, cpu <= TARGET_CPU, f"<= {TARGET_CPU}x"),
    ):
        print(f"daemon / once, {label:12} {value:5.2f}x  target {target}  {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
