"""The guarded transport's connections: plain asyncio streams under httpcore's pool, httpx's errors out.

``open_stream`` connects to one already-checked IP literal (``crawler.fetch.netguard`` resolved and
checked it) and wraps the socket in ``AsyncioStream``; ``GuardedTransport`` is the httpx transport
whose pool opens connections only through a ``GuardedBackend``, so every hop is checked;
``SharedClient`` is the one ``httpx.AsyncClient`` over it, with a cookie store that keeps nothing.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, cast

import httpcore
import httpx

if TYPE_CHECKING:
    from crawler.fetch.netguard import GuardedBackend

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


class _NoCookies(httpx.Cookies):
    """Cookies that are never stored nor sent: sources never share cookies through the shared client.

    A cookie is sent only when the caller passes a Cookie header. The client's ``cookies`` are this
    object for good (see ``SharedClient``), so httpx does not even wrap each response in urllib's request
    and response adapters (~4% of a fetch) only to hand them to a jar that keeps nothing.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


_NO_COOKIES = _NoCookies()


class SharedClient(httpx.AsyncClient):
    """The shared ``httpx.AsyncClient``, whose cookie store is always ``_NoCookies``."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass  # httpx's constructor sets them: nothing to keep
