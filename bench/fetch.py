"""Fetch-path CPU per request: storywatch's ``Fetcher`` against a bare ``httpx.AsyncClient``, in one run.

    python bench/fetch.py                          # 5,000 pages (5-8 KB) and 5,000 conditional GETs (304)
    python bench/fetch.py --n 2000 --rounds 5
    python bench/fetch.py --profile /tmp/fetch.prof   # cProfile storywatch's 200 and 304 phases

The site is bench/ingest_site.py's server (asyncio HTTP/1.1, keep-alive, ETag/304, every response
built before it reports ready) in a SEPARATE process, so the CPU time measured here
(``time.process_time`` of this process) is the client's alone. Against that one server, each round
fetches the same N article URLs:

- ``raw``: one ``httpx.AsyncClient`` (keep-alive pool of 2, 2 requests in flight), body read, nothing
  else; then the same N URLs with If-None-Match (all 304). This is the baseline.
- ``storywatch``: one ``crawler.fetch.client.Fetcher`` configured as bench/ingest.py configures it
  (allow 127.0.0.1, per_host_min_gap 0, per_host_concurrency 2, 32 overall); 16 requests queued at
  once (article_concurrency), so the Fetcher's own per-host gate keeps 2 in flight. Pages are fetched
  with ``check_robots=True`` (as the pipeline fetches articles; robots.txt is cached per origin), the
  304 phase with stored validators (as the pipeline fetches feeds).

Printed per phase: CPU microseconds per request, wall seconds, and the storywatch/raw ratio of each
(the median of ``--rounds`` rounds, raw and storywatch alternating). The machine has 2 cores shared
with the server and whatever else runs: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest_site import article_path, serve  # noqa: E402

ENTRIES = 20  # articles per feed on the site (the site's shape; only articles are requested here)
IN_FLIGHT = 2  # per_host_concurrency, and the raw client's best setting (see bench/ingest.py)
QUEUED = 16  # storywatch: requests waiting at the Fetcher's gate at once (article_concurrency)


@dataclass(frozen=True)
class Run:
    """One phase of one variant: CPU seconds of this process and wall seconds."""

    cpu: float
    wall: float


async def _drive(urls: Sequence[str], workers: int, one: Callable[[str], Awaitable[None]]) -> Run:
    """``workers`` tasks take URLs in order until none is left; timed on CPU and wall clocks."""
    queue = iter(urls)

    async def worker() -> None:
        for url in queue:
            await one(url)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return Run(time.process_time() - cpu, time.perf_counter() - wall)


async def raw_round(urls: Sequence[str], etags: dict[str, str]) -> tuple[Run, Run]:
    import httpx

    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def page(url: str) -> None:
            response = await client.get(url)
            await response.aread()
            if response.status_code != 200:
                raise SystemExit(f"raw: {url} answered {response.status_code}")
            etags[url] = response.headers["etag"]

        async def conditional(url: str) -> None:
            response = await client.get(url, headers={"If-None-Match": etags[url]})
            await response.aread()
            if response.status_code != 304:
                raise SystemExit(f"raw: {url} answered {response.status_code}, not 304")

        await _drive(urls[:IN_FLIGHT], IN_FLIGHT, page)  # open the connections outside the timing
        return await _drive(urls, IN_FLIGHT, page), await _drive(urls, IN_FLIGHT, conditional)


async def storywatch_round(
    urls: Sequence[str], etags: dict[str, str], profile: cProfile.Profile | None
) -> tuple[Run, Run]:
    from crawler.fetch import Fetcher, FetchSettings
    from crawler.types import Validators

    settings = FetchSettings(
        allow_private_networks=("127.0.0.1/32",), per_host_min_gap=0.0, per_host_concurrency=IN_FLIGHT
    )
    async with Fetcher(settings) as fetcher:

        async def page(url: str) -> None:
            fetched = await fetcher.fetch(url, source_id="bench", check_robots=True)
            if fetched.status != 200 or not fetched.body:
                raise SystemExit(f"storywatch: {url} answered {fetched.status}")

        async def conditional(url: str) -> None:
            validators = Validators(etag=etags[url])
            fetched = await fetcher.fetch(url, source_id="bench", validators=validators)
            if not fetched.not_modified:
                raise SystemExit(f"storywatch: {url} answered {fetched.status}, not 304")

        await _drive(urls[:IN_FLIGHT], IN_FLIGHT, page)  # robots.txt and connections, outside the timing
        if profile is not None:
            profile.enable()
        pages = await _drive(urls, QUEUED, page)
        not_modified = await _drive(urls, QUEUED, conditional)
        if profile is not None:
            profile.disable()
        return pages, not_modified


def _receive(conn: Any, proc: Any) -> Any:
    while not conn.poll(1.0):
        if not proc.is_alive():
            raise SystemExit(f"the site server exited with code {proc.exitcode} before reporting")
    return conn.recv()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=5000, help="article URLs per phase")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (raw then storywatch); medians printed")
    ap.add_argument("--profile", metavar="FILE", help="cProfile storywatch's timed phases into FILE")
    args = ap.parse_args(argv)
    feeds = -(-args.n // ENTRIES)
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve, args=(feeds, ENTRIES, send), daemon=True)
    server.start()
    port, _routes, article_bytes, origin = _receive(recv, server)
    base = f"http://127.0.0.1:{port}"
    urls = [base + article_path(f, e) for f in range(feeds) for e in range(ENTRIES)][: args.n]
    print(
        f"site: {len(urls)} article URLs, {article_bytes / (feeds * ENTRIES) / 1024:.1f} KB avg "
        f"({origin}), server pid {server.pid}; {IN_FLIGHT} requests in flight; {args.rounds} rounds"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    profile = cProfile.Profile() if args.profile else None
    try:
        results = _measure(urls, args.rounds, profile)
    finally:
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        server.terminate()
        server.join()
    _report(results, len(urls))
    if profile is not None and args.profile:
        profile.dump_stats(args.profile)
        print(f"profile of storywatch's phases (all rounds): {args.profile}")
    return 0


def _measure(
    urls: Sequence[str], rounds: int, profile: cProfile.Profile | None
) -> dict[tuple[str, str], list[Run]]:
    etags: dict[str, str] = {}
    results: dict[tuple[str, str], list[Run]] = {}
    for _ in range(rounds):
        raw_pages, raw_304 = asyncio.run(raw_round(urls, etags))
        sw_pages, sw_304 = asyncio.run(storywatch_round(urls, etags, profile))
        for key, run in (
            (("raw", "200"), raw_pages),
            (("raw", "304"), raw_304),
            (("storywatch", "200"), sw_pages),
            (("storywatch", "304"), sw_304),
        ):
            results.setdefault(key, []).append(run)
    return results


def _report(results: dict[tuple[str, str], list[Run]], n: int) -> None:
    def med(variant: str, phase: str) -> Run:
        runs = results[(variant, phase)]
        return Run(statistics.median(r.cpu for r in runs), statistics.median(r.wall for r in runs))

    print(f"{'phase':<12}{'variant':<12}{'CPU us/req':>12}{'wall s':>9}{'req/s':>9}   (medians)")
    for phase, label in (("200", "pages 200"), ("304", "cond. 304")):
        for variant in ("raw", "storywatch"):
            run = med(variant, phase)
            print(f"{label:<12}{variant:<12}{run.cpu / n * 1e6:12.1f}{run.wall:9.2f}{n / run.wall:9.0f}")
    print("ratios storywatch/raw:")
    for phase, label in (("200", "pages 200"), ("304", "cond. 304")):
        raw, sw = med("raw", phase), med("storywatch", phase)
        print(f"  {label:<10} CPU {sw.cpu / raw.cpu:5.2f}x   wall {sw.wall / raw.wall:5.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
