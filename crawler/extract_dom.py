"""One walk over a parsed page: the DOM becomes a list of text blocks and a tree of block elements.

A *block* is a run of text between block-level boundaries (a paragraph, a heading, a list item, a
table cell, a run of text between <br>s). A *node* is a block-level element (div, section, p, li...)
with the totals the scorer needs: text length and link-text length of everything below it, its
class/id weight and the range of blocks it contains. Blocks come out in document order, so the
blocks of a node are the contiguous range ``first[n]:end[n]``.

This is the only place that touches selectolax nodes during extraction; the scorer
(crawler.extract_score) works on plain lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from selectolax.lexbor import LexborNode

__all__ = ["PARAGRAPH_TAGS", "PageBlocks", "walk_body", "walk_region"]

# Never content: skipped with their whole subtree.
SKIP_TAGS = frozenset(
    "script style noscript template svg math iframe frame frameset object embed applet canvas video audio "
    "picture source track map area img button input select textarea option optgroup datalist label nav "
    "aside footer header menu menuitem dialog figure figcaption head link meta title base h1 legend "
    "output progress meter -comment -doctype".split()
)
# Elements that start a new block; everything else (span, a, em, font...) is inline.
BLOCK_TAGS = frozenset(
    "p div section article main body ul ol li dl dt dd table thead tbody tfoot tr td th caption "
    "blockquote pre h2 h3 h4 h5 h6 hr address center details summary hgroup form fieldset".split()
)
# Paragraph-like blocks: they give their score to their parent (a container gives it to itself).
PARAGRAPH_TAGS = frozenset("p pre td th li dt dd h2 h3 h4 h5 h6 blockquote address caption summary".split())
_REGION_SKIP = frozenset("script style noscript template svg math iframe object embed head -comment -doctype".split())

# Class/id vocabulary (readability's, extended with the boilerplate of current news templates).
_UNLIKELY = re.compile(
    r"-ad-|\bads?\b|ad-?(?:slot|unit|container|wrapper|banner)|advert|ai2html|banner|breadcrumb|combx|"
    r"comment|community|cover-wrap|disqus|footer|gdpr|cookie|consent|legends|menu|related|remark|replies|"
    r"rss|shoutbox|sidebar|skyscraper|social|sponsor|supplemental|agegate|pagination|pager|popup|"
    r"modal|newsletter|signup|share|sharing|promo|outbrain|taboola|recirc|recommend|"
    r"most-?(?:read|popular|viewed)|trending|navbar|navigation|\bnav\b|toolbar|byline|author-?(?:bio|info)|"
    r"tags|keywords|masthead|breaking-news|more-?stories|skip-?link",
)
_MAYBE = re.compile(r"article|body|column|content|main|story|entry|post-?text|text-?body|embed|tweet")
_POSITIVE = re.compile(r"article|body|content|entry|hentry|h-entry|main|page|post|text|blog|story")
_NEGATIVE = re.compile(
    r"-ad-|hidden|\bhid\b|banner|combx|comment|com-|contact|footer|gdpr|masthead|media|meta|outbrain|promo|"
    r"related|scroll|share|shoutbox|sidebar|skyscraper|sponsor|shopping|tags|widget|caption|credit",
)
_BAD_ROLES = frozenset("menu menubar complementary navigation alert alertdialog dialog banner contentinfo".split())
_TAG_SCORE = {"div": 5, "pre": 3, "td": 3, "blockquote": 3, "address": -3, "ol": -3, "ul": -3, "dl": -3}
_TAG_SCORE.update({"dd": -3, "dt": -3, "li": -3, "form": -3, "h2": -5, "h3": -5, "h4": -5, "h5": -5, "h6": -5})
_TAG_SCORE["th"] = -5


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


class _Walker:
    """Recursive descent that fills the PageBlocks lists (one instance per walk)."""

    def __init__(self, prune: bool) -> None:
        self.prune = prune
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

    def visit(self, node: LexborNode, owner: int) -> None:
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                text = child.text_content
                self.buf.append(text)
                if self.in_link:
                    self.buf_links += len(text)
            elif tag in SKIP_TAGS or tag is None:
                continue
            elif tag == "br":
                self.flush(owner)
            elif tag in BLOCK_TAGS or "-" in tag:
                self.block(child, tag, owner)
            elif tag == "a":
                self.in_link += 1
                self.visit(child, owner)
                self.in_link -= 1
            else:
                self.visit(child, owner)

    def block(self, node: LexborNode, tag: str, owner: int) -> None:
        attrs = node.attributes
        weight = _TAG_SCORE.get(tag, 0)
        hint = f"{attrs.get('class') or ''} {attrs.get('id') or ''}"
        if len(hint) > 1:
            unlikely, hint_weight = _hint_info(hint)
            if unlikely and self.prune:
                return
            weight += hint_weight
        if self.prune and attrs.get("role") in _BAD_ROLES:
            return
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
        self.visit(node, idx)
        self.flush(idx)
        self.end[idx] = len(self.texts)
        self.chars[owner] += self.chars[idx]
        self.links[owner] += self.links[idx]

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
        self.end[0] = len(self.texts)
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
        )


@lru_cache(maxsize=8192)
def _hint_info(hint: str) -> tuple[bool, int]:
    """(boilerplate-named?, class weight) of a "class id" string; cached: templates repeat them."""
    hint = hint.lower()
    weight = 0
    if _NEGATIVE.search(hint):
        weight -= 25
    if _POSITIVE.search(hint):
        weight += 25
    return bool(_UNLIKELY.search(hint) and not _MAYBE.search(hint)), weight


def walk_body(body: LexborNode, *, prune: bool) -> PageBlocks:
    """Blocks and nodes of ``body``; with ``prune`` boilerplate-named subtrees are left out."""
    walker = _Walker(prune)
    walker.visit(body, 0)
    walker.flush(0)
    return walker.result()


def walk_region(node: LexborNode) -> list[str]:
    """Lines of a watched region: one per block element, table rows as "cell | cell"."""
    lines: list[str] = []
    if node.tag == "tr":
        row = _row(node)
        return [row] if row else []
    buf: list[str] = []
    _region_visit(node, lines, buf)
    _flush_line(buf, lines)
    return lines


def _region_visit(node: LexborNode, lines: list[str], buf: list[str]) -> None:
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            buf.append(child.text_content)
        elif tag in _REGION_SKIP or tag is None:
            continue
        elif tag == "tr":
            _flush_line(buf, lines)
            row = _row(child)
            if row:
                lines.append(row)
        elif tag == "br" or tag in BLOCK_TAGS or tag in SKIP_TAGS or "-" in tag:
            _flush_line(buf, lines)
            _region_visit(child, lines, buf)
            _flush_line(buf, lines)
        else:
            _region_visit(child, lines, buf)


def _flush_line(buf: list[str], lines: list[str]) -> None:
    text = " ".join("".join(buf).split())
    buf.clear()
    if text:
        lines.append(text)


def _row(row: LexborNode) -> str:
    cells: list[str] = []
    for cell in row.iter():
        if cell.tag in ("td", "th"):
            text = " ".join(walk_region(cell))
            if text:
                cells.append(text)
    return " | ".join(cells)
