"""Who may listen where, who may read, and which writes are genuine (pure checks, no I/O).

- The app binds loopback unless a token is configured (``web.token``): :func:`check_listen`.
- The token is accepted as ``Authorization: Bearer TOKEN`` or as the session cookie the login form
  sets (an HMAC of the token, never the token itself); never from a URL.
- Every POST carries a CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``): an HMAC of
  the browser's session id under a per-app key, so a page on another site cannot forge one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from crawler.errors import ConfigError

SESSION_COOKIE = "sw_session"  # proves the login (HMAC of the token)
SID_COOKIE = "sw_sid"  # a random browser id the CSRF token is bound to
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def parse_listen(value: str, *, key: str = "web.listen") -> tuple[str, int]:
    """``"127.0.0.1:8087"`` -> (host, port); ``"[::1]:8087"`` works too. ConfigError naming ``key``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{value!r} is not host:port (e.g. 127.0.0.1:8087)", key=key)
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, *, has_token: bool, key: str = "web.listen") -> None:
    """Refuse a non-loopback address without a token: the dashboard would be open to the network."""
    if not is_loopback(host) and not has_token:
        raise ConfigError(
            f"refusing to serve the web dashboard on {host}: only 127.0.0.1 (or ::1) is allowed "
            "without a token; set web.token (e.g. token: ${STORYWATCH_WEB_TOKEN}) to listen there",
            key=key,
        )


@dataclass(frozen=True)
class Guard:
    """The app's secrets and write policy: the token (or None), a key for CSRF tokens, read-only."""

    token: str | None
    key: bytes
    read_only: bool = False

    @classmethod
    def create(cls, token: str | None, *, read_only: bool = False) -> Guard:
        # with a token, CSRF tokens survive restarts; without one, a fresh key per process
        key = (
            hashlib.sha256(b"storywatch-csrf|" + token.encode()).digest()
            if token
            else secrets.token_bytes(32)
        )
        return cls(token, key, read_only)

    @property
    def session_value(self) -> str:
        """What the login cookie holds: it proves the token without being it."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"storywatch-session", hashlib.sha256).hexdigest()

    def authenticated(self, authorization: str | None, cookie: str | None) -> bool:
        """True without a token; else a matching bearer header or login cookie."""
        if self.token is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return True
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.session_value.encode())

    def password_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def csrf_token(self, sid: str | None) -> str:
        """The CSRF token for a browser session id (``""`` for clients without cookies)."""
        return hmac.new(self.key, (sid or "").encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str | None, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_token(sid).encode(), (given or "").encode())


def new_sid() -> str:
    return secrets.token_urlsafe(24)
