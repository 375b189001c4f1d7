"""How late the event loop runs what is due: the lag that CPU work on the loop causes.

A task sleeps ``interval`` seconds again and again; each time it wakes, how much later than asked
is one sample (a loop that runs a 200 ms parse between two wake-ups wakes the sleeper ~200 ms late).
Samples go to a Prometheus histogram (``storywatch_event_loop_lag_seconds``) and to a window of the
most recent ones, summarised as p50 / p99 / max for the heartbeat row (``storywatch status``).
Sampling costs one timer per ``interval`` (20 a second by default): nothing measurable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LagSummary", "LoopLag"]

INTERVAL = 0.05  # seconds between samples
WINDOW = 6000  # samples kept for the summary: 5 minutes at INTERVAL


@dataclass(frozen=True)
class LagSummary:
    """Event-loop lag over the recent window, in seconds."""

    samples: int
    p50: float
    p99: float
    max: float

    def as_json(self) -> dict[str, float | int]:
        return {"samples": self.samples, "p50": self.p50, "p99": self.p99, "max": self.max}


class LoopLag:
    """``lag = LoopLag(on_sample=hist.observe).start()``, then ``lag.summary()``; ``await lag.stop()``."""

    def __init__(
        self,
        *,
        interval: float = INTERVAL,
        window: int = WINDOW,
        on_sample: Callable[[float], None] | None = None,
    ) -> None:
        self.interval = interval
        self.on_sample = on_sample
        self._samples: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="storywatch-loop-lag")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.record(max(0.0, time.perf_counter() - asked - self.interval))

    def record(self, lag: float) -> None:
        self._samples.append(lag)
        if self.on_sample is not None:
            self.on_sample(lag)

    def summary(self) -> LagSummary:
        ordered = sorted(self._samples)
        if not ordered:
            return LagSummary(0, 0.0, 0.0, 0.0)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 4)

        return LagSummary(len(ordered), pct(0.50), pct(0.99), round(ordered[-1], 4))
