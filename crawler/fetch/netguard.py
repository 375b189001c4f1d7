"""The SSRF guard: which URLs and network addresses storywatch may connect to.

Every source URL is untrusted input (RELIABILITY.md items 1-2). Three layers:

1. ``check_url_scheme`` refuses anything but http/https (at config load and on every redirect hop).
2. ``AddressPolicy`` says whether one resolved address may be used: loopback, private, link-local,
   reserved, unspecified, multicast and other non-global addresses are refused (IPv4 and IPv6,
   including IPv4 addresses embedded in IPv6: ``::ffff:a.b.c.d``, 6to4, Teredo, NAT64) unless the
   user allow-listed the network (CIDR) or the exact host name.
3. ``GuardedTransport`` is an httpx transport whose network backend (``GuardedBackend``) resolves
   the host itself, checks every address, and then connects to the checked IP literal. The address
   that was checked is the address that is used (no DNS rebinding window between check and
   connect), and since the check runs whenever a new connection is opened, every redirect hop is
   covered. Connections are plain asyncio transports (``AsyncioStream``), not anyio streams.

Residual risks (documented, accepted): a host whose DNS answer mixes public and private addresses is
refused as a whole; a kept-alive connection is reused for the same origin without re-resolving
(it was checked when it was opened); an allow-listed host name is trusted whatever it resolves to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httpcore
import httpx

from crawler.errors import BlockedURLError, ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")
_CHECKS = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
)


class BlockedAddressError(BlockedURLError):
    """Raised inside the transport when a host resolves to a refused address.

    It only knows the host; ``crawler.fetch.client`` re-raises it as a ``BlockedURLError`` with the
    source id and URL. ``reason`` is the human-readable why.
    """

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(reason, url=host)


def check_url_scheme(url: str, *, source_id: str | None = None) -> None:
    """Refuse URLs that are not http(s) with a host (file:, javascript:, gopher:, data:, ...)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as exc:
        raise BlockedURLError(f"malformed URL ({exc}); not fetched", url=url, source_id=source_id) from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = repr(scheme) if scheme else "(none)"
        raise BlockedURLError(
            f"scheme {shown} is not allowed, only http and https; not fetched", url=url, source_id=source_id
        )
    if not host:
        raise BlockedURLError("URL has no host; not fetched", url=url, source_id=source_id)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address tunnels to, if any (mapped, 6to4, Teredo, NAT64)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_block_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be connected to by default, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        reason = address_block_reason(inner) if inner is not None else None
        if reason is not None or ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is just a.b.c.d
            return f"{reason} (embedded in {ip})" if reason else None
    for attribute, label in _CHECKS:
        if getattr(ip, attribute):
            return f"{ip} is a {label} address"
    if not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


def _parse_ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id (fe80::1%eth0)


@dataclass(frozen=True)
class AddressPolicy:
    """Refuse non-public addresses except allow-listed networks and exact host names."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_allow_list(cls, entries: Iterable[str]) -> AddressPolicy:
        """Build from ``allow_private_networks`` (CIDRs, bare IPs or host names); ConfigError if bad."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            text = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                if not _HOSTNAME.match(text):
                    raise ConfigError(
                        f"{entry!r} is neither a CIDR network nor a host name", key="allow_private_networks"
                    ) from None
                hosts.add(text.rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def block_reason(self, host: str, address: str) -> str | None:
        """None when ``host`` may be reached at ``address``; otherwise why not."""
        if host.lower().rstrip(".") in self.hosts:
            return None
        ip = _parse_ip(address)
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
            candidates.append(inner)
        if any(candidate in network for candidate in candidates for network in self.networks):
            return None
        return address_block_reason(ip)

    def literal_block_reason(self, host: str) -> str | None:
        """Like ``block_reason`` for a host that is an IP literal; None for host names (checked later)."""
        try:
            _parse_ip(host.strip("[]"))
        except ValueError:
            return None
        return self.block_reason(host, host.strip("[]"))


async def system_resolver(host: str, port: int) -> list[str]:
    """All addresses ``host`` resolves to (asyncio getaddrinfo), in resolver order, de-duplicated."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check every address against the policy, then connect to a checked IP literal."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver = system_resolver) -> None:
        self._policy = policy
        self._resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:
            reason = self._policy.block_reason(host, address)
            if reason is not None:
                raise BlockedAddressError(host, f"{host} resolves to a refused address: {reason}")
        return await self._connect_first(addresses, port, timeout, local_address, socket_options)

    async def _resolve(self, host: str, port: int, timeout: float | None) -> Sequence[str]:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolver(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout} s") from exc
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return addresses

    async def _connect_first(
        self,
        addresses: Sequence[str],
        port: int,
        timeout: float | None,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await open_stream(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # addresses is never empty
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError(path, "unix sockets are never used")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# --------------------------------------------------------------------------- the connections


_HIGH_WATER = 256 * 1024  # bytes buffered before the socket stops being read (the reader is slow)


class _Buffered(asyncio.Protocol):
    """What arrives on one connection, buffered until ``AsyncioStream.read`` takes it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self.wake()

    def eof_received(self) -> bool:
        self.eof = True
        self.wake()
        return False  # close the transport: a half-closed HTTP/1.1 connection is not reused

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self.wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float | None, expired: type[Exception], what: str) -> None:
        """Until ``wake`` (data, EOF, error, drained) or ``timeout`` seconds (``expired`` is raised)."""
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        except TimeoutError:
            raise expired(f"no progress {what} for {timeout} s") from None
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class AsyncioStream(httpcore.AsyncNetworkStream):
    """httpcore's network stream on a plain asyncio transport and protocol.

    httpcore's own asyncio backend goes through anyio: a cancel scope per read and write, a
    checkpoint per call and a poll of the socket to see whether an idle connection is still open.
    A CPU-bound pass reads and writes a few times per request, so this stream does the same work
    with the event loop's own transport: timeouts are loop timers, and an idle connection that
    received data or EOF (the server closed it) is what ``is_readable`` reports.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Buffered) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        if not p.buffer and not p.eof:
            await p.wait(timeout, httpcore.ReadTimeout, "reading")
        if p.buffer:
            if len(p.buffer) <= max_bytes:
                data = bytes(p.buffer)
                p.buffer.clear()
            else:
                data = bytes(p.buffer[:max_bytes])
                del p.buffer[:max_bytes]
            if p.reading_paused and len(p.buffer) <= _HIGH_WATER // 4:
                p.reading_paused = False
                self._transport.resume_reading()
            return data
        if p.error is not None:
            raise httpcore.ReadError(f"connection lost: {p.error}")
        return b""  # the peer closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        p = self._protocol
        if self._transport.is_closing():
            raise httpcore.WriteError(f"connection closed{f': {p.error}' if p.error else ''}")
        self._transport.write(buffer)
        while p.writing_paused and not self._transport.is_closing():
            await p.wait(timeout, httpcore.WriteTimeout, "writing")
        if p.error is not None:
            raise httpcore.WriteError(f"connection lost: {p.error}")

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.abort()
            raise httpcore.ConnectTimeout(f"TLS handshake took longer than {timeout} s") from exc
        except (OSError, EOFError) as exc:  # ssl.SSLError (certificate refused...) is an OSError
            self._transport.abort()
            raise httpcore.ConnectError(f"TLS handshake failed: {exc}") from exc
        if transport is None:  # the connection was closed during the handshake
            raise httpcore.ConnectError("TLS handshake failed: connection closed")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return bool(self._protocol.buffer) or self._protocol.eof
        name = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        if name in ("ssl_object", "sockname", "peername", "socket"):
            return self._transport.get_extra_info(name)
        return None


async def open_stream(
    address: str,
    port: int,
    timeout: float | None,
    local_address: str | None = None,
    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
) -> AsyncioStream:
    """A TCP connection to ``address`` (an IP literal: names are resolved and checked before)."""
    loop = asyncio.get_running_loop()
    local = (local_address, 0) if local_address else None
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await loop.create_connection(
                _Buffered, host=address, port=port, local_addr=local
            )
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"connecting to {address}:{port} took longer than {timeout} s") from exc
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot connect to {address}:{port}: {exc}") from exc
    sock = transport.get_extra_info("socket")
    for option in socket_options or ():
        sock.setsockopt(*option)
    return AsyncioStream(cast(asyncio.Transport, transport), protocol)


# httpcore -> httpx exception types, most specific first (httpx's own mapping is private).
_ERROR_MAP: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
)
_CORE_ERRORS = tuple(core_type for core_type, _ in _ERROR_MAP)


def _as_httpx(exc: Exception) -> httpx.TransportError:
    """The httpx error for an httpcore error, so that callers of the client see httpx's types only."""
    for core_type, httpx_type in _ERROR_MAP:
        if isinstance(exc, core_type):
            return httpx_type(str(exc))
    return httpx.TransportError(str(exc))


class _ResponseStream(httpx.AsyncByteStream):
    """The pool's response body as httpx reads it, with httpcore's errors as httpx's."""

    def __init__(self, stream: AsyncIterable[bytes] | Iterable[bytes]) -> None:
        assert isinstance(stream, AsyncIterable), "httpcore's async pool yields async streams"
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except _CORE_ERRORS as exc:
            raise _as_httpx(exc) from exc

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an HTTP/1.1 keep-alive httpcore pool that connects only through
    ``backend`` (a ``GuardedBackend``). The pool has no other way to open a connection, so every new
    connection, whatever redirect hop it serves, is resolved and checked first."""

    def __init__(self, backend: GuardedBackend, limits: httpx.Limits, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except _CORE_ERRORS as exc:
            raise _as_httpx(exc) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
