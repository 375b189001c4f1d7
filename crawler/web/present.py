"""Pure helpers the templates use: highlighted evidence, safe links, bar charts, hidden secrets.

Nothing here builds HTML from strings: templates escape every value (autoescape), these helpers
only cut text into pieces and compute numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from crawler.config import Settings


@dataclass(frozen=True)
class Piece:
    text: str
    hit: bool = False


def highlight(text: str, spans: Iterable[Sequence[object]]) -> tuple[Piece, ...]:
    """``text`` cut at the [start, end, term] spans: hits flagged, overlaps merged, bad spans ignored."""
    marks: list[tuple[int, int]] = []
    for span in sorted((int(str(s[0])), int(str(s[1]))) for s in spans if len(s) >= 2):
        start, end = max(0, span[0]), min(len(text), span[1])
        if start >= end:
            continue
        if marks and start <= marks[-1][1]:
            marks[-1] = (marks[-1][0], max(end, marks[-1][1]))
        else:
            marks.append((start, end))
    pieces, at = [], 0
    for start, end in marks:
        if start > at:
            pieces.append(Piece(text[at:start]))
        pieces.append(Piece(text[start:end], True))
        at = end
    if at < len(text):
        pieces.append(Piece(text[at:]))
    return tuple(pieces)


def safe_href(url: str | None) -> str | None:
    """The URL if it is http(s) (a link may be followed), else None (shown as text only)."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    height: int
    value: int


def bars(values: Sequence[int], *, height: int = 24, width: int = 6, gap: int = 2) -> tuple[Bar, ...]:
    """Bars of an inline SVG chart (integers only), scaled to the largest value."""
    top = max(values, default=0) or 1
    out = []
    for i, v in enumerate(values):
        h = round(v / top * height) if v else 0
        out.append(Bar(i * (width + gap), height - h, h, v))
    return tuple(out)


class Redactor:
    """Replaces every channel URL, secret and password of the settings with ``[hidden]``."""

    def __init__(self, settings: Settings) -> None:
        secrets: set[str] = set()
        for cfg in settings.alerts.channels.values():
            for value in (cfg.url, cfg.secret, cfg.password, *cfg.urls):
                if value is not None and value.get_secret_value():
                    secrets.add(value.get_secret_value())
        if settings.web.token is not None:
            secrets.add(settings.web.token.get_secret_value())
        self._secrets = sorted(secrets, key=len, reverse=True)

    def __call__(self, text: str | None) -> str:
        out = text or ""
        for s in self._secrets:
            out = out.replace(s, "[hidden]")
        return out


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "never"
    secs = ((now or datetime.now(UTC)) - when).total_seconds()
    return f"{duration(abs(secs))} {'ago' if secs >= 0 else 'from now'}"


def duration(secs: float | None) -> str:
    if secs is None:
        return "-"
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{secs / n:.0f}{unit}"
    return f"{secs:.0f}s"
