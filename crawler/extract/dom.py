"""One walk over a parsed page: the DOM becomes a list of text blocks and a tree of block elements.

A *block* is a run of text between block-level boundaries (a paragraph, a heading, a list item, a
table cell, a run of text between <br>s). A *node* is a block-level element (div, section, p, li...)
with the totals the scorer needs: text length and link-text length of everything below it, its
class/id weight and the range of blocks it contains. Blocks come out in document order, so the
blocks of a node are the contiguous range ``first[n]:end[n]``.

The walk is the hot loop of extraction (it visits every kept element from Python), so it is kept
small; the scorer (crawler.extract.score) works on the plain lists it returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from selectolax.lexbor import LexborNode

__all__ = [
    "PARAGRAPH_TAGS",
    "TAG_SCORE",
    "PageBlocks",
    "clear_hint_cache",
    "is_strong_boilerplate",
    "walk_body",
    "walk_region",
]


def _names(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# Never content: skipped with their whole subtree.
SKIP_TAGS = _names(
    "script style noscript template svg math iframe frame frameset object embed applet canvas video audio "
    "picture source track map area img button input select textarea option optgroup datalist label nav "
    "aside footer header menu menuitem dialog figure figcaption head link meta title base h1 legend "
    "output progress meter -comment -doctype"
)
# Elements that start a new block; everything else (span, a, em, font...) is inline.
BLOCK_TAGS = _names(
    "p div section article main body ul ol li dl dt dd table thead tbody tfoot tr td th caption "
    "blockquote pre h2 h3 h4 h5 h6 hr address center details summary hgroup form fieldset"
)
# Paragraph-like blocks: they give their score to their parent (a container gives it to itself).
PARAGRAPH_TAGS = _names("p pre td th li dt dd h2 h3 h4 h5 h6 blockquote address caption summary")
_REGION_SKIP = _names("script style noscript template svg math iframe object embed head -comment -doctype")

# Class/id vocabulary (readability's, extended with the boilerplate of current news templates), matched
# on the "class id" string lower-cased, camelCase humps first split by a space. Short words must stand
# alone, between non-letters ("pager" fires on "pager", "mainPager", "pager_2", not on
# "PageBuilder-pageRow"; "nav" on "main-nav" and "navBar"); long ones match inside compounds
# ("postfooter"). Multi-word names allow one separator or none ("ad-slot", "adSlot", "adslot").
# (No re.IGNORECASE: it makes these searches about seven times slower.)


def _vocabulary(words: str = "", inside: str = "") -> re.Pattern[str]:
    words = words.replace(" ", "[^a-z]?")
    parts = ([f"(?<![a-z])(?:{words})(?![a-z])"] if words else []) + ([inside] if inside else [])
    return re.compile("|".join(parts))


_UNLIKELY = _vocabulary(
    words="ads?|ad (?:slot|unit|container|wrapper|banner|box)|nav|navbar|navigation|pager|rss|tags?|tag list|"
    "keywords|byline|modal|most (?:read|popular|viewed|shared)|author (?:bio|info|box)|more stories|"
    "breaking news|skip link|agegate|combx|legends|remark|replies|shoutbox|supplemental|community|"
    "masthead|toolbar|trending|ai2html|cover wrap",
    inside="comment|disqus|footer|gdpr|cookie|consent|banner|breadcrumb|menu|related|sidebar|skyscraper|"
    "social|sponsor|pagination|popup|newsletter|signup|sign up|share|sharing|promo|outbrain|taboola|recirc|"
    "recommend|advert|copyright",
)
_MAYBE = _vocabulary(inside="article|body|column|content|main|story|entry|post.?text|text.?body|embed|tweet")
# A boilerplate name so strong that even a big, prose-like subtree under it stays out (comment threads).
_STRONG = _vocabulary(words="repl(?:y|ies)|respond", inside="comment|disqus")
_POSITIVE = _vocabulary(inside="article|body|content|entry|main|page|post|text|blog|story")
_NEGATIVE = _vocabulary(
    words="ad|hid|com|meta|media|tags|scroll",
    inside="hidden|banner|combx|comment|contact|footer|gdpr|masthead|outbrain|promo|related|share|shoutbox|"
    "sidebar|skyscraper|sponsor|shopping|widget|caption|credit",
)
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_DISPLAY_NONE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_BAD_ROLES = _names("menu menubar complementary navigation alert alertdialog dialog banner contentinfo")
# readability's base scores by tag
TAG_SCORE = {"div": 5, "pre": 3, "td": 3, "blockquote": 3, "th": -5}
TAG_SCORE.update(dict.fromkeys(("address", "ol", "ul", "dl", "dd", "dt", "li", "form"), -3))
TAG_SCORE.update(dict.fromkeys(("h2", "h3", "h4", "h5", "h6"), -5))


@dataclass(frozen=True)
class PageBlocks:
    """Blocks (text, owner node, length, link length) and nodes (tree, totals, weights) of a page."""

    texts: list[str]
    owner: list[int]
    block_chars: list[int]
    block_links: list[int]
    parent: list[int]  # node 0 is <body>; its parent is -1
    tag: list[str]
    weight: list[int]  # class/id weight plus the tag's base score
    chars: list[int]  # text length below the node
    links: list[int]  # link-text length below the node
    first: list[int]  # first block index of the node
    end: list[int]  # one past its last block
    children: list[list[int]]
    pruned: list[tuple[LexborNode, str]]  # subtrees left out for their class/id, with that hint


MAX_DEPTH = 250  # element nesting the walk follows; deeper subtrees become one flat text run


class _Walker:
    """Depth-first walk that fills the PageBlocks lists; one instance per walk."""

    def __init__(self, prune: bool, exempt: frozenset[int]) -> None:
        self.prune = prune
        self.exempt = exempt
        self.pruned: list[tuple[LexborNode, str]] = []
        self.texts: list[str] = []
        self.owner: list[int] = []
        self.block_chars: list[int] = []
        self.block_links: list[int] = []
        self.parent = [-1]
        self.tag = ["body"]
        self.weight = [0]
        self.chars = [0]
        self.links = [0]
        self.first = [0]
        self.end = [0]
        self.children: list[list[int]] = [[]]
        self.buf: list[str] = []
        self.buf_links = 0
        self.in_link = 0

    def visit(self, node: LexborNode, owner: int, depth: int) -> None:
        """Recursive descent (faster than an explicit stack); below MAX_DEPTH a subtree is flattened."""
        buf = self.buf
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                text = child.text_content or ""
                buf.append(text)
                if self.in_link:
                    self.buf_links += len(text)
            elif tag in SKIP_TAGS or tag is None:
                continue
            elif tag == "br":
                self.flush(owner)
            elif depth >= MAX_DEPTH:
                buf.append(_flat_text(child))
            elif tag in BLOCK_TAGS or "-" in tag:
                idx = self.open_block(child, tag, owner)
                if idx >= 0:
                    self.visit(child, idx, depth + 1)
                    self.close_block(idx)
            elif tag == "a":
                self.in_link += 1
                self.visit(child, owner, depth + 1)
                self.in_link -= 1
            else:
                self.visit(child, owner, depth + 1)

    def open_block(self, node: LexborNode, tag: str, owner: int) -> int:
        """Start a node for this block element; -1 when it is pruned."""
        attrs = node.attributes
        weight = TAG_SCORE.get(tag, 0)
        hint = f"{attrs.get('class') or ''} {attrs.get('id') or ''}"
        if len(hint) > 1:
            unlikely, hint_weight = _hint_info(hint)
            if unlikely and self.prune and node.mem_id not in self.exempt:
                self.pruned.append((node, hint))
                return -1
            weight += hint_weight
        if self.prune and (attrs.get("role") in _BAD_ROLES or _is_hidden(attrs)):
            return -1
        self.flush(owner)
        idx = len(self.parent)
        self.parent.append(owner)
        self.tag.append(tag)
        self.weight.append(weight)
        self.chars.append(0)
        self.links.append(0)
        self.first.append(len(self.texts))
        self.end.append(0)
        self.children.append([])
        self.children[owner].append(idx)
        return idx

    def close_block(self, idx: int) -> None:
        self.flush(idx)
        self.end[idx] = len(self.texts)
        parent = self.parent[idx]
        if parent >= 0:
            self.chars[parent] += self.chars[idx]
            self.links[parent] += self.links[idx]

    def flush(self, owner: int) -> None:
        if not self.buf:
            return
        text = " ".join("".join(self.buf).split())
        self.buf.clear()
        if text:
            n = len(text)
            links = min(self.buf_links, n)
            self.texts.append(text)
            self.owner.append(owner)
            self.block_chars.append(n)
            self.block_links.append(links)
            self.chars[owner] += n
            self.links[owner] += links
        self.buf_links = 0

    def result(self) -> PageBlocks:
        return PageBlocks(
            self.texts,
            self.owner,
            self.block_chars,
            self.block_links,
            self.parent,
            self.tag,
            self.weight,
            self.chars,
            self.links,
            self.first,
            self.end,
            self.children,
            self.pruned,
        )


def _is_hidden(attrs: dict[str, str | None]) -> bool:
    style = attrs.get("style")
    return "hidden" in attrs or bool(style and _DISPLAY_NONE.search(style))


def clear_hint_cache() -> None:
    """Forget cached class/id verdicts (benchmarks call it so every pass starts cold)."""
    _hint_info.cache_clear()


def _lower_hint(hint: str) -> str:
    lower = hint.lower()
    return lower if lower == hint else _CAMEL_HUMP.sub(" ", hint).lower()


def is_strong_boilerplate(hint: str) -> bool:
    """Names of comment threads: never content, however much prose they hold."""
    return _STRONG.search(_lower_hint(hint)) is not None


@lru_cache(maxsize=8192)
def _hint_info(hint: str) -> tuple[bool, int]:
    """(boilerplate-named?, class weight) of a "class id" string; cached: templates repeat them."""
    hint = _lower_hint(hint)
    weight = 0
    if _NEGATIVE.search(hint):
        weight -= 25
    if _POSITIVE.search(hint):
        weight += 25
    return bool(_UNLIKELY.search(hint) and not _MAYBE.search(hint)), weight


def walk_body(body: LexborNode, *, prune: bool, exempt: frozenset[int] = frozenset()) -> PageBlocks:
    """Blocks and nodes of ``body``; with ``prune``, boilerplate-named subtrees (but those whose
    ``mem_id`` is in ``exempt``) are left out and listed in ``PageBlocks.pruned``."""
    walker = _Walker(prune, exempt)
    walker.visit(body, 0, 0)
    walker.close_block(0)
    return walker.result()


def _flat_text(node: LexborNode) -> str:
    """Text of a subtree nested too deep to walk, without its scripts and styles (mutates the tree)."""
    for junk in node.css("script, style, noscript, template"):
        junk.decompose()
    return " " + node.text(deep=True, separator=" ") + " "


def walk_region(node: LexborNode) -> list[str]:
    """Lines of a watched region: one per block element, table rows as "cell | cell" (iterative)."""
    sinks: list[list[str]] = [[]]  # lines go to sinks[-1]; a table cell collects its own lines
    rows: list[list[str]] = []  # cells of the open table rows
    buf: list[str] = []
    stack: list[tuple[Iterator[LexborNode], str]] = []
    _region_enter(node, node.tag or "", sinks, rows, buf, stack)
    while stack:
        children, tag = stack[-1]
        for child in children:
            child_tag = child.tag
            if child_tag == "-text":
                buf.append(child.text_content or "")
            elif child_tag is None or child_tag in _REGION_SKIP:
                continue
            elif child_tag == "br":
                _flush_line(buf, sinks[-1])
            else:
                _region_enter(child, child_tag, sinks, rows, buf, stack)
                break
        else:
            stack.pop()
            _region_exit(tag, sinks, rows, buf)
    return sinks[0]


def _region_enter(
    node: LexborNode,
    tag: str,
    sinks: list[list[str]],
    rows: list[list[str]],
    buf: list[str],
    stack: list[tuple[Iterator[LexborNode], str]],
) -> None:
    if tag in _REGION_SKIP:
        return
    if _is_line_break(tag):
        _flush_line(buf, sinks[-1])
    if tag == "tr":
        rows.append([])
    elif tag in ("td", "th") and rows:
        sinks.append([])
    stack.append((node.iter(include_text=True), tag))


def _region_exit(tag: str, sinks: list[list[str]], rows: list[list[str]], buf: list[str]) -> None:
    if _is_line_break(tag):
        _flush_line(buf, sinks[-1])
    if tag in ("td", "th") and rows and len(sinks) > 1:
        cell = " ".join(sinks.pop())
        if cell:
            rows[-1].append(cell)
    elif tag == "tr" and rows:
        cells = rows.pop()
        if cells:
            sinks[-1].append(" | ".join(cells))


def _is_line_break(tag: str) -> bool:
    return tag in BLOCK_TAGS or tag in SKIP_TAGS or "-" in tag


def _flush_line(buf: list[str], lines: list[str]) -> None:
    text = " ".join("".join(buf).split())
    buf.clear()
    if text:
        lines.append(text)
