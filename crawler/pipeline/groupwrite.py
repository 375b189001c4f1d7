"""Group commit: one database write in flight; what arrives meanwhile goes out together as the next.

SQLite (and PostgreSQL) pay per transaction for every page an insert dirties: with a near-duplicate
index of 40 random band keys per document, a commit of 20 documents writes ~900 pages to the WAL,
most of which the next commit writes again. When writes queue up behind the one running (the
writer is busy: a cold pass over thousands of feeds), ``GroupWriter`` hands them to ``flush`` as
ONE call, up to ``max_size`` units (documents), and gives each caller its own result. With
``linger`` (seconds), a write that finds the writer idle waits that long for others to join it,
unless ``max_size`` units arrive first: a little latency for far fewer pages written when many
sources finish close together (a pass over thousands of feeds); without it, a write that finds the
writer idle goes out at once.

A grouped call that fails is retried one item at a time, so an item that cannot be written fails
alone and the others are written (a grouped write is all-or-nothing, so nothing is written twice).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

A = TypeVar("A")
R = TypeVar("R")
A_in = TypeVar("A_in", contravariant=True)
R_out = TypeVar("R_out", covariant=True)


class Submits(Protocol[A_in, R_out]):
    """What a pass writes through: ``GroupWriter``, or a caller's own (the scale-out workers share
    one writer thread between the event loops of a process: ``crawler.scale.groupcommit``)."""

    async def submit(self, item: A_in) -> R_out: ...


class GroupWriter(Generic[A, R]):
    """``await submit(item)`` -> its result, computed by ``flush(items)`` (one result per item, in order)."""

    def __init__(
        self,
        flush: Callable[[list[A]], Awaitable[Sequence[R]]],
        *,
        max_size: int,
        size: Callable[[A], int] = lambda _: 1,
        linger: float = 0.0,
    ) -> None:
        self._flush = flush
        self._max = max(1, max_size)
        self._size = size
        self._linger = linger
        self._pending: list[tuple[A, asyncio.Future[R]]] = []
        self._full = asyncio.Event()  # set when the pending items reach max_size units
        self._drainer: asyncio.Task[None] | None = None
        self.items = 0  # items submitted so far
        self.flushes = 0  # calls of ``flush`` so far (grouping shows as flushes < items)

    async def submit(self, item: A) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self.items += 1
        if self._linger and self._units() >= self._max:  # only a lingering drain waits for it (O(pending))
            self._full.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    def _units(self) -> int:
        return sum(self._size(item) for item, _ in self._pending)

    async def _drain(self) -> None:
        try:
            while self._pending:
                if self._linger and self._units() < self._max:
                    # wait a little for more (a write per item costs more than the wait); a full group goes
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self._linger)
                await self._run(self._take())
        except asyncio.CancelledError:  # the loop is closing: nobody will write what is left
            for _, fut in self._pending:
                fut.cancel()
            self._pending.clear()
            raise

    def _take(self) -> list[tuple[A, asyncio.Future[R]]]:
        """The oldest pending items, up to ``max_size`` units (at least one item)."""
        taken, units = 0, 0
        for item, _ in self._pending:
            units += self._size(item)
            if taken and units > self._max:
                break
            taken += 1
        group, self._pending = self._pending[:taken], self._pending[taken:]
        return group

    async def _run(self, group: list[tuple[A, asyncio.Future[R]]]) -> None:
        live = [(item, fut) for item, fut in group if not fut.done()]  # a caller may have been cancelled
        if not live:
            return
        self.flushes += 1
        try:
            results = list(await self._flush([item for item, _ in live]))
        except Exception as exc:
            if len(live) > 1:  # all-or-nothing failed: each on its own, so only the bad one fails
                for one in live:
                    await self._run([one])
            elif not live[0][1].done():
                live[0][1].set_exception(exc)
            return
        if len(results) != len(live):  # a broken flush: fail its callers rather than leave them waiting
            results_error = RuntimeError(f"flush returned {len(results)} results for {len(live)} items")
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(results_error)
            return
        for (_, fut), result in zip(live, results, strict=True):
            if not fut.done():
                fut.set_result(result)
