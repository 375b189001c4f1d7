"""Which URLs storywatch accepts in its configuration, checked when the config loads.

A URL is accepted when the sender that will use it accepts it: httpx and urllib parse it the same
way, it has a host and a port from 1 to 65535 (and, for senders that speak HTTP, an http(s) scheme).
The messages say what to fix and never show a secret: a channel URL is not quoted at all, a source
URL only with its password masked. The config's validators raise them as ValueError, so the loader
names the file, the key and its line (exit 2).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from crawler.bounds import redact


def check_url(
    value: str, *, secret: bool = False, schemes: tuple[str, ...] | None = ("http", "https")
) -> str:
    """``value`` when the sender will accept it: httpx and urllib parse it the same way, with a host
    and a port from 1 to 65535; else ValueError saying what to fix, quoting ``value`` only when it is
    not ``secret`` (its password masked even then). ``schemes=None``: any scheme (apprise URLs)."""
    problem = url_problem(value, schemes)
    if problem is None:
        return value
    shown = "" if secret else f"{redact.show_url(value)!r}: "
    raise ValueError(f"{shown}{problem}")


def url_problem(value: str, schemes: tuple[str, ...] | None) -> str | None:
    """Why ``value`` is not a URL the sender will accept (``schemes``; None: any), or None."""
    scheme, sep, rest = value.partition("://")
    if not sep or (schemes is not None and scheme.lower() not in schemes):
        return "only http:// and https:// URLs can be used" if schemes else "not a URL (scheme://...)"
    if "@" in rest and any(c in rest.rsplit("@", 1)[0] for c in "/?#"):
        return "a '/', '?' or '#' in the user name or password must be percent-encoded (%2F, %3F, %23)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        reason = "the port must be a number from 1 to 65535" if "port" in str(exc).lower() else "malformed"
        return f"not a valid URL: {reason}"
    if not parts.hostname:
        return "not a valid URL: it has no host"
    if port is not None and not 1 <= port <= 65535:
        return "not a valid URL: the port must be a number from 1 to 65535"
    if schemes is None:
        return None
    try:
        httpx.URL(value)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "not a valid URL (check the host, the port and characters that must be percent-encoded)"
    return None


def source_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a source's address (the loader's own message, the URL's password masked),
    or None when it can: http(s), and parsed by httpx and urllib alike with a host and a valid port."""
    if not re.match(r"^https?://[^/\s]+", url, re.I):
        return f"{redact.show_url(url)!r}: only http:// and https:// URLs can be watched"
    problem = url_problem(url, ("http", "https"))
    return f"{redact.show_url(url)!r}: {problem}" if problem else None


__all__ = ["check_url", "source_url_problem", "url_problem"]
