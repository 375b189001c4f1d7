"""Editing the ``sources:`` of the user's config file without losing a comment.

:class:`SourcesFile` loads the file, adds or removes entries in memory (refusing a second source
for the same canonical URL, a bad address with the loader's own message, an unknown id), then
:meth:`SourcesFile.save` validates the edited text with the daemon's loader
(:func:`crawler.config.parse_settings`) and replaces the file atomically (a temporary file in the
same directory, then ``os.replace``): a running daemon's file watcher sees one complete change and
reloads (SIGHUP does too); a reader never sees half a file.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from crawler.config import Settings, parse_duration, parse_settings, source_url_problem
from crawler.dedup import canonicalize_url
from crawler.errors import ConfigError

_SLUG = re.compile(r"[^a-z0-9]+")
_ID_LIKE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,199}$")  # a title that is already an id is kept


class SourceExists(ConfigError):
    """The address (by canonical URL) or the id is already in the file."""


@dataclass(frozen=True)
class NewSource:
    """A source to add. ``id`` None: derived from ``title`` (else the address), made unique."""

    url: str
    kind: Literal["feed", "page"] = "feed"
    id: str | None = None
    title: str = ""
    interval: str | None = None
    tags: tuple[str, ...] = ()
    selector: str | None = None


@dataclass(frozen=True)
class ExistingSource:
    id: str
    kind: str
    url: str
    tags: tuple[str, ...]
    index: int
    line: int  # 1-based


@dataclass(frozen=True)
class Skipped:
    url: str
    reason: str


@dataclass
class BatchResult:
    """What :meth:`SourcesFile.add_all` did: ids added, entries skipped with the reason."""

    added: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _yaml() -> YAML:
    y = YAML()  # round-trip: comments, order, quoting and flow style are kept
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    y.preserve_quotes = True
    y.allow_duplicate_keys = True  # as the daemon's loader (PyYAML): the last one wins
    return y


class SourcesFile:
    """The user's config file, loaded for an edit of its ``sources:`` that keeps every other byte.

    Edits work on the text: an entry is added after the last line of the last entry (rendered by
    ruamel.yaml in the file's indentation) and removed by cutting its lines, so comments, blank
    lines, quoting and order elsewhere are untouched. ruamel.yaml's round-trip parse says where the
    entries are; it re-dumps the document only when the list is empty, missing or in flow style
    (``sources: []``), where there is nothing to lose but the list itself.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        try:
            self.original = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror or exc}", file=self.name) from exc
        self._text = self.original
        self.doc = self._parse(self._text)

    def _parse(self, text: str) -> CommentedMap:
        try:
            doc = _yaml().load(text)
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{where}invalid YAML: {problem}", file=self.name) from None
        if doc is None:
            doc = CommentedMap()
        if not isinstance(doc, CommentedMap):
            raise ConfigError("the top level must be a mapping of settings", file=self.name)
        seq = doc.get("sources")
        if seq is not None and not isinstance(seq, CommentedSeq):
            raise ConfigError("must be a list of sources", file=self.name, key="sources")
        return doc

    # ------------------------------------------------------------------ reading

    def sources(self) -> list[ExistingSource]:
        seq = self.doc.get("sources")
        if not isinstance(seq, CommentedSeq):
            return []
        out = []
        for i, item in enumerate(seq):
            if not isinstance(item, Mapping):
                continue
            tags = item.get("tags") or ()
            out.append(
                ExistingSource(
                    str(item.get("id", "")),
                    str(item.get("kind", "")),
                    str(item.get("url", "")),
                    tuple(str(t) for t in tags) if isinstance(tags, Sequence) else (),
                    i,
                    seq.lc.item(i)[0] + 1,
                )
            )
        return out

    def find_url(self, url: str) -> ExistingSource | None:
        """The source already watching ``url`` (same canonical URL), if any."""
        key = canonicalize_url(url)
        return next((s for s in self.sources() if canonicalize_url(s.url) == key), None)

    # ------------------------------------------------------------------ editing

    def check(self, new: NewSource) -> None:
        """Refuse ``new`` before anything is fetched: a bad address (the loader's message), an address
        already watched (same canonical URL), an id already used, a bad interval."""
        problem = source_url_problem(new.url)
        if problem:
            raise ConfigError(problem, file=self.name, key=f"sources[{len(self.sources())}].url")
        twin = self.find_url(new.url)
        if twin is not None:
            raise SourceExists(
                f"{new.url} is already watched by source {twin.id!r} ({_where(twin)})", file=self.name
            )
        twin = next((s for s in self.sources() if new.id is not None and s.id == new.id), None)
        if twin is not None:
            raise SourceExists(f"the id {twin.id!r} is already used ({_where(twin)})", file=self.name)
        if new.interval is not None:
            try:
                parse_duration(new.interval)
            except ValueError as exc:
                raise ConfigError(str(exc), file=self.name, key="interval") from None

    def add(self, new: NewSource) -> str:
        """Append ``new`` (after :meth:`check`; validated again by :meth:`save`); returns its id."""
        self.check(new)
        sid = new.id or unique_id(new.title, new.url, {s.id for s in self.sources()})
        seq = self.doc.get("sources")
        if isinstance(seq, CommentedSeq) and seq and not seq.fa.flow_style():
            lines = self._text.splitlines(keepends=True)
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            start = seq.lc.item(len(seq) - 1)[0]
            dash = _indent(lines[start])
            last = _last_content(lines, start, _block_end(lines, start, dash))
            lines.insert(last + 1, _render(_entry(sid, new), dash))
            self._set_text("".join(lines))
        else:  # no list yet, or `sources: []`: ruamel.yaml adds it (the rest of the file round-trips)
            if seq is None:
                seq = self.doc["sources"] = CommentedSeq()
            seq.fa.set_block_style()
            seq.append(_entry(sid, new))
            self._set_text(_dump(self.doc))
        return sid

    def add_all(self, entries: Sequence[NewSource]) -> BatchResult:
        """Add each entry that can be added; the others are skipped with the reason (import)."""
        result = BatchResult()
        for new in entries:
            try:
                result.added.append(self.add(new))
            except ConfigError as exc:
                result.skipped.append(Skipped(new.url, _reason(exc, self.name)))
        return result

    def remove(self, source_id: str) -> ExistingSource:
        """Remove the source ``source_id`` (its lines; comment lines after it stay); ConfigError naming
        the known ids when there is none."""
        found = next((s for s in self.sources() if s.id == source_id), None)
        if found is None:
            known = ", ".join(s.id for s in self.sources()) or "none"
            raise ConfigError(f"no source with id {source_id!r} (known: {known})", file=self.name)
        seq = self.doc["sources"]
        if seq.fa.flow_style():  # `sources: [{...}, ...]`: ruamel.yaml rewrites the list
            del seq[found.index]
            self._set_text(_dump(self.doc))
            return found
        lines = self._text.splitlines(keepends=True)
        start = seq.lc.item(found.index)[0]
        if found.index + 1 < len(seq):
            stop = seq.lc.item(found.index + 1)[0]
        else:
            stop = _block_end(lines, start, _indent(lines[start]))
        last = _last_content(lines, start, stop)
        self._set_text("".join(lines[:start] + lines[last + 1 :]))
        return found

    def _set_text(self, text: str) -> None:
        self.doc = self._parse(text)
        self._text = text

    # ------------------------------------------------------------------ writing

    def text(self) -> str:
        return self._text

    def validate(self) -> Settings:
        """The edited file as the daemon would load it (ConfigError with the loader's message)."""
        return parse_settings(self.text(), name=self.name, env=_LenientEnv(os.environ), path=self.path)

    def save(self) -> Settings:
        """Validate, then replace the file atomically (the daemon's watcher reloads it)."""
        settings = self.validate()
        write_atomically(self.path, self.text())
        return settings


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path`` (mode kept)."""
    target = path.resolve()
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unique_id(title: str, url: str, taken: set[str]) -> str:
    """A source id from ``title`` (else the URL's host and path), made unique with -2, -3..."""
    base = title if _ID_LIKE.match(title) else (slug(title) or slug(_host_path(url)) or "source")
    sid, n = base, 2
    while sid in taken:
        sid, n = f"{base}-{n}", n + 1
    return sid


def slug(text: str, limit: int = 48) -> str:
    """``"Example News: Tech"`` -> ``"example-news-tech"`` (ASCII letters and digits only)."""
    return _SLUG.sub("-", text.lower()).strip("-")[:limit].strip("-")


def _host_path(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    path = re.sub(r"\.(xml|rss|atom|json)$", "", parts.path.strip("/"))
    path = re.sub(r"(^|/)(feeds?|rss|atom|index)$", "", path)
    return f"{host} {path}".strip()


def _entry(sid: str, new: NewSource) -> CommentedMap:
    m = CommentedMap()
    m["id"] = sid
    m["kind"] = new.kind
    m["url"] = DoubleQuotedScalarString(new.url)
    if new.selector:
        m["selector"] = DoubleQuotedScalarString(new.selector)
    if new.interval:
        m["interval"] = new.interval
    if new.tags:
        tags = CommentedSeq(new.tags)
        tags.fa.set_flow_style()
        m["tags"] = tags
    return m


def _where(src: ExistingSource) -> str:
    return f"sources[{src.index}], line {src.line}" if src.line else f"sources[{src.index}]"


def _reason(exc: ConfigError, name: str) -> str:
    return str(exc).removeprefix(f"{name}: ").removeprefix(f"{name}:")


def _dump(doc: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()


def _render(entry: CommentedMap, dash: int) -> str:
    """One list entry as block YAML whose dash is at column ``dash``."""
    text = _dump({"sources": [entry]})
    body = text.split("\n", 1)[1]  # ruamel writes "sources:\n  - id: ..." (dash at column 2)
    return "".join(" " * dash + line[2:] for line in body.splitlines(keepends=True))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _last_content(lines: Sequence[str], start: int, stop: int) -> int:
    """The last line of ``lines[start:stop]`` that is neither blank nor a comment."""
    return max(i for i in range(start, max(stop, start + 1)) if i == start or _is_content(lines[i]))


def _is_content(line: str) -> bool:
    """Not blank and not a comment line."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _block_end(lines: Sequence[str], start: int, dash: int) -> int:
    """The line after the last entry of a block list whose dashes are at column ``dash``."""
    for i in range(start + 1, len(lines)):
        if _is_content(lines[i]) and _indent(lines[i]) <= dash:
            return i
    return len(lines)


class _LenientEnv(Mapping[str, str]):
    """The environment, where a variable that is not set reads as a placeholder.

    Editing sources must not need the daemon's secrets (``${SLACK_WEBHOOK_URL}``...) in the shell.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __getitem__(self, key: str) -> str:
        return self._env.get(key, _placeholder(key))

    def get(self, key: str, default: Any = None) -> Any:
        value = self._env.get(key)
        return value if value is not None else (default if default is not None else _placeholder(key))


    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def _placeholder(key: str) -> str:
    """What an unset variable reads as: a URL for a ``..._URL(S)`` variable (URLs are checked at load),
    else ``1``."""
    return "https://placeholder.invalid/" if "URL" in key.upper() else "1"
