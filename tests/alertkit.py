"""Shared helpers for the alerts tests: a database with a story, real local HTTP and SMTP servers.

No tests here. The HTTP receiver is a threaded http.server that answers from a script (status,
headers, delay, or "hold the request open until released"); the SMTP server is aiosmtpd.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

from aiosmtpd.controller import Controller

from crawler.alerts.console import ConsoleChannel
from crawler.alerts.relay import Relay
from crawler.alerts.views import AlertOutcome, RelayReport
from crawler.config import AlertsConfig
from crawler.types import Match, Span
from storage.db import Database, open_database
from storage.models import DocumentRow, StoryRow
from storage.outbox import record_alert

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
EVIDENCE = "Meituan said LongCat-2.0 was trained on Huawei Ascend 910C chips."
WIRE = ("wire", "https://wire.example/a")


def new_db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path}/t.db")


def add_story(
    db: Database, title: str = "LongCat-2.0 hardware named", *, n_docs: int = 1, source: str = "wire"
) -> tuple[int, list[int]]:
    """A story and ``n_docs`` documents in it; returns (story id, document ids)."""
    with db.write() as s:
        story = StoryRow(title=title, first_seen=T0, updated_at=T0)
        s.add(story)
        s.flush()
        docs = []
        for _ in range(n_docs):
            docs.append(add_document(s, story.id, source=source))
        return story.id, docs


_doc_counter = iter(range(1, 10**9))


def add_document(
    session: Any, story_id: int, *, source: str = "wire", title: str = "LongCat-2.0 news"
) -> int:
    n = next(_doc_counter)
    doc = DocumentRow(
        canonical_url=f"https://{source}.example/a/{n}",
        url=f"https://{source}.example/a/{n}",
        source_id=source,
        title=title,
        text=EVIDENCE,
        content_hash=f"h{n}-{time.time_ns()}",
        discovered=T0,
        story_id=story_id,
    )
    session.add(doc)
    session.flush()
    return int(doc.id)


def match(
    evidence: str = EVIDENCE,
    *,
    rule: str = "longcat.vendor-disclosed",
    term: str = "Huawei Ascend 910C",
    severity: str = "high",
    labels: Mapping[str, str] | None = None,
) -> Match:
    start = evidence.find(term)
    spans = (Span(start, start + len(term), term),) if start >= 0 else ()
    return Match(
        rule_id=rule,
        title="LongCat vendor disclosed",
        severity=severity,  # type: ignore[arg-type]
        status="asserted",
        evidence=evidence,
        spans=spans,
        captures={"vendor": term},
        labels=dict(labels or {}),
    )


def record(
    db: Database,
    cfg: AlertsConfig,
    story_id: int,
    doc_id: int,
    m: Match | None = None,
    *,
    sources: Sequence[tuple[str, str | None]] = (WIRE,),
    now: datetime = T0,
    **kw: Any,
) -> AlertOutcome:
    with db.write() as s:
        return record_alert(
            s,
            db,
            match=m or match(),
            story_id=story_id,
            document_id=doc_id,
            source_count=len({x for x, _ in sources}),
            sources=list(sources),
            alerts_cfg=cfg,
            now=now,
            **kw,
        )


def alerts_cfg(channels: Mapping[str, Mapping[str, Any]], **kw: Any) -> AlertsConfig:
    return AlertsConfig.model_validate({"channels": dict(channels), **kw})


def run(relay: Relay, now: datetime) -> RelayReport:
    return asyncio.run(relay.run_once(now))


def consoles(db: Database, cfg: AlertsConfig) -> tuple[Relay, dict[str, io.StringIO]]:
    """A relay whose console channels each write to their own buffer (the others deliver for real)."""
    names = [n for n, c in cfg.channels.items() if c.type == "console"]
    bufs = {n: io.StringIO() for n in names}
    chans = {n: ConsoleChannel(n, cfg.channels[n], stream=bufs[n]) for n in names}
    return Relay(db, cfg, channels=chans), bufs


class Alerted(NamedTuple):
    db: Database
    cfg: AlertsConfig
    story: int
    alert_id: int
    relay: Relay
    bufs: dict[str, io.StringIO]  # console channel -> what it printed
    document: int  # the alerting document


def first_alert(
    db: Database,
    channels: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    now: datetime = T0,
    sources: Sequence[tuple[str, str | None]] = (WIRE,),
    **alerts: Any,
) -> Alerted:
    """A new story's first alert, recorded at ``now`` for ``channels`` (default: console channel "a";
    ``alerts``: more alert settings), with its relay (``consoles``); nothing delivered yet."""
    cfg = alerts_cfg(channels or {"a": {"type": "console"}}, **alerts)
    story, docs = add_story(db)
    alert_id = record(db, cfg, story, docs[0], sources=sources, now=now).alert_id
    assert alert_id is not None
    return Alerted(db, cfg, story, alert_id, *consoles(db, cfg), docs[0])


def slack_digest(url: str, **kw: Any) -> dict[str, Any]:
    """An hourly Slack digest channel posting to ``url``."""
    return {"type": "slack", "url": url, "mode": "digest", "digest": "hourly", "rate_per_second": 100, **kw}


def section_text(slack_body: Mapping[str, Any]) -> str:
    """The text of a Slack message's section blocks, one per line."""
    return "\n".join(b["text"]["text"] for b in slack_body["blocks"] if b["type"] == "section")


# ----------------------------------------------------------------------------- HTTP receiver


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hold: threading.Event | None = None  # answer only once this is set


@dataclass
class Seen:
    path: str
    headers: Mapping[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A local HTTP endpoint answering POSTs from ``script`` (then ``default``)."""

    def __init__(self, script: Sequence[Reply] = (), default: Reply | None = None) -> None:
        self.script = list(script)
        self.default = default or Reply()
        self.requests: list[Seen] = []
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.requests.append(
                        Seen(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                        )
                    )
                    reply = receiver.script.pop(0) if receiver.script else receiver.default
                receiver.arrived.set()
                if reply.hold is not None:
                    reply.hold.wait(30)
                time.sleep(reply.delay)
                try:
                    data = reply.body.encode()
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test) or was killed

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------- SMTP server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SMTPSink:
    """aiosmtpd handler: ``data_replies`` answer DATA in turn (then 250); ``refuse``: address -> reply."""

    def __init__(self, data_replies: Sequence[str] = (), refuse: Mapping[str, str] | None = None) -> None:
        self.data_replies = list(data_replies)
        self.refuse = dict(refuse or {})
        self.messages: list[tuple[tuple[str, ...], EmailMessage]] = []
        self.attempts = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        self.messages.append((tuple(envelope.rcpt_tos), msg))
        return "250 Message accepted"


@contextmanager
def smtp_server(sink: SMTPSink) -> Iterator[int]:
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port
    finally:
        ctl.stop()
