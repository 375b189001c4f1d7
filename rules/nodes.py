"""The query AST: immutable nodes produced by :func:`rules.lang.parse_query`.

Offsets are character offsets into the query text (for error positions). Leaves carry a
``compiled`` slot that :func:`rules.terms.compile_query` fills with their matchers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from typing import Any, Literal

TermKind = Literal["word", "phrase", "cased", "regex"]
ExcludeScope = Literal["sentence", "clause", "paragraph", "near"]


@dataclass(frozen=True)
class Term:
    kind: TermKind
    text: str  # as written: disclos*, "Huawei Ascend", {AMD}, /x+/i
    value: str  # without quotes, braces or slashes
    flags: str = ""
    field: str = "text"
    offset: int = 0
    compiled: Any = dc_field(default=None, compare=False, repr=False)  # set by ruleterms.compile_query


@dataclass(frozen=True)
class ListRef:
    name: str
    field: str = "text"
    offset: int = 0


@dataclass(frozen=True)
class ListItem:
    term: Term
    value: str  # the captured value: the canonical name, or the term as written


@dataclass(frozen=True)
class ListTerms:
    """A resolved ``@name``: the list's terms (filled in by the loader)."""

    name: str
    items: tuple[ListItem, ...]
    capture: str | None
    field: str = "text"
    offset: int = 0
    compiled: Any = dc_field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Fact:
    field: str  # one of META_FIELDS
    value: str
    offset: int = 0


@dataclass(frozen=True)
class Not:
    child: Node
    offset: int = 0


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]
    offset: int = 0


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]
    offset: int = 0


@dataclass(frozen=True)
class Near:
    left: Node
    right: Node
    n: int
    ordered: bool
    offset: int = 0


@dataclass(frozen=True)
class Scope:
    kind: Literal["sentence", "paragraph", "clause"]
    child: Node
    offset: int = 0


@dataclass(frozen=True)
class Exclude:
    left: Node
    right: Node
    scope: ExcludeScope
    n: int = 0
    offset: int = 0


@dataclass(frozen=True)
class AtLeast:
    n: int
    child: Node
    offset: int = 0


Node = Term | ListRef | ListTerms | Fact | Not | And | Or | Near | Scope | Exclude | AtLeast


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, And | Or):
        return node.children
    if isinstance(node, Near | Exclude):
        return (node.left, node.right)
    if isinstance(node, Not | Scope | AtLeast):
        return (node.child,)
    return ()


def has_evidence(node: Node) -> bool:
    """True when every way the node can match includes at least one text term."""
    if isinstance(node, Term | ListRef | ListTerms | Near):
        return True
    if isinstance(node, Fact | Not):
        return False
    if isinstance(node, Or):
        return all(has_evidence(c) for c in node.children)
    if isinstance(node, And):
        return any(has_evidence(c) for c in node.children if not isinstance(c, Not))
    if isinstance(node, Exclude):
        return has_evidence(node.left)
    return has_evidence(node.child)


def with_children(node: Node, fn: Callable[[Node], Node]) -> Node:
    """A copy of ``node`` with ``fn`` applied to each direct child (leaves are returned as is)."""
    if isinstance(node, And | Or):
        return replace(node, children=tuple(fn(c) for c in node.children))
    if isinstance(node, Near | Exclude):
        return replace(node, left=fn(node.left), right=fn(node.right))
    if isinstance(node, Not | Scope | AtLeast):
        return replace(node, child=fn(node.child))
    return node
