"""Ingest throughput: a storywatch pass against a naive crawler and the raw HTTP limit, in one run.

    python bench/ingest.py                       # 2,000 feeds x 20 entries (the issue's target)
    python bench/ingest.py --quick               # 200 x 20
    python bench/ingest.py --feeds 500 --entries 20 --naive-feeds 50 --profile /tmp/cold.prof

A local site (bench/ingest_site.py: F RSS feeds of E entries, each linking a distinct 5-8 KB news page
with boilerplate) is served by an asyncio HTTP/1.1 server with keep-alive and ETag/304 in a SEPARATE
process. Measured, in this order, against that one server:

1. raw limit: every feed and article URL fetched with one ``httpx.AsyncClient`` (keep-alive pool as
   large as the requests in flight), bodies read, nothing else; then raw 304: the feeds re-fetched with
   If-None-Match (all 304). Requests in flight: ``--raw-concurrency``, else the fastest of 1/2/4/8/32
   on a 2,100-URL probe (httpx's pool slows down as connections are added: ~1,400 requests/s at 2,
   ~300 at 64 on this machine type).
2. naive baseline, on the first ``--naive-feeds`` feeds: sequential ``httpx.get`` (a new client and
   connection per request, as the function does), ``feedparser.parse`` of the feed bytes,
   ``BeautifulSoup(page, "lxml").get_text()`` (what ``BeautifulSoup(page)`` picks here) and one sqlite3
   INSERT per article, committed per feed. A second naive variant reuses one ``httpx.Client``.
3. storywatch, in a child process (spawned, so its peak RSS is its own): what ``runner.run_once`` does
   without delivering (``open_runtime`` with ``auto_cpu_workers``, then ``pipeline.run_pass``) on a fresh
   SQLite database in a temporary directory, the default rule pack (builtin LongCat), every feed a
   source; cold (all new), then warm (the same pass again, all 304; best of 3, as for raw 304). The pass
   itself is timed; the startup (migrations, rules) is printed beside it. Settings:
   fetch.allow_private_networks ["127.0.0.1/32"], per_host_min_gap 0, per_host_concurrency ``--per-host``
   (2: every feed is on one host, so this caps all requests; the raw client's best probe is 2 too, and
   more connections only slow httpx's pool down), concurrency ``--concurrency`` (32 sources at once),
   article_concurrency 16 (default), robots.txt honoured (fetched once, cached per origin).

Documents/s = article documents / wall seconds (feed fetches included in every variant). Printed: each
rate, cold/naive, cold/raw, warm/raw-304 (time ratio), and peak RSS (``ru_maxrss``) of the storywatch
process and of the largest of its worker processes (article extraction, database writer). Beside
storywatch's CPU per article: the library floor (the raw client's CPU per article, feedparser and
lexbor on the first 100 feeds) and the CPU per article the 2 cores give at 25x the naive rate. Targets at
2,000 x 20: cold >= 25x naive, cold >= 40% of raw, warm time <= 1.5x raw 304 time, peak RSS <= 300 MB.
The machine has 2 cores, shared by the site server, storywatch's processes and whatever else runs:
the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest_site import article_path, feed_path, load_corpus, serve, site_pages  # noqa: E402

TARGETS = {"cold_vs_naive": 25.0, "cold_vs_raw": 0.40, "warm_vs_raw304": 1.5, "rss_mb": 300.0}


@dataclass(frozen=True)
class Site:
    base: str
    feeds: int
    entries: int
    server_pid: int | None = None

    def feed_urls(self, n: int | None = None) -> list[str]:
        return [self.base + feed_path(f) for f in range(n if n is not None else self.feeds)]

    def all_urls(self) -> list[str]:
        out = []
        for f in range(self.feeds):
            out.append(self.base + feed_path(f))
            out.extend(self.base + article_path(f, e) for e in range(self.entries))
        return out

    @property
    def documents(self) -> int:
        return self.feeds * self.entries


# --------------------------------------------------------------------------- raw limit


async def _raw(
    urls: list[str], concurrency: int, etags: dict[str, str] | None
) -> tuple[float, dict[str, str]]:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    seen: dict[str, str] = {}
    statuses: list[int] = []
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def one(url: str) -> None:
            headers = {"If-None-Match": etags[url]} if etags and url in etags else {}
            async with gate:
                r = await client.get(url, headers=headers)
                await r.aread()
            statuses.append(r.status_code)
            if "etag" in r.headers:
                seen[url] = r.headers["etag"]

        await asyncio.gather(*(one(u) for u in urls))
    elapsed = time.perf_counter() - started
    expected = 304 if etags else 200
    bad = sum(s != expected for s in statuses)
    if bad:
        raise SystemExit(f"raw fetch: {bad} responses were not {expected}")
    return elapsed, seen


def raw_limit(site: Site, concurrency: int | None) -> tuple[float, float, int, dict[int, float], float]:
    """(seconds for every feed and article, seconds for the feeds again with If-None-Match, the
    concurrency used, probe rates, CPU seconds of this process for every feed and article). Without
    ``concurrency``, the best of RAW_PROBE on a sample is used: httpx's connection pool slows down as
    connections are added, so the limit is not at high concurrency."""
    urls = site.all_urls()
    probes: dict[int, float] = {}
    if concurrency is None:
        sample = urls[: min(len(urls), 2100)]
        for c in RAW_PROBE:
            probes[c] = len(sample) / asyncio.run(_raw(sample, c, None))[0]
        concurrency = max(probes, key=lambda c: probes[c])
    cpu = time.process_time()
    full, etags = asyncio.run(_raw(urls, concurrency, None))
    cpu = time.process_time() - cpu
    feeds = site.feed_urls()
    again = min(asyncio.run(_raw(feeds, concurrency, {u: etags[u] for u in feeds}))[0] for _ in range(REPEAT))
    return full, again, concurrency, probes, cpu


REPEAT = 3  # the 304 passes (raw and warm) are short: best of REPEAT, against other load on the machine


RAW_PROBE = (1, 2, 4, 8, 32)


# --------------------------------------------------------------------------- library floor

FLOOR_FEEDS = 100  # feeds (and their articles) the library floor is measured on


def library_floor(site: Site, feeds: int) -> dict[str, float]:
    """CPU seconds per article of two libraries a pass cannot do without, on the first ``feeds``
    feeds (bodies rebuilt exactly as the server serves them), in this process: feedparser on each
    feed as ``crawler.feeds.parse`` calls it, and lexbor (selectolax) parsing each article page. With the
    raw client's CPU per article (httpx) this is a floor under any pass built on these libraries."""
    import io

    import feedparser
    from selectolax.lexbor import LexborHTMLParser

    from crawler.feeds import FEEDPARSER_OPTIONS

    pages = [(path, body) for path, _, body in site_pages(load_corpus(), site.base, feeds, site.entries)]
    feed_bodies = [b for p, b in pages if p.startswith("/feeds/")]
    article_bodies = [b for p, b in pages if p.startswith("/a/")]
    cpu = time.process_time()
    for body in feed_bodies:
        feedparser.parse(io.BytesIO(body), **FEEDPARSER_OPTIONS)
    parsed = time.process_time()
    for body in article_bodies:
        LexborHTMLParser(body)
    done = time.process_time()
    n = len(article_bodies)
    return {"feedparser": (parsed - cpu) / n, "lexbor": (done - parsed) / n}


# --------------------------------------------------------------------------- naive baseline


def naive(site: Site, feeds: int, *, reuse_client: bool) -> tuple[int, float]:
    """Sequential fetch + feedparser + BeautifulSoup + sqlite; (documents, seconds)."""
    import feedparser
    import httpx
    from bs4 import BeautifulSoup

    with tempfile.TemporaryDirectory(prefix="naive-") as tmp:
        con = sqlite3.connect(Path(tmp) / "naive.db")
        con.execute("CREATE TABLE docs (url TEXT PRIMARY KEY, title TEXT, text TEXT, feed TEXT)")
        client = httpx.Client(trust_env=False) if reuse_client else None
        get = client.get if client is not None else httpx.get
        count, started = 0, time.perf_counter()
        for url in site.feed_urls(feeds):
            parsed = feedparser.parse(get(url).content)
            for entry in parsed.entries:
                page = get(entry.link).content
                text = BeautifulSoup(page, "lxml").get_text(" ", strip=True)
                con.execute(
                    "INSERT OR IGNORE INTO docs VALUES (?, ?, ?, ?)", (entry.link, entry.title, text, url)
                )
                count += 1
            con.commit()
        elapsed = time.perf_counter() - started
        if client is not None:
            client.close()
        con.close()
    return count, elapsed


# --------------------------------------------------------------------------- storywatch (child process)


def _settings(site: Site, tmp: str, concurrency: int, per_host: int) -> Any:
    from crawler.config import Settings

    return Settings.model_validate(
        {
            "database": f"sqlite:///{tmp}/storywatch.db",
            "data_dir": tmp,
            "fetch": {
                "allow_private_networks": ["127.0.0.1/32"],
                "per_host_min_gap": 0,
                "per_host_concurrency": per_host,
                "concurrency": concurrency,
            },
            "alerts": {"channels": {"console": {"type": "console"}}},
            "sources": [
                {"id": f"feed-{f:05d}", "kind": "feed", "url": u} for f, u in enumerate(site.feed_urls())
            ],
        }
    )


def storywatch_child(site: Site, concurrency: int, per_host: int, profile: str | None, out: Any) -> None:
    """Cold pass, warm pass, peak RSS; the result dict goes through ``out`` (a Connection)."""
    from sqlalchemy import func, select

    from storage.db import open_database
    from storage.models import DocumentRow

    with tempfile.TemporaryDirectory(prefix="swbench-") as tmp:
        settings = _settings(site, tmp, concurrency, per_host)
        specs = settings.source_specs()
        server_before = process_cpu_s(site.server_pid)
        cold = _timed(settings, specs, f"{profile}.cold" if profile else None)
        cold["server_cpu_s"] = process_cpu_s(site.server_pid) - server_before
        warms = [_timed(settings, specs, f"{profile}.warm" if profile else None) for _ in range(REPEAT)]
        warm = min(warms, key=lambda w: float(w["pass_s"]))
        db = open_database(settings.database_url)
        with db.read() as session:
            stored = int(session.scalar(select(func.count()).select_from(DocumentRow)) or 0)
        db.dispose()
    outcomes, warm_outcomes = cold.pop("outcomes"), warm.pop("outcomes")
    failed = [o for o in outcomes if o.result.status == "error"]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.send(
        {
            "cold": cold,
            "warm": warm,
            "stored": stored,
            "cold_new": sum(o.result.new_documents for o in outcomes),
            "cold_failed": len(failed),
            "cold_alerts": sum(o.result.new_alerts for o in outcomes),
            "cold_errors": [o.result.error for o in failed][:3],
            "warm_not_modified": sum(o.result.status == "not-modified" for o in warm_outcomes),
            "warm_new": sum(o.result.new_documents for o in warm_outcomes),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_rss_mb": children.ru_maxrss / 1024,
            "worker_cpu_s": children.ru_utime + children.ru_stime,
        }
    )


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a live process so far (Linux /proc; 0.0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def process_peak_rss_mb(pid: int | None) -> float:
    """Peak resident set (VmHWM) of a live process in MB (Linux /proc; 0.0 where unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _role(pid: int | None) -> str:
    """``writer`` for the worker process holding the database open, else ``worker PID``."""
    try:
        if any(os.readlink(f).endswith(".db") for f in Path(f"/proc/{pid}/fd").iterdir()):
            return "writer"
    except OSError:
        pass
    return f"worker {pid}"


def _timed(settings: Any, specs: Any, profile: str | None) -> dict[str, Any]:
    """One pass like ``storywatch once --no-deliver`` (runner.run_once), its phases timed."""
    import cProfile

    prof = cProfile.Profile() if profile else None

    async def once() -> dict[str, Any]:
        from crawler.pipeline import GroupWriter, auto_cpu_workers, open_runtime, run_pass

        t0 = time.perf_counter()
        async with open_runtime(settings, cpu_workers=auto_cpu_workers(specs)) as rt:
            t1, c1 = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            outcomes = await run_pass(rt, specs)
            if prof:
                prof.disable()
            t2, c2 = time.perf_counter(), time.process_time()
            workers_cpu = {_role(p.pid): process_cpu_s(p.pid) for p in mp.active_children()}
            workers_rss = {_role(p.pid): process_peak_rss_mb(p.pid) for p in mp.active_children()}
            group = rt.store_group
            grouping = (group.items, group.flushes) if isinstance(group, GroupWriter) else (0, 0)
        t3 = time.perf_counter()
        return {
            "outcomes": outcomes,
            "startup_s": t1 - t0,
            "pass_s": t2 - t1,
            "total_s": t3 - t0,
            "pass_cpu_s": c2 - c1,
            "workers": rt.offload.workers if rt.offload else 0,
            "workers_cpu_s": workers_cpu,  # each worker process by role, startup included
            "workers_rss_mb": workers_rss,  # each worker process's peak RSS so far
            "grouping": grouping,  # (sources' document writes, write transactions)
        }

    result = asyncio.run(once())
    if prof and profile:
        prof.dump_stats(profile)
    return result


def run_storywatch(site: Site, concurrency: int, per_host: int, profile: str | None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=storywatch_child, args=(site, concurrency, per_host, profile, send))
    child.start()
    result: dict[str, Any] = _receive(recv, child, "the storywatch child")
    child.join()
    return result


def _receive(conn: Any, proc: Any, what: str) -> Any:
    """The process's message; exits when it dies first (instead of waiting forever)."""
    while not conn.poll(1.0):
        if not proc.is_alive():
            raise SystemExit(f"{what} exited with code {proc.exitcode} before reporting")
    return conn.recv()


# --------------------------------------------------------------------------- main


def server_stats(site: Site) -> dict[str, int]:
    import httpx

    return dict(httpx.get(site.base + "/__stats", trust_env=False).json())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--feeds", type=int, default=2000)
    ap.add_argument("--entries", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="200 feeds x 20 entries")
    ap.add_argument("--naive-feeds", type=int, default=100, help="feeds in the naive baseline's subset")
    ap.add_argument(
        "--concurrency", type=int, default=32, help="storywatch fetch.concurrency (sources at once)"
    )
    ap.add_argument("--per-host", type=int, default=2, help="storywatch fetch.per_host_concurrency")
    ap.add_argument("--raw-concurrency", type=int, help="requests in flight (default: the best of a probe)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument(
        "--profile", metavar="FILE", help="cProfile the passes into FILE.cold and FILE.warm (slows them down)"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.feeds, args.entries, args.naive_feeds = 200, 20, min(args.naive_feeds, 50)
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve, args=(args.feeds, args.entries, send), daemon=True)
    t0 = time.perf_counter()
    server.start()
    port, _routes, article_bytes, origin = _receive(recv, server, "the site server")
    site = Site(f"http://127.0.0.1:{port}", args.feeds, args.entries, server.pid)
    n = site.documents
    print(
        f"site: {args.feeds} feeds x {args.entries} entries = {n} articles "
        f"({article_bytes / n / 1024:.1f} KB avg, texts from {origin}); server pid {server.pid}, "
        f"built in {time.perf_counter() - t0:.1f} s; 2 cores shared with the server"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on this machine skews every figure)")
    try:
        return _measure(site, args)
    finally:
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        server.terminate()
        server.join()


def _measure(site: Site, args: argparse.Namespace) -> int:
    n = site.documents
    raw_s, raw304_s, conc, probes, raw_cpu = raw_limit(site, args.raw_concurrency)
    if probes:
        shown = ", ".join(f"{c}: {r:.0f}" for c, r in probes.items())
        print(
            f"raw probe      : requests/s by requests in flight on {min(n + site.feeds, 2100)} GETs: {shown}"
        )
    print(
        f"raw limit      : {raw_s:7.2f} s  {n / raw_s:8.1f} docs/s  (httpx.AsyncClient, "
        f"{conc} in flight, {n + site.feeds} GETs)"
    )
    print(f"raw 304        : {raw304_s:7.2f} s  ({site.feeds} feeds with If-None-Match; best of {REPEAT})")
    naive_rate = naive_ka = None
    if not args.skip_naive:
        feeds = min(args.naive_feeds, site.feeds)
        docs, secs = naive(site, feeds, reuse_client=False)
        naive_rate = docs / secs
        print(
            f"naive baseline : {secs:7.2f} s  {naive_rate:8.1f} docs/s  ({docs} docs from {feeds} feeds; "
            "httpx.get + feedparser + BeautifulSoup(lxml).get_text + sqlite3)"
        )
        docs, secs = naive(site, feeds, reuse_client=True)
        naive_ka = docs / secs
        print(f"naive, 1 client: {secs:7.2f} s  {naive_ka:8.1f} docs/s  (same, one keep-alive httpx.Client)")
    before = server_stats(site)
    sw = run_storywatch(site, args.concurrency, args.per_host, args.profile)
    after = server_stats(site)
    requests = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    cold, warm = sw["cold"], sw["warm"]
    cold_rate = sw["cold_new"] / cold["pass_s"]
    print(
        f"storywatch cold: {cold['pass_s']:7.2f} s  {cold_rate:8.1f} docs/s  ({sw['cold_new']} new docs, "
        f"{sw['stored']} stored, {sw['cold_alerts']} alerts, {sw['cold_failed']} failed sources)"
    )
    print(
        f"  (run_pass; startup {cold['startup_s']:.2f} s, whole run_once {cold['total_s']:.2f} s; CPU: main "
        f"{cold['pass_cpu_s']:.1f} s, its worker processes {sw['worker_cpu_s']:.1f} s (all passes), "
        f"site server {cold['server_cpu_s']:.1f} s)"
    )
    each = ", ".join(
        f"{role} {c:.1f} s ({c / max(1, sw['cold_new']) * 1000:.2f} ms/doc)"
        for role, c in cold["workers_cpu_s"].items()
    )
    print(f"  CPU of each worker process in the cold pass (startup included): {each}")
    writes, transactions = cold["grouping"]
    print(f"  group commit: {writes} sources' document writes in {transactions} write transactions")
    per_doc = (cold["pass_cpu_s"] + sum(cold["workers_cpu_s"].values())) / max(1, sw["cold_new"]) * 1000
    print(
        f"  CPU per document in the cold pass, storywatch's processes: {per_doc:.2f} ms (main "
        f"{cold['pass_cpu_s'] / max(1, sw['cold_new']) * 1000:.2f} ms); the site server: "
        f"{cold['server_cpu_s'] / max(1, sw['cold_new']) * 1000:.2f} ms; 2 cores give "
        f"{2 * cold['pass_s'] / max(1, sw['cold_new']) * 1000:.2f} ms of CPU per document at this rate"
    )
    if sw["cold_errors"]:
        print(f"  first errors: {sw['cold_errors']}")
    print(
        f"storywatch warm: {warm['pass_s']:7.2f} s  (best of {REPEAT}; {sw['warm_not_modified']}/{site.feeds}"
        " "
        f"not modified, {sw['warm_new']} new; startup {warm['startup_s']:.2f} s, "
        f"whole run_once {warm['total_s']:.2f} s)"
    )
    print(f"server saw (storywatch, all passes): {requests}")
    each_rss = ", ".join(f"{role} {mb:.0f} MB" for role, mb in cold["workers_rss_mb"].items())
    print(
        f"peak RSS: storywatch process {sw['rss_mb']:.0f} MB; its largest worker process "
        f"(article extraction or database writer) {sw['worker_rss_mb']:.0f} MB; cold pass: {each_rss}"
    )
    floor_feeds = min(site.feeds, FLOOR_FEEDS)
    floor = library_floor(site, floor_feeds)
    httpx_ms = raw_cpu / n * 1000
    floor_ms = httpx_ms + (floor["feedparser"] + floor["lexbor"]) * 1000
    budget = (
        f"; at {TARGETS['cold_vs_naive']:.0f}x the naive rate, the 2 cores give "
        f"{2000 / (TARGETS['cold_vs_naive'] * naive_rate):.2f} ms per article to all processes"
        if naive_rate
        else ""
    )
    print(
        f"library floor  : httpx client {httpx_ms:.2f} + feedparser {floor['feedparser'] * 1000:.2f} + "
        f"lexbor parse {floor['lexbor'] * 1000:.2f} = {floor_ms:.2f} ms of CPU per article (the raw client's "
        f"CPU; feedparser and lexbor on {floor_feeds} feeds in this process; SQLite not counted); "
        f"storywatch's processes {per_doc:.2f} ms{budget}"
    )
    return _ratios(sw, cold_rate, n / raw_s, raw304_s, naive_rate, naive_ka, site)


def _ratios(
    sw: dict[str, Any],
    cold_rate: float,
    raw_rate: float,
    raw304_s: float,
    naive_rate: float | None,
    naive_ka: float | None,
    site: Site,
) -> int:
    checks: list[tuple[str, str, str, bool | None]] = []
    if naive_rate:
        r = cold_rate / naive_rate
        checks.append(("cold vs naive", f"{r:6.1f}x", f">= {TARGETS['cold_vs_naive']:.0f}x", r >= 25))
        assert naive_ka
        checks.append(("cold vs naive (1 client)", f"{cold_rate / naive_ka:6.1f}x", "(info)", None))
    r = cold_rate / raw_rate
    checks.append(("cold vs raw", f"{r:6.1%}", ">= 40%", r >= TARGETS["cold_vs_raw"]))
    r = sw["warm"]["pass_s"] / raw304_s
    checks.append(("warm vs raw 304 (time)", f"{r:6.2f}x", "<= 1.5x", r <= TARGETS["warm_vs_raw304"]))
    rss = max(sw["rss_mb"], sw["worker_rss_mb"])  # the main process and each worker process
    checks.append(("peak RSS (any process)", f"{rss:5.0f} MB", "<= 300 MB", rss <= TARGETS["rss_mb"]))
    at_target = site.feeds >= 2000 and site.entries >= 20
    print(
        f"ratios ({'targets apply' if at_target else 'targets are set for 2,000 x 20; shown for reference'}):"
    )
    for name, value, target, ok in checks:
        flag = "" if ok is None else ("met" if ok else "NOT met")
        print(f"  {name:<26} {value:>9}   target {target:<10} {flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
