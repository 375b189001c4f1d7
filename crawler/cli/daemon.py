"""`storywatch run` (the daemon) and `storywatch status`. Registered by ``crawler.cli``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from crawler.cli.base import EXIT_OK, EXIT_STORAGE, Ctx, _ago, _dur, err, fail, out, print_json, short_error
from crawler.errors import DaemonLocked
from storage.sources import SourceStatus


@click.command("run")
@click.option(
    "--role",
    type=click.Choice(["embedded", "scheduler"]),
    default=None,
    help="embedded: poll in this process (the default without `broker:`); scheduler: dispatch to "
    "workers (the default with `broker:`, see `storywatch scheduler`).",
)
@click.pass_obj
def run(obj: Ctx, role: str | None) -> None:
    """Run the daemon: poll every source on its own adaptive schedule, store, match, alert.

    Polls speed up when a source posts often and slow down when it is quiet; failing sources
    back off (never give up) and change health once, which is logged and sent as one notice to
    `alerts.health_channel`. SIGHUP (or editing the config or a rule file) reloads; a broken
    file is reported with file:line and the last good version keeps running. SIGTERM/SIGINT stop
    gracefully within `daemon.shutdown_deadline`. Only one daemon may use a database: a second
    one exits with code 3 and names the first.

    \b
    Examples:
      storywatch run
      storywatch --config ./watch/storywatch.yaml run
      kill -HUP <pid>                      # reload config and rules
      storywatch status                    # what the daemon is doing
      systemctl --user enable --now storywatch   # see docs/storywatch.service
    """
    from crawler.daemon import Daemon, setup_logging

    settings = obj.settings
    setup_logging(settings.daemon)
    try:
        asyncio.run(Daemon(settings, manage_logging=True).run())
    except DaemonLocked as exc:
        fail(str(exc), EXIT_STORAGE)
    sys.exit(EXIT_OK)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Show each source's whole last error.")
@click.pass_obj
def status(obj: Ctx, as_json: bool, verbose: bool) -> None:
    """Show the daemon's state, the outbox depth and every source's schedule and health.

    Per source: last fetch and result, next due time, current interval, new items in the last
    24 h, error streak and health. The daemon: running or not (the instance lock is probed),
    pid, host, start time and last heartbeat. Scale-out mode (`broker:` set) adds the queue
    depth and latency, live worker processes, polls in flight and the dispatch lag.

    \b
    Examples:
      storywatch status
      storywatch status --json | jq '.sources[] | select(.health != "ok") | .id'
      storywatch status --json | jq .daemon.running
      storywatch --config scale.yaml status --json | jq .scale   # scale-out: queue, workers, lag
    """
    from crawler.daemon import collect_status

    report = collect_status(obj.settings, now=datetime.now(UTC))
    scale = _scale_status(obj) if obj.settings.broker else None
    if as_json:
        print_json({**report.as_json(), **({"scale": scale.as_json()} if scale else {})})
        return
    d = report.daemon
    if d.running:
        line = (
            f"[green]daemon running[/]: pid {d.pid} on {d.host}, started {_ago(d.started_at)}, "
            f"heartbeat {_ago(d.heartbeat_at)}"
        )
    elif d.pid is not None:
        line = (
            f"[yellow]daemon not running[/] (last: pid {d.pid} on {d.host}, {d.state}, "
            f"heartbeat {_ago(d.heartbeat_at)})"
        )
    else:
        line = "[yellow]daemon not running[/] (never started on this database)"
    out.print(line)
    if d.loop_lag_p99 is not None:
        out.print(
            f"event-loop lag (last 5 min): p99 {d.loop_lag_p99 * 1000:.0f} ms, "
            f"max {(d.loop_lag_max or 0.0) * 1000:.0f} ms",
            highlight=False,
        )
    out.print(
        f"outbox: {report.outbox_depth} pending deliveries; database {report.database}", highlight=False
    )
    if scale is not None:
        depth = ", ".join(f"{q} {n}" for q, n in scale.queue_depth.items())
        wait = ", ".join(f"{q} {sec:.2f} s" for q, sec in scale.queue_latency.items())
        out.print(
            f"scale-out: {scale.workers} worker process(es); queue depth {depth}; queue latency {wait}; "
            f"{scale.leased} poll(s) in flight; {scale.due} due, dispatch lag {scale.dispatch_lag:.1f} s",
            highlight=False,
        )
    _print_sources(report.sources, running=d.running, verbose=verbose)


def _scale_status(obj: Ctx) -> Any:
    """Queue depth, latency, workers and dispatch lag (scale-out mode): Redis and PostgreSQL."""
    from crawler.cli.scale import scale_module
    from storage.db import open_database

    scale = scale_module()
    from redis import RedisError

    redis_client, scale_status = scale.redis_client, scale.scale_status
    url = scale.require_scale(obj.settings)
    db = open_database(obj.settings.database_url)
    client = redis_client(url)
    try:
        return scale_status(client, db, datetime.now(UTC))
    except RedisError as exc:
        err.print(f"scale-out: the broker at {url} cannot be read ({exc}); queue figures left out")
        return None
    finally:
        client.close()
        db.dispose()


def _print_sources(rows: Sequence[SourceStatus], *, running: bool, verbose: bool) -> None:
    if not rows:
        err.print("no sources configured")
        return
    table = Table(title="sources")
    for col in ("id", "health", "last fetch", "result", "next due", "interval", "new 24h", "errors"):
        table.add_column(col, overflow="fold")
    now = datetime.now(UTC)
    for r in rows:
        style = {"failing": "red", "degraded": "yellow", "stale": "yellow", "ok": "green"}.get(r.health, "")
        table.add_row(
            escape(r.id),
            f"[{style}]{r.health}[/]" if style else r.health,
            _ago(r.last_fetch_at),
            r.last_status or "-",
            _due(r.next_due_at, now, running),
            _dur(r.interval),
            str(r.new_24h),
            str(r.error_streak),
        )
    out.print(table)
    for r in rows:
        if r.last_error:
            if verbose:
                text = r.last_error.removeprefix(f"[{r.id}] ")
                out.print(f"[bold]{escape(r.id)}[/]: {escape(text)}", soft_wrap=True)
            else:
                text = short_error(r.last_error, r.id, r.url)
                out.print(f"[bold]{escape(r.id)}[/]: {escape(text)}", overflow="ellipsis", no_wrap=True)


def _due(when: datetime | None, now: datetime, running: bool) -> str:
    if when is None:  # never scheduled (new, or only polled by `once`): the daemon polls it first thing
        return "soon" if running else "at daemon start"
    return "now" if when <= now else "in " + _dur((when - now).total_seconds())


def commands() -> list[click.Command]:
    return [run, status]
