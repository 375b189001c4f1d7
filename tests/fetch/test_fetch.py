"""crawler.fetch.client safety and limits: RELIABILITY.md items 1-5 against real local servers.

Politeness, Retry-After, robots.txt and conditional GET are in test_fetch_politeness.py.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import brotli
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from crawler.errors import (
    BlockedURLError,
    BodyTooLarge,
    ConfigError,
    DecodeError,
    FetchError,
    FetchTimeout,
    TooManyRedirects,
)
from crawler.fetch import Fetcher, FetchSettings, check_url_scheme
from crawler.fetch.decoding import PIECE, BodyDecoder
from crawler.fetch.netguard import Resolver, address_block_reason
from crawler.types import Fetched

LOCAL = FetchSettings(allow_private_networks=("127.0.0.1/32",), per_host_min_gap=0.0, deadline=10.0)
SOURCE = "src-1"
MiB = 1024 * 1024


def fetch(
    url: str, settings: FetchSettings = LOCAL, resolver: Resolver | None = None, **kwargs: object
) -> Fetched:
    async def go() -> Fetched:
        async with Fetcher(settings, resolver=resolver) as fetcher:
            return await fetcher.fetch(url, source_id=SOURCE, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[HTTPServer, HTTPServer]]:
    first, second = HTTPServer(host="127.0.0.1", port=0), HTTPServer(host="127.0.0.1", port=0)
    first.start()
    second.start()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
def server(_servers: tuple[HTTPServer, HTTPServer]) -> Iterator[HTTPServer]:
    yield _servers[0]
    _servers[0].clear()


@pytest.fixture
def other_server(_servers: tuple[HTTPServer, HTTPServer]) -> Iterator[HTTPServer]:
    yield _servers[1]
    _servers[1].clear()


class RawServer:
    """A TCP server whose handler writes raw bytes: silent, drip-feeding or lying servers."""

    def __init__(self, handler: Callable[[socket.socket, threading.Event], None]) -> None:
        self.handler = handler
        self.stop = threading.Event()
        self.sent = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                received = b""
                while b"\r\n\r\n" not in received:
                    received += conn.recv(4096)
                self.handler(conn, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket, threading.Event], None]], RawServer]]:
    started: list[RawServer] = []

    def start(handler: Callable[[socket.socket, threading.Event], None]) -> RawServer:
        started.append(RawServer(handler))
        return started[-1]

    yield start
    for raw in started:
        raw.close()


# -- 1. schemes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "javascript:alert(1)",
        "gopher://example.com:70/_GET",
        "data:text/plain,hello",
        "ftp://example.com/feed.xml",
        "example.com/feed.xml",
        "http:///no-host",
    ],
)
def test_non_http_urls_are_refused_at_config_time(url: str) -> None:
    with pytest.raises(BlockedURLError) as info:
        FetchSettings.check_url_scheme(url, source_id="cfg-source")
    assert "[cfg-source]" in str(info.value)
    with pytest.raises(BlockedURLError):
        fetch(url)


def test_http_and_https_urls_pass_the_scheme_check() -> None:
    check_url_scheme("http://example.com/feed")
    check_url_scheme("HTTPS://Example.com:8443/a?b=c")


def test_malformed_allow_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="allow_private_networks"):
        FetchSettings(allow_private_networks=("not a network!",))


# -- 2. addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "not a globally routable"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str, label: str) -> None:
    reason = address_block_reason(ipaddress.ip_address(address))
    assert reason is not None and label in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_block_reason(ipaddress.ip_address(address)) is None


def test_loopback_is_refused_by_default_by_ip_and_by_name(server: HTTPServer) -> None:
    server.expect_request("/feed").respond_with_data("secret")
    for host in ("127.0.0.1", "localhost"):
        with pytest.raises(BlockedURLError) as info:
            fetch(f"http://{host}:{server.port}/feed", FetchSettings())
        assert "loopback" in str(info.value) and f"[{SOURCE}]" in str(info.value)
    assert server.log == []


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:9/",
        "http://0.0.0.0:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://10.0.0.1/",
    ],
)
def test_literal_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(BlockedURLError):
        fetch(url, FetchSettings())


def test_allow_list_by_host_name(server: HTTPServer) -> None:
    server.expect_request("/intranet").respond_with_data("ok")
    result = fetch(
        f"http://localhost:{server.port}/intranet", replace(LOCAL, allow_private_networks=("localhost",))
    )
    assert result.status == 200 and result.body == b"ok"


@pytest.mark.parametrize(
    ("target", "label"),
    [("http://169.254.169.254/latest/meta-data/", "link-local"), ("http://10.0.0.1/admin", "private")],
)
def test_redirect_to_internal_address_is_refused_at_the_hop(
    server: HTTPServer, target: str, label: str
) -> None:
    server.expect_request("/start").respond_with_data("", status=302, headers={"Location": target})
    with pytest.raises(BlockedURLError) as info:
        fetch(server.url_for("/start"))
    assert label in str(info.value) and target in str(info.value)


def test_every_new_connection_resolves_and_checks_again(server: HTTPServer, other_server: HTTPServer) -> None:
    """DNS rebinding: the name is re-resolved for the redirect hop's new connection, the new
    answer is checked, and the dialled address is the checked one (the name exists only here)."""
    answers = [["127.0.0.1"], ["10.0.0.7"]]
    asked: list[str] = []

    async def rebinding_dns(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return answers[min(len(asked), 2) - 1]

    land = f"http://rebind.test:{other_server.port}/land"
    server.expect_request("/start").respond_with_data("", status=302, headers={"Location": land})
    other_server.expect_request("/land").respond_with_data("internal")
    with pytest.raises(BlockedURLError, match=r"10\.0\.0\.7 is a private address"):
        fetch(f"http://rebind.test:{server.port}/start", resolver=rebinding_dns)
    assert asked == ["rebind.test", "rebind.test"]
    assert len(server.log) == 1 and other_server.log == []


# -- 3. redirects -------------------------------------------------------------------------------


def _redirect_chain(server: HTTPServer, length: int) -> None:
    for hop in range(length):
        server.expect_request(f"/hop/{hop}").respond_with_data(
            "", status=301 if hop % 2 else 302, headers={"Location": f"/hop/{hop + 1}"}
        )
    server.expect_request(f"/hop/{length}").respond_with_data("end")


def test_five_redirects_are_followed(server: HTTPServer) -> None:
    _redirect_chain(server, 5)
    result = fetch(server.url_for("/hop/0"))
    assert result.body == b"end" and result.final_url == server.url_for("/hop/5")
    assert result.redirects == tuple(server.url_for(f"/hop/{i}") for i in range(1, 6))


def test_six_redirects_are_too_many(server: HTTPServer) -> None:
    _redirect_chain(server, 6)
    with pytest.raises(TooManyRedirects, match="more than 5 redirects"):
        fetch(server.url_for("/hop/0"))
    assert len(server.log) == 6  # /hop/6 was never requested


def test_redirect_loop_is_an_error(server: HTTPServer) -> None:
    server.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    server.expect_request("/b").respond_with_data("", status=307, headers={"Location": "/a"})
    with pytest.raises(TooManyRedirects, match="loop"):
        fetch(server.url_for("/a"))
    assert len(server.log) == 2


def test_redirect_without_location_is_an_error(server: HTTPServer) -> None:
    server.expect_request("/nowhere").respond_with_data("", status=302)
    with pytest.raises(FetchError, match="without a Location"):
        fetch(server.url_for("/nowhere"))


def test_credentials_are_dropped_when_a_redirect_changes_origin(
    server: HTTPServer, other_server: HTTPServer
) -> None:
    server.expect_request("/same").respond_with_data("", status=302, headers={"Location": "/same-land"})
    server.expect_request("/same-land").respond_with_data("ok")
    server.expect_request("/cross").respond_with_data(
        "", status=302, headers={"Location": other_server.url_for("/land")}
    )
    other_server.expect_request("/land").respond_with_data("ok")
    secrets = {"Authorization": "Bearer s3cret", "Cookie": "session=abc"}
    fetch(server.url_for("/same"), headers=secrets)
    fetch(server.url_for("/cross"), headers=secrets)
    sent = {request.path: request.headers for request, _ in server.log + other_server.log}
    for path in ("/same", "/same-land", "/cross"):
        assert (
            sent[path].get("Authorization") == "Bearer s3cret" and sent[path].get("Cookie") == "session=abc"
        )
    assert "Authorization" not in sent["/land"] and "Cookie" not in sent["/land"]


def test_cookies_set_by_a_server_are_not_kept(server: HTTPServer) -> None:
    server.expect_request("/set").respond_with_data(
        "", status=302, headers={"Location": "/check", "Set-Cookie": "t=1"}
    )
    server.expect_request("/check").respond_with_data("ok")
    fetch(server.url_for("/set"))
    assert "Cookie" not in server.log[-1][0].headers


# -- 4. silent and drip-feeding servers ---------------------------------------------------------


def _silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait()


def _drip(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
    while not stop.wait(0.3):
        conn.sendall(b"x")


async def _timed(fetcher: Fetcher, url: str) -> tuple[float, Fetched | BaseException]:
    started = time.monotonic()
    try:
        result: Fetched | BaseException = await fetcher.fetch(url, source_id=SOURCE)
    except FetchError as exc:
        result = exc
    return time.monotonic() - started, result


def test_overall_deadline_stops_silent_and_drip_servers_while_others_stay_on_time(
    server: HTTPServer, raw_server: Callable[..., RawServer]
) -> None:
    silent, drip = raw_server(_silent), raw_server(_drip)
    server.expect_request("/healthy").respond_with_data("fine")
    settings = replace(LOCAL, deadline=1.0, per_host_concurrency=8)

    async def go() -> list[tuple[float, Fetched | BaseException]]:
        async with Fetcher(settings) as fetcher:
            urls = (silent.url(), drip.url(), server.url_for("/healthy"))
            return await asyncio.gather(*(_timed(fetcher, url) for url in urls))

    (silent_s, silent_r), (drip_s, drip_r), (healthy_s, healthy_r) = asyncio.run(go())
    for seconds, result in ((silent_s, silent_r), (drip_s, drip_r)):
        assert isinstance(result, FetchTimeout) and "overall deadline of 1 s" in str(result)
        assert 0.9 <= seconds < 3.0
    assert isinstance(healthy_r, Fetched) and healthy_r.body == b"fine"
    assert healthy_s < 1.0


def test_read_timeout_fires_on_a_silent_server(raw_server: Callable[..., RawServer]) -> None:
    silent = raw_server(_silent)
    with pytest.raises(FetchTimeout, match=r"no data for 0\.3 s"):
        fetch(silent.url(), replace(LOCAL, read_timeout=0.3))


# -- 5. body caps and decoding ------------------------------------------------------------------


def _zero_bomb(encoding: str, size: int = 50 * MiB) -> bytes:
    """``size`` zero bytes compressed, built a MiB at a time (a few KiB to 50 KiB on the wire)."""
    chunk = bytes(MiB)
    if encoding == "br":
        compressor = brotli.Compressor(quality=1)
        return b"".join(compressor.process(chunk) for _ in range(size // MiB)) + compressor.finish()
    wbits = {"gzip": 31, "deflate": 15}[encoding]
    deflater = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(deflater.compress(chunk) for _ in range(size // MiB)) + deflater.flush()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_compression_bomb_is_cut_at_the_decoded_cap(server: HTTPServer, encoding: str) -> None:
    bomb = _zero_bomb(encoding)
    assert len(bomb) < MiB  # the honest Content-Length is far under the cap...
    server.expect_request("/bomb").respond_with_data(bomb, headers={"Content-Encoding": encoding})
    with pytest.raises(BodyTooLarge, match="after decoding"):  # ...the decoded size is not
        fetch(server.url_for("/bomb"), replace(LOCAL, max_body_bytes=MiB))


def test_decoder_output_comes_in_bounded_pieces() -> None:
    decoder = BodyDecoder("gzip")
    pieces = decoder.feed(_zero_bomb("gzip"))  # 50 MiB of output from one input chunk
    sizes = [len(next(pieces)) for _ in range(8)]
    assert all(0 < size <= PIECE for size in sizes)


ENDLESS = 256 * MiB  # what the close-delimited server sends unless the client hangs up first


def _endless_close_delimited(
    raw: list[RawServer], done: threading.Event
) -> Callable[[socket.socket, threading.Event], None]:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n")
            chunk = b"<p>" + b"a" * 65533
            for _ in range(ENDLESS // len(chunk)):
                conn.sendall(chunk)
                raw[0].sent += len(chunk)
        finally:
            done.set()  # all sent, or the client hung up (a broken pipe)

    return handler


def test_body_without_content_length_is_cut_at_the_cap(raw_server: Callable[..., RawServer]) -> None:
    holder: list[RawServer] = []
    done = threading.Event()
    holder.append(raw_server(_endless_close_delimited(holder, done)))
    with pytest.raises(BodyTooLarge, match=f"{MiB}-byte cap"):
        fetch(holder[0].url(), replace(LOCAL, max_body_bytes=MiB))
    assert done.wait(30)
    # the client hung up: what the server got out is the 1 MiB read plus what the kernel buffered on
    # loopback (receive buffers autotune up to net.ipv4.tcp_rmem's 32 MiB here), far from the 256 MiB
    assert holder[0].sent < 64 * MiB


def test_declared_content_length_over_the_cap_is_not_downloaded(server: HTTPServer) -> None:
    server.expect_request("/big").respond_with_data(b"x" * (2 * MiB))
    with pytest.raises(BodyTooLarge, match=f"Content-Length {2 * MiB}"):
        fetch(server.url_for("/big"), replace(LOCAL, max_body_bytes=MiB))


def test_lying_small_content_length_never_reads_past_it(raw_server: Callable[..., RawServer]) -> None:
    def liar(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"y" * (4 * MiB))

    result = fetch(raw_server(liar).url(), replace(LOCAL, max_body_bytes=MiB))
    assert result.body == b"y" * 1000


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"\x1f\x8b\x08\x00not really gzip at all"),
        ("gzip", gzip.compress(os.urandom(100_000))[:50_000]),  # truncated
        ("deflate", zlib.compress(os.urandom(100_000))[:50_000]),  # truncated
        ("br", brotli.compress(os.urandom(100_000))[:50_000]),  # truncated
        ("br", b"\xff" * 64),
        ("compress", b"whatever"),  # unsupported
    ],
)
def test_corrupt_truncated_or_unknown_encoding_is_a_decode_error(
    server: HTTPServer, encoding: str, body: bytes
) -> None:
    server.expect_request("/broken").respond_with_data(body, headers={"Content-Encoding": encoding})
    with pytest.raises(DecodeError) as info:
        fetch(server.url_for("/broken"))
    assert f"[{SOURCE}]" in str(info.value) and "/broken" in str(info.value)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),  # raw deflate (old servers)
        ("br", brotli.compress),
        ("identity", lambda data: data),
    ],
)
def test_encoded_bodies_are_returned_decoded(
    server: HTTPServer, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    text = "<rss><item>LongCat-2.0 美团</item></rss>".encode() * 5000
    server.expect_request("/feed").respond_with_data(encode(text), headers={"Content-Encoding": encoding})
    result = fetch(server.url_for("/feed"))
    assert result.body == text and result.headers["content-encoding"] == encoding
    accept_encoding = server.log[-1][0].headers["Accept-Encoding"]
    assert {"gzip", "deflate", "br"} <= {part.strip() for part in accept_encoding.split(",")}


def test_streamed_body_is_returned_whole(server: HTTPServer) -> None:
    def chunked(request: Request) -> Response:
        return Response((b"line %d\n" % i for i in range(20_000)), content_type="text/plain")

    server.expect_request("/stream").respond_with_handler(chunked)
    result = fetch(server.url_for("/stream"))
    assert result.body == b"".join(b"line %d\n" % i for i in range(20_000))


def test_unresolvable_host_is_a_fetch_error() -> None:
    async def no_dns(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FetchError, match=r"cannot resolve nowhere\.test") as info:
        fetch("http://nowhere.test/feed", resolver=no_dns)
    assert not isinstance(info.value, BlockedURLError | FetchTimeout)


def test_user_agent_and_accept_headers_are_sent(server: HTTPServer) -> None:
    server.expect_request("/feed").respond_with_data("<rss/>")
    fetch(server.url_for("/feed"), accept="application/rss+xml")
    fetch(server.url_for("/feed"), headers={"accept": "text/html"})
    first, second = (request.headers for request, _ in server.log)
    assert first["User-Agent"] == FetchSettings().user_agent
    assert first["Accept"] == "application/rss+xml" and second["Accept"] == "text/html"
