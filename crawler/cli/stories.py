"""``storywatch stories``: stories with their documents, sources and matched rules."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from crawler.alerts.views import to_jsonable
from crawler.cli.base import Ctx, _ago, out, parse_since, print_json
from storage import stories as store
from storage.db import open_database


@click.command()
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="Stories active since a date (2026-11-20), ISO time, or duration ago (24h).",
)
@click.option("--limit", default=100, show_default=True)
@click.option("--documents", is_flag=True, help="Also list each story's documents.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def stories(obj: Ctx, since: str, limit: int, documents: bool, as_json: bool) -> None:
    """List stories: near-duplicate documents grouped, with first source, sources and matched rules.

    \b
    Examples:
      storywatch stories
      storywatch stories --since 24h --documents
      storywatch stories --json | jq '.[] | select(.rule_ids | length > 0)'
    """
    db = open_database(obj.settings.database_url)
    when = parse_since(since) or datetime.fromtimestamp(0, UTC)
    rows = store.stories_page(db, since=when, limit=limit, documents=documents or as_json).items
    if as_json:
        print_json(to_jsonable(rows))  # the same serializer as the web's /api/v1/stories
        return
    table = Table(title=f"{len(rows)} stories since {when:%Y-%m-%d %H:%M} UTC")
    for col in ("id", "first seen", "title", "docs", "sources", "first source", "rules"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.id),
            _ago(r.first_seen),
            r.title[:100],
            str(r.document_count),
            str(len(r.sources)),
            r.first_source_id or "-",
            ", ".join(r.rule_ids) or "-",
        )
        for d in r.documents:
            table.add_row("", "", f"  · {d.title[:80]}", "", ", ".join(d.sources), d.canonical_url, "")
    out.print(table)


def commands() -> list[click.Command]:
    return [stories]
