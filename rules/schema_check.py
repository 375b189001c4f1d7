"""Check a composed YAML rule file against rules/schema.json, reporting file:line:column.

A small JSON-Schema interpreter for the keywords rules/schema.json uses ($ref, type, const, enum,
properties, required, additionalProperties, propertyNames, items, minItems, uniqueItems, minLength,
pattern, oneOf), run on YAML *nodes* so each error points at the key or value that is wrong. The
schema file is the single source of truth: editors use it for completion, this module for errors.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

from crawler.errors import RuleError

_TAG_TYPES = {
    "tag:yaml.org,2002:str": "string",
    "tag:yaml.org,2002:int": "integer",
    "tag:yaml.org,2002:bool": "boolean",
    "tag:yaml.org,2002:float": "number",
    "tag:yaml.org,2002:null": "null",
}
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
    "object": "a mapping",
    "array": "a list",
}


def mark_of(node: yaml.Node) -> tuple[int, int]:
    """1-based (line, column) where a node starts."""
    return node.start_mark.line + 1, node.start_mark.column + 1


def node_type(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "object"
    if isinstance(node, yaml.SequenceNode):
        return "array"
    return _TAG_TYPES.get(node.tag, "string")


def scalar_value(node: yaml.Node) -> Any:
    """The Python value of a scalar node (str, int, float, bool or None)."""
    kind = node_type(node)
    text = str(node.value)
    if kind == "boolean":
        return text.lower() in ("true", "yes", "on", "y")
    if kind == "integer":
        try:
            return int(text.replace("_", ""), 0)
        except ValueError:
            return text
    if kind == "number":
        return float(text.replace("_", ""))
    return None if kind == "null" else text


def _type_ok(node: yaml.Node, expected: str) -> bool:
    actual = node_type(node)
    return actual == expected or (expected == "number" and actual == "integer")


class SchemaValidator:
    def __init__(self, schema: dict[str, Any], file: str, errors: list[RuleError]) -> None:
        self.root = schema
        self.file = file
        self.errors = errors

    def check_root(self, node: yaml.Node) -> None:
        self.check(node, self.root, "the rule file", None)

    def _error(self, message: str, node: yaml.Node, rule_id: str | None) -> None:
        line, col = mark_of(node)
        self.errors.append(RuleError(message, file=self.file, line=line, column=col, rule_id=rule_id))

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            target: Any = self.root
            for part in schema["$ref"].lstrip("#/").split("/"):
                target = target[part]
            schema = target
        return schema

    def check(self, node: yaml.Node, schema: dict[str, Any], what: str, rule_id: str | None) -> None:
        schema = self._resolve(schema)
        if "oneOf" in schema:
            self._one_of(node, schema["oneOf"], what, rule_id)
            return
        if "const" in schema and scalar_value(node) != schema["const"]:
            self._error(
                f"{what} must be {schema['const']!r} (the rule format version this storywatch reads)",
                node,
                rule_id,
            )
            return
        if "enum" in schema:
            self._enum(node, schema["enum"], what, rule_id)
            return
        expected = schema.get("type")
        if expected and not _type_ok(node, expected):
            self._error(
                f"{what} must be {_TYPE_NAMES[expected]}, not {_TYPE_NAMES[node_type(node)]}", node, rule_id
            )
            return
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, schema, what, rule_id)
        elif isinstance(node, yaml.SequenceNode):
            self._sequence(node, schema, what, rule_id)
        else:
            self._string(node, schema, what, rule_id)

    def _one_of(
        self, node: yaml.Node, branches: list[dict[str, Any]], what: str, rule_id: str | None
    ) -> None:
        resolved = [self._resolve(b) for b in branches]
        for branch in resolved:
            if "type" not in branch or _type_ok(node, branch["type"]):
                self.check(node, branch, what, rule_id)
                return
        wanted = " or ".join(_TYPE_NAMES[b["type"]] for b in resolved if "type" in b)
        self._error(f"{what} must be {wanted}, not {_TYPE_NAMES[node_type(node)]}", node, rule_id)

    def _enum(self, node: yaml.Node, allowed: list[Any], what: str, rule_id: str | None) -> None:
        value = scalar_value(node) if isinstance(node, yaml.ScalarNode) else None
        if value not in allowed:
            shown = node.value if isinstance(node, yaml.ScalarNode) else _TYPE_NAMES[node_type(node)]
            self._error(f"{what} must be one of {', '.join(map(str, allowed))}, not {shown!r}", node, rule_id)

    def _mapping(
        self, node: yaml.MappingNode, schema: dict[str, Any], what: str, rule_id: str | None
    ) -> None:
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        if schema.get("title") == "rule":
            rule_id = next(
                (str(v.value) for k, v in node.value if k.value == "id" and isinstance(v, yaml.ScalarNode)),
                None,
            )
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                self._error(f"duplicate key {name!r} in {what}", key, rule_id)
            seen.add(name)
            if name in props:
                self.check(value, props[name], name, rule_id)
            elif extra is False:
                self._error(_unknown_key(name, what, list(props)), key, rule_id)
            else:
                self._key_name(key, schema, what, rule_id)
                if isinstance(extra, dict):
                    self.check(value, extra, f"{what} {name!r}", rule_id)
        for req in schema.get("required", []):
            if req not in seen:
                self._error(f"{what} is missing the required key {req!r}", node, rule_id)

    def _key_name(self, key: yaml.Node, schema: dict[str, Any], what: str, rule_id: str | None) -> None:
        names = schema.get("propertyNames")
        if names and not re.fullmatch(names["pattern"], str(key.value)):
            self._error(
                f"bad name {key.value!r} in {what}: {names.get('x-message', names['pattern'])}", key, rule_id
            )

    def _sequence(
        self, node: yaml.SequenceNode, schema: dict[str, Any], what: str, rule_id: str | None
    ) -> None:
        if len(node.value) < schema.get("minItems", 0):
            self._error(f"{what} needs at least {schema['minItems']} item(s)", node, rule_id)
        items = schema.get("items")
        label = self._resolve(items).get("title", f"{what} item") if items is not None else ""
        seen: set[str] = set()
        for item in node.value:
            if items is not None:
                self.check(item, items, label, rule_id)
            if schema.get("uniqueItems") and isinstance(item, yaml.ScalarNode):
                if item.value in seen:
                    self._error(f"{what} repeats {item.value!r}", item, rule_id)
                seen.add(item.value)

    def _string(self, node: yaml.Node, schema: dict[str, Any], what: str, rule_id: str | None) -> None:
        if node_type(node) != "string":
            return
        text = str(node.value)
        if len(text.strip()) < schema.get("minLength", 0):
            self._error(f"{what} must not be empty", node, rule_id)
        pattern = schema.get("pattern")
        if pattern and not re.fullmatch(pattern, text):
            self._error(f"{what} {text!r} is not valid: {schema.get('x-message', pattern)}", node, rule_id)


def _unknown_key(name: str, what: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        return f"unknown key {name!r} in {what} (did you mean {close[0]!r}?)"
    return f"unknown key {name!r} in {what}; allowed keys: {', '.join(sorted(allowed))}"
