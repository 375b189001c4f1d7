"""The daemon serves the dashboard and the API on ``daemon.http`` beside /healthz and /metrics,
without blocking its loop, and refuses a public address without a token."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler.daemon import Daemon
from crawler.errors import ConfigError
from tests.daemon.test_daemon import FAST, feed_with, run_daemon, wait_until, write_config
from tests.sitekit import Site


def test_the_daemon_serves_dashboard_api_health_and_metrics_on_daemon_http(tmp_path: Path) -> None:
    with Site() as site:
        feed_with(site, "/feed", 2)
        cfg = write_config(
            tmp_path,
            [f"{{id: wire, kind: feed, url: '{site.url('/feed')}', {FAST}}}"],
            daemon=", http: '127.0.0.1:0'",
        )
        seen: dict[str, Any] = {}

        async def scenario(d: Daemon) -> None:
            assert d.jobs is not None
            await wait_until(lambda: d.jobs is not None and d.jobs.polls >= 1, what="a poll")
            async with httpx.AsyncClient(base_url=f"http://{d.metrics_address}") as client:
                # the daemon's loop keeps ticking while the app answers from its own thread
                answers = await asyncio.gather(
                    *(client.get(p) for p in ("/", "/api/v1/documents", "/healthz"))
                )
                seen.update(zip(("page", "documents", "healthz"), answers, strict=True))
                seen["metrics"] = await client.get("/metrics")

        run_daemon(cfg, scenario)
    assert seen["page"].status_code == 200 and "Developments" in seen["page"].text
    assert len(seen["documents"].json()["items"]) == 2
    assert seen["healthz"].json()["status"] == "running"
    assert 'storywatch_polls_total{result="ok",source="wire"}' in seen["metrics"].text


def test_the_daemon_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        [f"{{id: wire, kind: feed, url: 'http://127.0.0.1:9/feed', {FAST}}}"],
        daemon=", http: '0.0.0.0:0'",
    )

    async def scenario(d: Daemon) -> None:
        raise AssertionError("the daemon should not have started")

    with pytest.raises(ConfigError, match=r"refusing to serve the web dashboard on 0\.0\.0\.0.*web\.token"):
        run_daemon(cfg, scenario)
