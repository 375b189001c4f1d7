"""``storywatch alerts``: list, show, retry, silence and test alerts."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import Any

import click
from rich.table import Table

from crawler.alerts import admin
from crawler.bounds import redact
from crawler.cli.base import EXIT_FAILED, Ctx, _ago, human, out, parse_since, print_json
from crawler.errors import DeliveryError
from storage.db import open_database


@click.group()
def alerts() -> None:
    """Inspect, retry, silence and test alerts.

    \b
    Examples:
      storywatch alerts list --since 24h
      storywatch alerts show 12
      storywatch alerts retry 12          # every failed/dead delivery of alert 12
      storywatch alerts retry d34         # one delivery
      storywatch alerts silence add 'longcat.*' --for 6h --comment "known rumour"
      storywatch alerts test slack
    """


@alerts.command("list")
@click.option("--since", help="Only alerts since a date, ISO time or duration ago (24h, 7d).")
@click.option("--rule", help="Only this rule id.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_cmd(obj: Ctx, since: str | None, rule: str | None, limit: int, as_json: bool) -> None:
    """Newest alerts first, with their delivery state per channel.

    \b
    Examples:
      storywatch alerts list
      storywatch alerts list --rule longcat.vendor-disclosed --json
    """
    db = open_database(obj.settings.database_url)
    rows = admin.list_alerts(db, since=parse_since(since), limit=limit, rule=rule)
    if as_json:
        print_json(admin.to_jsonable(rows))
        return
    table = Table(title=f"{len(rows)} alerts")
    for col in ("id", "when", "rule", "sev", "story", "sources", "evidence", "deliveries"):
        table.add_column(col, overflow="fold")
    for a in rows:
        table.add_row(
            str(a.id),
            _ago(a.created_at),
            a.rule_id,
            a.severity,
            str(a.story_id),
            str(a.source_count),
            a.evidence[:160],
            ", ".join(f"{c}:{s}" for c, s in a.deliveries.items()),
        )
    out.print(table)


@alerts.command("show")
@click.argument("alert_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show_cmd(obj: Ctx, alert_id: int, as_json: bool) -> None:
    """One alert with its evidence, captures and every delivery attempt (per recipient for email).

    \b
    Example:
      storywatch alerts show 12
    """
    db = open_database(obj.settings.database_url)
    detail = admin.show_alert(db, alert_id)
    if as_json:
        print_json(admin.to_jsonable(detail))
        return
    a = detail.alert
    out.print(
        f"[bold]#{a.id} {a.title}[/] ({a.rule_id}, {a.severity}) story {a.story_id}, "
        f"{a.source_count} sources, {a.corroborations} corroborations"
    )
    out.print(f"evidence: {a.evidence}", highlight=False)
    for line in _detail_lines(detail.details):
        out.print(line, highlight=False, markup=False)
    table = Table(title="deliveries")
    for col in ("id", "channel", "kind", "state", "tries", "sent", "error"):
        table.add_column(col, overflow="fold")
    for d in detail.deliveries:
        table.add_row(
            str(d.id),
            d.channel,
            d.kind,
            d.state,
            str(d.tries),
            _ago(d.sent_at) if d.sent_at else "-",
            d.last_error or "",
        )
    out.print(table)


def _detail_lines(details: Mapping[str, Any]) -> list[str]:
    """The stored details of an alert for people: terms, captures as `name: value`, sources as a list."""
    lines = []
    for key in ("status", "field", "headline", "link"):
        if details.get(key):
            lines.append(f"{key}: {details[key]}")
    terms = list(dict.fromkeys(str(sp[2]) for sp in details.get("spans", ()) if len(sp) > 2))
    if terms:
        lines.append("matched: " + ", ".join(terms))
    for key, title in (("captures", "captures"), ("labels", "labels")):
        if details.get(key):
            lines.append(f"{title}:")
            lines.extend(f"  {line}" for line in human(details[key]))
    sources = details.get("sources") or ()
    if sources:
        lines.append(f"sources ({len(sources)}):")
        lines.extend(f"  - {s.get('source_id')}: {s.get('url') or '-'}" for s in sources)
    known = {"status", "field", "headline", "link", "spans", "captures", "labels", "sources"}
    for key, value in details.items():
        if key in known or value in (None, "", [], {}):
            continue
        name, rest = key.replace("_", " "), human(value)
        if len(rest) == 1:
            lines.append(f"{name}: {rest[0]}")
        else:
            lines.append(f"{name}:")
            lines.extend(f"  {line}" for line in rest)
    return lines


@alerts.command("retry")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def retry_cmd(obj: Ctx, ref: str, as_json: bool) -> None:
    """Queue failed, dead or silenced deliveries again: ALERT_ID (all of its) or dDELIVERY_ID.

    \b
    Examples:
      storywatch alerts retry 12
      storywatch alerts retry d34
    """
    db = open_database(obj.settings.database_url)
    result = admin.retry_delivery(db, ref)
    if as_json:
        print_json(admin.to_jsonable(result))
    else:
        out.print(
            f"queued {len(result.delivery_ids)} deliveries: {', '.join(map(str, result.delivery_ids)) or '-'}"
        )


@alerts.group("silence")
def silence() -> None:
    """Silence rules for a while (alerts are recorded, nothing is sent).

    \b
    Examples:
      storywatch alerts silence add 'industry.*' --for 12h --comment "conference week"
      storywatch alerts silence list
      storywatch alerts silence expire 3
    """


@silence.command("add")
@click.argument("rule_glob")
@click.option("--for", "duration", default="2h", show_default=True, help="How long (30m, 6h, 2d).")
@click.option("--story", "story_id", type=int, help="Only this story.")
@click.option("--comment", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def silence_add(
    obj: Ctx, rule_glob: str, duration: str, story_id: int | None, comment: str, as_json: bool
) -> None:
    """Silence RULE_GLOB (e.g. 'longcat.*') for --for.

    \b
    Examples:
      storywatch alerts silence add 'longcat.*' --for 6h --comment "rumour mill"
      storywatch alerts silence add longcat.vendor-disclosed --story 42 --for 2d
    """
    db = open_database(obj.settings.database_url)
    info = admin.add_silence(
        db, rule_glob, duration=duration, comment=comment, story_id=story_id, created_by="cli"
    )
    if as_json:
        print_json(admin.to_jsonable(info))
    else:
        out.print(f"silence {info.id}: {rule_glob} until {info.ends_at:%Y-%m-%d %H:%M} UTC")


@silence.command("list")
@click.option("--all", "include_expired", is_flag=True, help="Include expired silences.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def silence_list(obj: Ctx, include_expired: bool, as_json: bool) -> None:
    """Active silences (or all with --all).

    \b
    Examples:
      storywatch alerts silence list
      storywatch alerts silence list --all --json
    """
    db = open_database(obj.settings.database_url)
    rows = admin.list_silences(db, include_expired=include_expired)
    if as_json:
        print_json(admin.to_jsonable(rows))
        return
    for s in rows:
        state = "active" if s.active else "expired"
        matcher = ", ".join(f"{k} {human(v)[0]}" for k, v in s.matcher.items())
        out.print(
            f"{s.id}: {matcher} until {s.ends_at:%Y-%m-%d %H:%M} UTC ({state}) {s.comment}",
            highlight=False,
            markup=False,
        )


@silence.command("expire")
@click.argument("silence_id", type=int)
@click.pass_obj
def silence_expire(obj: Ctx, silence_id: int) -> None:
    """End a silence now.

    \b
    Example:
      storywatch alerts silence expire 3
    """
    db = open_database(obj.settings.database_url)
    info = admin.expire_silence(db, silence_id)
    out.print(f"silence {info.id} expired")


@alerts.command("test")
@click.argument("channel")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def test_cmd(obj: Ctx, channel: str, as_json: bool) -> None:
    """Send a sample alert through CHANNEL now (exit 1 if it fails).

    \b
    Example:
      SLACK_WEBHOOK_URL=https://hooks.slack.com/... storywatch alerts test slack
    """
    try:
        result = asyncio.run(admin.test_channel(obj.settings, channel))
    except DeliveryError as exc:
        out.print(f"[red]failed:[/] {redact.scrub(str(exc))}", highlight=False)
        sys.exit(EXIT_FAILED)
    if as_json:
        print_json(admin.to_jsonable(result))
    else:
        said = f" ({result.status})" if result.status is not None else ""
        warning = f"; {result.warning}" if result.warning else ""
        out.print(f"sent a sample alert through {channel}{said}{warning}", highlight=False)


def commands() -> list[click.Command]:
    return [alerts]
