"""crawler.fetch.client politeness and caching: RELIABILITY.md items 7-10 against real local servers.

Host names such as a.test / b.test are answered by a local stand-in for DNS (all 127.0.0.1), so
one local server can play several hosts; timing is measured on the server side.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from crawler.errors import HTTPStatusError, RobotsDisallowed
from crawler.fetch import Fetcher, FetchSettings, HostPaused, parse_retry_after
from crawler.types import Fetched, Validators

LOCAL = FetchSettings(allow_private_networks=("127.0.0.1/32",), per_host_min_gap=0.0, deadline=10.0)
SOURCE = "src-2"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


async def local_dns(host: str, port: int) -> Sequence[str]:
    """*.test names resolve to the local server; nothing else resolves."""
    if host.endswith(".test") or host == "127.0.0.1":
        return ["127.0.0.1"]
    raise OSError(f"{host}: unknown in this test")


def fetch_all(urls: Sequence[str], settings: FetchSettings = LOCAL, **kwargs: object) -> list[object]:
    """Fetch ``urls`` one after another with one Fetcher; errors are returned, not raised."""

    async def go() -> list[object]:
        results: list[object] = []
        async with Fetcher(settings, resolver=local_dns) as fetcher:
            for url in urls:
                try:
                    results.append(await fetcher.fetch(url, source_id=SOURCE, **kwargs))  # type: ignore[arg-type]
                except HTTPStatusError as exc:
                    results.append(exc)
        return results

    return asyncio.run(go())


@pytest.fixture(scope="module")
def _server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(_server: HTTPServer) -> Iterator[HTTPServer]:
    yield _server
    _server.clear()


def at(server: HTTPServer, host: str, path: str) -> str:
    return f"http://{host}:{server.port}{path}"


# -- 7. Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Mon, 23 Nov 2026 12:01:30 GMT", 90.0),
        ("Sun, 22 Nov 2026 12:00:00 GMT", 0.0),  # in the past
        ("99999999999", 6 * 3600.0),  # absurd: clamped
        ("Fri, 01 Jan 2100 00:00:00 GMT", 6 * 3600.0),
        ("soon", None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("Mon, 99 Foo 2026 25:61:00 GMT", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_respects_the_configured_maximum() -> None:
    assert parse_retry_after("7200", NOW, max_seconds=600.0) == 600.0


def test_429_with_retry_after_pauses_that_host_for_every_request(server: HTTPServer) -> None:
    server.expect_request("/limited").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "30"}
    )
    server.expect_request("/other").respond_with_data("ok")
    first, second, elsewhere = fetch_all(
        [at(server, "a.test", "/limited"), at(server, "a.test", "/other"), at(server, "b.test", "/other")]
    )
    assert isinstance(first, HTTPStatusError) and not isinstance(first, HostPaused)
    assert (first.status, first.retry_after) == (429, 30.0)
    assert f"[{SOURCE}]" in str(first) and "/limited" in str(first)
    assert isinstance(second, HostPaused) and second.status == 429
    assert second.retry_after is not None and 25.0 < second.retry_after <= 30.0
    assert isinstance(elsewhere, Fetched) and elsewhere.body == b"ok"
    assert [request.headers["Host"].split(":")[0] for request, _ in server.log] == ["a.test", "b.test"]


def test_503_with_an_http_date(server: HTTPServer) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    server.expect_request("/down").respond_with_data("", status=503, headers={"Retry-After": later})
    (error,) = fetch_all([at(server, "a.test", "/down")])
    assert isinstance(error, HTTPStatusError) and error.status == 503
    assert error.retry_after is not None and 115.0 <= error.retry_after <= 120.0


def test_garbage_retry_after_leaves_back_off_to_the_caller(server: HTTPServer) -> None:
    server.expect_request("/garbage").respond_with_data("", status=429, headers={"Retry-After": "in a while"})
    server.expect_request("/next").respond_with_data("ok")
    error, following = fetch_all([at(server, "a.test", "/garbage"), at(server, "a.test", "/next")])
    assert isinstance(error, HTTPStatusError) and error.status == 429 and error.retry_after is None
    assert isinstance(following, Fetched)  # no pause was invented from garbage


def test_absurd_retry_after_is_clamped(server: HTTPServer) -> None:
    server.expect_request("/absurd").respond_with_data("", status=429, headers={"Retry-After": "315360000"})
    (error,) = fetch_all([at(server, "a.test", "/absurd")], replace(LOCAL, retry_after_max=3600.0))
    assert isinstance(error, HTTPStatusError) and error.retry_after == 3600.0


def test_other_http_errors_carry_their_status(server: HTTPServer) -> None:
    server.expect_request("/gone").respond_with_data("", status=410)
    (error,) = fetch_all([at(server, "a.test", "/gone")])
    assert isinstance(error, HTTPStatusError) and error.status == 410 and error.retry_after is None


# -- 8. robots.txt ------------------------------------------------------------------------------

ROBOTS = "User-agent: storywatch\nDisallow: /private\n\nUser-agent: *\nDisallow: /\n"


def _pages(server: HTTPServer, *paths: str) -> None:
    for path in paths:
        server.expect_request(path).respond_with_data(f"page {path}")


def test_robots_disallow_is_respected_and_fetched_once(server: HTTPServer) -> None:
    server.expect_request("/robots.txt").respond_with_data(ROBOTS, content_type="text/plain")
    _pages(server, "/public/1", "/public/2", "/private/x")
    urls = [at(server, "a.test", p) for p in ("/public/1", "/private/x", "/public/2")]

    async def go() -> list[object]:
        async with Fetcher(LOCAL, resolver=local_dns) as fetcher:
            return await asyncio.gather(
                *(fetcher.fetch(url, source_id=SOURCE, check_robots=True) for url in urls),
                return_exceptions=True,
            )

    public_1, private, public_2 = asyncio.run(go())
    assert isinstance(public_1, Fetched) and isinstance(public_2, Fetched)
    assert isinstance(private, RobotsDisallowed) and "/private/x" in str(private)
    requested = [request.path for request, _ in server.log]
    assert requested.count("/robots.txt") == 1 and "/private/x" not in requested


def test_robots_is_only_checked_when_asked(server: HTTPServer) -> None:
    server.expect_request("/robots.txt").respond_with_data(ROBOTS)
    _pages(server, "/private/feed")
    url = at(server, "a.test", "/private/feed")
    (as_feed,) = fetch_all([url])
    (ignored,) = fetch_all([url], replace(LOCAL, respect_robots=False), check_robots=True)
    assert isinstance(as_feed, Fetched) and isinstance(ignored, Fetched)
    assert "/robots.txt" not in [request.path for request, _ in server.log]


def test_robots_5xx_means_temporarily_disallowed(server: HTTPServer) -> None:
    server.expect_request("/robots.txt").respond_with_data("oops", status=503)
    _pages(server, "/article")
    with pytest.raises(RobotsDisallowed, match="will be retried") as info:
        fetch_all([at(server, "a.test", "/article")], check_robots=True)
    assert "HTTP 503" in str(info.value)
    assert [request.path for request, _ in server.log] == ["/robots.txt"]


def test_robots_404_means_everything_is_allowed(server: HTTPServer) -> None:
    server.expect_request("/robots.txt").respond_with_data("no such file", status=404)
    _pages(server, "/private/article")
    (page,) = fetch_all([at(server, "a.test", "/private/article")], check_robots=True)
    assert isinstance(page, Fetched) and page.body == b"page /private/article"


def test_robots_is_read_up_to_its_size_cap(server: HTTPServer) -> None:
    padding = "# padding line\n" * 400  # 6 KB, past the 2 KiB cap below
    server.expect_request("/robots.txt").respond_with_data(
        f"User-agent: *\nDisallow: /early\n{padding}Disallow: /late\n"
    )
    _pages(server, "/early", "/late")
    settings = replace(LOCAL, robots_max_bytes=2048)
    with pytest.raises(RobotsDisallowed):
        fetch_all([at(server, "a.test", "/early")], settings, check_robots=True)
    (late,) = fetch_all([at(server, "a.test", "/late")], settings, check_robots=True)
    assert isinstance(late, Fetched)  # the rule past the cap was never read


# -- 9. per-host concurrency, minimum gap, global cap -------------------------------------------


class Recorder:
    """Server-side start/end times and the highest number of requests in flight."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.lock = threading.Lock()
        self.starts: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.starts.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.hold)
        with self.lock:
            self.in_flight -= 1
        return Response("ok")


def _concurrently(urls: Sequence[str], settings: FetchSettings) -> list[Fetched]:
    async def go() -> list[Fetched]:
        async with Fetcher(settings, resolver=local_dns) as fetcher:
            return await asyncio.gather(*(fetcher.fetch(url, source_id=SOURCE) for url in urls))

    return asyncio.run(go())


def test_one_host_gets_at_most_two_requests_at_a_time_spaced_by_the_gap(server: HTTPServer) -> None:
    recorder = Recorder(hold=0.3)
    server.expect_request("/slot").respond_with_handler(recorder)
    settings = replace(LOCAL, per_host_concurrency=2, per_host_min_gap=0.2)
    results = _concurrently([at(server, "a.test", "/slot")] * 6, settings)
    assert [r.status for r in results] == [200] * 6
    starts = sorted(recorder.starts)
    assert recorder.max_in_flight <= 2
    assert starts[-1] - starts[0] >= 0.9  # 5 gaps of 0.2 s, measured by the server
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.15


def test_global_cap_limits_requests_across_hosts(server: HTTPServer) -> None:
    recorder = Recorder(hold=0.15)
    server.expect_request("/slot").respond_with_handler(recorder)
    settings = replace(LOCAL, per_host_concurrency=4, global_concurrency=1)
    _concurrently([at(server, host, "/slot") for host in ("a.test", "b.test", "c.test", "d.test")], settings)
    assert recorder.max_in_flight == 1 and len(recorder.starts) == 4


def test_different_hosts_are_not_held_back_by_each_others_gap(server: HTTPServer) -> None:
    recorder = Recorder(hold=0.0)
    server.expect_request("/slot").respond_with_handler(recorder)
    settings = replace(LOCAL, per_host_min_gap=5.0)
    _concurrently([at(server, host, "/slot") for host in ("a.test", "b.test", "c.test")], settings)
    assert max(recorder.starts) - min(recorder.starts) < 2.0  # one 5 s gap would exceed this


# -- 10. conditional GET ------------------------------------------------------------------------

ETAG = '"v1-abc"'
LAST_MODIFIED = "Sun, 22 Nov 2026 10:00:00 GMT"


def _conditional(request: Request) -> Response:
    if request.headers.get("If-None-Match") == ETAG:
        return Response(status=304)  # no validators echoed: the client keeps its own
    return Response("<rss>LongCat-2.0</rss>", headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED})


def test_not_modified_flow_sends_and_keeps_validators(server: HTTPServer) -> None:
    server.expect_request("/feed.xml").respond_with_handler(_conditional)
    url = at(server, "a.test", "/feed.xml")
    (first,) = fetch_all([url])
    assert isinstance(first, Fetched) and first.status == 200 and first.body == b"<rss>LongCat-2.0</rss>"
    assert first.validators == Validators(etag=ETAG, last_modified=LAST_MODIFIED)
    (second,) = fetch_all([url], validators=first.validators)
    assert isinstance(second, Fetched) and second.not_modified and second.body == b""
    assert second.validators == first.validators
    unconditional, conditional = (request.headers for request, _ in server.log)
    assert "If-None-Match" not in unconditional and "If-Modified-Since" not in unconditional
    assert conditional["If-None-Match"] == ETAG and conditional["If-Modified-Since"] == LAST_MODIFIED


def test_changed_validators_replace_the_old_ones(server: HTTPServer) -> None:
    server.expect_request("/feed.xml").respond_with_handler(_conditional)
    old = Validators(etag='"v0"', last_modified="Sat, 21 Nov 2026 10:00:00 GMT")
    (result,) = fetch_all([at(server, "a.test", "/feed.xml")], validators=old)
    assert isinstance(result, Fetched) and result.status == 200
    assert result.validators == Validators(etag=ETAG, last_modified=LAST_MODIFIED)
