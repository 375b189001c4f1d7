"""`storywatch run` as a real process: new items within one interval, SIGHUP adds a source, a second
daemon is refused (exit 3), `status` sees it, SIGTERM exits 0 with nothing half-written; and with
no reachable source at all (closed ports, .invalid hosts) it keeps running, logs once per health
change, backs off, and exits 0 on SIGINT."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from storage.db import open_database
from storage.models import AlertRow, AliasRow, DaemonRow, DeliveryRow, DocumentRow, FetchLogRow, SightingRow
from tests.sitekit import Site, article_page, rss

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LAUNCH = """
import importlib.util, sys
from crawler.cli import base as cli
from crawler.cli import _MODULES
if all(importlib.util.find_spec(m) for m in _MODULES):
    cli.main()
else:  # some other command modules are not there yet: ours are enough here
    from crawler.cli.daemon import commands
    for c in commands():
        cli.cli.add_command(c)
    cli.cli.main(prog_name="storywatch")
"""
RULES = (
    "version: 1\nrules:\n  - id: test.cluster\n    title: Cluster details\n    severity: medium\n"
    "    query: '\"computing cluster\"'\n"
)


def storywatch(tmp: Path, *args: str, log: str | None = None) -> subprocess.Popen[str]:
    """Run the CLI; a long-lived process (``log`` given) writes to files, not pipes that could fill."""
    env = {**os.environ, "STORYWATCH_DATA_DIR": str(tmp / "data"), "PYTHONUNBUFFERED": "1"}
    env.pop("STORYWATCH_CONFIG", None)
    out: Any = open(tmp / f"{log}.out", "w") if log else subprocess.PIPE  # noqa: SIM115
    err: Any = open(tmp / f"{log}.err", "w") if log else subprocess.PIPE  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--config", str(tmp / "storywatch.yaml"), *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=out,
        stderr=err,
    )


def stderr_of(tmp: Path, log: str) -> str:
    return (tmp / f"{log}.err").read_text("utf-8")


def write_config(tmp: Path, sources: list[str], *, daemon: str = "") -> None:
    (tmp / "rules.yaml").write_text(RULES, "utf-8")
    (tmp / "storywatch.yaml").write_text(
        f"""
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s, per_host_concurrency: 8,
         deadline: 5s, connect_timeout: 2s}}
rules: {{paths: ["{tmp / "rules.yaml"}"]}}
alerts:
  channels: {{ops: {{type: console}}}}
  health_channel: ops
  relay_interval: 0.5s
daemon: {{watch_files: false, shutdown_deadline: 5s, log_format: json{daemon}}}
sources:
"""
        + "".join(f"  - {s}\n" for s in sources),
        "utf-8",
    )


def wait_for(pred: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def db_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'data' / 'storywatch.db'}"


def count(tmp: Path, model: Any, *where: Any) -> int:
    if not (tmp / "data" / "storywatch.db").exists():
        return 0
    db = open_database(db_url(tmp))
    try:
        with db.read() as s:
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)
    finally:
        db.dispose()


def stop(proc: subprocess.Popen[str], sig: int, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode, time.monotonic() - started


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as s:
        yield s


def publish(site: Site, path: str, n: int) -> None:
    """The feed at ``path`` with items 0..n-1, each linking to an article page."""
    slug = path.strip("/")
    for i in range(n):
        site.add(
            f"/news/{slug}-{i}",
            article_page(
                f"{slug} story {i}",
                [
                    f"Report {i} from {slug}: engineers described the computing cluster behind the model in "
                    "detail at a conference, including how the accelerators were connected to each other."
                ],
            ),
        )
    items = [
        {"title": f"{slug} story {i}", "link": site.url(f"/news/{slug}-{i}"), "guid": f"{slug}-{i}"}
        for i in range(n)
    ]
    site.add(path, rss(items), "application/rss+xml")


def test_the_daemon_picks_up_items_and_sources_refuses_a_twin_and_stops_cleanly(
    tmp_path: Path, site: Site
) -> None:
    publish(site, "/wire", 2)
    publish(site, "/later", 1)
    fast = "interval: 1s, min_interval: 1s, max_interval: 2s"
    wire = f"{{id: wire, kind: feed, url: '{site.url('/wire')}', {fast}}}"
    write_config(tmp_path, [wire])
    proc = storywatch(tmp_path, "run", log="daemon")
    try:
        wait_for(lambda: count(tmp_path, DocumentRow) == 2, 15, "the first two documents", proc)
        publish(site, "/wire", 3)  # a new item appears
        added = time.monotonic()
        wait_for(lambda: count(tmp_path, DocumentRow) == 3, 10, "the new item", proc)
        assert time.monotonic() - added < 2.0 + 1.5  # within one (max) interval, plus processing

        twin = storywatch(tmp_path, "run")  # both at once: each pays the interpreter start
        status = storywatch(tmp_path, "status", "--json")
        _, twin_err = twin.communicate(timeout=30)
        st_out, st_err = status.communicate(timeout=30)
        assert twin.returncode == 3, twin_err
        assert f"pid {proc.pid}" in twin_err and "already runs" in twin_err
        assert status.returncode == 0, st_err
        report = json.loads(st_out)
        assert report["daemon"]["running"] is True and report["daemon"]["pid"] == proc.pid
        wire_row = next(s for s in report["sources"] if s["id"] == "wire")
        assert wire_row["last_status"] in ("ok", "not-modified") and wire_row["new_24h"] == 3
        assert wire_row["next_due_at"] and wire_row["health"] == "ok"

        write_config(tmp_path, [wire, f"{{id: later, kind: feed, url: '{site.url('/later')}', {fast}}}"])
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: site.requests_to("/later"), 10, "the added source polled after SIGHUP", proc)
        wait_for(lambda: count(tmp_path, DocumentRow) == 4, 10, "the added source's item", proc)
    finally:
        code, took = stop(proc, signal.SIGTERM, 30)
    err = stderr_of(tmp_path, "daemon")
    assert code == 0, err
    assert took < 5.0 + 2.0, took  # within daemon.shutdown_deadline (plus interpreter exit)
    assert "stopped cleanly" in err
    db = open_database(db_url(tmp_path))
    with db.read() as s:
        assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        docs = list(s.scalars(select(DocumentRow.id)))
        seen = set(s.scalars(select(SightingRow.document_id)))
        aliased = set(s.scalars(select(AliasRow.document_id)))
        states = list(s.scalars(select(DaemonRow.state)))
        alerts = list(s.scalars(select(AlertRow.id)))
        sent = list(s.execute(select(DeliveryRow.kind, DeliveryRow.state)))
    assert len(docs) == 4 and set(docs) <= seen and set(docs) <= aliased  # each ingest whole
    assert states == ["stopped"]
    assert alerts, "the rule matched"  # and the relay running alongside delivered every alert
    assert "alert" in {k for k, _ in sent} and {st for _, st in sent} == {"sent"}, sent
    db.dispose()


def test_without_any_reachable_source_it_keeps_running_backs_off_and_logs_per_state_change(
    tmp_path: Path,
) -> None:
    quick = "interval: 0.6s, min_interval: 0.3s, max_interval: 2s"
    write_config(
        tmp_path,
        [
            f"{{id: closed-port, kind: feed, url: 'http://127.0.0.1:9/feed', {quick}}}",
            f"{{id: no-dns, kind: feed, url: 'http://news.storywatch-test.invalid/rss', {quick}}}",
        ],
    )
    proc = storywatch(tmp_path, "run", log="daemon")
    try:
        for sid in ("closed-port", "no-dns"):

            def four_polls(sid: str = sid) -> bool:
                return count(tmp_path, FetchLogRow, FetchLogRow.source_id == sid) >= 4

            wait_for(four_polls, 20, f"four failed polls of {sid}", proc)
        assert proc.poll() is None  # still running
    finally:
        code, _ = stop(proc, signal.SIGINT, 30)
    err = stderr_of(tmp_path, "daemon")
    assert code == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    db = open_database(db_url(tmp_path))
    with db.read() as s:
        log_rows = list(s.execute(select(FetchLogRow.source_id, FetchLogRow.started_at, FetchLogRow.status)))
    for sid in ("closed-port", "no-dns"):
        polls = sorted(at for src, at, st in log_rows if src == sid)
        assert all(st == "error" for src, _, st in log_rows if src == sid)
        about = [r for r in records if r.get("source_id") == sid and r["level"] in ("warning", "error")]
        changes = [r["health"] for r in about]
        assert changes == ["degraded", "failing"], about  # once per state change, not once per poll
        assert len(polls) > len(about)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(polls)]
        assert gaps[-1] > gaps[0], gaps  # backing off
    assert count(tmp_path, DaemonRow, DaemonRow.state == "stopped") == 1
