"""RELIABILITY item 25: the event loop's lag is measured continuously, on /metrics and in `status`."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from crawler.cli.base import cli
from crawler.daemon import Daemon
from crawler.pipeline.looplag import LoopLag
from storage.models import DaemonRow
from tests.daemon.test_daemon import FAST, rows, run_daemon, site, wait_until, write_config
from tests.sitekit import Site

__all__ = ["site"]  # the fixture


def test_a_blocked_loop_shows_as_lag() -> None:
    async def main() -> LoopLag:
        lag = LoopLag(interval=0.01).start()
        await asyncio.sleep(0.2)
        time.sleep(0.3)  # CPU work on the loop
        await asyncio.sleep(0.2)
        await lag.stop()
        return lag

    summary = asyncio.run(main()).summary()
    assert summary.samples >= 10
    assert summary.max >= 0.25 and summary.p50 < 0.05, summary


def test_the_daemon_publishes_its_loop_lag_on_metrics_and_in_status(tmp_path: Path, site: Site) -> None:
    site.add("/page", "<html><body><div id='news'>Some text</div></body></html>")
    cfg = write_config(
        tmp_path,
        [f"{{id: page, kind: page, url: '{site.url('/page')}', selector: '#news', {FAST}}}"],
        daemon=", metrics: '127.0.0.1:0'",
    )
    seen: dict[str, str] = {}

    async def scenario(d: Daemon) -> None:
        await asyncio.sleep(0.3)
        time.sleep(0.4)  # what a parse on the loop would do
        await wait_until(lambda: d.loop_lag.summary().max >= 0.3, what="the lag sample")
        await wait_until(
            lambda: any((r.loop_lag_max or 0) >= 0.3 for r in rows(cfg, DaemonRow)), what="heartbeat with lag"
        )
        body = await asyncio.to_thread(urllib.request.urlopen, f"http://{d.metrics_address}/metrics")
        seen["metrics"] = body.read().decode()

    run_daemon(cfg, scenario)
    assert 'storywatch_event_loop_lag_seconds_bucket{le="0.5"}' in seen["metrics"]
    assert "storywatch_event_loop_lag_p99_seconds" in seen["metrics"]
    shown = CliRunner().invoke(cli, ["--config", str(cfg), "status"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    shown_lag = re.search(r"event-loop lag \(last 5 min\): p99 \d+ ms, max (\d+) ms", shown.output)
    assert shown_lag and int(shown_lag.group(1)) >= 300, shown.output
