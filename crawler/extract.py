"""Page bytes -> main text and metadata (an Article), and the text of a watched region.

Algorithm (readability-style content scoring on a block list built in one walk):

1. Decode (BOM, Content-Type, <meta>, UTF-8; see crawler.charset) and parse with selectolax/lexbor.
2. Read metadata (crawler.extract_meta) before anything is dropped (JSON-LD lives in <script>).
3. Walk the <body> once (crawler.extract_dom): never-content elements (script, nav, footer, forms...)
   are skipped, subtrees whose class/id says boilerplate (comments, share bars, related lists,
   cookie banners...) are skipped, and the rest becomes a list of text blocks (one per paragraph,
   heading, list item, <br>-separated line run) plus a tree of block-level elements with aggregated
   text length, link-text length and class/id weight.
4. Every paragraph-like block scores its ancestors (1 + commas + length/100, decaying with depth);
   each element's score is damped by its link density; the best element wins, is widened to its
   parent when the parent holds comparably good content, and joined by good-scoring siblings.
5. Inside the winner, link-heavy lists, forms and short link-dense blocks are dropped.
6. If that yields little text, the walk is redone without the class/id pruning and the longer
   result wins (a page that wraps everything in class="has-sidebar" must not come out empty).
"""

from __future__ import annotations

from collections.abc import Iterable

from selectolax.lexbor import LexborHTMLParser, LexborNode

from crawler.charset import decode_html, detect_charset
from crawler.errors import ParseError, SelectorNotFound
from crawler.extract_dom import PageBlocks, walk_body, walk_region
from crawler.extract_meta import read_meta
from crawler.types import Article

__all__ = ["decode_html", "extract_article", "extract_region"]

MIN_ARTICLE_CHARS = 500  # below this the unpruned walk is tried too
_BOM = b"\xef\xbb\xbf"


def extract_article(body: bytes, *, url: str, content_type: str | None = None) -> Article:
    """Main text and metadata of an article page; ParseError when the page has no text at all."""
    tree = _parse(body, url, content_type)
    meta = read_meta(tree, url)
    text = main_text(tree)
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


def main_text(tree: LexborHTMLParser) -> str:
    """The article text of a parsed page ("" when there is none)."""
    body = tree.body
    if body is None:
        return ""
    best = select_text(walk_body(body, prune=True))
    if len(best) < MIN_ARTICLE_CHARS:
        retry = select_text(walk_body(body, prune=False))
        if len(retry) > len(best):
            best = retry
    return best


def extract_region(body: bytes, *, url: str, selector: str, content_type: str | None = None) -> str:
    """Normalised text of the elements matching ``selector`` (one line per block or table row)."""
    tree = _parse(body, url, content_type)
    try:
        matches = tree.css(selector)
    except ValueError as exc:  # selectolax reports a bad selector as ValueError (or a subclass)
        raise ParseError(f"invalid CSS selector {selector!r}: {exc}", url=url) from exc
    if not matches:
        raise SelectorNotFound(f"selector {selector!r} matched nothing", url=url)
    lines: list[str] = []
    for node in _outermost(matches):
        lines.extend(walk_region(node))
    return "\n".join(lines)


def _parse(body: bytes, url: str, content_type: str | None) -> LexborHTMLParser:
    if not body.strip():
        raise ParseError("empty body", url=url)
    if b"\x00" in body[:1024] and not body.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ParseError("binary body, not HTML", url=url)
    charset = detect_charset(body, content_type)
    if charset == "utf-8":
        return LexborHTMLParser(body[3:] if body.startswith(_BOM) else body)
    return LexborHTMLParser(decode_html(body, content_type))


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
    from crawler.extract_score import choose_blocks

    return "\n\n".join(page.texts[i] for i in choose_blocks(page))
