"""Content scoring: which blocks of a page (crawler.extract.dom.PageBlocks) are the article.

Readability's scheme on a block list: paragraph-like blocks of at least MIN_PARAGRAPH characters
score their ancestors, damped by depth; a node's final score is damped by its link density; the
best node is widened to an ancestor when several near-best candidates share it, and joined by
siblings that score well themselves; inside the result, link-dense or list-like sub-containers are
dropped (readability's "clean conditionally").
"""

from __future__ import annotations

import re

from crawler.extract.dom import PARAGRAPH_TAGS, TAG_SCORE, PageBlocks

__all__ = ["choose_blocks", "is_boilerplate_line"]

MIN_PARAGRAPH = 25
_DIVIDERS = (1.0, 2.0, 6.0, 9.0, 12.0)
_CONTAINERS_TO_CLEAN = frozenset(("div", "section", "ul", "ol", "table", "form", "fieldset", "dl", "article"))
_LISTS = frozenset(("ul", "ol", "dl"))
_PUNCT = " .:;,!?|-–—()[]{}<>«»\"'“”‘’•·*#"
_UI_WORDS = re.compile(
    r"advertisement|advertising|advert|ad|ads|sponsored|sponsored content|comments?|\d+ comments?|share|"
    r"share this|share on \w+|tweet|email|e-mail|print|save|read more|continue reading|show more|load more|"
    r"see more|more|related|related articles|related stories|recommended|subscribe|sign up|log ?in|"
    r"sign in|follow us|close|menu|search|skip to content|back to top|scroll to top|top|next|previous"
)
_DATELINE = re.compile(
    r"(?:by|posted|updated|published|last updated|first published|last modified|modified)\b[ :]",
    re.IGNORECASE,
)
_DATE_WORDS = re.compile(
    r"\d+(?:st|nd|rd|th)?|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b|"
    r"\b(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)[a-z]*\b|\b(?:[ap]\.?m\.?|utc|gmt|[ecmp][sd]t|at|on)\b"
)
_DATE_SHAPE = re.compile(
    r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}\b|\b\d{1,2}:\d{2}\b|"
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2}\b|"
    r"\b\d{1,2}\.? (?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
    re.IGNORECASE,
)
# Captions with a credit, newsletter pitches, "this needs JavaScript" notices.
_CALL_TO_ACTION = re.compile(
    r"\((?:image|photo|picture|pic|credit|foto|bild)s?(?: credit)?: [^)]*\)$|"
    r"\b(?:sign up|subscribe)\b.{0,80}\bnewsletters?\b|\bnewsletters?\b.{0,80}\b(?:sign up|subscribe)\b|"
    r"\b(?:requires|enable|enabled) javascript\b|\bjavascript (?:is )?(?:required|disabled)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]{2,}")


def choose_blocks(page: PageBlocks) -> list[int]:
    """Indices of the article's blocks, in document order."""
    if not page.texts:
        return []
    scores = _score_nodes(page)
    if not scores:
        return _clean(page, [0], {0})
    best = max(scores, key=scores.__getitem__)
    top = _widen(page, scores, best)
    protected = {best, *_ancestors(page, best)}
    return _clean(page, _with_siblings(page, scores, top), protected)


def _link_density(page: PageBlocks, node: int) -> float:
    chars = page.chars[node]
    return page.links[node] / chars if chars else 0.0


def _score_nodes(page: PageBlocks) -> dict[int, float]:
    raw: dict[int, float] = {}
    parent, tag = page.parent, page.tag
    for text, owner, chars in zip(page.texts, page.owner, page.block_chars, strict=True):
        if chars < MIN_PARAGRAPH:
            continue
        score = 1.0 + text.count(",") + min(chars // 100, 3)
        node = parent[owner] if tag[owner] in PARAGRAPH_TAGS else owner
        for divider in _DIVIDERS:
            if node < 0:
                break
            if node not in raw:
                raw[node] = float(page.weight[node])
            raw[node] += score / divider
            node = parent[node]
    return {node: score * (1.0 - _link_density(page, node)) for node, score in raw.items()}


def _ancestors(page: PageBlocks, node: int) -> list[int]:
    chain = []
    node = page.parent[node]
    while node >= 0:
        chain.append(node)
        node = page.parent[node]
    return chain


def _widen(page: PageBlocks, scores: dict[int, float], top: int) -> int:
    best = scores[top]
    # Several near-best candidates under one ancestor: the article is split; take the ancestor.
    close = [n for n, s in scores.items() if n != top and s >= 0.75 * best]
    if len(close) >= 2:
        close_sets = [set(_ancestors(page, n)) for n in close]
        for ancestor in _ancestors(page, top):
            if sum(ancestor in chain for chain in close_sets) >= 2:
                top = ancestor
                break
    # A parent that scores higher than the child holds more of the article.
    last = scores.get(top, best)
    threshold = last / 3
    node = page.parent[top]
    while node > 0:
        score = scores.get(node)
        if score is not None:
            if score < threshold:
                break
            if score > last:
                top = node
                break
            last = score
        node = page.parent[node]
    # An only child stands for its parent.
    while top > 0 and len(page.children[page.parent[top]]) == 1:
        top = page.parent[top]
    return top


def _with_siblings(page: PageBlocks, scores: dict[int, float], top: int) -> list[int]:
    parent = page.parent[top]
    if parent < 0:
        return [top]
    best = scores.get(top, 0.0)
    threshold = max(10.0, best * 0.2)
    chosen = []
    for sibling in page.children[parent]:
        if sibling == top:
            chosen.append(sibling)
            continue
        score = scores.get(sibling, 0.0)
        if page.weight[sibling] == page.weight[top] and page.weight[top] > 0:
            score += best * 0.2
        if score >= threshold or _good_paragraph(page, sibling):
            chosen.append(sibling)
    return chosen


def _good_paragraph(page: PageBlocks, node: int) -> bool:
    if page.tag[node] != "p":
        return False
    chars, density = page.chars[node], _link_density(page, node)
    if chars > 80:
        return density < 0.25
    return chars > 0 and density == 0 and _ends_sentence(page, node)


def _ends_sentence(page: PageBlocks, node: int) -> bool:
    last = page.end[node] - 1
    return last >= page.first[node] and page.texts[last].endswith((".", "!", "?", '"', "”"))


def _clean(page: PageBlocks, roots: list[int], protected: set[int]) -> list[int]:
    counts = _Counts(page)
    keep: list[int] = []
    for root in roots:
        dropped = bytearray(page.end[root] - page.first[root])
        offset = page.first[root]
        for first, end in _dropped_ranges(page, root, protected, counts):
            dropped[first - offset : end - offset] = b"\x01" * (end - first)
        keep.extend(
            i for i in range(offset, page.end[root]) if not dropped[i - offset] and not _bad_block(page, i)
        )
    return keep


class _Counts:
    """Prefix sums over the blocks, so any node's comma / <p> / <li> count is O(1)."""

    def __init__(self, page: PageBlocks) -> None:
        self.commas, self.paragraphs, self.items = [0], [0], [0]
        for text, owner in zip(page.texts, page.owner, strict=True):
            tag = page.tag[owner]
            self.commas.append(self.commas[-1] + text.count(","))
            self.paragraphs.append(self.paragraphs[-1] + (tag == "p"))
            self.items.append(self.items[-1] + (tag == "li"))

    def between(self, prefix: list[int], first: int, end: int) -> int:
        return prefix[end] - prefix[first]


def _dropped_ranges(
    page: PageBlocks, root: int, protected: set[int], counts: _Counts
) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    stack = list(page.children[root])
    while stack:
        node = stack.pop()
        if (
            node not in protected
            and page.tag[node] in _CONTAINERS_TO_CLEAN
            and _should_drop(page, node, counts)
        ):
            ranges.append((page.first[node], page.end[node]))
        else:
            stack.extend(page.children[node])
    return ranges


def _should_drop(page: PageBlocks, node: int, counts: _Counts) -> bool:
    weight = page.weight[node] - _base(page.tag[node])
    if weight < 0:
        return True
    first, end = page.first[node], page.end[node]
    if counts.between(counts.commas, first, end) >= 10:
        return False
    paragraphs = counts.between(counts.paragraphs, first, end)
    items = counts.between(counts.items, first, end)
    density = _link_density(page, node)
    is_list = page.tag[node] in _LISTS or items > 0.9 * max(1, end - first)
    if not is_list and items - 100 > paragraphs:
        return True
    if not is_list and weight < 25 and density > 0.2:
        return True
    if weight >= 25 and density > 0.5:
        return True
    return is_list and density > 0.5


def _base(tag: str) -> int:
    return TAG_SCORE.get(tag, 0)


def _bad_block(page: PageBlocks, i: int) -> bool:
    chars = page.block_chars[i]
    text = page.texts[i]
    if page.block_links[i] > 0.5 * chars and chars < 200 and not text.startswith(("http", "www.")):
        return True  # a link line; a pasted bare URL is content, though
    if chars < 100 and is_boilerplate_line(text):
        return True
    if chars >= 250:
        return False
    lower = text.lower()  # cheap pre-test: the regex below is slow on every short block
    if not (text.endswith(")") or "newsletter" in lower or "javascript" in lower):
        return False
    return _CALL_TO_ACTION.search(text) is not None


def is_boilerplate_line(text: str) -> bool:
    """Short UI text that is not article prose: "Advertisement", bylines, datelines."""
    words = text.split()
    if len(words) <= 3 and _UI_WORDS.fullmatch(text.strip(_PUNCT).lower()):
        return True
    if len(words) > 14 or text.endswith((".", "!", "?", '"', "”", ":")):
        return False
    if _DATELINE.match(text):
        return True
    if not _DATE_SHAPE.search(text):
        return False
    return len(_WORD.findall(_DATE_WORDS.sub(" ", text.lower()))) <= 1
