"""Cheap checks on markup bytes before a parser sees them: how deep do elements nest?

lexbor's parse time grows about 8x per doubling of nesting depth (20,000 nested ``<div>`` take
0.55 s, 40,000 take 4 s, 1,000,000 never end), and a feed's or a sitemap's XML parser keeps one
frame per open element. Browsers cap the depth (Chromium stops nesting at 512). :func:`html_depth`
counts the open-element depth of HTML in one pass over the bytes, the way an HTML parser would
nest, and stops as soon as the limit is passed; :func:`xml_depth` does the same for XML.

HTML rules followed (to keep real pages low without under-counting the attacks we know):

- the content of ``script``, ``style``, ``textarea``, ``title``, ``xmp``, ``iframe``, ``noembed``,
  ``noframes`` and comments holds no elements; void elements (``br``, ``img``...) never open one;
  raw text ends at its first end tag (a ``<!--`` inside is text), a comment at ``-->`` or ``--!>``
  (``<!-->`` and ``<!--->`` are whole comments), and a tag name at HTML whitespace (not ``\v``),
  all as the tokenizer ends them; in SVG/MathML ``style`` and ``title`` are ordinary elements;
- ``<x/>`` opens ``x`` in HTML (the slash is ignored, as parsers do) and nothing inside SVG/MathML;
- elements whose start tag closes an open one of the same family (``p``, ``li``, ``dt``/``dd``,
  ``option``, table rows and cells...) never nest by themselves: they are not counted;
- an end tag pops the stack down to its element, unless a special element (``div``, ``table``...)
  stands in between for an end tag of an ordinary one (then it is ignored, as parsers do), or a
  scope boundary (``table``, ``td``, ``template``...) for an end tag of a special one.

Measured on the 88 pages of the AEB dev corpus (183 KB on average): the deepest reaches 51 levels
(median 17), within 3 levels of the tree lexbor builds; the scan takes ~0.6 ms of CPU a page,
about lexbor's own parse, and adds ~50% to ``extract_article`` (117 -> 180 ms for the 88 pages).
A refused page costs one 64 KB chunk (the 1,000,000-level page: ~3 ms); the worst case for the
scan, 1,000 runs of 500 levels (5.5 MB), is linear (~0.3 s, as long as lexbor takes on it).

Known gaps (tests/test_markup.py ``GAPS``, strict xfail): attribute values are not tokenized (a tag or
``<!--`` inside one counts as markup), tags inside bogus comments (``</ <div>``) are counted, and an
HTML tag inside SVG that makes the parser leave foreign content is not followed. Each lets an end
tag pop elements the parser keeps open; closing them takes a tokenizer that reads attributes.
A page that slips through still meets the CPU watchdog of the worker (``fetch.cpu_budget``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from crawler.errors import NestingTooDeep

__all__ = ["DEFAULT_MAX_DEPTH", "check_depth", "html_depth", "xml_depth"]

DEFAULT_MAX_DEPTH = 512

_RAW_TEXT = (b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes")
_NAME = rb"[A-Za-z][^\t\n\f\r />]*"  # a tag name ends where the HTML tokenizer ends it (not at \v)
_AFTER_NAME = rb"(?=[\t\n\f\r />])"
_TAG = re.compile(rb"<(/?)(" + _NAME + rb")")
_UNCOUNTED = frozenset(
    b"area base basefont bgsound br col embed frame hr image img input keygen link meta param source "
    b"track wbr p li dt dd option optgroup tr td th thead tbody tfoot caption colgroup rb rt rp rtc".split()
)
# Where counting start and end tags stops: a comment, foreign content, a raw-text element.
_BREAK = re.compile(
    rb"<(?:!--|(svg|math)" + _AFTER_NAME + rb"|(" + b"|".join(_RAW_TEXT) + rb")" + _AFTER_NAME + rb")",
    re.IGNORECASE,
)
_COMMENT_REST = re.compile(rb"-?>|.*?--!?>", re.DOTALL)  # <!--> and <!---> end at once; --!> ends too
_END = {
    t: re.compile(
        rb"</" + t + (rb"\s*>" if t in (b"svg", b"math") else rb"(?=[\t\n\f\r />]|\Z)"), re.IGNORECASE
    )
    for t in (b"svg", b"math", *_RAW_TEXT)
}
_FOREIGN_TAG = re.compile(rb"<(/?)(" + _NAME + rb")([^>]*)>")
_SPECIAL = frozenset(
    b"address applet article aside blockquote body button center details dialog dir div dl fieldset "
    b"figcaption figure footer form frameset h1 h2 h3 h4 h5 h6 head header hgroup html listing main "
    b"marquee menu nav object ol pre search section select summary table template ul".split()
)
_SCOPE = frozenset(b"applet html marquee object table template".split())
CHUNK = 65536  # bytes of tags listed at once: a hostile page is refused after one chunk, not all of it


def _chunks(data: bytes) -> Iterator[list[tuple[bytes, bytes]]]:
    """(``b"/"`` or ``b""``, tag name) of every tag-like run, a chunk of the document at a time.

    Comments and the content of raw-text elements are skipped at C speed (``find``-like searches);
    in SVG/MathML, self-closing tags (``<path/>``) are left out: there they open nothing.
    """
    pos, size = 0, len(data)
    while pos < size:
        cut = data.find(b"<", pos + CHUNK) if size - pos > CHUNK else -1
        stop = size if cut < 0 else cut
        brk = _BREAK.search(data, pos, stop)
        if brk is None:
            yield _TAG.findall(data, pos, stop)
            pos = stop
            continue
        yield _TAG.findall(data, pos, brk.start())
        foreign, raw = brk.group(1, 2)
        if foreign is None and raw is None:  # a comment: no elements inside
            rest = _COMMENT_REST.match(data, brk.end())
            pos = size if rest is None else rest.end()
            continue
        closing = _END[(foreign or raw).lower()].search(data, brk.end())
        pos = size if closing is None else closing.end()
        if foreign is not None:
            tags = _FOREIGN_TAG.findall(data, brk.start(), pos)
            yield [(c, n) for c, n, rest in tags if not rest.endswith(b"/")]


def html_depth(data: bytes, limit: int = DEFAULT_MAX_DEPTH) -> int:
    """The deepest element nesting of ``data`` as an HTML parser builds it; counting stops at the first
    depth over ``limit`` (that depth is returned), so a hostile page costs no more than a normal one.

    The content of a raw-text element ends at its first end tag, as the tokenizer ends it, so tag-like
    text (and ``<!--``) in a script is skipped exactly, and so are comments. Inside SVG/MathML ``<x/>``
    is self-closing.
    """
    stack: list[bytes] = []
    deepest = 0
    uncounted = _UNCOUNTED
    for tokens in _chunks(data):
        for close, name in tokens:
            tag = name.lower()
            if tag in uncounted:  # never on the stack: their end tags pop nothing either
                continue
            if close:
                if stack and stack[-1] == tag:
                    stack.pop()
                else:
                    _pop(stack, tag)
            else:
                stack.append(tag)
                if len(stack) > deepest:
                    deepest = len(stack)
                    if deepest > limit:
                        return deepest
    return deepest


def _pop(stack: list[bytes], tag: bytes) -> None:
    """Pop down to the innermost open ``tag`` when the parser would (see the module docstring)."""
    if stack and stack[-1] == tag:
        stack.pop()
        return
    special = tag in _SPECIAL
    for i in range(len(stack) - 2, -1, -1):
        node = stack[i + 1]
        if (node in _SCOPE) if special else (node in _SPECIAL):
            return
        if stack[i] == tag:
            del stack[i:]
            return


_XML_TOKEN = re.compile(
    rb"<!--.*?(?:-->|\Z)|<!\[CDATA\[.*?(?:\]\]>|\Z)|<[?!][^>]*>|<(/?)[^\s/>!?][^>]*?(/?)>", re.DOTALL
)


def xml_depth(data: bytes, limit: int = DEFAULT_MAX_DEPTH) -> int:
    """The deepest element nesting of XML ``data`` (CDATA, comments, declarations skipped); counting
    stops at the first depth over ``limit``. Ill-formed XML is counted as it comes."""
    depth = deepest = 0
    for m in _XML_TOKEN.finditer(data):
        close, empty = m.group(1), m.group(2)
        if close is None or empty:
            continue
        if close:
            depth = max(depth - 1, 0)
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def check_depth(data: bytes, limit: int, *, what: str, url: str | None, xml: bool = False) -> None:
    """NestingTooDeep ("nesting deeper than 512 levels") when ``data`` nests deeper than ``limit``."""
    depth = (xml_depth if xml else html_depth)(data, limit)
    if depth > limit:
        raise NestingTooDeep(
            f"{what}: nesting deeper than {limit} levels (extract.max_depth); refused before parsing, "
            "as browsers cap nesting",
            url=url,
        )
