"""Opening and closing the live resources of a run (database, rules, HTTP client, relay).

The CLI and the daemon call these; the stage order itself lives in ``pipeline``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from crawler.config import Settings
from crawler.fetch import Fetcher, fetch_settings
from crawler.pipeline.looplag import LagSummary, LoopLag
from crawler.pipeline.passes import run_pass
from crawler.pipeline.runtime import Runtime, SourceOutcome, load_ruleset, utcnow
from crawler.pipeline.store import writer_process as make_writer
from crawler.pipeline.workers import Offload, settled_heap
from crawler.types import SourceSpec
from storage.db import Database, open_database


@dataclass(frozen=True)
class PassReport:
    outcomes: tuple[SourceOutcome, ...]
    delivery: Any = None  # the relay's report, when alerts were delivered
    loop_lag: LagSummary | None = None  # how late the event loop ran during the pass

    @property
    def failed(self) -> list[SourceOutcome]:
        return [o for o in self.outcomes if o.result.status == "error"]

    @property
    def new_documents(self) -> int:
        return sum(o.result.new_documents for o in self.outcomes)

    @property
    def new_alerts(self) -> int:
        return sum(o.result.new_alerts for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        return {
            "sources": [
                {**o.result.__dict__, "warnings": list(o.result.warnings), "http_status": o.http_status}
                for o in self.outcomes
            ],
            "new_documents": self.new_documents,
            "new_alerts": self.new_alerts,
            "failed": [o.result.source_id for o in self.failed],
            "delivery": jsonable(self.delivery),
            "event_loop_lag": self.loop_lag.as_json() if self.loop_lag else None,
        }


def jsonable(obj: Any) -> Any:
    if obj is None:
        return None
    if hasattr(obj, "as_json"):
        return obj.as_json()
    if hasattr(obj, "__dataclass_fields__"):
        return {k: jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, list | tuple):
        return [jsonable(x) for x in obj]
    return obj if isinstance(obj, str | int | float | bool | dict) else str(obj)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    db: Database | None = None,
    origin: str = "live",
    cpu_workers: int = 0,
    writer_process: bool = True,
) -> AsyncIterator[Runtime]:
    """Database, rules, the shared Fetcher and, with ``cpu_workers`` > 0, the article worker process(es)
    and the database writer: a process (``writer_process``), else a thread (``pipeline.Runtime.offload``)."""
    from crawler.alerts.admin import check_alerts

    check_alerts(settings)
    database = db or open_database(settings.database_url)
    rules = load_ruleset(settings)
    offload = None
    if cpu_workers > 0:
        writer = make_writer(settings, rules, database.url) if writer_process else None
        offload = Offload(cpu_workers, writer=writer, budget=settings.fetch.cpu_budget)
    try:
        # a pass big enough for worker processes allocates millions of objects: see settled_heap
        with settled_heap() if offload is not None else nullcontext():
            async with Fetcher(fetch_settings(settings)) as fetcher:
                yield Runtime(settings, database, fetcher, rules, utcnow, origin, offload)
    finally:
        if offload is not None:
            offload.close()
        if db is None:
            database.dispose()


POOL_MIN_FEEDS = 16  # passes over fewer feeds extract inline (a worker process takes ~0.5 s to start)
MAX_CPU_WORKERS = 4


def auto_cpu_workers(specs: Sequence[SourceSpec]) -> int:
    """Article worker processes for a pass over many feeds: one per core (at most ``MAX_CPU_WORKERS``)
    on a machine with several cores, else none (``run_once(min_workers=...)`` may still ask for some).

    Two on two cores, although the main process and the writer need CPU too: with one, a feed
    waiting to be parsed queues behind other feeds' article batches (tens of ms each) and its
    articles are fetched that much later; the pass spent ~15% of its time with the CPU idle.
    """
    feeds = sum(1 for s in specs if s.kind == "feed" and s.fetch_articles)
    cores = os.cpu_count() or 1
    return min(cores, MAX_CPU_WORKERS) if feeds >= POOL_MIN_FEEDS and cores > 1 else 0


async def run_once(
    settings: Settings,
    specs: Sequence[SourceSpec],
    *,
    on_done: Callable[[SourceOutcome], None] | None = None,
    deliver: bool = True,
    min_workers: int = 0,
) -> PassReport:
    """`storywatch once`: one pass over ``specs``, then deliver what the outbox holds. ``min_workers``:
    worker processes even for a small pass (the CLI: 1; library callers and tests may run inline)."""
    many = auto_cpu_workers(specs)  # a big pass: workers per core and a writer process
    workers = many or min_workers  # a small one: ``min_workers`` and the writer thread (no spawn to wait for)
    async with open_runtime(settings, cpu_workers=workers, writer_process=many > 0) as rt:
        if rt.offload is not None:
            await rt.offload.warm()
        lag = LoopLag().start()
        try:
            outcomes = await run_pass(rt, specs, on_done=on_done)
        finally:
            await lag.stop()
        delivery = await deliver_outbox(settings, rt.db) if deliver else None
    return PassReport(tuple(outcomes), delivery, lag.summary())


async def deliver_outbox(settings: Settings, db: Database) -> Any:
    """Run the relay once over every due delivery."""
    from crawler.alerts.relay import Relay

    relay = Relay.from_settings(db, settings)
    return await relay.run_once(utcnow())
