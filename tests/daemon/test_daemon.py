"""The daemon in-process against real local servers: back-off and health notices, a paused loop,
reloads from changed files, graceful shutdown, /healthz and /metrics; plus its pure adapters."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import re
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from crawler.cli.base import cli
from crawler.cli.daemon import commands
from crawler.config import load_settings
from crawler.daemon import Daemon, collect_status
from crawler.daemon.jobs import diff_sources, plan_start, poll_outcome
from crawler.daemon.schedule import Bounds, SourceTiming
from crawler.pipeline import SourceOutcome
from crawler.types import FeedHints, SourceResult, SourceSpec
from storage.db import open_database
from storage.models import DeliveryRow, DocumentRow, FetchLogRow, MatchRow
from tests.sitekit import Site, article_page, rss

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
RULES = (
    "version: 1\nrules:\n  - id: test.cluster\n    title: Cluster details\n    severity: medium\n"
    "    query: '\"computing cluster\"'\n"
)
for _command in commands():  # what crawler.cli does in main()
    cli.add_command(_command)
FAST = "interval: 0.5s, min_interval: 0.3s, max_interval: 1s"


# ----------------------------------------------------------------------------- helpers


def write_config(tmp: Path, sources: list[str], *, daemon: str = "", rules: str = RULES) -> Path:
    rule_file = tmp / "rules.yaml"
    if not rule_file.exists():
        rule_file.write_text(rules, "utf-8")
    cfg = tmp / "storywatch.yaml"
    cfg.write_text(
        f"""
database: "sqlite:///{tmp / "sw.db"}"
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s, per_host_concurrency: 8,
         deadline: 5s, connect_timeout: 2s, read_timeout: 4s}}
rules: {{paths: ["{rule_file}"]}}
alerts:
  channels: {{ops: {{type: console}}}}
  health_channel: ops
  relay_interval: 0.3s
daemon: {{watch_files: false, shutdown_deadline: 4s{daemon}}}
sources:
"""
        + "".join(f"  - {s}\n" for s in sources),
        "utf-8",
    )
    return cfg


async def wait_until(pred: Callable[[], Any], timeout: float = 8.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_daemon(cfg: Path, scenario: Callable[[Daemon], Awaitable[None]], **kw: Any) -> Daemon:
    async def main() -> Daemon:
        daemon = Daemon(load_settings(cfg), handle_signals=False, rng=random.Random(7), tick=0.5, **kw)
        task = asyncio.create_task(daemon.run())
        try:
            await wait_until(lambda: daemon.state == "running" or task.done(), what="daemon start")
            assert not task.done(), task.exception()
            await scenario(daemon)
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 15)
        return daemon

    return asyncio.run(main())


def rows(cfg: Path, model: Any) -> list[Any]:
    db = open_database(load_settings(cfg).database_url)
    with db.read() as s:
        out = list(s.scalars(select(model)))
    db.dispose()
    return out


def feed_with(site: Site, path: str, n: int) -> None:
    items = [
        {"title": f"Item {i}", "link": site.url(f"/a/{path.strip('/')}-{i}"), "guid": f"{path}-{i}"}
        for i in range(n)
    ]
    for i in range(n):
        site.add(
            f"/a/{path.strip('/')}-{i}",
            article_page(
                f"Story {path} {i}",
                [
                    f"Paragraph {i} of {path}: the computing cluster was described at length "
                    "by engineers speaking at a conference on Tuesday morning."
                ],
            ),
        )
    site.add(path, rss(items), "application/rss+xml")


def hit_times(site: Site, path: str) -> list[float]:
    """When ``path`` was requested (monotonic seconds), oldest first."""
    with site._lock:
        return [t for p, t in getattr(site, "times", []) if p == path]


@pytest.fixture
def site() -> Iterator[Site]:
    """sitekit.Site that also remembers when each request arrived."""
    with Site() as s:
        original = s._serve
        times: list[tuple[str, float]] = []
        s.times = times  # type: ignore[attr-defined]

        def timed(req: BaseHTTPRequestHandler) -> None:
            with s._lock:
                times.append((req.path, time.monotonic()))
            original(req)

        s._serve = timed  # type: ignore[method-assign]
        yield s


# ----------------------------------------------------------------------------- pure adapters


def test_poll_outcome_maps_every_result() -> None:
    times = (T0, T0 - timedelta(hours=1))
    ok = SourceOutcome(
        SourceResult("s", "ok", new_documents=1), 200, times, None, 300.0, FeedHints(60.0, 3600.0)
    )
    p = poll_outcome(ok)
    assert (p.status, p.new_items, p.item_times, p.max_age, p.feed_ttl, p.update_period) == (
        "ok",
        2,
        times,
        300.0,
        60.0,
        3600.0,
    )
    assert poll_outcome(SourceOutcome(SourceResult("s", "not-modified"))).status == "not_modified"
    err = poll_outcome(
        SourceOutcome(SourceResult("s", "error", error="boom"), 503, retry_after=120.0, error_kind="http")
    )
    assert (err.status, err.retry_after, err.error, err.selector_miss) == ("error", 120.0, "boom", False)
    miss = poll_outcome(SourceOutcome(SourceResult("p", "error", error="no match"), error_kind="selector"))
    assert miss.selector_miss


def test_plan_start_resumes_stored_timings_and_spreads_the_rest() -> None:
    specs = [
        SourceSpec(f"s{i}", "feed", f"http://x/{i}", interval=600, min_interval=60, max_interval=3600)
        for i in range(5)
    ]
    bounds = {s.id: Bounds.from_spec(s) for s in specs}
    later = SourceTiming("s0", T0 + timedelta(minutes=7), 420.0, health="failing", error_streak=4)
    overdue = SourceTiming("s1", T0 - timedelta(hours=3), 600.0, health="ok")
    stored = {"s0": later.to_dict(), "s1": overdue.to_dict(), "s2": {"next_due": "not a date"}}
    plan, problems = plan_start(specs, bounds, stored, T0, random.Random(1))
    assert plan["s0"] == later  # resumed as it was: health and back-off survive a restart
    assert [sid for sid, _ in problems] == ["s2"] and plan["s2"].health == "new"
    waiting = sorted(plan[s].next_due for s in ("s1", "s2", "s3", "s4"))
    assert all(T0 <= d < T0 + timedelta(seconds=60) for d in waiting)  # within the spread window
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(waiting)]
    assert min(gaps) > 0  # stratified: never two at the same instant
    assert plan["s1"].health == "ok"


def test_plan_start_with_no_spread_makes_every_waiting_source_due_at_once() -> None:
    specs = [SourceSpec(f"s{i}", "feed", f"http://x/{i}", interval=600) for i in range(4)]
    bounds = {s.id: Bounds.from_spec(s) for s in specs}
    later = SourceTiming("s0", T0 + timedelta(minutes=7), 420.0, health="ok")
    plan, _ = plan_start(specs, bounds, {"s0": later.to_dict()}, T0, random.Random(1), spread=0.0)
    assert plan["s0"] == later  # a stored timing still resumes
    assert {plan[s].next_due for s in ("s1", "s2", "s3")} == {T0}


def test_diff_sources_tells_added_removed_changed_and_moved() -> None:
    a, b, c = (SourceSpec(i, "feed", f"http://x/{i}") for i in "abc")
    new = {
        "a": a,
        "b": SourceSpec("b", "feed", "http://x/b", interval=60),
        "c2": c,
        "c": SourceSpec("c", "feed", "http://y/c"),
    }
    d = diff_sources({"a": a, "b": b, "c": c}, new)
    assert (d.added, d.removed, d.changed, d.moved) == (("c2",), (), ("b",), ("c",))


# ----------------------------------------------------------------------------- acceptance 2


def test_a_failing_source_backs_off_is_announced_once_and_recovers(tmp_path: Path, site: Site) -> None:
    site.add("/flaky", "server trouble", "text/plain", status=500)
    site.add("/page", "<html><body><div id='news'>Some text</div></body></html>")
    cfg = write_config(
        tmp_path,
        [
            f"{{id: flaky, kind: feed, url: '{site.url('/flaky')}', {FAST}}}",
            f"{{id: page, kind: page, url: '{site.url('/page')}', selector: '#gone', {FAST}}}",
        ],
        daemon=", metrics: '127.0.0.1:0'",
    )
    seen: dict[str, Any] = {}

    async def scenario(d: Daemon) -> None:
        assert d.jobs is not None
        await wait_until(lambda: d.jobs and d.jobs.timings["flaky"].health == "failing", what="failing")
        failing_at = time.monotonic()
        await asyncio.sleep(2.5)  # a long outage, compressed: the back-off is capped at 1 s
        errors = [t for t in hit_times(site, "/flaky") if t >= failing_at]
        seen["gaps"] = [b - a for a, b in itertools.pairwise(errors)]
        seen["healthz"] = json.loads(urllib.request.urlopen(f"http://{d.metrics_address}/healthz").read())
        feed_with(site, "/flaky", 1)  # the server is back
        await wait_until(lambda: d.jobs and d.jobs.timings["flaky"].health == "ok", what="recovery")
        seen["metrics"] = urllib.request.urlopen(f"http://{d.metrics_address}/metrics").read().decode()
        await wait_until(lambda: d.jobs and d.jobs.timings["page"].health == "failing", what="selector")

    run_daemon(cfg, scenario, knobs={"backoff_cap": 1.0})
    assert len(seen["gaps"]) >= 2, "kept retrying during the outage"
    assert max(seen["gaps"]) < 1.0 + 0.6, seen["gaps"]  # never beyond the cap (plus scheduling slack)
    notices = [r for r in rows(cfg, DeliveryRow) if r.kind == "notice"]
    titles = sorted(r.payload["notice"]["title"] for r in notices)
    assert titles == [
        "storywatch: source flaky is failing (was degraded)",
        "storywatch: source flaky recovered (failing -> ok)",
        "storywatch: source page is failing (was degraded)",
    ]
    assert all(r.channel == "ops" for r in notices)
    page_notice = next(r for r in notices if "page" in r.payload["notice"]["title"])
    assert "selector matched nothing" in page_notice.payload["notice"]["text"]
    assert seen["healthz"]["status"] == "running" and seen["healthz"]["health"]["failing"] >= 1
    assert 'storywatch_polls_total{result="error",source="flaky"}' in seen["metrics"]
    assert 'storywatch_source_health{source="flaky",storywatch_source_health="ok"} 1.0' in seen["metrics"]
    assert "storywatch_deliveries" in seen["metrics"]
    report = collect_status(load_settings(cfg))
    by_id = {s.id: s for s in report.sources}
    assert by_id["flaky"].health == "ok" and by_id["flaky"].error_streak == 0
    assert by_id["flaky"].new_24h == 1 and by_id["page"].health == "failing"
    assert report.daemon.running is False and report.daemon.state == "stopped"
    shown = CliRunner().invoke(cli, ["--config", str(cfg), "status"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "daemon not running" in shown.output and "stopped" in shown.output
    assert "flaky" in shown.output and "failing" in shown.output and "outbox:" in shown.output


def test_both_commands_show_examples() -> None:
    for name in ("run", "status"):
        result = CliRunner().invoke(cli, [name, "--help"])
        assert (
            result.exit_code == 0 and "Examples:" in result.output and f"storywatch {name}" in result.output
        )


# ----------------------------------------------------------------------------- item 23


@pytest.mark.parametrize("grace", ["300s", "1s"])
def test_a_paused_process_polls_each_overdue_source_once(
    tmp_path: Path, site: Site, grace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A sleeping laptop: with a short grace the late runs are re-planned, with a long one they run
    late; either way each source is polled once after the pause, with no catch-up burst."""
    for p in ("/f1", "/f2"):
        feed_with(site, p, 0)
    cfg = write_config(
        tmp_path,
        [
            f"{{id: {p.strip('/')}, kind: feed, url: '{site.url(p)}', interval: 1s, min_interval: 1s, "
            "max_interval: 1s}"
            for p in ("/f1", "/f2")
        ],
        daemon=f", misfire_grace: {grace}",
    )
    marks: dict[str, float] = {}

    async def scenario(d: Daemon) -> None:
        # both first polls done (parsing runs in a worker process: a poll ends a little after its request)
        await wait_until(
            lambda: hit_times(site, "/f1") and hit_times(site, "/f2") and d.jobs and not d.jobs.inflight
        )
        time.sleep(2.6)  # the whole process stops: no timer, no poll can run
        marks["resumed"] = time.monotonic()
        await asyncio.sleep(1.6)

    caplog.set_level(logging.INFO, logger="storywatch")
    run_daemon(cfg, scenario)
    missed = {getattr(r, "source_id", None) for r in caplog.records if "missed its poll" in r.getMessage()}
    assert missed == ({"f1", "f2"} if grace == "1s" else set())  # late beyond the grace: re-planned
    for p in ("/f1", "/f2"):
        times = hit_times(site, p)
        after = [t - marks["resumed"] for t in times if t >= marks["resumed"]]
        assert after and after[0] < 1.3, (p, after)  # polled again soon after waking up...
        assert len([t for t in after if t < 0.9]) <= 1, (p, after)  # ...once, not once per missed slot
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) > 0.8, (p, gaps)  # never closer than min_interval (minus timer slack)


# ----------------------------------------------------------------------------- reloads


def test_changed_files_reload_and_broken_files_keep_the_last_good_version(
    tmp_path: Path, site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    feed_with(site, "/one", 1)
    feed_with(site, "/two", 1)
    one = f"{{id: one, kind: feed, url: '{site.url('/one')}', {FAST}}}"
    two = f"{{id: two, kind: feed, url: '{site.url('/two')}', {FAST}}}"
    cfg = write_config(tmp_path, [one], daemon=", watch_files: true")
    caplog.set_level(logging.INFO, logger="storywatch")

    async def scenario(d: Daemon) -> None:
        assert d.jobs is not None
        await wait_until(lambda: hit_times(site, "/one"), what="first poll")
        write_config(tmp_path, [two], daemon=", watch_files: true")  # one removed, two added
        await wait_until(lambda: hit_times(site, "/two"), what="the added source polled")
        assert set(d.jobs.specs) == {"two"}
        rules_before = d.jobs.rt.rules
        (tmp_path / "rules.yaml").write_text("version: 1\nrules:\n  - id: broken\n    query: '(\"unclosed'\n")
        await wait_until(lambda: re.search(r"rules\.yaml:\d+", caplog.text), what="rule error (file:line)")
        assert d.jobs.rt.rules is rules_before  # the last good rule set keeps running
        cfg.write_text(cfg.read_text("utf-8") + "  - {id: bad, kind: feed, url: 'file:///etc/passwd'}\n")
        await wait_until(lambda: "sources[1].url" in caplog.text, what="config error")
        (tmp_path / "rules.yaml").write_text(RULES, "utf-8")  # rules fixed, config still broken
        bad_bounds = two.replace("min_interval: 0.3s", "min_interval: 5s")  # above max_interval
        write_config(tmp_path, [bad_bounds], daemon=", watch_files: true")
        await wait_until(lambda: "source 'two': min_interval" in caplog.text, what="bounds error")
        stop_one = time.monotonic()
        polls = len(hit_times(site, "/two"))
        await wait_until(lambda: len(hit_times(site, "/two")) > polls, what="still polling")
        assert not [t for t in hit_times(site, "/one") if t > stop_one + 0.1]  # removed: no more polls
        assert d.reloads >= 1

    run_daemon(cfg, scenario)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("last good configuration keeps running" in m for m in errors)
    assert any(re.search(r"storywatch\.yaml:sources\[1\]\.url: line \d+", m) for m in errors), errors


def test_documents_are_written_by_the_writer_process_with_the_rules_of_the_last_reload(
    tmp_path: Path, site: Site
) -> None:
    """The daemon writes through a writer process of its own (as `storywatch once` does); a reload
    moves that process to the new rules: documents written after it match the new rule set only,
    and still through the process (not the main process's fallback thread)."""
    feed_with(site, "/one", 1)
    cfg = write_config(tmp_path, [f"{{id: one, kind: feed, url: '{site.url('/one')}', {FAST}}}"])
    seen: dict[str, Any] = {}

    def stored() -> int:
        return len(rows(cfg, DocumentRow))

    async def scenario(d: Daemon) -> None:
        await wait_until(lambda: stored() == 1, what="the first document")
        seen["before"] = d.health()["writer"]
        new_rule = RULES.replace("test.cluster", "test.conference").replace("computing cluster", "conference")
        (tmp_path / "rules.yaml").write_text(new_rule, "utf-8")
        assert await d.reload("test")
        feed_with(site, "/one", 2)  # a second article in the feed
        await wait_until(lambda: stored() == 2, what="the document written after the reload")
        written = sum(seen["before"]["writes"].values())
        await wait_until(lambda: sum(d.health()["writer"]["writes"].values()) > written, what="the snapshot")
        seen["after"] = d.health()["writer"]
        os.kill(seen["after"]["pid"], 0)  # a live process (ProcessLookupError otherwise)

    run_daemon(cfg, scenario)
    before, after = seen["before"], seen["after"]
    assert isinstance(after["pid"], int) and after["pid"] != os.getpid()
    assert before["pid"] in (None, after["pid"])  # the same process, moved to the new rules
    assert before["writes"]["process"] >= 1
    assert after["writes"]["thread"] == 0  # every write (documents and fetch records) went to the process
    docs = {doc.id: doc.url for doc in rows(cfg, DocumentRow)}
    fired = sorted((docs[m.document_id].rsplit("/", 1)[1], m.rule_id) for m in rows(cfg, MatchRow))
    assert fired == [("one-0", "test.cluster"), ("one-1", "test.conference")]


# ----------------------------------------------------------------------------- shutdown


class SlowServer:
    """A feed that answers after ``delay`` seconds (a poll that is still running at shutdown)."""

    def __init__(self, delays: dict[str, float], body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(delays.get(self.path, 0.0))
                # the daemon may have given up on this poll (shutdown): a hung-up client is no error,
                # and a traceback printed by this thread would land in a later test's I/O audit
                with contextlib.suppress(ConnectionError):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/rss+xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"


def test_stop_lets_short_polls_finish_and_cancels_long_ones_within_the_deadline(tmp_path: Path) -> None:
    body = rss(
        [{"title": "Only summary", "link": "urn:x", "guid": "g1", "description": "A summary."}]
    ).encode()
    slow = SlowServer({"/quick": 1.5, "/stuck": 30.0}, body)
    cfg = write_config(
        tmp_path,
        [  # first polls within 1 s of each other: both run at once
            f"{{id: quick, kind: feed, url: '{slow.url('/quick')}', fetch_articles: false, interval: 1s}}",
            f"{{id: stuck, kind: feed, url: '{slow.url('/stuck')}', fetch_articles: false, interval: 1s}}",
        ],
        daemon=", shutdown_deadline: 3s",
    )
    timing: dict[str, float] = {}

    async def scenario(d: Daemon) -> None:
        assert d.jobs is not None
        await wait_until(lambda: d.jobs and len(d.jobs.inflight) == 2, what="both polls running")
        timing["stop"] = time.monotonic()

    try:
        run_daemon(cfg, scenario)
        timing["done"] = time.monotonic()
    finally:
        slow.server.shutdown()
    assert timing["done"] - timing["stop"] < 3.0 + 1.0  # the deadline, plus closing up
    logged = {r.source_id: r.status for r in rows(cfg, FetchLogRow)}
    assert logged == {"quick": "ok"}  # the stuck poll was cancelled before it stored anything
    assert [d.source_id for d in rows(cfg, DocumentRow)] == ["quick"]
