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
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from crawler.config import load_settings
from storage import dispatch
from storage import sources as store_sources
from storage.db import Database, open_database
from storage.models import DocumentRow, SourceRow
from tests.alertkit import Receiver
from tests.sitekit import Served, article_page, rss

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


class LoggingSite(Served):
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

        self._serve_from(_Server(("127.0.0.1", 0), Handler))  # daemon_threads: set on the class

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
        end = time.time()  # before the lock: a late end only overstates the overlap, but needlessly
        with self.lock:
            self.log.append(Request(path, start, end, status))


def received_keys(receiver: Receiver) -> list[str]:
    """The idempotency key of every POST a ``tests.alertkit.Receiver`` got, in order."""
    return [seen.headers.get("idempotency-key", "") for seen in list(receiver.requests)]


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


# --- the scale-out roles as real processes ------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
RULES = (
    "version: 1\nrules:\n  - id: test.cluster\n    title: Cluster details\n    severity: medium\n"
    "    query: '\"computing cluster\"'\n"
)


def write_config(
    tmp: Path,
    pg_url: str,
    redis_url: str,
    feeds: dict[str, str],
    fetch: str,
    scale: str,
    timing: str = "interval: 60s",
    rules: bool = False,
    alerts: str = "{channels: {ops: {type: console}}}",
) -> Path:
    """The scale-out config: these feeds on PostgreSQL + Redis, the given fetch/scale/alerts keys."""
    sources = "".join(
        f'  - {{id: {sid}, kind: feed, url: "{url}", {timing}}}\n' for sid, url in feeds.items()
    )
    path = tmp / "scale.yaml"
    rule_line = ""
    if rules:
        (tmp / "rules.yaml").write_text(RULES, "utf-8")
        rule_line = f'rules: {{paths: ["{tmp / "rules.yaml"}"]}}\n'
    path.write_text(
        f'database: "{pg_url}"\nbroker: "{redis_url}"\n{rule_line}'
        f'fetch: {{allow_private_networks: ["127.0.0.1/32"], respect_robots: false, {fetch}}}\n'
        f"alerts: {alerts}\n"
        "daemon: {watch_files: false, log_level: debug}\n"
        f"scale: {{{scale}}}\nsources:\n{sources}",
        "utf-8",
    )
    return path


def start(tmp: Path, config: Path, *args: str, log: str) -> subprocess.Popen[str]:
    """A storywatch role in its own process group (so kill -9 reaches Dramatiq's children too)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("STORYWATCH_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-c", "from crawler.cli import main; main()", "--config", str(config), *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=open(tmp / f"{log}.out", "w"),
        stderr=open(tmp / f"{log}.err", "w"),
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """``sig`` to the role's main process (SIGKILL: to its whole group, Dramatiq's children too),
    then SIGKILL to whatever is left of the group: no test leaves a process behind. Dramatiq's
    worker processes must get SIGTERM once, from their parent (a second one makes them exit
    uncleanly), as systemd's KillMode=mixed does."""
    try:
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)
        elif proc.poll() is None:
            proc.send_signal(sig)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def plan_now(config: Path) -> Database:
    """Every configured source due now (the scheduler would spread new ones over a minute)."""
    settings = load_settings(config)
    db = open_database(settings.database_url)
    specs = settings.source_specs()
    store_sources.sync_sources(db, specs)
    dispatch.plan_sources(db, {}, [s.id for s in specs])
    with db.write() as s:  # due now, whether or not a scheduler planned them already
        s.execute(SourceRow.__table__.update().values(next_due_at=datetime.now(UTC)))
    return db


def documents(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(DocumentRow)) or 0)


def sources(db: Database) -> list[SourceRow]:
    with db.read() as s:
        return list(s.scalars(select(SourceRow).order_by(SourceRow.id)).all())


@dataclass(frozen=True)
class Outcome:
    """What a cold pass left in PostgreSQL (the kill -9 acceptance's conditions, as counts)."""

    documents: int
    sources: int
    future_due: int  # sources whose next_due is after `now`
    leases: int  # sources still holding a dispatch lease
    stale_leases: int  # dispatch leases past their end, and outbox rows still "sending" past theirs
    alerts: int
    alerts_sent: int  # alerts whose every delivery row is "sent"
    unsent: int  # delivery rows of any kind not "sent"
    keys: frozenset[str]  # every delivery row's idempotency key


def outcome(db: Database, now: datetime) -> Outcome:
    from storage.models import AlertRow, DeliveryRow

    rows = sources(db)
    with db.read() as s:
        alerts = int(s.scalar(select(func.count()).select_from(AlertRow)) or 0)
        deliveries = s.execute(
            select(DeliveryRow.alert_id, DeliveryRow.kind, DeliveryRow.state, DeliveryRow.lease_until)
        ).all()
        keys = frozenset(s.execute(select(DeliveryRow.idempotency_key)).scalars().all())
    unsent_alerts = {a for a, kind, state, _ in deliveries if kind == "alert" and state != "sent"}
    delivered = {a for a, kind, _, _ in deliveries if kind == "alert"} - unsent_alerts
    stale_outbox = sum(1 for *_, state, until in deliveries if state == "sending" and until and until < now)
    return Outcome(
        documents=documents(db),
        sources=len(rows),
        future_due=sum(1 for r in rows if r.next_due_at is not None and _aware(r.next_due_at) > now),
        leases=sum(1 for r in rows if r.dispatch_until is not None),
        stale_leases=stale_outbox
        + sum(1 for r in rows if r.dispatch_until is not None and _aware(r.dispatch_until) < now),
        alerts=alerts,
        alerts_sent=len(delivered),
        unsent=sum(1 for *_, state, _ in deliveries if state != "sent"),
        keys=keys,
    )


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
