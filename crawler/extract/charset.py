"""Charset detection for HTML bodies: bytes in, text out, never a crash.

Order (RELIABILITY.md item 6): byte-order mark, then the Content-Type ``charset`` parameter, then the
document's own ``<meta charset>`` / ``http-equiv`` declaration in its first bytes, then UTF-8. A body
that is not valid UTF-8 and carries no declaration is decoded as UTF-8 with replacement characters
when it looks like UTF-8 with a few damaged bytes, and as Windows-1252 when it has no UTF-8 multi-byte
sequence at all (the usual undeclared legacy page). Labels follow the WHATWG Encoding Standard where
it matters: latin-1 and ascii mean windows-1252, a UTF-16 label in a ``<meta>`` means UTF-8.
"""

from __future__ import annotations

import codecs
import re

__all__ = ["decode_html", "detect_charset"]

PRESCAN_BYTES = 2048
# Undeclared, not valid UTF-8: still UTF-8 if valid multi-byte sequences are at least 1/UTF8_EVIDENCE
# as many as the damaged bytes (legacy single-byte text almost never forms valid sequences).
UTF8_EVIDENCE = 4

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_HEADER_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?\s*([^\s"';,]+)""", re.IGNORECASE)
_META_CHARSET_RE = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_UTF8_MULTIBYTE_RE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")
# WHATWG: these labels are decoded as windows-1252 by every browser.
_ALIASES = {
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "windows-1252": "cp1252",
    "x-sjis": "shift_jis",
    "gb2312": "gb18030",
    "gbk": "gb18030",
}


def detect_charset(body: bytes, content_type: str | None = None) -> str:
    """The Python codec name to decode ``body`` with (see the module docstring for the order)."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    declared = _header_charset(content_type)
    if declared:
        return "utf-16-le" if declared == "utf-16" else declared
    declared = _meta_charset(body[:PRESCAN_BYTES])
    if declared:
        return "utf-8" if declared.startswith("utf-16") else declared
    return _sniff(body)


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """Decode an HTML body to text; undecodable bytes become U+FFFD, never an exception."""
    charset = detect_charset(body, content_type)
    for bom, name in _BOMS:
        if name == charset and body.startswith(bom):
            body = body[len(bom) :]
            break
    return body.decode(charset, errors="replace")


def _normalise(label: str) -> str | None:
    label = label.strip().strip("\"'").lower()
    label = _ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return "cp1252" if name in {"latin-1", "iso8859-1", "ascii"} else name


def _header_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = _HEADER_CHARSET_RE.search(content_type)
    return _normalise(match.group(1)) if match else None


def _meta_charset(head: bytes) -> str | None:
    match = _META_CHARSET_RE.search(head)
    return _normalise(match.group(1).decode("ascii")) if match else None


def _sniff(body: bytes) -> str:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        valid = len(_UTF8_MULTIBYTE_RE.findall(body))
        damaged = body.decode("utf-8", errors="replace").count("\ufffd")
        return "utf-8" if valid * UTF8_EVIDENCE >= damaged else "cp1252"
    return "utf-8"
