"""Group commit in a worker process: one writer thread for all its Dramatiq threads' polls.

Each Dramatiq thread runs its polls on an event loop of its own; their writes meet here, on a
thread with its own event loop, where ``crawler.pipeline.GroupWriter`` gathers them: the documents
of every poll that finished while a write ran (or within ``linger``) go out as ONE ingest
transaction, and the polls' final writes (fetch records and the fenced schedule writes,
``storage.dispatch.finish_polls``) as one more. One write is in flight per process; the database
sees fewer, bigger transactions (PostgreSQL's CPU per document is the largest share left to the
workers' own on a small machine: ``bench/scale.py`` prints it).

Kill -9 safety is the lease's: a poll whose final write never happened keeps its lease, and the
scheduler dispatches it again when the lease expires (its documents, if they were written, are
found again by their unique keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from crawler.pipeline import GroupWriter

A = TypeVar("A")
R = TypeVar("R")


class ThreadedGroupWriter(Generic[A, R]):
    """``await submit(item)`` from any thread's event loop -> its result, computed by ``flush(items)``
    (synchronous, one result per item in order) on the writer thread, one call at a time: items that
    arrive while a flush runs go out together in the next, up to ``max_size`` units."""

    def __init__(
        self,
        flush: Callable[[list[A]], Sequence[R]],
        *,
        loop: asyncio.AbstractEventLoop,
        max_size: int,
        size: Callable[[A], int] = lambda _: 1,
        linger: float = 0.0,
    ) -> None:
        async def run(items: list[A]) -> Sequence[R]:
            return flush(items)  # on the writer's loop: nothing else of it runs meanwhile

        self.loop = loop
        self.group: GroupWriter[A, R] = GroupWriter(run, max_size=max_size, size=size, linger=linger)

    async def submit(self, item: A) -> R:
        done = asyncio.run_coroutine_threadsafe(self.group.submit(item), self.loop)
        return await asyncio.wrap_future(done)


class WriterThread:
    """A daemon thread running an event loop for ``ThreadedGroupWriter``s; ``close`` waits for the
    writes already submitted, then stops it."""

    def __init__(self, name: str = "storywatch-writer") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        if not self._thread.is_alive():
            return

        async def drain() -> None:
            current = asyncio.current_task()
            while pending := [t for t in asyncio.all_tasks() if t is not current and not t.done()]:
                await asyncio.wait(pending, timeout=timeout)

        try:
            with contextlib.suppress(TimeoutError):  # a write stuck past ``timeout``: its lease covers it
                asyncio.run_coroutine_threadsafe(drain(), self.loop).result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)


__all__ = ["ThreadedGroupWriter", "WriterThread"]
