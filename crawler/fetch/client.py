"""Async HTTP for storywatch: guarded, capped, polite, conditional.

``Fetcher`` owns one shared ``httpx.AsyncClient`` (no redirects, no environment proxies, no cookie
jar) whose transport is ``crawler.fetch.transport.GuardedTransport``, and turns one URL into one
``crawler.types.Fetched``, or raises a ``crawler.errors.FetchError`` subclass naming the source id
and URL. What happens next (back-off, retry) is the caller's call.

One ``fetch()``, step by step:

1. the scheme must be http/https (``check_url_scheme``); with ``check_robots=True`` the origin's
   robots.txt (cached per origin, fetched through steps 2-6 with its own deadline) must allow the
   requested URL for our user agent (redirect targets are not checked against their robots.txt);
2. each hop waits for its host's turn: at most ``per_host_concurrency`` requests in flight per host,
   ``per_host_min_gap`` seconds between request starts, ``global_concurrency`` overall; a host
   paused by a 429/503 Retry-After raises ``HostPaused`` at once instead of being asked again;
3. the connection goes through ``crawler.fetch.netguard``: the host is resolved, every address checked
   (loopback, private, link-local... refused unless allow-listed) and the checked IP is dialled;
4. redirects (at most ``max_redirects``, loops refused) are followed here, so every hop repeats
   steps 2-3; Authorization and Cookie headers are dropped once a redirect changes origin
   (credentials in a hop's URL, ``http://user:pass@host/``, are httpx's Basic auth for that hop);
5. the body is streamed and decoded by ``crawler.fetch.decoding``; DECODED bytes are counted and the
   download is aborted past ``max_body_bytes``; corrupt or truncated compression is an error;
6. ``deadline`` bounds the network time of the whole fetch (all hops and the body) on top of
   httpx's per-phase connect/read timeouts. Time spent queueing for a host's turn is not counted,
   so 50 sources due at once on one host are spread out rather than timed out.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from crawler.errors import (
    BlockedURLError,
    BodyTooLarge,
    DecodeError,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    RobotsDisallowed,
    TooManyRedirects,
)
from crawler.fetch.decoding import SUPPORTED, BodyDecoder, ContentDecodingError
from crawler.fetch.netguard import (
    AddressPolicy,
    BlockedAddressError,
    GuardedBackend,
    Resolver,
    check_url_scheme,
    system_resolver,
)
from crawler.fetch.politeness import Gate, HostGate, parse_retry_after
from crawler.fetch.robots import RobotsCache, RobotsRules, RobotsSource
from crawler.fetch.settings import FetchSettings
from crawler.fetch.transport import GuardedTransport, SharedClient
from crawler.types import Fetched, Validators

__all__ = [
    "FetchSettings",
    "Fetcher",
    "HostPaused",
    "check_url_scheme",
    "host_key",
    "parse_retry_after",
]


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class HostPaused(HTTPStatusError):
    """The host answered 429/503 with Retry-After recently; no request was sent this time.

    ``status`` is the status that paused the host, ``retry_after`` the seconds still to wait.
    """


def host_key(url: str) -> str:
    """The politeness key of a URL: its lower-cased host name, port ignored."""
    return (urlsplit(url).hostname or "").rstrip(".")


class _Budget:
    """The overall deadline, spent only while a hop is on the network (see ``Fetcher._hop``)."""

    __slots__ = ("left",)

    def __init__(self, seconds: float) -> None:
        self.left = seconds


@dataclass(frozen=True)
class _Hop:
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    location: str | None = None


@dataclass(frozen=True)
class _Call:
    """What one logical fetch needs at every hop."""

    url: str
    source_id: str | None
    limit: int
    truncate: bool  # robots.txt: keep the first `limit` bytes instead of failing


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.hostname or "", parts.port


class Fetcher:
    """Async context manager owning the shared HTTP client; see the module docstring."""

    def __init__(
        self,
        settings: FetchSettings | None = None,
        *,
        resolver: Resolver | None = None,
        gate: Gate | None = None,
        robots: RobotsSource | None = None,
    ) -> None:
        """``gate`` and ``robots`` replace the in-process politeness and robots.txt cache (scale-out:
        shared by every worker through Redis)."""
        self.settings = settings or FetchSettings()
        s = self.settings
        self._policy = AddressPolicy.from_allow_list(s.allow_private_networks)
        limits = httpx.Limits(
            max_connections=s.global_concurrency, max_keepalive_connections=s.global_concurrency
        )
        backend = GuardedBackend(self._policy, resolver or system_resolver)
        self._client = SharedClient(
            transport=GuardedTransport(backend, limits, httpx.create_ssl_context(trust_env=False)),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout, pool=s.deadline),
            headers={"User-Agent": s.user_agent, "Accept-Encoding": ", ".join(SUPPORTED)},
        )
        # A host's literal-address verdict never changes for one policy: decided once per host.
        self._literal_block_reason = functools.lru_cache(maxsize=4096)(self._policy.literal_block_reason)
        self._gate: Gate = gate or HostGate.for_settings(s)
        self._robots: RobotsSource = robots or RobotsCache(s.robots_ttl, s.robots_error_ttl)

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(
        self,
        url: str,
        *,
        source_id: str | None = None,
        validators: Validators | None = None,
        check_robots: bool = False,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fetched:
        """GET ``url``; status 200-299 or 304 (empty body) is returned, anything else raises.

        ``headers`` are extra request headers (e.g. Authorization for a private feed); credentials
        among them are not sent past a redirect to another origin.
        """
        check_url_scheme(url, source_id=source_id)
        if check_robots and self.settings.respect_robots:
            await self._require_robots_allow(url, source_id)
        request_headers = _request_headers(headers, accept, validators)
        call = _Call(url, source_id, self.settings.max_body_bytes, truncate=False)
        return await self._get(call, request_headers, validators or Validators())

    async def _get(self, call: _Call, headers: httpx.Headers | None, old: Validators) -> Fetched:
        started, fetched_at = time.monotonic(), datetime.now(UTC)
        budget = _Budget(self.settings.deadline)
        current = call.url
        hops: list[str] = []
        while True:
            hop = await self._hop(call, current, headers, budget)
            if hop.location is None:
                return _fetched(call.url, hop, tuple(hops), fetched_at, time.monotonic() - started, old)
            target = self._redirect_target(call, current, hop.location, hops)
            if headers is not None and _origin(target) != _origin(current):
                headers = httpx.Headers(
                    [(k, v) for k, v in headers.multi_items() if k not in CREDENTIAL_HEADERS]
                )
            hops.append(target)
            current = target

    def _redirect_target(self, call: _Call, current: str, location: str, hops: list[str]) -> str:
        target = urljoin(current, location.strip())
        check_url_scheme(target, source_id=call.source_id)
        if target == call.url or target in hops:
            raise TooManyRedirects(
                f"redirect loop: {current} -> {target}", url=call.url, source_id=call.source_id
            )
        if len(hops) >= self.settings.max_redirects:
            raise TooManyRedirects(
                f"more than {self.settings.max_redirects} redirects (the next one to {target})",
                url=call.url,
                source_id=call.source_id,
            )
        return target

    async def _hop(self, call: _Call, url: str, headers: httpx.Headers | None, budget: _Budget) -> _Hop:
        """One request: the literal-address check, the host's turn, then the exchange on the budget."""
        host = host_key(url)
        reason = self._literal_block_reason(host)
        if reason is not None:
            raise BlockedURLError(f"{reason}; not fetched", url=url, source_id=call.source_id)
        self._raise_if_paused(call, url, host)
        try:
            async with self._gate.slot(host):
                self._raise_if_paused(call, url, host)
                started = time.monotonic()
                try:
                    async with asyncio.timeout(max(budget.left, 0.0)):
                        return await self._exchange(call, url, headers)
                finally:
                    budget.left -= time.monotonic() - started
        except _TRANSLATED as exc:
            raise self._translate(call, url, exc) from exc

    def _raise_if_paused(self, call: _Call, url: str, host: str) -> None:
        paused = self._gate.paused(host)
        if paused is not None:
            left, status = paused
            message = (
                f"host {host} asked to wait (HTTP {status}, Retry-After); {left:.0f} s left, not requested"
            )
            raise HostPaused(message, url=url, status=status, retry_after=left, source_id=call.source_id)

    async def _exchange(self, call: _Call, url: str, headers: httpx.Headers | None) -> _Hop:
        request = self._client.build_request("GET", url, headers=headers)
        if self._gate.gap_at_send:
            request.extensions["trace"] = self._send_hook(host_key(url))
        response = await self._client.send(request, stream=True)
        try:
            hop_headers = dict(response.headers.items())  # lower-cased names, repeats joined by ", "
            status = response.status_code
            if status in REDIRECT_STATUSES:
                return _Hop(url, status, hop_headers, location=self._location(call, url, status, hop_headers))
            if status >= 300 and status != 304:
                raise self._status_error(call, url, response, hop_headers)
            if status in (204, 304):
                await self._finish_empty(response)
                return _Hop(url, status, hop_headers, b"")
            return _Hop(url, status, hop_headers, await self._read_body(call, url, response, hop_headers))
        finally:
            await response.aclose()

    def _send_hook(self, host: str) -> Any:
        """An httpcore trace callback that waits for the host's turn just before the headers go out,
        and tells the gate once they are written (or failed), so the gap counts from the real send."""
        gate = self._gate
        held: list[str | None] = []

        async def trace(event: str, _info: Mapping[str, Any]) -> None:
            if event.endswith("send_request_headers.started"):
                held.append(await gate.before_send(host))
            elif event.endswith(("send_request_headers.complete", "send_request_headers.failed")) and held:
                gate.after_send(host, held.pop())

        return trace

    @staticmethod
    async def _finish_empty(response: httpx.Response) -> None:
        """Read a 204/304 to its (empty) end, so that httpcore keeps the connection alive: a response
        closed before its end closes the connection, and every 304 would cost a new TCP/TLS setup."""
        async for _ in response.aiter_raw():
            pass  # h11 frames 204/304 without a body: nothing arrives, the loop ends at once

    @staticmethod
    def _location(call: _Call, url: str, status: int, headers: Mapping[str, str]) -> str:
        location = headers.get("location", "").strip()
        if not location:
            raise FetchError(
                f"HTTP {status} redirect without a Location header", url=url, source_id=call.source_id
            )
        return location

    def _status_error(
        self, call: _Call, url: str, response: httpx.Response, headers: Mapping[str, str]
    ) -> FetchError:
        status = response.status_code
        if status < 400:
            return FetchError(
                f"unexpected HTTP {status} {response.reason_phrase}", url=url, source_id=call.source_id
            )
        retry_after = None
        if status in (429, 503):
            raw = headers.get("retry-after")
            retry_after = parse_retry_after(raw, datetime.now(UTC), max_seconds=self.settings.retry_after_max)
            if retry_after:
                self._gate.pause(host_key(url), retry_after, status)
        hint = f"; server asks to retry after {retry_after:.0f} s" if retry_after is not None else ""
        message = f"HTTP {status} {response.reason_phrase}{hint}"
        return HTTPStatusError(
            message, url=url, status=status, retry_after=retry_after, source_id=call.source_id
        )

    async def _read_body(
        self, call: _Call, url: str, response: httpx.Response, headers: Mapping[str, str]
    ) -> bytes:
        decoder = BodyDecoder(headers.get("content-encoding"))
        declared = headers.get("content-length", "")
        if decoder.identity and declared.isdigit() and int(declared) > call.limit and not call.truncate:
            raise BodyTooLarge(
                f"Content-Length {declared} is over the {call.limit}-byte cap; not downloaded",
                url=url,
                source_id=call.source_id,
            )
        if decoder.identity:
            return await self._read_identity(call, url, response)
        body = bytearray()
        async for raw in response.aiter_raw():
            for piece in decoder.feed(raw):
                if self._append_capped(call, url, body, piece):
                    return bytes(body)
        for piece in decoder.finish():
            if self._append_capped(call, url, body, piece):
                return bytes(body)
        return bytes(body)

    async def _read_identity(self, call: _Call, url: str, response: httpx.Response) -> bytes:
        """An unencoded body: chunks kept as they come and joined once (usually there is one)."""
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw():
            if size + len(raw) > call.limit:
                body = bytearray(b"".join(chunks))
                self._append_capped(call, url, body, raw)  # raises, or truncates at the cap
                return bytes(body)
            chunks.append(raw)
            size += len(raw)
        return b"".join(chunks)

    @staticmethod
    def _append_capped(call: _Call, url: str, body: bytearray, piece: bytes) -> bool:
        """Append ``piece``; True when the cap is reached and reading must stop (truncate mode)."""
        if len(body) + len(piece) <= call.limit:
            body += piece
            return False
        if call.truncate:
            body += piece[: call.limit - len(body)]
            return True
        raise BodyTooLarge(
            f"body is over the {call.limit}-byte cap after decoding; download aborted",
            url=url,
            source_id=call.source_id,
        )

    def _translate(self, call: _Call, url: str, exc: Exception) -> FetchError:
        """Transport, timeout and decoding failures as crawler.errors with context."""
        s, source_id = self.settings, call.source_id
        if isinstance(exc, BlockedAddressError):
            return BlockedURLError(f"{exc.reason}; not fetched", url=url, source_id=source_id)
        if isinstance(exc, TimeoutError):
            return FetchTimeout(
                f"overall deadline of {s.deadline:g} s exceeded", url=url, source_id=source_id
            )
        if isinstance(exc, httpx.ConnectTimeout):
            return FetchTimeout(f"connect timeout ({s.connect_timeout:g} s)", url=url, source_id=source_id)
        if isinstance(exc, httpx.TimeoutException):
            message = f"no data for {s.read_timeout:g} s ({type(exc).__name__})"
            return FetchTimeout(message, url=url, source_id=source_id)
        if isinstance(exc, (ContentDecodingError, httpx.DecodingError)):
            return DecodeError(f"{exc}; body discarded", url=url, source_id=source_id)
        return FetchError(f"{type(exc).__name__}: {exc}", url=url, source_id=source_id)

    async def _require_robots_allow(self, url: str, source_id: str | None) -> None:
        rules = await self._robots.rules_for(url, lambda robots: self._load_robots(robots, source_id))
        if rules.unavailable is not None:
            message = (
                f"robots.txt unavailable ({rules.unavailable}), so the site is treated as disallowed "
                f"for now; robots.txt will be retried after {self.settings.robots_error_ttl:g} s"
            )
            raise RobotsDisallowed(message, url=url, source_id=source_id)
        if not rules.allows(url, self.settings.user_agent):
            raise RobotsDisallowed(
                "robots.txt disallows this URL for our user agent", url=url, source_id=source_id
            )

    async def _load_robots(self, robots_url: str, source_id: str | None) -> RobotsRules:
        call = _Call(robots_url, source_id, self.settings.robots_max_bytes, truncate=True)
        try:
            fetched = await self._get(call, _ROBOTS_HEADERS, Validators())
        except HTTPStatusError as exc:
            if 400 <= exc.status < 500 and exc.status != 429:
                return RobotsRules.allow_all()
            return RobotsRules.failed(f"HTTP {exc.status}")
        except TooManyRedirects:
            return RobotsRules.allow_all()
        except BlockedURLError:
            raise
        except FetchError as exc:
            return RobotsRules.failed(type(exc).__name__)
        return RobotsRules.parse(fetched.body)


def _request_headers(
    extra: Mapping[str, str] | None, accept: str | None, validators: Validators | None
) -> httpx.Headers | None:
    """The caller's headers, Accept and validators, merged by the client over its defaults (User-Agent,
    Accept: */*, Accept-Encoding...); None when there is nothing to add to them."""
    etag = validators.etag if validators is not None else None
    last_modified = validators.last_modified if validators is not None else None
    if not extra and not accept and not etag and not last_modified:
        return None
    headers = httpx.Headers(extra)
    if accept:
        headers["Accept"] = accept
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


_ROBOTS_HEADERS = httpx.Headers({"Accept": "text/plain, */*;q=0.5"})

# What ``Fetcher._hop`` turns into crawler.errors (``Fetcher._translate``); anything else propagates.
_TRANSLATED = (
    BlockedAddressError,
    TimeoutError,
    httpx.TransportError,  # timeouts, network and protocol errors, unsupported protocol
    httpx.InvalidURL,
    httpx.DecodingError,
    ContentDecodingError,
)


def _fetched(
    url: str, hop: _Hop, redirects: tuple[str, ...], fetched_at: datetime, elapsed: float, old: Validators
) -> Fetched:
    validators = Validators(
        etag=hop.headers.get("etag") or (old.etag if hop.status == 304 else None),
        last_modified=hop.headers.get("last-modified") or (old.last_modified if hop.status == 304 else None),
    )
    return Fetched(
        url=url,
        final_url=hop.url,
        status=hop.status,
        headers=hop.headers,
        body=hop.body,
        fetched_at=fetched_at,
        elapsed=elapsed,
        redirects=redirects,
        validators=validators,
    )
