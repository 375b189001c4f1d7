"""Screen an XML feed's prolog before parsing: the DOCTYPE keeps only safe internal entities.

Pure bytes -> bytes, for UTF-8 (or other ASCII-compatible) input. The rule, in full:

- The prolog is everything before the root element's start tag; comments and processing instructions
  in it are skipped, so a "<!DOCTYPE" in a comment, or in CDATA after the root tag, is left alone.
- Every DOCTYPE in the prolog (its end found skipping quoted literals, comments and the [internal
  subset]; an unterminated one runs to the next start tag) is removed. The first is replaced by a
  rebuilt ``<!DOCTYPE feed [...]>`` holding only the *safe* entity declarations of all of them, or by
  nothing when there are none.
- Safe: a general, internal entity ``<!ENTITY name "value">`` (or single-quoted) whose value is one
  character reference or at most MAX_ENTITY_VALUE bytes with none of ``& % < > " '``; at most
  MAX_ENTITIES of them; and together they may add at most MAX_ENTITY_EXPANSION bytes of text
  (references counted in the body), else none is kept.
- So external (SYSTEM/PUBLIC) and parameter entities, nested references (billion laughs), oversized
  values (quadratic blow-up), ATTLIST/ELEMENT declarations and the external DTD id never reach the
  parser; ``<!ENTITY`` markup elsewhere in the prolog is removed too. Each removal is reported.
- Every search moves forward through the bytes: the scan is linear even on hostile input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["MAX_ENTITIES", "MAX_ENTITY_EXPANSION", "MAX_ENTITY_VALUE", "screen_declarations"]

MAX_ENTITY_VALUE = 256
MAX_ENTITY_EXPANSION = 1024 * 1024
MAX_ENTITIES = 64

_PROLOG_MARK = re.compile(rb"<!--|<\?|<!DOCTYPE|<[A-Za-z_]", re.IGNORECASE)
_CLOSERS = {b"<!--": b"-->", b"<?": b"?>"}
_DOCTYPE_MARK = re.compile(rb"[\"'\[\]>]|<!--")
_STRAY_ENTITY = re.compile(rb"<!ENTITY[^>]*>?", re.IGNORECASE)
_START_TAG = re.compile(rb"<[A-Za-z_]")
_ENTITY_OPEN = re.compile(rb"<!ENTITY", re.IGNORECASE)
_VALUE = rb"&#\d+;|&#x[0-9A-Fa-f]+;|[^&%<>\"']*"
_SAFE_ENTITY = re.compile(rb"<!ENTITY\s+([A-Za-z_]\w*)\s+(?:\"(" + _VALUE + rb")\"|'(" + _VALUE + rb")')\s*>")


def screen_declarations(data: bytes) -> tuple[bytes, tuple[str, ...]]:
    """The document with its prolog screened (see the module docstring), and warnings for what went."""
    spans, prolog_end = _prolog_doctypes(data)
    if not spans and not _ENTITY_OPEN.search(data, 0, prolog_end):
        return data, ()
    warnings: list[str] = []
    kept: dict[bytes, bytes] = {}
    dropped = 0
    for start, end in spans:
        safe, unsafe = _safe_entities(data[start:end])
        dropped += unsafe
        for name, value in safe.items():
            kept.setdefault(name, value)
    if _expansion(kept, data) > MAX_ENTITY_EXPANSION:
        warnings.append(
            f"DOCTYPE: entity declarations could expand past {MAX_ENTITY_EXPANSION} bytes: removed"
        )
        kept = {}
    parts: list[bytes] = []
    pos = 0
    for i, (start, end) in enumerate(spans):
        gap, stray = _STRAY_ENTITY.subn(b" ", data[pos:start])
        parts += [
            gap,
            _rebuild_doctype(kept, at_line_start=gap.endswith(b"\n") or not gap) if i == 0 else b"",
        ]
        dropped, pos = dropped + stray, end
    gap, stray = _STRAY_ENTITY.subn(b" ", data[pos:prolog_end])
    if dropped + stray:
        warnings.append(
            f"DOCTYPE: removed {dropped + stray} unsafe entity declaration(s) "
            "(external, parameter, nested, oversized or misplaced)"
        )
    return b"".join([*parts, gap, data[max(pos, prolog_end) :]]), tuple(warnings)


def _prolog_doctypes(data: bytes) -> tuple[list[tuple[int, int]], int]:
    """(start, end) of each DOCTYPE before the root element, and where that prolog ends.

    Comments and processing instructions are skipped (a "<!DOCTYPE" in a comment, or in CDATA after
    the root tag, is text). An unterminated comment or PI counts as text: the scan goes on inside it,
    which can only find more to screen. Every search moves forward, so the scan is linear.
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    unclosed: set[bytes] = set()
    while (mark := _PROLOG_MARK.search(data, pos)) is not None:
        token = mark.group()
        if token in _CLOSERS:
            close = -1 if token in unclosed else data.find(_CLOSERS[token], mark.end())
            if close < 0:
                unclosed.add(token)
            pos = mark.end() if close < 0 else close + len(_CLOSERS[token])
        elif token[1:2] != b"!":  # the root element's start tag
            return spans, mark.start()
        else:
            end = _doctype_end(data, mark.end())
            if end is None:
                tag = _START_TAG.search(data, mark.end())
                end = tag.start() if tag else len(data)
            spans.append((mark.start(), end))
            pos = end
    return spans, len(data)


def _doctype_end(data: bytes, pos: int) -> int | None:
    """End of a DOCTYPE (after its '>'), skipping literals, comments and the [internal subset]."""
    depth = 0
    while (mark := _DOCTYPE_MARK.search(data, pos)) is not None:
        token = mark.group()
        if token in (b'"', b"'", b"<!--"):
            closer = b"-->" if token == b"<!--" else token
            close = data.find(closer, mark.end())
            if close < 0:
                return None
            pos = close + len(closer)
            continue
        pos = mark.end()
        if token == b"[":
            depth += 1
        elif token == b"]":
            depth = max(depth - 1, 0)
        elif depth == 0:
            return pos
    return None


def _safe_entities(doctype: bytes) -> tuple[dict[bytes, bytes], int]:
    """Safe entity declarations in one DOCTYPE (at most MAX_ENTITIES), and how many were not kept."""
    safe: dict[bytes, bytes] = {}
    for m in _SAFE_ENTITY.finditer(doctype):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        if len(value) <= MAX_ENTITY_VALUE and len(safe) < MAX_ENTITIES:
            safe.setdefault(m.group(1), value)
    return safe, len(_ENTITY_OPEN.findall(doctype)) - len(safe)


def _expansion(entities: Mapping[bytes, bytes], data: bytes) -> int:
    return sum(data.count(b"&" + name + b";") * max(len(value), 1) for name, value in entities.items())


def _rebuild_doctype(entities: Mapping[bytes, bytes], *, at_line_start: bool) -> bytes:
    """One declaration per line, starting a line: the layout feedparser's own DOCTYPE regexes expect."""
    if not entities:
        return b""
    decls = b"".join(b'<!ENTITY %s "%s">\n' % (name, value) for name, value in entities.items())
    return (b"" if at_line_start else b"\n") + b"<!DOCTYPE feed [\n" + decls + b"]>"
