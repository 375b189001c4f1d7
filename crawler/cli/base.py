"""The ``storywatch`` command line. Thin: parse flags, call one library function, print.

Exit codes (documented in the README):
  0  success
  1  the command ran but something it checked failed (a source failed in `once`, a rule test
     failed, lint found errors)
  2  usage or configuration error (bad flag, invalid config file, unreadable rule file)
  3  database error, or another daemon already holds the database
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crawler.bounds import redact
from crawler.cli.output import (
    err,
    errors_below,
    human,
    one_line,
    out,
    print_delivery,
    short_columns,
    short_error,
)
from crawler.config import (
    WHEN_HINT,
    Settings,
    load_settings,
    parse_when,
    write_default_config,
)
from crawler.errors import ConfigError, RuleError, StorageError, StorywatchError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STORAGE = 0, 1, 2, 3


class Ctx:
    """What every subcommand gets: the --config path, loaded lazily."""

    def __init__(self, config: str | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print("[bold red]error:[/] ", end="", markup=True)
    err.print(message, highlight=False, markup=False, soft_wrap=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout, with every fragment of a secret masked (source URLs' passwords...)."""
    click.echo(redact.scrub(json.dumps(data, ensure_ascii=False, indent=2, default=_json_default)))


def _json_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    if hasattr(o, "as_json"):
        return o.as_json()
    if hasattr(o, "__dataclass_fields__"):
        return {k: getattr(o, k) for k in o.__dataclass_fields__}
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


def parse_since(value: str | None) -> datetime | None:
    """``2026-11-20``, an ISO timestamp, or a duration ago (``24h``, ``7d``)."""
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: {WHEN_HINT}") from None


class Group(click.Group):
    """Turns our typed errors into one clear line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(f"configuration: {exc}", EXIT_USAGE)
        except RuleError as exc:
            fail(f"rules: {exc}", EXIT_USAGE)
        except StorageError as exc:
            fail(str(exc), EXIT_STORAGE)


CONFIG_HELP = (
    "Config file (default: $STORYWATCH_CONFIG, then the user config dir, then the built-in LongCat "
    "watchlist). Accepted before or after the command."
)


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``storywatch once --config F``: the subcommand's --config wins over the group's."""
    if value is not None:
        obj = ctx.find_object(Ctx)
        if obj is not None:
            obj.config = value
            obj._settings = None


def add_config_option(command: click.Command) -> None:
    """Give ``command`` (and every subcommand) its own ``--config``, so it works after the command too."""
    if not any(p.name == "config" for p in command.params):
        command.params.append(
            click.Option(
                ["--config", "-c"],
                type=click.Path(dir_okay=False),
                expose_value=False,
                callback=_set_config,
                help=CONFIG_HELP,
            )
        )
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_config_option(sub)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "-c",
    "config",
    envvar="STORYWATCH_CONFIG",
    type=click.Path(dir_okay=False),
    help=CONFIG_HELP,
)
@click.version_option(package_name="storywatch")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """storywatch: watch a developing story; get one alert per development, with its evidence.

    \b
    Examples:
      storywatch init                      # write a commented config to the user config dir
      storywatch run                       # the daemon: poll, dedup, match, alert
      storywatch once --json               # one pass over every source
      storywatch rules test --text "Meituan confirmed LongCat-2.0 was trained on Ascend 910C."
      storywatch stories --since 24h
      storywatch alerts list
    """
    ctx.obj = Ctx(config)


# --------------------------------------------------------------------------- init / db


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing storywatch.yaml.")
def init(directory: Path | None, force: bool) -> None:
    """Write a commented config file with the LongCat-2.0 watchlist.

    \b
    Examples:
      storywatch init                 # into the user config dir (then used by default)
      storywatch init ./watch         # ./watch/storywatch.yaml; use with --config
    """
    from crawler.config import default_config_path

    target_dir = directory or default_config_path().parent
    try:
        path = write_default_config(target_dir, force=force)
    except FileExistsError as exc:
        fail(f"{exc} already exists: edit it, or pass --force to overwrite it", EXIT_USAGE)
    out.print(f"wrote {path}", highlight=False, soft_wrap=True)
    for line in _init_next_steps(path, default=path.resolve() == default_config_path().resolve()):
        out.print(line, highlight=False, soft_wrap=True)


def _init_next_steps(path: Path, *, default: bool) -> list[str]:
    if default:
        use = ["It is the user config file: every command uses it by default, e.g.", "  storywatch once"]
    else:
        use = [
            "Use it with --config (before or after the command), or set STORYWATCH_CONFIG:",
            f"  storywatch once --config {path}",
            f"  export STORYWATCH_CONFIG={path}",
        ]
    return [
        "Edit it for your story (sources, rules, channels), or add sources from the command line:",
        "  storywatch sources add https://example.com/   # finds the site's feed",
        *use,
        "Then run the daemon: storywatch run",
    ]


@cli.group()
def db() -> None:
    """Database maintenance.

    \b
    Examples:
      storywatch db upgrade
      storywatch db current
    """


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: Ctx) -> None:
    """Apply schema migrations (also done automatically on start).

    \b
    Example:
      storywatch db upgrade
    """
    from storage.db import open_database

    database = open_database(obj.settings.database_url)
    out.print(f"database at revision {database.current_revision()}")


@db.command("current")
@click.pass_obj
def db_current(obj: Ctx) -> None:
    """Print the schema revision and the database URL (password hidden).

    \b
    Example:
      storywatch --config prod.yaml db current
    """
    from sqlalchemy.engine import make_url

    from storage.db import Database

    database = Database(obj.settings.database_url)
    url = make_url(obj.settings.database_url).render_as_string(hide_password=True)
    out.print(f"{url}: revision {database.current_revision() or '(empty)'}")


# --------------------------------------------------------------------------- once / sources


@cli.command()
@click.option("--source", "-s", "source_ids", multiple=True, help="Only this source id (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--no-deliver", is_flag=True, help="Leave new alerts in the outbox (the daemon delivers them).")
@click.option("--verbose", "-v", is_flag=True, help="Show each error's whole message in the table.")
@click.pass_obj
def once(obj: Ctx, source_ids: Sequence[str], as_json: bool, no_deliver: bool, verbose: bool) -> None:
    """One pass over the sources: fetch, extract, dedup, match, store, deliver alerts.

    Exits 1 when any source failed (the others are still processed and stored).

    \b
    Examples:
      storywatch once
      storywatch once --config ./watch/storywatch.yaml --verbose
      storywatch once --source gnews-longcat --source hn-longcat
      storywatch once --json | jq '.sources[] | select(.status=="error")'
    """
    from crawler.pipeline import run_once

    settings = obj.settings
    specs = settings.source_specs()
    if source_ids:
        known = {s.id for s in specs}
        unknown = [s for s in source_ids if s not in known]
        if unknown:
            fail(f"unknown source id(s): {', '.join(unknown)} (see `storywatch sources`)")
        specs = tuple(s for s in specs if s.id in source_ids)
    show_progress = not as_json and err.is_terminal
    with _progress(len(specs), "sources", enabled=show_progress) as advance:
        report = asyncio.run(
            run_once(settings, specs, on_done=lambda o: advance(), deliver=not no_deliver, min_workers=1)
        )
    if as_json:
        print_json(report.as_json())
    else:
        _print_pass(report, {s.id: s.url for s in specs}, verbose=verbose)
    sys.exit(EXIT_FAILED if report.failed else EXIT_OK)


def _progress(total: int, what: str, *, enabled: bool) -> Any:
    from contextlib import contextmanager

    @contextmanager
    def cm() -> Any:
        if not enabled:
            yield lambda: None
            return
        with Progress(
            TextColumn(f"[bold]{what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as prog:
            task = prog.add_task(what, total=total)
            yield lambda: prog.advance(task)

    return cm()


def _print_pass(report: Any, urls: Mapping[str, str], *, verbose: bool = False) -> None:
    table = Table(
        title=f"pass: {len(report.outcomes)} sources, {report.new_documents} new documents, "
        f"{report.new_alerts} new alerts"
    )
    rows = []
    for o in report.outcomes:
        r = o.result
        style = {"error": "red", "not-modified": "dim"}.get(r.status, "")
        if r.error:
            url = urls.get(r.source_id)
            note = r.error if verbose else short_error(r.error, r.source_id, url, o.error_kind)
        else:
            shown = r.warnings if verbose else r.warnings[:1]
            more = len(r.warnings) - len(shown)
            note = "; ".join(shown) + (f" (+{more} more)" if more else "")
        cells = [r.source_id, r.status, str(r.new_documents), f"{r.bytes:,}", f"{r.seconds:.2f}s"]
        rows.append((cells, style, note))
    left = short_columns(table, ("source", "status", "new", "bytes", "time"), [c for c, _s, _n in rows])
    if left:
        table.add_column("error / warnings", overflow="fold")
    for cells, style, note in rows:
        status = f"[{style}]{cells[1]}[/]" if style else cells[1]
        shown = [escape(note if verbose else one_line(note, left))] if left else []
        table.add_row(escape(cells[0]), status, *cells[2:], *shown)
    out.print(table)
    if not left:
        errors_below([(c[0], n) for c, _s, n in rows], verbose=verbose)
    print_delivery(report.delivery)


def _ago(dt: datetime | None) -> str:
    if dt is None:
        return "never"
    secs = (datetime.now(UTC) - dt).total_seconds()
    return _dur(secs) + " ago"


def _dur(secs: float | None) -> str:
    if secs is None:
        return "-"
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(secs) >= n:
            return f"{secs / n:.0f}{unit}"
    return f"{secs:.0f}s"


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    from crawler.cli import register_all

    register_all(cli)
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="storywatch")
    except StorywatchError as exc:  # errors raised outside a command body
        fail(redact.scrub(str(exc)), EXIT_FAILED)
    except Exception:  # a bug: its traceback, with every fragment of a secret masked
        sys.stderr.write(redact.scrub(traceback.format_exc()))
        sys.exit(EXIT_FAILED)


__all__ = [  # the output helpers are re-exported: commands import what they print with from here
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "Ctx",
    "add_config_option",
    "cli",
    "err",
    "errors_below",
    "fail",
    "human",
    "main",
    "one_line",
    "out",
    "parse_since",
    "print_delivery",
    "print_json",
    "short_columns",
    "short_error",
]
