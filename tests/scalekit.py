"""A local site for the scale-out tests that logs every request's start and end, answers slowly
when asked, and can answer 429 with Retry-After. No tests here.

A request's ``start`` is when its first byte reached this machine's TCP stack: the kernel's receive
timestamp (``SO_TIMESTAMPNS``, wall clock), read with a peek before the request is parsed. A stamp
taken in the handler thread instead would carry this process's own scheduling delay (thread start,
the GIL, a loaded machine), and one late stamp followed by a prompt one shows two requests closer
than the site really saw them. ``end`` is stamped after the answer is flushed (wall clock too): a
late end only makes requests look more overlapped, never less. Where the kernel gives no timestamp
(not Linux), ``start`` falls back to the wall clock at the peek."""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.sitekit import article_page, rss

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # 35: its value on Linux


@dataclass(frozen=True)
class Request:
    path: str
    start: float
    end: float
    status: int


def arrival(conn: socket.socket) -> float:
    """Wait for the next request's first byte on ``conn`` (without reading it) and return when the
    kernel received it (wall clock); the wall clock now if the kernel gives no timestamp."""
    try:
        _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
    except OSError:
        return time.time()  # the handler's own read reports the broken connection
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec / 1e9
    return time.time()


@dataclass
class _Page:
    body: bytes
    content_type: str
    delay: float = 0.0
    status_once: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # served first, in order


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # accepted connections inherit the option: every request's first byte is timestamped
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        super().server_bind()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed worker hung up: expected
            super().handle_error(request, client_address)


class LoggingSite:
    """``with LoggingSite(delay=0.1) as site: site.feed("f1", 3)``; ``site.log`` lists the requests."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.pages: dict[str, _Page] = {}
        self.log: list[Request] = []
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            arrived = 0.0

            def handle_one_request(self) -> None:
                self.arrived = arrival(self.connection)  # httpx never pipelines: the buffer is empty
                super().handle_one_request()

            def do_GET(self) -> None:
                site._serve(self, self.arrived)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LoggingSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def add(self, path: str, body: str, content_type: str = "text/html; charset=utf-8", **kw: Any) -> None:
        with self.lock:
            self.pages[path] = _Page(body.encode("utf-8"), content_type, **kw)

    def feed(self, name: str, n: int, *, words: str = "engineers described the computing cluster") -> str:
        """``/<name>.xml`` with ``n`` items, each linking to an article page; returns the feed's URL."""
        items = []
        for i in range(n):
            path = f"/{name}/a{i}"
            self.add(
                path, article_page(f"{name} story {i}", [f"{name} report {i}: {words} in detail ({i})."])
            )
            items.append({"title": f"{name} story {i}", "link": self.base + path, "guid": f"{name}-{i}"})
        self.add(f"/{name}.xml", rss(items), "application/rss+xml")
        return f"{self.base}/{name}.xml"

    def answer_once(self, path: str, status: int, headers: dict[str, str]) -> None:
        with self.lock:
            self.pages[path].status_once.append((status, headers))

    def requests(self) -> list[Request]:
        with self.lock:
            return sorted(self.log, key=lambda r: r.start)

    def _serve(self, req: BaseHTTPRequestHandler, start: float) -> None:
        path = req.path.split("?", 1)[0]
        with self.lock:
            page = self.pages.get(path)
            status, headers = page.status_once.pop(0) if page and page.status_once else (200, {})
        if page is None:
            status, body, ctype = 404, b"not found", "text/plain"
        else:
            body, ctype = (page.body if status == 200 else b"slow down"), page.content_type
        time.sleep(page.delay if page and page.delay else self.delay)
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)
        req.wfile.flush()
        with self.lock:
            self.log.append(Request(path, start, time.time(), status))


def max_in_flight(requests: list[Request]) -> int:
    """The most requests running at once (from their starts and ends)."""
    events = sorted([(r.start, 1) for r in requests] + [(r.end, -1) for r in requests])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def min_gap(requests: list[Request]) -> float:
    starts = sorted(r.start for r in requests)
    return min((b - a for a, b in itertools.pairwise(starts)), default=float("inf"))
