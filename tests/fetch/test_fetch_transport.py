"""crawler.fetch.client's transport: httpx over crawler.fetch.netguard's asyncio connections.

TLS through the asyncio stream (certificates verified, keep-alive), connections the server closed
while idle or refused, cookies never kept, credentials in URLs, repeated and non-ASCII response
headers, the caller's Host header. Real local servers only (RELIABILITY.md items 1-5 are in
test_fetch.py).
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from crawler.errors import FetchError
from crawler.fetch import Fetcher, FetchSettings
from crawler.fetch.netguard import AddressPolicy, GuardedBackend
from crawler.fetch.transport import GuardedTransport
from crawler.types import Fetched

LOCAL = FetchSettings(allow_private_networks=("127.0.0.1/32",), per_host_min_gap=0.0, deadline=10.0)
SOURCE = "src-t"


def fetch_all(urls: list[str], **kwargs: object) -> list[Fetched]:
    async def go() -> list[Fetched]:
        async with Fetcher(LOCAL) as fetcher:
            return [await fetcher.fetch(url, source_id=SOURCE, **kwargs) for url in urls]  # type: ignore[arg-type]

    return asyncio.run(go())


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    httpd = HTTPServer(host="127.0.0.1", port=0)
    httpd.start()
    yield httpd
    httpd.stop()


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (made by the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject]
    subprocess.run([*command, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        body = b"secure " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[str, list[object]]]:
    """(base URL, accepted connections) of an HTTPS server on 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    connections: list[object] = []

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> tuple[socket.socket, object]:
            sock, address = super().get_request()
            connections.append(address)
            return context.wrap_socket(sock, server_side=True), address

    httpd = Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{httpd.server_address[1]}", connections
    httpd.shutdown()
    httpd.server_close()


async def _local(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def test_tls_requests_reuse_one_verified_connection(
    tls_server: tuple[str, list[object]], certificate: tuple[Path, Path]
) -> None:
    base, connections = tls_server
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    backend = GuardedBackend(AddressPolicy.from_allow_list(["127.0.0.1/32"]), _local)

    transport = GuardedTransport(backend, httpx.Limits(max_connections=2), trusting)

    async def go() -> list[tuple[int, bytes]]:
        async with httpx.AsyncClient(transport=transport) as client:
            out = []
            for path in ("/one", "/two", "/three"):
                response = await client.get(f"{base}{path}")
                out.append((response.status_code, response.content))
            return out

    assert asyncio.run(go()) == [(200, b"secure /one"), (200, b"secure /two"), (200, b"secure /three")]
    assert len(connections) == 1


def test_an_untrusted_certificate_is_refused(tls_server: tuple[str, list[object]]) -> None:
    base, _ = tls_server

    async def go() -> None:
        async with Fetcher(LOCAL, resolver=_local) as fetcher:
            await fetcher.fetch(f"{base}/feed", source_id=SOURCE)

    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(go())


# -- connections ----------------------------------------------------------------------------------


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    """The server answers one request per connection and then hangs up without saying so."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[int] = []

    def serve() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            accepted.append(1)
            with conn:
                received = b""
                while b"\r\n\r\n" not in received:
                    received += conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive implied

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def go() -> list[bytes]:
        async with Fetcher(LOCAL) as fetcher:
            out = []
            for _ in range(3):
                out.append((await fetcher.fetch(f"http://127.0.0.1:{port}/", source_id=SOURCE)).body)
                await asyncio.sleep(0.1)  # the close reaches the idle connection
            return out

    try:
        assert asyncio.run(go()) == [b"ok", b"ok", b"ok"]
    finally:
        listener.close()
    assert len(accepted) == 3


def test_connection_refused_is_a_fetch_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket is closed
    with pytest.raises(FetchError, match="ConnectError"):
        fetch_all([f"http://127.0.0.1:{port}/feed"])


# -- cookies, credentials, headers ----------------------------------------------------------------


def test_cookies_a_site_sets_are_returned_but_never_sent_back(server: HTTPServer) -> None:
    server.expect_request("/page").respond_with_data(
        "hello", headers=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2")]
    )
    first, second = fetch_all([server.url_for("/page"), server.url_for("/page")])
    assert first.body == second.body == b"hello"
    assert first.headers["set-cookie"] == "a=1; Path=/, b=2"
    assert all("Cookie" not in request.headers for request, _ in server.log)
    fetch_all([server.url_for("/page")], headers={"Cookie": "given=1"})  # the caller's own cookie
    assert server.log[-1][0].headers["Cookie"] == "given=1"


def test_credentials_in_the_url_are_basic_auth_for_that_origin_only(server: HTTPServer) -> None:
    other = HTTPServer(host="127.0.0.1", port=0)
    other.start()
    try:
        other.expect_request("/land").respond_with_data("landed")
        server.expect_request("/private").respond_with_data(
            "", status=302, headers={"Location": other.url_for("/land")}
        )
        url = server.url_for("/private").replace("http://", "http://reader:s%40cret@")
        (result,) = fetch_all([url])
        assert result.body == b"landed"
        expected = "Basic " + base64.b64encode(b"reader:s@cret").decode()
        assert server.log[-1][0].headers["Authorization"] == expected
        assert "Authorization" not in other.log[-1][0].headers
    finally:
        other.stop()


def test_the_callers_host_header_replaces_the_default(server: HTTPServer) -> None:
    server.expect_request("/vhost").respond_with_data("ok")
    fetch_all([server.url_for("/vhost")], headers={"Host": "feeds.example"})
    sent = server.log[-1][0]
    assert sent.headers["Host"] == "feeds.example"
    assert len(sent.headers.getlist("Host")) == 1


def test_repeated_and_non_ascii_response_headers(server: HTTPServer) -> None:
    server.expect_request("/h").respond_with_data(
        "ok", headers=[("ETag", '"a"'), ("Vary", "Accept"), ("vary", "Cookie"), ("X-Title", "café")]
    )
    (result,) = fetch_all([server.url_for("/h")])
    assert result.headers["etag"] == '"a"'
    assert result.headers["vary"] == "Accept, Cookie"
    assert result.headers["x-title"] == "café"
