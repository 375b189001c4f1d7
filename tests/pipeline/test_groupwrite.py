"""Group commit: writes that queue up behind a running one go out together; results and failures stay
per caller."""

from __future__ import annotations

import asyncio

import pytest

from crawler.pipeline import GroupWriter


class Store:
    """A flush that records its calls and holds each until released (a slow writer)."""

    def __init__(self, *, bad: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.bad = bad

    async def flush(self, items: list[str]) -> list[str]:
        self.calls.append(list(items))
        await self.release.wait()
        if self.bad in items:
            raise ValueError(f"cannot store {self.bad}")
        return [item.upper() for item in items]


def test_writes_arriving_during_a_write_go_out_as_one_and_each_caller_gets_its_result() -> None:
    async def go() -> None:
        store = Store()
        gw: GroupWriter[str, str] = GroupWriter(store.flush, max_size=100)
        first = asyncio.create_task(gw.submit("a"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert store.calls == [["a"]]  # alone and at once: nothing else was waiting
        rest = [asyncio.create_task(gw.submit(x)) for x in ("b", "c", "d")]
        await asyncio.sleep(0)
        store.release.set()
        assert await first == "A"
        assert [await t for t in rest] == ["B", "C", "D"]
        assert store.calls == [["a"], ["b", "c", "d"]]
        assert gw.flushes == 2

    asyncio.run(go())


def test_a_group_holds_at_most_max_size_units_but_always_one_item() -> None:
    async def go() -> None:
        store = Store()
        gw: GroupWriter[str, str] = GroupWriter(store.flush, max_size=5, size=len)
        blocker = asyncio.create_task(gw.submit("x"))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(gw.submit(x)) for x in ("aa", "bbb", "c", "dddddddd", "e")]
        await asyncio.sleep(0)
        store.release.set()
        await blocker
        assert [await t for t in waiting] == ["AA", "BBB", "C", "DDDDDDDD", "E"]
        # 2+3 fit in 5; 1 starts the next; an 8-unit item alone is over the cap but still goes out
        assert store.calls == [["x"], ["aa", "bbb"], ["c"], ["dddddddd"], ["e"]]

    asyncio.run(go())


def test_a_failed_group_is_retried_one_by_one_so_only_the_bad_item_fails() -> None:
    async def go() -> None:
        store = Store(bad="c")
        gw: GroupWriter[str, str] = GroupWriter(store.flush, max_size=100)
        blocker = asyncio.create_task(gw.submit("a"))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(gw.submit(x)) for x in ("b", "c", "d")]
        await asyncio.sleep(0)
        store.release.set()
        assert await blocker == "A"
        assert await waiting[0] == "B"
        with pytest.raises(ValueError, match="cannot store c"):
            await waiting[1]
        assert await waiting[2] == "D"
        assert store.calls == [["a"], ["b", "c", "d"], ["b"], ["c"], ["d"]]

    asyncio.run(go())


def test_a_cancelled_caller_is_left_out_of_the_next_group() -> None:
    async def go() -> None:
        store = Store()
        gw: GroupWriter[str, str] = GroupWriter(store.flush, max_size=100)
        blocker = asyncio.create_task(gw.submit("a"))
        await asyncio.sleep(0)
        gone, kept = asyncio.create_task(gw.submit("b")), asyncio.create_task(gw.submit("c"))
        await asyncio.sleep(0)
        gone.cancel()
        store.release.set()
        await blocker
        assert await kept == "C"
        assert store.calls == [["a"], ["c"]]

    asyncio.run(go())


def test_with_linger_a_write_waits_for_others_unless_the_group_fills_up() -> None:
    async def go() -> None:
        store = Store()
        store.release.set()
        gw: GroupWriter[str, str] = GroupWriter(store.flush, max_size=3, linger=1.0)
        first = asyncio.create_task(gw.submit("a"))
        await asyncio.sleep(0.05)
        assert store.calls == []  # lingering: the writer is idle, but more may come
        second = asyncio.create_task(gw.submit("b"))
        assert [await first, await second] == ["A", "B"]
        assert store.calls == [["a", "b"]]
        loop = asyncio.get_running_loop()
        started = loop.time()
        full = [asyncio.create_task(gw.submit(x)) for x in ("c", "d", "e")]
        assert [await t for t in full] == ["C", "D", "E"]
        assert loop.time() - started < 0.5  # three units fill the group: no lingering (1 s)
        assert store.calls == [["a", "b"], ["c", "d", "e"]]

    asyncio.run(go())


def test_a_flush_returning_the_wrong_number_of_results_fails_its_callers_instead_of_hanging() -> None:
    async def short(items: list[str]) -> list[str]:
        return [item.upper() for item in items][:-1]

    async def go() -> None:
        gw: GroupWriter[str, str] = GroupWriter(short, max_size=10)
        with pytest.raises(RuntimeError, match="flush returned 0 results for 1 items"):
            await asyncio.wait_for(gw.submit("a"), 5)
        with pytest.raises(RuntimeError, match="flush returned 0 results"):  # the writer still serves
            await asyncio.wait_for(gw.submit("b"), 5)
        assert gw.flushes == 2

    asyncio.run(go())
