"""``storywatch sources``: list, add (with feed discovery), remove, import and export (OPML) sources.

Thin: the work is in :mod:`crawler.sources` (probing, round-trip edits, OPML) and
:mod:`crawler.feeds.discover` (the feeds a page announces).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import click
import yaml
from rich.markup import escape
from rich.table import Table

from crawler.cli.base import (
    EXIT_FAILED,
    EXIT_USAGE,
    Ctx,
    _ago,
    _dur,
    err,
    errors_below,
    fail,
    one_line,
    out,
    print_json,
    short_columns,
    short_error,
)
from crawler.config import find_config
from crawler.errors import ConfigError, FetchError
from crawler.sources import ExistingSource, NewSource, Probe, SourcesFile, read_opml, write_opml


@click.group("sources", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Show the whole error message of each source.")
@click.pass_context
def sources(ctx: click.Context, as_json: bool, verbose: bool) -> None:
    """List the configured sources with their health and last result; add, remove, import, export.

    The editing commands change the config file in place (comments and order are kept), check it
    with the daemon's own loader, and a running daemon reloads it.

    \b
    Examples:
      storywatch sources
      storywatch sources --json | jq '.[] | select(.health != "ok")'
      storywatch sources add https://example.com/           # finds the site's feed
      storywatch sources add https://example.com/feed.xml --tag publisher --interval 30m
      storywatch sources remove example-com
      storywatch sources import subscriptions.opml
      storywatch sources export --opml > storywatch.opml
    """
    if ctx.invoked_subcommand is None:
        _list(ctx.find_object(Ctx), as_json, verbose)


def _list(obj: Ctx | None, as_json: bool, verbose: bool) -> None:
    from storage import sources as store
    from storage.db import open_database

    assert obj is not None
    database = open_database(obj.settings.database_url)
    rows = store.list_sources(database, obj.settings.source_specs(), now=datetime.now(UTC))
    if as_json:
        from crawler.alerts.views import to_jsonable

        print_json(to_jsonable(rows))  # the same serializer as the web's /api/v1/sources
        return
    table = Table(title="sources")
    cells = [
        [r.id, r.kind, r.health, _ago(r.last_fetch_at), r.last_status or "-", str(r.documents), *counts]
        for r in rows
        for counts in [[str(r.new_24h), _dur(r.interval)]]
    ]
    titles = ("id", "kind", "health", "last fetch", "status", "docs", "new 24h", "interval")
    left = short_columns(table, titles, cells)
    if left:
        table.add_column("error", overflow="fold")
    errors = [(r.id, r.last_error if verbose else short_error(r.last_error or "", r.id, r.url)) for r in rows]
    for row, (_id, error) in zip(cells, errors, strict=True):
        shown = [escape(error or "" if verbose else one_line(error or "", left))] if left else []
        table.add_row(*(escape(c) for c in row), *shown)
    out.print(table)
    if not left:
        errors_below([(i, e or "") for i, e in errors], verbose=verbose)


def _target(obj: Ctx) -> Path:
    """The config file the editing commands change: --config, $STORYWATCH_CONFIG, the user's file."""
    path = find_config(obj.config)
    if path is None:
        fail(
            "no config file to edit: run `storywatch init` to write one in the user config directory "
            "(or `storywatch init DIR` and pass --config DIR/storywatch.yaml)",
            EXIT_USAGE,
        )
    if not path.is_file():
        fail(f"{path}: no such config file: run `storywatch init {path.parent}` to write one", EXIT_USAGE)
    return path


def _save(sf: SourcesFile) -> None:
    """Write the edited file; a running daemon reloads it (its file watcher, else a SIGHUP from here)."""
    from crawler.daemon.ops import ask_reload

    settings = sf.save()
    if settings.daemon.watch_files:
        err.print("a running daemon reloads the file by itself", highlight=False)
        return
    pid = ask_reload(settings)
    if pid is not None:
        err.print(f"asked the running daemon (pid {pid}) to reload the file", highlight=False)


@sources.command("add")
@click.argument("url")
@click.option("--id", "source_id", help="The source's id (default: from the feed's or page's title).")
@click.option(
    "--kind",
    type=click.Choice(["feed", "page"]),
    help="Skip discovery: add URL as a feed, or watch it as a page.",
)
@click.option("--interval", help="Polling interval (15m, 1h; default 15m).")
@click.option("--tag", "tags", multiple=True, help="A tag for rules to condition on (repeatable).")
@click.option("--selector", help="CSS selector of the region to watch (pages; default: main, article, body).")
@click.option("--yes", "-y", is_flag=True, help="Take the first feed found without asking.")
@click.pass_obj
def add_cmd(
    obj: Ctx,
    url: str,
    source_id: str | None,
    kind: str | None,
    interval: str | None,
    tags: tuple[str, ...],
    selector: str | None,
    yes: bool,
) -> None:
    """Add a feed, or find the feeds of a web page and add one (else watch the page).

    A feed is added as it is. An HTML page is read for the feeds it announces (RSS, Atom, JSON
    Feed), then the usual addresses (/feed, /rss, /atom.xml, /index.xml...) are tried. Several
    feeds: a numbered choice on a terminal (0 watches the page instead), the first with --yes;
    without a terminal and without --yes the command lists them and exits 2. No feed at all: the
    page itself is watched.

    \b
    Examples:
      storywatch sources add https://example.com/
      storywatch sources add https://example.com/ --yes --tag publisher
      storywatch sources add https://example.com/feed.xml --id example --interval 30m
      storywatch sources add https://example.com/leaderboard --kind page --selector main
      storywatch sources add https://example.com/ --config ./watch/storywatch.yaml
    """
    sf = SourcesFile(_target(obj))
    base = NewSource(url=url, id=source_id, interval=interval, tags=tags, selector=selector)
    _refuse_early(sf, base)
    if kind == "feed":
        new = replace(base, kind="feed")
    elif kind == "page" and selector:
        new = replace(base, kind="page")
    else:
        new = _from_probe(_probe(sf, url), base, page_only=kind == "page", yes=yes)
    try:
        sid = sf.add(new)
    except ConfigError as exc:  # the feed found is already watched, or its address is refused
        fail(str(exc), EXIT_USAGE)
    _save(sf)
    what = f"page (region `{new.selector}`)" if new.kind == "page" else "feed"
    out.print(f"added source {sid}: {what} {new.url} to {sf.path}", highlight=False, soft_wrap=True)


def _refuse_early(sf: SourcesFile, new: NewSource) -> None:
    """A bad address, one already watched or an id in use is refused before anything is fetched."""
    try:
        sf.check(new)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def _probe(sf: SourcesFile, url: str) -> Probe:
    from crawler.fetch import Fetcher, fetch_settings
    from crawler.sources import probe

    settings = sf.validate()

    async def run() -> Probe:
        async with Fetcher(fetch_settings(settings)) as fetcher:
            return await probe(fetcher, url, note=lambda m: err.print(m, highlight=False))

    try:
        return asyncio.run(run())
    except FetchError as exc:
        fail(f"cannot fetch {url}: {short_error(str(exc), None, url)}", EXIT_FAILED)


def _from_probe(found: Probe, base: NewSource, *, page_only: bool, yes: bool) -> NewSource:
    if found.kind == "feed" and not page_only:
        return replace(base, kind="feed", title=found.title)
    choice = 0
    if found.feeds and not page_only and len(found.feeds) > 1 and not yes:
        choice = _choose(found)  # -1: the page itself
    if page_only or not found.feeds or choice < 0:
        if not found.feeds:
            err.print(f"no feed found for {found.url}: watching the page itself", highlight=False)
        selector = base.selector or found.selector or "body"
        return replace(base, kind="page", selector=selector, title=found.title)
    feeds = found.feeds
    feed = feeds[choice]
    if len(feeds) > 1 or feed.url != found.url:
        err.print(f"using feed {feed.url} ({feed.title or 'untitled'})", highlight=False)
    return replace(base, kind="feed", url=feed.url, title=feed.title or found.title)


def _choose(found: Probe) -> int:
    lines = [
        f"  {i}. {f.url}  {f.format or 'feed'}: {f.title or 'untitled'} ({f.entries} entries)"
        for i, f in enumerate(found.feeds, 1)
    ]
    if not sys.stdin.isatty():
        fail(
            f"{found.url} offers {len(found.feeds)} feeds:\n"
            + "\n".join(lines)
            + "\nadd one of them by its URL, or pass --yes to take the first",
            EXIT_USAGE,
        )
    click.echo(f"{found.url} offers {len(found.feeds)} feeds:")
    click.echo("\n".join(lines))
    click.echo("  0. none of them: watch the page itself")
    picked: int = click.prompt("add which one", type=click.IntRange(0, len(found.feeds)), default=1)
    return picked - 1


@sources.command("remove")
@click.argument("source_id")
@click.pass_obj
def remove_cmd(obj: Ctx, source_id: str) -> None:
    """Remove the source SOURCE_ID from the config file (its stored documents stay).

    \b
    Examples:
      storywatch sources remove example-com
      storywatch sources remove techcrunch --config ./watch/storywatch.yaml
    """
    sf = SourcesFile(_target(obj))
    try:
        gone = sf.remove(source_id)
    except ConfigError as exc:  # no such id: the known ones are listed
        fail(str(exc), EXIT_USAGE)
    _save(sf)
    out.print(f"removed source {gone.id} ({gone.url}) from {sf.path}", highlight=False, soft_wrap=True)


@sources.command("import")
@click.argument("opml_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tag", "tags", multiple=True, help="A tag added to every imported source (repeatable).")
@click.pass_obj
def import_cmd(obj: Ctx, opml_file: Path, tags: tuple[str, ...]) -> None:
    """Add the feeds of an OPML file (a feed reader's export); folders become tags.

    Feeds already watched (same canonical URL) and bad addresses are skipped and listed.

    \b
    Examples:
      storywatch sources import miniflux.opml
      storywatch sources import feedly.opml --tag reader
    """
    sf = SourcesFile(_target(obj))
    entries = read_opml(opml_file.read_bytes(), name=str(opml_file), tags=tags)
    if not entries:
        fail(f"{opml_file}: no feeds in this OPML file", EXIT_USAGE)
    result = sf.add_all(entries)
    if result.added:
        _save(sf)
    out.print(
        f"imported {len(result.added)} of {len(entries)} feeds into {sf.path}",
        highlight=False,
        soft_wrap=True,
    )
    for skipped in result.skipped:
        out.print(f"  skipped {skipped.url}: {skipped.reason}", highlight=False, soft_wrap=True)


@sources.command("export")
@click.option("--opml", "as_opml", is_flag=True, help="OPML 2.0 (feeds only) instead of YAML.")
@click.pass_obj
def export_cmd(obj: Ctx, as_opml: bool) -> None:
    """Print the configured sources: as a YAML `sources:` list, or as OPML for a feed reader.

    \b
    Examples:
      storywatch sources export --opml > storywatch.opml
      storywatch sources export > sources.yaml
    """
    path = find_config(obj.config)  # read as `sources add` does: the daemon's secrets need not be set
    configured = (SourcesFile(path).validate() if path is not None else obj.settings).sources
    if as_opml:
        rows = [ExistingSource(s.id, s.kind, s.url, s.tags, i, 0) for i, s in enumerate(configured)]
        click.echo(write_opml(rows), nl=False)
        pages = sum(1 for s in configured if s.kind != "feed")
        if pages:
            err.print(f"{pages} watched page(s) left out: OPML lists feeds only", highlight=False)
        return
    items = [
        {"id": s.id, "kind": s.kind, **s.model_dump(mode="json", exclude_defaults=True)} for s in configured
    ]
    for item in items:  # seconds back to the way people write them: 900.0 -> 15m
        for key in ("interval", "min_interval", "max_interval"):
            if key in item:
                item[key] = _duration(item[key])
    click.echo(yaml.safe_dump({"sources": items}, sort_keys=False, allow_unicode=True, width=4096), nl=False)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def commands() -> list[click.Command]:
    return [sources]


__all__ = ["commands", "print_json"]
