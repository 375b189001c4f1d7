"""Output for people: the consoles, one-line errors, tables of sources, values without Python reprs.

Every command's human output goes through here or through rich tables; ``--json`` is the
machine form. A test (tests/cli/test_output.py) runs every command and fails on a repr.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)

_URL_PREFIX = re.compile(r"^https?://\S+?: ")
_NOISE = (  # what a person does not need in a one-line error: class names, errno, address tuples
    re.compile(r"^[A-Z]\w*(?:Error|Exception|Timeout): "),
    re.compile(r"\[Errno -?\d+\] "),
    re.compile(r" \('[^']*', \d+(?:, \d+)*\)"),
)


def short_error(message: str, source_id: str | None, url: str | None = None, kind: str | None = None) -> str:
    """One line for a table cell: the error kind and its reason, without the source id or URL again.

    ``[feed-a] https://example.com/feed: HTTP 503 Service Unavailable`` -> ``http: HTTP 503 Service
    Unavailable`` (with kind "http"). ``--verbose`` prints the whole message instead.
    """
    lines = message.strip().splitlines()
    text = lines[0] if lines else ""
    if source_id:
        text = text.removeprefix(f"[{source_id}] ")
    if url and text.startswith(f"{url}: "):
        text = text[len(url) + 2 :]
    text = _URL_PREFIX.sub("", text, count=1)
    for noise in _NOISE:
        text = noise.sub("", text)
    return f"{kind}: {text}" if kind and text else text


def human(value: Any, indent: str = "  ") -> list[str]:
    """Lines for people (never a Python repr): mappings as ``name: value``, lists as ``- item``."""
    if isinstance(value, Mapping):
        out: list[str] = []
        for k, v in value.items():
            if isinstance(v, Mapping | list | tuple) and v and not _flat(v):
                out.append(f"{k}:")
                out.extend(indent + line for line in human(v, indent))
            else:
                out.append(f"{k}: {_scalar(v)}")
        return out
    if isinstance(value, list | tuple):
        if _flat(value):
            return [_scalar(value)]
        return [f"{'-' if i == 0 else ' '} {line}" for item in value for i, line in enumerate(human(item))]
    return [_scalar(value)]


def _flat(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(not isinstance(v, Mapping | list | tuple) for v in value)


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M} UTC"
    if isinstance(value, list | tuple):
        return ", ".join(_scalar(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items()) or "-"
    return str(value)


MIN_ERROR_WIDTH = 24


def short_columns(table: Table, titles: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    """Columns that keep their width (their longest cell, up to 32); returns the width left on the
    console for an error column (cut to one line with :func:`one_line`), or 0 when there is not
    enough room: then the errors go under the table (:func:`errors_below`)."""
    widths = [min(32, max([len(t), *(len(row[i]) for row in rows)])) for i, t in enumerate(titles)]
    room = out.width - sum(w + 3 for w in widths) - 4
    for title, width in zip(titles, widths, strict=True):
        if room >= MIN_ERROR_WIDTH:
            table.add_column(title, no_wrap=True, min_width=width, overflow="ellipsis")
        else:
            table.add_column(title, overflow="fold")
    return room if room >= MIN_ERROR_WIDTH else 0


def errors_below(notes: Sequence[tuple[str, str]], *, verbose: bool) -> None:
    """``id: error`` lines under a table too wide for an error column (one line each)."""
    for name, note in notes:
        if note:
            line = f"[bold]{escape(name)}[/]: {escape(note)}"
            if verbose:
                out.print(line, soft_wrap=True)
            else:
                out.print(line, overflow="ellipsis", no_wrap=True)


def one_line(text: str, width: int) -> str:
    """``text`` on one line of at most ``width`` characters (cut with an ellipsis)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def print_delivery(delivery: Any) -> None:
    """The relay's report for people: one line per channel (sent, failed, to retry, paused)."""
    if delivery is None:
        return
    lines = delivery.summary_lines()
    out.print("deliveries:" + ("" if lines else " nothing to send"), highlight=False)
    for line in lines:
        out.print(f"  {line}", highlight=False, markup=False)
