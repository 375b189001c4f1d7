"""Load rule files: YAML -> validated, resolved :class:`Rule` values, with file:line:column errors.

Every problem becomes a :class:`crawler.errors.RuleError` carrying the file, the 1-based line and
column in the YAML file and the rule id. Query errors point at the offending character of the query,
even inside a ``|`` or ``>`` block scalar. :func:`load_files` collects *all* errors of all files
(for ``storywatch rules lint``); :func:`rules.engine.load_rules` raises the first one.

Kept whole past ~450 lines on purpose: every check of a rule file (schema, ids, lists, queries,
inline tests) reports through the same file:line:column locator, defined here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, cast

import yaml

from crawler.errors import RuleError
from crawler.types import HitStatus, Severity
from rules.lang import (
    And,
    Exclude,
    ListItem,
    ListRef,
    ListTerms,
    Node,
    Not,
    QuerySyntaxError,
    parse_list_entry,
    parse_query,
    with_children,
)
from rules.paths import SCHEMA_PATH
from rules.schema_check import SchemaValidator, mark_of, scalar_value

FORMAT_VERSION = 1
DEFAULT_DEVELOPMENT_WINDOW = timedelta(hours=72)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RULE_SUFFIXES = (".yaml", ".yml")
VETO_SCOPES = {"clause": "clause", "sentence": "sentence", "paragraph": "paragraph"}


@dataclass(frozen=True)
class SourceCondition:
    """Which sources a rule reads; every condition that is given must hold."""

    ids: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()

    def allows(self, source_id: str, kind: str, tags: Iterable[str]) -> bool:
        if not (self.ids or self.kinds or self.tags or self.exclude_ids or self.exclude_tags):
            return True
        tagset = {t.lower() for t in tags}
        sid = source_id.lower()
        return (
            (not self.ids or any(fnmatchcase(sid, p.lower()) for p in self.ids))
            and (not self.kinds or kind in self.kinds)
            and (not self.tags or bool(tagset & {t.lower() for t in self.tags}))
            and not any(fnmatchcase(sid, p.lower()) for p in self.exclude_ids)
            and not tagset & {t.lower() for t in self.exclude_tags}
        )


@dataclass(frozen=True)
class InlineTest:
    """One ``tests:`` item of a rule: a document and whether the rule must fire on it."""

    rule_id: str
    index: int
    text: str
    fires: bool
    name: str = ""
    title: str = ""
    url: str = ""
    language: str | None = None
    source_id: str = "inline-test"
    source_kind: str = "feed"
    source_tags: tuple[str, ...] = ()
    status: HitStatus | None = None
    captures: Mapping[str, str] = dc_field(default_factory=dict)
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity
    query: Node  # the parsed query with lists resolved and vetoes applied
    query_text: str
    description: str = ""
    labels: Mapping[str, str] = dc_field(default_factory=dict)
    fire_on: tuple[HitStatus, ...] = ("asserted",)
    source: SourceCondition = SourceCondition()
    tests: tuple[InlineTest, ...] = ()
    enabled: bool = True
    file: str = ""
    line: int = 0
    develops_on: tuple[str, ...] = ()  # capture names that identify one development
    develops_within: timedelta = DEFAULT_DEVELOPMENT_WINDOW


@dataclass(frozen=True)
class LoadResult:
    rules: tuple[Rule, ...]
    errors: tuple[RuleError, ...]


def expand_paths(paths: Sequence[Path]) -> tuple[list[Path], list[RuleError]]:
    """Rule files named by ``paths``: files as given, directories -> their *.yaml/*.yml, sorted."""
    files: list[Path] = []
    errors: list[RuleError] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in RULE_SUFFIXES and f.is_file())
            if not found:
                errors.append(RuleError("no rule files (*.yaml, *.yml) in this directory", file=str(p)))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            errors.append(RuleError("no such rule file or directory", file=str(p)))
    return files, errors


def load_files(paths: Sequence[Path]) -> LoadResult:
    """Load every rule file; collect every error instead of stopping at the first."""
    files, errors = expand_paths(paths)
    rules: list[Rule] = []
    seen: dict[str, str] = {}  # rule id -> file:line where first defined
    for path in files:
        loader = _FileLoader(path)
        file_rules, file_errors = loader.load()
        for rule_id, node in loader.ids:
            line, col = mark_of(node)
            if rule_id in seen:
                file_errors.append(
                    RuleError(
                        f"duplicate rule id {rule_id!r} (first defined at {seen[rule_id]})",
                        file=loader.file,
                        line=line,
                        column=col,
                        rule_id=rule_id,
                    )
                )
            else:
                seen.setdefault(rule_id, f"{loader.file}:{line}")
        errors.extend(sorted(file_errors, key=lambda e: (e.line or 0, e.column or 0)))
        duplicates = {e.rule_id for e in file_errors if e.message.startswith("duplicate rule id")}
        rules.extend(r for r in file_rules if r.id not in duplicates)
    return LoadResult(tuple(rules), tuple(errors))


def _schema() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


class _FileLoader:
    """Loads one file; accumulates its errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = str(path)
        self.source = ""
        self.errors: list[RuleError] = []
        self.ids: list[tuple[str, yaml.Node]] = []  # every rule id scalar, in file order

    def load(self) -> tuple[list[Rule], list[RuleError]]:
        root = self._compose()
        if root is None:
            return [], self.errors
        SchemaValidator(_schema(), self.file, self.errors).check_root(root)
        lists = self._lists(_get(root, "lists"))
        rules_node = _get(root, "rules")
        rules: list[Rule] = []
        if isinstance(rules_node, yaml.SequenceNode):
            for item in rules_node.value:
                rule = self._rule(item, lists)
                if rule is not None:
                    rules.append(rule)
        return rules, self.errors

    def _compose(self) -> yaml.Node | None:
        try:
            self.source = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            self.errors.append(RuleError(f"not UTF-8 text ({exc.reason})", file=self.file))
            return None
        try:
            root = yaml.compose(self.source, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            self.errors.append(_yaml_error(exc, self.file))
            return None
        except yaml.YAMLError as exc:
            self.errors.append(RuleError(f"invalid YAML: {exc}", file=self.file))
            return None
        if root is None:
            self.errors.append(
                RuleError("empty rule file: expected 'version: 1' and 'rules:'", file=self.file)
            )
        return root

    def _error(
        self, message: str, node: yaml.Node, rule_id: str | None = None, offset: int | None = None
    ) -> None:
        line, col = scalar_position(self.source, node, offset) if offset is not None else mark_of(node)
        self.errors.append(RuleError(message, file=self.file, line=line, column=col, rule_id=rule_id))

    # --- lists -----------------------------------------------------------------------------------

    def _lists(self, node: yaml.Node | None) -> dict[str, ListTerms]:
        """Every list of the file, with the entries of the lists it ``include``s (their canonical
        values kept, captured under the including list's ``capture``)."""
        lists: dict[str, ListTerms] = {}
        if not isinstance(node, yaml.MappingNode):
            return lists
        own = {str(key.value): (value, *self._list_items(value)) for key, value in node.value}
        for name in own:
            lists[name] = self._with_includes(name, own, lists, ())
        return lists

    def _with_includes(
        self,
        name: str,
        own: Mapping[str, tuple[yaml.Node, list[ListItem], str | None]],
        done: dict[str, ListTerms],
        chain: tuple[str, ...],
    ) -> ListTerms:
        if name in done:
            return done[name]
        node, items, capture = own[name]
        include = _get(node, "include") if isinstance(node, yaml.MappingNode) else None
        if isinstance(node, yaml.MappingNode) and _get(node, "terms") is None and include is None:
            self._error(f"list '{name}' needs 'terms' or 'include'", node)
        merged = list(items)
        for ref in include.value if isinstance(include, yaml.SequenceNode) else []:
            other = str(ref.value)
            if other not in own:
                known = ", ".join(sorted(own)) or "none"
                self._error(f"list '{name}' includes unknown list '{other}' (lists here: {known})", ref)
            elif other in (*chain, name):
                path = " -> ".join((*chain, name, other))
                self._error(f"list '{name}' includes itself (through {path})", ref)
            else:
                merged.extend(self._with_includes(other, own, done, (*chain, name)).items)
        done[name] = ListTerms(name, tuple(merged), capture)
        return done[name]

    def _list_items(self, node: yaml.Node) -> tuple[list[ListItem], str | None]:
        if isinstance(node, yaml.SequenceNode):
            return self._entries(node.value, None), None
        if not isinstance(node, yaml.MappingNode):
            return [], None
        capture_node, terms = _get(node, "capture"), _get(node, "terms")
        capture = str(capture_node.value) if isinstance(capture_node, yaml.ScalarNode) else None
        if isinstance(terms, yaml.SequenceNode):
            return self._entries(terms.value, None), capture
        items: list[ListItem] = []
        if isinstance(terms, yaml.MappingNode):
            for key, value in terms.value:
                entries = value.value if isinstance(value, yaml.SequenceNode) else [value]
                items.extend(self._entries(entries, str(key.value)))
        return items, capture

    def _entries(self, nodes: list[yaml.Node], canonical: str | None) -> list[ListItem]:
        items = []
        for n in nodes:
            if not (isinstance(n, yaml.ScalarNode) and isinstance(scalar_value(n), str)):
                continue  # reported by the schema check
            try:
                term = parse_list_entry(str(n.value))
            except QuerySyntaxError as exc:
                self._error(exc.message, n, offset=exc.offset)
                continue
            items.append(ListItem(term, canonical or str(n.value).strip()))
        return items

    # --- rules -----------------------------------------------------------------------------------

    def _rule(self, node: yaml.Node, lists: Mapping[str, ListTerms]) -> Rule | None:
        if not isinstance(node, yaml.MappingNode):
            return None
        values = {str(k.value): v for k, v in node.value}
        rule_id = _text(values.get("id"))
        if rule_id is not None:
            self.ids.append((rule_id, values["id"]))
        before = len(self.errors)
        query_node = values.get("query")
        query = self._query(query_node, lists, rule_id) if _is_str(query_node) else None
        for veto_node, scope in self._veto_nodes(values.get("vetoes")):
            veto = self._query(veto_node, lists, rule_id)
            if query is not None and veto is not None:
                query = _apply_veto(query, veto, scope)
        tests = self._tests(values.get("tests"), rule_id or "")
        if len(self.errors) > before or query is None or rule_id is None:
            return None
        assert isinstance(query_node, yaml.ScalarNode)
        return Rule(
            id=rule_id,
            title=_text(values.get("title")) or rule_id,
            severity=cast(Severity, _text(values.get("severity")) or "info"),
            query=query,
            query_text=str(query_node.value),
            description=_text(values.get("description")) or "",
            labels=_str_map(values.get("labels")),
            fire_on=tuple(cast(list[HitStatus], _str_list(values.get("fire_on")) or ["asserted"])),
            source=self._source(values.get("source")),
            tests=tests,
            enabled=scalar_value(values["enabled"]) is not False if "enabled" in values else True,
            file=self.file,
            line=mark_of(node)[0],
            develops_on=tuple(_str_list(values.get("develops_on"))),
            develops_within=_duration(_text(values.get("develops_within"))),
        )

    def _query(
        self, node: yaml.Node | None, lists: Mapping[str, ListTerms], rule_id: str | None
    ) -> Node | None:
        if not _is_str(node):
            return None
        assert isinstance(node, yaml.ScalarNode)
        try:
            return _resolve_lists(parse_query(str(node.value)), lists)
        except QuerySyntaxError as exc:
            self._error(exc.message, node, rule_id, offset=exc.offset)
            return None

    def _veto_nodes(self, node: yaml.Node | None) -> list[tuple[yaml.Node, str]]:
        out: list[tuple[yaml.Node, str]] = []
        if not isinstance(node, yaml.SequenceNode):
            return out
        for item in node.value:
            if isinstance(item, yaml.ScalarNode):
                out.append((item, "sentence"))
            elif isinstance(item, yaml.MappingNode) and _get(item, "query") is not None:
                query_node = _get(item, "query")
                assert query_node is not None
                out.append((query_node, _text(_get(item, "scope")) or "sentence"))
        return out

    def _source(self, node: yaml.Node | None) -> SourceCondition:
        if not isinstance(node, yaml.MappingNode):
            return SourceCondition()
        values = {str(k.value): tuple(_str_list(v)) for k, v in node.value}
        return SourceCondition(
            **{k: v for k, v in values.items() if k in SourceCondition.__dataclass_fields__}
        )

    def _tests(self, node: yaml.Node | None, rule_id: str) -> tuple[InlineTest, ...]:
        if not isinstance(node, yaml.SequenceNode):
            return ()
        out = []
        for i, item in enumerate(node.value):
            if not isinstance(item, yaml.MappingNode):
                continue
            v = {str(k.value): n for k, n in item.value}
            src = (
                {str(k.value): n for k, n in v["source"].value}
                if isinstance(v.get("source"), yaml.MappingNode)
                else {}
            )
            if "text" not in v or "fires" not in v:
                continue  # reported by the schema check
            out.append(
                InlineTest(
                    rule_id=rule_id,
                    index=i + 1,
                    text=_text(v.get("text")) or "",
                    fires=scalar_value(v["fires"]) is True,
                    name=_text(v.get("name")) or "",
                    title=_text(v.get("title")) or "",
                    url=_text(v.get("url")) or "",
                    language=_text(v.get("language")),
                    source_id=_text(src.get("id")) or "inline-test",
                    source_kind=_text(src.get("kind")) or "feed",
                    source_tags=tuple(_str_list(src.get("tags"))),
                    status=cast(HitStatus | None, _text(v.get("status"))),
                    captures=_str_map(v.get("captures")),
                    file=self.file,
                    line=mark_of(item)[0],
                )
            )
        return tuple(out)


def _yaml_error(exc: yaml.MarkedYAMLError, file: str) -> RuleError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
    message = f"invalid YAML: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        where = f"line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        message += f" ({exc.context} at {where})"
    return RuleError(message, file=file, line=line, column=col)


def _apply_veto(query: Node, veto: Node, scope: str) -> Node:
    if scope == "document":
        return And((query, Not(veto, 0)), 0)
    return Exclude(query, veto, VETO_SCOPES[scope], 0, 0)  # type: ignore[arg-type]


def _resolve_lists(node: Node, lists: Mapping[str, ListTerms]) -> Node:
    if isinstance(node, ListRef):
        found = lists.get(node.name)
        if found is None:
            known = ", ".join(f"@{n}" for n in sorted(lists)) or "none"
            raise QuerySyntaxError(f"unknown list '@{node.name}' (lists in this file: {known})", node.offset)
        if not found.items:
            raise QuerySyntaxError(f"list '@{node.name}' has no valid terms", node.offset)
        return replace(found, field=node.field, offset=node.offset)
    return with_children(node, lambda c: _resolve_lists(c, lists))


def scalar_position(source: str, node: yaml.Node, offset: int) -> tuple[int, int]:
    """1-based (line, column) in the file of character ``offset`` of a scalar's value.

    The value is aligned with the raw text of the node (block scalar indentation, folded line
    breaks and quotes skipped); if alignment fails (escapes), the node's own position is used.
    """
    start, end = node.start_mark.index, node.end_mark.index
    raw = source[start:end]
    style = getattr(node, "style", None)
    i = (raw.find("\n") + 1 if "\n" in raw else len(raw)) if style in ("|", ">") else (1 if style else 0)
    value = str(node.value)
    for k in range(min(offset, len(value)) + 1):
        if k == len(value):
            break
        j = _find_aligned(raw, i, value[k])
        if j < 0:
            return mark_of(node)
        if k == offset:
            i = j
            break
        i = j + 1
    absolute = start + min(i, len(raw))
    line = source.count("\n", 0, absolute) + 1
    return line, absolute - (source.rfind("\n", 0, absolute) + 1) + 1


def _find_aligned(raw: str, i: int, ch: str) -> int:
    j = i
    while j < len(raw):
        r = raw[j]
        if r == ch or (ch.isspace() and r.isspace()):
            return j
        if not (r.isspace() or r in "\\'\""):
            return -1  # a character the value does not have: escapes we cannot follow
        j += 1
    return -1


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return cast(yaml.Node, v)
    return None


def _is_str(node: yaml.Node | None) -> bool:
    return isinstance(node, yaml.ScalarNode) and isinstance(scalar_value(node), str)


def _text(node: yaml.Node | None) -> str | None:
    return str(node.value) if node is not None and _is_str(node) else None


def _str_list(node: yaml.Node | None) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [str(n.value) for n in node.value if _is_str(n)]


def _str_map(node: yaml.Node | None) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): str(v.value) for k, v in node.value if isinstance(v, yaml.ScalarNode)}


def _duration(text: str | None) -> timedelta:
    """``72h``, ``3d``, ``90m``, ``30s``; the default window when absent or invalid (the schema
    check reports an invalid value with its position)."""
    found = re.fullmatch(r"(\d+) ?([smhd])", text or "")
    if found is None:
        return DEFAULT_DEVELOPMENT_WINDOW
    return timedelta(seconds=int(found.group(1)) * _DURATION_UNITS[found.group(2)])
