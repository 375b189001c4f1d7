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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpcore

from crawler.errors import BlockedURLError, ConfigError
from crawler.fetch.transport import open_stream

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
