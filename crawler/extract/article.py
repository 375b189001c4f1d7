"""Page bytes -> main text and metadata (an Article), and the text of a watched region.

Algorithm (readability-style content scoring on a block list built in one walk):

1. Decode (BOM, Content-Type, <meta>, UTF-8; see crawler.extract.charset) and parse with selectolax/lexbor.
2. Read metadata (crawler.extract.meta) before anything is dropped (JSON-LD lives in <script>).
3. Walk the <body> once (crawler.extract.dom): never-content elements (script, nav, footer, forms...)
   are skipped, subtrees whose class/id says boilerplate (comments, share bars, related lists,
   cookie banners...) are skipped, and the rest becomes a list of text blocks (one per paragraph,
   heading, list item, <br>-separated line run) plus a tree of block-level elements with aggregated
   text length, link-text length and class/id weight.
4. Every paragraph-like block scores its ancestors (1 + commas + length/100, decaying with depth);
   each element's score is damped by its link density; the best element wins, is widened to its
   parent when the parent holds comparably good content, and joined by good-scoring siblings.
5. Inside the winner, link-heavy lists, forms, short link-dense blocks and UI lines ("Advertisement",
   bylines, datelines, captions with credits, newsletter pitches) are dropped.
6. A pruned subtree holding more prose than everything kept is a layout wrapper with an unlucky
   name ("has-sidebar", "ad-margins"): the walk is redone with it kept (comment threads excepted).
   If the result is still next to nothing, the walk is redone without pruning; the longer text wins.
7. Paragraphs that merely repeat the title are dropped.

Quality and speed on the Article Extraction Benchmark: ``python bench/extract.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from crawler.bounds.markup import DEFAULT_MAX_DEPTH, check_depth
from crawler.errors import ParseError, SelectorNotFound
from crawler.extract.charset import decode_html, detect_charset
from crawler.extract.dom import PageBlocks, is_strong_boilerplate, walk_body, walk_region
from crawler.extract.meta import read_meta
from crawler.extract.score import choose_blocks
from crawler.types import Article

__all__ = ["decode_html", "extract_article", "extract_region"]

MIN_ARTICLE_CHARS = 200  # below this (next to nothing) the unpruned walk is tried too
PROSE_PARAGRAPH = 80
MAX_REWALKS = 3
_BOM = b"\xef\xbb\xbf"
_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b", b"RIFF")


def extract_article(
    body: bytes, *, url: str, content_type: str | None = None, max_depth: int = DEFAULT_MAX_DEPTH
) -> Article:
    """Main text and metadata of an article page; ParseError when the page has no text at all,
    NestingTooDeep when its elements nest deeper than ``max_depth`` (checked before parsing)."""
    tree = _parse(body, url, content_type, max_depth)
    meta = read_meta(tree, url)
    text = _without_title(main_text(tree), meta.title)
    if not text:
        raise ParseError("no extractable text in page", url=url)
    return Article(
        url=url,
        title=meta.title,
        text=text,
        canonical_url=meta.canonical_url,
        published=meta.published,
        author=meta.author,
        language=meta.language,
    )


def _without_title(text: str, title: str) -> str:
    """Drop paragraphs that only repeat the headline (a styled title inside the text container)."""
    key = title.casefold()
    if not key:
        return text
    # casefold() never shortens a string and at most triples it: only paragraphs of a length in
    # [len(key) / 3, len(key)] can fold to the title, so the rest are never casefolded (it is slow).
    n = len(key)
    paragraphs = text.split("\n\n")
    repeats = [n <= 3 * len(p) and len(p) <= n and p.casefold() == key for p in paragraphs]
    if not any(repeats):
        return text
    kept = "\n\n".join(p for p, repeat in zip(paragraphs, repeats, strict=True) if not repeat)
    return kept or text


def main_text(tree: LexborHTMLParser) -> str:
    """The article text of a parsed page ("" when there is none)."""
    body = tree.body
    if body is None:
        return ""
    page = walk_body(body, prune=True)
    best = select_text(page)
    exempt: frozenset[int] = frozenset()
    for _ in range(MAX_REWALKS):  # wrappers can nest: "has-sidebar" > "sticky-sidebar" > article
        more = _misnamed_wrappers(page, len(best))
        if not more:
            break
        exempt |= more
        page = walk_body(body, prune=True, exempt=exempt)
        best = select_text(page)
    if len(best) < MIN_ARTICLE_CHARS:
        retry = select_text(walk_body(body, prune=False))
        if len(retry) > len(best):
            best = retry
    return best


def _misnamed_wrappers(page: PageBlocks, kept_chars: int) -> frozenset[int]:
    """Pruned subtrees that hold more prose than everything kept: a layout wrapper named like
    boilerplate ("has-sidebar", "ad-margins"), not boilerplate. Comment threads never qualify.
    Prose = the text of paragraphs of at least PROSE_PARAGRAPH characters, links excluded."""
    exempt = set()
    floor = max(kept_chars, MIN_ARTICLE_CHARS)
    for node, hint in page.pruned:
        if len(node.text(deep=True)) <= floor or is_strong_boilerplate(hint):
            continue
        if _prose_chars(node) > floor:
            exempt.add(node.mem_id)
    return frozenset(exempt)


def _prose_chars(node: LexborNode) -> int:
    total = 0
    for paragraph in node.css("p"):
        chars = len(paragraph.text(deep=True))
        if chars >= PROSE_PARAGRAPH:
            total += chars - sum(len(a.text(deep=True)) for a in paragraph.css("a"))
    return total


def extract_region(
    body: bytes,
    *,
    url: str,
    selector: str,
    content_type: str | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> str:
    """Normalised text of the elements matching ``selector`` (one line per block or table row)."""
    tree = _parse(body, url, content_type, max_depth)
    try:
        matches = tree.css(selector)
    except SelectolaxError as exc:
        raise ParseError(f"invalid CSS selector {selector!r}: {exc}", url=url) from exc
    if not matches:
        raise SelectorNotFound(f"selector {selector!r} matched nothing", url=url)
    lines: list[str] = []
    for node in _outermost(matches):
        lines.extend(walk_region(node))
    return "\n".join(lines)


def _parse(body: bytes, url: str, content_type: str | None, max_depth: int) -> LexborHTMLParser:
    if not body.strip():
        raise ParseError("empty body", url=url)
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime and not (mime.startswith("text/") or "html" in mime or "xml" in mime):
        raise ParseError(f"not HTML (Content-Type {mime})", url=url)
    charset = detect_charset(body, content_type)
    if not charset.startswith("utf-16") and (body.startswith(_BINARY_MAGIC) or b"\x00" in body[:1024]):
        raise ParseError("binary body, not HTML", url=url)
    if charset == "utf-8":
        check_depth(body, max_depth, what="page", url=url)
        return LexborHTMLParser(body[3:] if body.startswith(_BOM) else body)
    text = decode_html(body, content_type)
    check_depth(text.encode("utf-8", "surrogatepass"), max_depth, what="page", url=url)
    return LexborHTMLParser(text)


def _outermost(nodes: Iterable[LexborNode]) -> list[LexborNode]:
    """Drop matches nested inside an earlier match (their text is already included)."""
    kept: list[LexborNode] = []
    seen: set[int] = set()
    for node in nodes:
        ancestor = node.parent
        nested = False
        while ancestor is not None:
            if ancestor.mem_id in seen:
                nested = True
                break
            ancestor = ancestor.parent
        if not nested:
            kept.append(node)
        seen.add(node.mem_id)
    return kept


def select_text(page: PageBlocks) -> str:
    """The chosen blocks of a walked page, one paragraph each, separated by blank lines."""
    return "\n\n".join(page.texts[i] for i in choose_blocks(page))
