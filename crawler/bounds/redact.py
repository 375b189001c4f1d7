"""Secrets never leave the process in text: every fragment of a registered secret is masked.

Secrets (channel URLs with their tokens, webhook keys, SMTP passwords, credentials in URLs) are
registered when the config loads (:func:`register_settings`) or when a channel is opened. From then
on :func:`scrub` replaces any run of text sharing ``FRAGMENT`` or more consecutive characters with a
secret by ``***``: not only the whole value, also the piece an error message quotes (httpx says
``Invalid port: 'pa'`` for a password ``pa/ss``). Log records are scrubbed when they are created
(:func:`install_log_scrubber`), tracebacks included, so no handler or formatter can print a secret.

For a URL, the secret parts are its user name and password, its query and fragment, and the path
segments that look like tokens (a digit or an upper-case letter, or 16+ characters: ``T000/B000``
in a Slack webhook, not ``services``). A URL that does not parse is a secret after its ``://``.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "FRAGMENT",
    "MASK",
    "install_log_scrubber",
    "register",
    "register_url",
    "register_values",
    "scrub",
    "show_url",
    "url_secrets",
]

FRAGMENT = 6  # characters in common with a secret that are masked
MIN_SECRET = 4  # shorter values are not worth masking (they would mask ordinary words)
MASK = "***"
_lock = threading.Lock()
_grams: frozenset[str] = frozenset()  # every FRAGMENT-long substring of every registered secret
_whole: frozenset[str] = frozenset()  # registered secrets shorter than FRAGMENT


def _split(values: Iterable[str]) -> tuple[set[str], set[str]]:
    grams: set[str] = set()
    whole: set[str] = set()
    for value in values:
        if len(value) < MIN_SECRET:
            continue
        if len(value) < FRAGMENT:
            whole.add(value)
            continue
        grams.update(value[i : i + FRAGMENT] for i in range(len(value) - FRAGMENT + 1))
    return grams, whole


def register(*values: str | None) -> None:
    """Mask these values (and every fragment of them) in all later scrubbed text."""
    global _grams, _whole
    grams, whole = _split(v for v in values if v)
    if not (grams - _grams or whole - _whole):
        return
    with _lock:
        _grams = _grams | grams
        _whole = _whole | whole
    install_log_scrubber()


def register_values(*values: str | None) -> None:
    """:func:`register_url` for the values that are URLs, :func:`register` for the others."""
    for value in values:
        if value and "://" in value:
            register_url(value)
        else:
            register(value)


def register_url(url: str | None) -> None:
    """Mask the secret parts of ``url`` (see the module docstring)."""
    if url:
        register(*url_secrets(url))


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that are secret: credentials, query, fragment, token-like path segments.
    A URL whose user info holds a raw ``/`` (it splits there) keeps everything before its last ``@``
    secret; any other URL that does not parse is a secret after its ``://``."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest and any(c in rest.rsplit("@", 1)[0] for c in "/?#"):
        userinfo, host_and_path = rest.rsplit("@", 1)
        return [userinfo, *url_secrets(f"{scheme}://{host_and_path}")]
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError:
        netloc, slash, tail = rest.partition("/")
        if sep and ":" in netloc and "@" not in netloc:  # a bad port: the host and port are no secret
            return url_secrets(f"{scheme}://{netloc.rsplit(':', 1)[0]}{slash}{tail}")
        parts = None
    if parts is None or not parts.hostname:
        return [rest or url]
    out = [parts.username or "", parts.password or "", parts.query, parts.fragment]
    out.extend(s for s in parts.path.split("/") if _token_like(s))
    return [s for s in out if s]


def _token_like(segment: str) -> bool:
    return len(segment) >= 16 or any(c.isdigit() or c.isupper() for c in segment)


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every run sharing ``FRAGMENT`` characters with a secret replaced by ``***``;
    ``extra`` are secrets known to the caller (e.g. a channel's URL) besides the registered ones."""
    more = list(extra)
    grams, whole = _grams, _whole
    if more:
        g2, w2 = _split(s for v in more for s in (url_secrets(v) if "://" in v else [v]))
        grams, whole = grams | g2, whole | w2
    if not text or not (grams or whole):
        return text
    hidden = bytearray(len(text))
    for i in range(len(text) - FRAGMENT + 1):
        if text[i : i + FRAGMENT] in grams:
            hidden[i : i + FRAGMENT] = b"\x01" * FRAGMENT
    for value in whole:
        start = text.find(value)
        while start != -1:
            hidden[start : start + len(value)] = b"\x01" * len(value)
            start = text.find(value, start + 1)
    if not any(hidden):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if hidden[i]:
            while i < len(text) and hidden[i]:
                i += 1
            out.append(MASK)
        else:
            j = hidden.find(1, i)
            j = len(text) if j == -1 else j
            out.append(text[i:j])
            i = j
    return "".join(out)


def show_url(url: str) -> str:
    """``url`` fit for a message: the password of its user info masked (the rest is scrubbed later)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return scrub(url, [url])
    if not password:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


# ------------------------------------------------------------------------------------------ logging

_installed = False


def install_log_scrubber() -> None:
    """Scrub every log record when it is created (message and traceback): idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _grams or _whole:
            _scrub_record(record)
        return record

    logging.setLogRecordFactory(factory)


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: leave it to logging's own error path
        return
    clean = scrub(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = scrub(text)
