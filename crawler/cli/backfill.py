"""`storywatch backfill` and `storywatch rescan`. Registered by ``crawler.cli``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from crawler.cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    Ctx,
    err,
    errors_below,
    one_line,
    out,
    parse_since,
    print_delivery,
    print_json,
    short_columns,
    short_error,
)

if TYPE_CHECKING:  # imported when a command runs: `storywatch --help` stays fast
    from crawler.backfill import BackfillReport, ProgressEvent, ProgressFn, RescanReport

POLICY = click.Choice(["none", "digest", "all"])
METHODS = ("archive", "sitemap", "search", "cdx")  # == crawler.backfill.job.METHODS (tested)


@click.command("backfill")
@click.option(
    "--since",
    required=True,
    help="Start of the window: a date (2026-11-01), an ISO time or a duration ago (30d).",
)
@click.option("--until", help="End of the window (default: now); same forms as --since.")
@click.option("--source", "-s", "source_ids", multiple=True, help="Only this source id (repeatable).")
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice(METHODS),
    help="Only these methods (repeatable; default: cdx for pages, search for feeds with a "
    "backfill_query, archive + sitemap for other feeds).",
)
@click.option(
    "--alerts",
    "policy",
    type=POLICY,
    default="digest",
    show_default=True,
    help="none: record alerts, send nothing; digest: ONE summary per channel; all: send each alert.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per second over the whole backfill (default: backfill.rate).",
)
@click.option("--dry-run", is_flag=True, help="Read the indexes and count; fetch no article, store nothing.")
@click.option("--restart", is_flag=True, help="Forget this window's checkpoints and start over.")
@click.option("--no-deliver", is_flag=True, help="Leave the alerts in the outbox (the daemon delivers them).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (no progress display).")
@click.option("--verbose", "-v", is_flag=True, help="Show each error's whole message in the table.")
@click.pass_obj
def backfill(
    obj: Ctx,
    since: str,
    until: str | None,
    source_ids: Sequence[str],
    methods: Sequence[str],
    policy: str,
    rate: float | None,
    dry_run: bool,
    restart: bool,
    no_deliver: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Bring the sources' history into the same timeline: same dedup, stories, rules and alerts.

    Reads archived and paged feeds (RFC 5005 prev-archive, next, ?paged=N), sitemaps (robots.txt
    Sitemap: lines, indexes, news sitemaps, filtered by date), search feeds per date slice
    (the source's backfill_query with {after}/{before}) and, for watched pages, web-archive
    snapshots diffed in time order. Documents are kept when their date is in the window;
    undated ones are kept too and counted in the summary.

    Resumable: progress is checkpointed per source, method and window, so an interrupted run
    continues where it stopped, and running it twice adds nothing. Polite: every request goes
    through the same per-host limits plus a --rate cap; article pages honour robots.txt.
    By default the alerts it finds are sent as ONE digest per channel, never a flood; documents
    that live fetching already stored send nothing again. Exits 1 when a source failed (rerun to
    resume it).

    \b
    Examples:
      storywatch backfill --since 2026-11-01
      storywatch backfill --since 30d --source gnews-longcat --alerts none
      storywatch backfill --since 2026-11-01 --until 2026-11-15 --method sitemap --rate 0.5
      storywatch backfill --since 7d --dry-run --json | jq '.totals'
    """
    from crawler.backfill import BackfillOptions, Window, run_backfill

    settings = obj.settings
    start = parse_since(since)
    assert start is not None
    end = parse_since(until) if until else datetime.now(UTC)
    assert end is not None
    opts = BackfillOptions(
        window=Window(start, end),
        source_ids=tuple(source_ids),
        methods=tuple(methods),
        alerts=policy,  # type: ignore[arg-type]
        rate=rate,
        dry_run=dry_run,
        restart=restart,
    )
    with _live_progress(enabled=not as_json and err.is_terminal) as progress:
        report = asyncio.run(run_backfill(settings, opts, progress=progress, deliver=not no_deliver))
    if as_json:
        print_json({**report.as_json(), "delivery": _delivery_json(report.delivery)})
    else:
        _print_backfill(report, verbose=verbose)
        print_delivery(report.delivery)
    sys.exit(EXIT_FAILED if report.failed else EXIT_OK)


@contextmanager
def _live_progress(*, enabled: bool) -> Iterator[ProgressFn | None]:
    """A Rich progress display on stderr: one bar per source and method, one overall, with ETA."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as prog:
        overall = prog.add_task("all sources", total=None, counts="")
        tasks: dict[tuple[str, str], TaskID] = {}
        state: dict[tuple[str, str], ProgressEvent] = {}

        def on_event(ev: ProgressEvent) -> None:
            key = (ev.source_id, ev.method)
            if key not in tasks:
                tasks[key] = prog.add_task(f"{ev.source_id} {ev.method}", total=None, counts="")
            state[key] = ev
            total = ev.pages if ev.finished else ev.total
            prog.update(tasks[key], completed=ev.pages, total=total, counts=_counts(ev))
            totals = [e.pages if e.finished else e.total for e in state.values()]
            done = sum(e.pages for e in state.values())
            whole = None if any(t is None for t in totals) else sum(t or 0 for t in totals)
            prog.update(
                overall,
                completed=done,
                total=whole,
                counts=f"new {sum(e.new for e in state.values())} "
                f"alerts {sum(e.alerts for e in state.values())}",
            )

        yield on_event


def _counts(ev: ProgressEvent) -> str:
    return f"new {ev.new} known {ev.known} matches {ev.matches} alerts {ev.alerts}"


_STATUS = {"error": "error", "skipped": "done earlier"}


def _tallies(m: Any) -> list[str]:
    return [str(m.known), str(m.outside), str(m.undated), str(m.matches), str(m.alerts)]


def _print_backfill(report: BackfillReport, *, verbose: bool = False) -> None:
    w = report.window
    what = "dry run" if report.dry_run else f"alerts: {report.policy}"
    table = Table(title=f"backfill {w.since:%Y-%m-%d %H:%M} to {w.until:%Y-%m-%d %H:%M} UTC ({what})")
    cols = [
        "source",
        "method",
        "status",
        "pages",
        "new",
        "known",
        "outside",
        "undated",
        "matches",
        "alerts",
        "note",
    ]
    if report.dry_run:
        cols[4] = "would fetch"
    counts = [
        [m.source_id, m.method, _STATUS.get(m.status, "ok"), str(m.pages), str(first), *more]
        for m in report.methods
        for first, more in [(m.candidates if report.dry_run else m.new, _tallies(m))]
    ]
    left = short_columns(table, cols[:-1], counts)
    if left:
        table.add_column(cols[-1], overflow="fold")
    notes = []
    for m, row in zip(report.methods, counts, strict=True):
        error = m.error if verbose or not m.error else short_error(m.error, m.source_id)
        note = error or "; ".join(m.warnings[:2]) + (" ..." if len(m.warnings) > 2 else "")
        if m.resumed and m.status == "ok":
            note = f"resumed. {note}".strip()
        notes.append((f"{m.source_id} ({m.method})", note))
        style = {"error": "red", "skipped": "dim"}.get(m.status)
        status = f"[{style}]{row[2]}[/]" if style else row[2]
        shown = [escape(note if verbose else one_line(note, left))] if left else []
        table.add_row(escape(row[0]), row[1], status, *row[3:], *shown)
    out.print(table)
    if not left:
        errors_below(notes, verbose=verbose)
    for line in _footer(report):
        out.print(line, highlight=False)


def _footer(report: BackfillReport) -> list[str]:
    lines = [
        f"{report.total('new')} new documents, {report.total('known')} already known, "
        f"{report.total('matches')} matches, {report.total('alerts')} new alerts"
    ]
    if report.total("undated"):
        lines.append(f"{report.total('undated')} document(s) had no date anywhere and were included.")
    if report.policy == "digest" and report.released:
        lines.append(f"{report.released} alert deliveries released as one digest per channel.")
    if report.policy == "none" and report.total("alerts"):
        lines.append(
            "--alerts none: the alerts are recorded (`storywatch alerts list`) but nothing was sent."
        )
    if report.failed:
        lines.append("Some sources failed: run the same command again to resume them.")
    return lines


def _delivery_json(delivery: Any) -> Any:
    from crawler.pipeline import jsonable

    return jsonable(delivery)


# ----------------------------------------------------------------------------- rescan


@click.command("rescan")
@click.option(
    "--since",
    help="Documents published since (undated: stored since): a date, an ISO time or a "
    "duration ago (7d). Default: every stored document.",
)
@click.option(
    "--rule", "rule_ids", multiple=True, help="Only this rule id (repeatable; default: every rule)."
)
@click.option(
    "--source", "-s", "source_ids", multiple=True, help="Only documents of this source (repeatable)."
)
@click.option(
    "--alerts",
    "policy",
    type=POLICY,
    default="digest",
    show_default=True,
    help="none: leave the outbox untouched; digest: ONE summary per channel; all: send each alert.",
)
@click.option("--no-deliver", is_flag=True, help="Leave the alerts in the outbox (the daemon delivers them).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_obj
def rescan(
    obj: Ctx,
    since: str | None,
    rule_ids: Sequence[str],
    source_ids: Sequence[str],
    policy: str,
    no_deliver: bool,
    as_json: bool,
) -> None:
    """Run the current rules over stored documents (after adding or changing a rule).

    Every match found is recorded and reported with its evidence: rule, status, evidence sentence,
    document URL and story. Only a (rule, story) pair that never alerted can alert, so stories
    already reported stay quiet; `--alerts none` records the matches and leaves the outbox
    untouched.

    \b
    Examples:
      storywatch rescan --since 30d --rule longcat.hardware --alerts none
      storywatch rescan --since 2026-11-01
      storywatch rescan --rule longcat.params --json | jq '.findings[] | select(.new)'
    """
    from crawler.backfill import RescanOptions, run_rescan

    opts = RescanOptions(
        since=parse_since(since),
        rule_ids=tuple(rule_ids),
        source_ids=tuple(source_ids),
        alerts=policy,  # type: ignore[arg-type]
    )
    report = asyncio.run(run_rescan(obj.settings, opts, deliver=not no_deliver))
    if as_json:
        print_json({**report.as_json(), "delivery": _delivery_json(report.delivery)})
    else:
        _print_rescan(report)
        print_delivery(report.delivery)
    sys.exit(EXIT_OK)


def _print_rescan(report: RescanReport) -> None:
    table = Table(
        title=f"rescan: {report.documents} documents, {len(report.rules)} rules, "
        f"{report.new_matches} new matches, {report.new_alerts} new alerts (alerts: {report.policy})"
    )
    for col in ("rule", "status", "evidence", "document", "story", "outcome"):
        table.add_column(col, overflow="fold")
    outcome = {
        "alerted": "[green]new alert[/]",
        "pair-alerted": "recorded (story already alerted)",
        "corroborated": "corroborates an alert",
        "known": "[dim]known before[/]",
    }
    for f in report.findings:
        table.add_row(
            f.rule_id, f.status, f.evidence, f.url, str(f.story_id), outcome.get(f.outcome, f.outcome)
        )
    out.print(table)
    if report.policy == "digest" and report.released:
        out.print(f"{report.released} alert deliveries released as one digest per channel.", highlight=False)


def commands() -> list[click.Command]:
    return [backfill, rescan]
