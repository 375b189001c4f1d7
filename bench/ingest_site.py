"""The site bench/ingest.py reads: F feeds x E article pages, served by a small asyncio HTTP/1.1 server.

Texts: sentences of the Article Extraction Benchmark ground truth (../shared/corpora/aeb-dev), shuffled
into distinct articles (each a random draw of 20-30 sentences, so two articles share almost no 5-word
shingle), with a LongCat story paragraph (../shared/story/dev_cases.jsonl) in about 1 article in 100
so the rules fire and alerts are recorded. Without ../shared, synthetic sentences are used.
Pages are realistic news pages (tests.sitekit.article_page: cookie banner, navigation, share bar,
related list, comments, footer, script), 5-8 KB each.

The server (``serve`` in its own process) answers GET with keep-alive, sends ETag and Last-Modified and
answers a matching If-None-Match with 304. Every response is built once before the server reports
ready, so serving costs one dict lookup and one write. ``GET /__stats`` returns request counters
(JSON) and ``GET /__reset`` clears them.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from multiprocessing.connection import Connection
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.sitekit import article_page, rss  # noqa: E402

SHARED = REPO.parent / "shared"
AEB_TRUTH = SHARED / "corpora" / "aeb-dev" / "ground-truth.json"
STORY_CASES = SHARED / "story" / "dev_cases.jsonl"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“])")
LONGCAT_EVERY = 97  # one article in this many carries a LongCat paragraph
LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


@dataclass(frozen=True)
class Corpus:
    sentences: tuple[str, ...]
    story: tuple[tuple[str, str], ...]  # (title, text) of LongCat story cases
    origin: str  # "aeb-dev" or "synthetic"


def load_corpus() -> Corpus:
    story: tuple[tuple[str, str], ...] = ()
    if STORY_CASES.exists():
        rows = [json.loads(line) for line in STORY_CASES.read_text("utf-8").splitlines() if line.strip()]
        story = tuple((r["title"], r["text"]) for r in rows if r.get("text"))
    if AEB_TRUTH.exists():
        truth = json.loads(AEB_TRUTH.read_text("utf-8"))
        pool = [
            s.strip()
            for t in truth.values()
            for para in t["articleBody"].split("\n")
            for s in _SENTENCE.split(para)
        ]
        sentences = tuple(dict.fromkeys(s for s in pool if 50 <= len(s) <= 320))
        return Corpus(sentences, story, "aeb-dev")
    return Corpus(_synthetic_sentences(), story, "synthetic")


def _synthetic_sentences(n: int = 4000) -> tuple[str, ...]:
    rng = random.Random(7)
    words = (
        "market",
        "officials",
        "company",
        "report",
        "growth",
        "network",
        "energy",
        "court",
        "city",
        "council",
        "budget",
        "players",
        "season",
        "research",
        "climate",
        "policy",
        "investors",
        "data",
        "service",
        "election",
        "hospital",
        "school",
        "prices",
        "workers",
        "industry",
        "software",
    )
    out = []
    for i in range(n):
        body = " ".join(rng.choice(words) for _ in range(rng.randint(12, 30)))
        out.append(f"Item {i}: the {body} said on Tuesday.".capitalize())
    return tuple(out)


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[str, ...]
    summary: str


def make_article(corpus: Corpus, feed: int, entry: int) -> Article:
    rng = random.Random(feed * 1_000_003 + entry)
    picked = rng.sample(corpus.sentences, rng.randint(20, 30))
    title = " ".join(picked[0].split()[: rng.randint(6, 11)]).rstrip(",.;:")
    lead = f"LONDON, Nov {1 + (feed + entry) % 28} (Bench Wire {feed}-{entry}) - {picked[0]}"
    paras = [lead] + [" ".join(picked[i : i + 3]) for i in range(1, len(picked), 3)]
    if corpus.story and (feed * 31 + entry) % LONGCAT_EVERY == 0:
        story_title, story_text = corpus.story[(feed + entry) % len(corpus.story)]
        title = f"{story_title} ({feed}-{entry})"
        paras.insert(1, story_text)
    return Article(title, tuple(paras), picked[0][:200])


def feed_path(feed: int) -> str:
    return f"/feeds/{feed}.xml"


def article_path(feed: int, entry: int) -> str:
    return f"/a/{feed}/{entry}.html"


def site_pages(corpus: Corpus, base: str, feeds: int, entries: int) -> Iterator[tuple[str, str, bytes]]:
    """(path, content type, body) of every page: robots.txt, the feeds and their articles."""
    yield "/robots.txt", "text/plain", b"User-agent: *\nDisallow: /private/\n"
    for f in range(feeds):
        items = []
        for e in range(entries):
            art = make_article(corpus, f, e)
            url = base + article_path(f, e)
            day = formatdate(1_763_600_000 + f * 60 + e * 3600, usegmt=True)
            items.append(
                {"title": art.title, "link": url, "guid": url, "description": art.summary, "pubDate": day}
            )
            page = article_page(art.title, list(art.paragraphs), canonical=url, author=f"Reporter {f % 50}")
            yield article_path(f, e), "text/html; charset=utf-8", page.encode()
        yield feed_path(f), "application/rss+xml", rss(items, title=f"Bench feed {f}").encode()


# --------------------------------------------------------------------------- the server


class _Routes:
    def __init__(self) -> None:
        self.full: dict[bytes, tuple[bytes, bytes]] = {}  # path -> (etag, whole 200 response)
        self.stats: Counter[str] = Counter()

    def add(self, path: str, content_type: str, body: bytes, etag: str) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f'ETag: "{etag}"\r\nLast-Modified: {LAST_MODIFIED}\r\nCache-Control: max-age=60\r\n\r\n'
        )
        self.full[path.encode()] = (f'"{etag}"'.encode(), head.encode() + body)

    def answer(self, target: bytes, inm: bytes | None) -> bytes:
        path = target.split(b"?", 1)[0]
        if path == b"/__stats":
            return _plain(200, json.dumps(self.stats).encode())
        if path == b"/__reset":
            self.stats.clear()
            return _plain(200, b"ok")
        route = self.full.get(path)
        kind = "feed" if path.startswith(b"/feeds/") else "article" if path.startswith(b"/a/") else "other"
        if route is None:
            self.stats[f"{kind} 404"] += 1
            return _plain(404, b"not found")
        etag, response = route
        if inm is not None and inm == etag:
            self.stats[f"{kind} 304"] += 1
            return (
                f"HTTP/1.1 304 Not Modified\r\nETag: {etag.decode()}\r\n"
                f"Last-Modified: {LAST_MODIFIED}\r\n\r\n"
            ).encode()
        self.stats[f"{kind} 200"] += 1
        return response


def _plain(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found", 400: "Bad Request"}[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class _Http(asyncio.Protocol):
    """HTTP/1.1 GET with keep-alive (requests without bodies; pipelining answered in order)."""

    def __init__(self, routes: _Routes) -> None:
        self.routes = routes
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            self._respond(head)

    def _respond(self, head: bytes) -> None:
        assert self.transport is not None
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            self.transport.write(_plain(400, b"bad request"))
            self.transport.close()
            return
        inm, close = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"if-none-match":
                inm = value.strip()
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        self.transport.write(self.routes.answer(parts[1], inm))
        if close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve(feeds: int, entries: int, ready: Connection) -> None:
    """Process entry point: build every page, send (port, pages, bytes, corpus origin), serve forever."""
    asyncio.run(_serve(feeds, entries, ready))


async def _serve(feeds: int, entries: int, ready: Connection) -> None:
    routes = _Routes()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(routes), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    corpus = load_corpus()
    total = 0
    for i, (path, ctype, body) in enumerate(site_pages(corpus, f"http://127.0.0.1:{port}", feeds, entries)):
        routes.add(path, ctype, body, etag=f"v1-{i}")
        total += len(body) if path.startswith("/a/") else 0
    ready.send((port, len(routes.full), total, corpus.origin))
    async with server:
        await server.serve_forever()
