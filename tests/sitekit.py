"""A real local web site for tests: routes, conditional GET, redirects, and a request log."""

from __future__ import annotations

import hashlib
import html
import sys
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass
class Route:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    conditional: bool = True  # answer 304 to a matching If-None-Match


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hung up (a fetch deadline or size cap under test) is not a server fault; printed,
        # it lands in whatever stderr a LATER test captures (its handler thread outlives shutdown)
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class Hit:
    path: str
    status: int
    headers: dict[str, str]


class Served:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) served from a daemon thread while the
    ``with`` block runs; ``Site`` and ``tests.scalekit.LoggingSite`` build on it."""

    def _serve_from(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


class Site(Served):
    """``with Site() as site: site.add('/feed', xml, 'application/rss+xml'); site.url('/feed')``"""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                site._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._serve_from(_Server(("127.0.0.1", 0), Handler))

    def url(self, path: str) -> str:
        return self.base + path

    def add(
        self, path: str, body: str | bytes, content_type: str = "text/html; charset=utf-8", **kw: Any
    ) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        with self._lock:
            self.routes[path] = Route(data, content_type, **kw)
        return self.url(path)

    def redirect(self, path: str, target: str, status: int = 302) -> str:
        with self._lock:
            self.routes[path] = Route(b"", status=status, headers={"Location": target}, conditional=False)
        return self.url(path)

    def requests_to(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def statuses(self) -> list[int]:
        with self._lock:
            return [h.status for h in self.hits]

    def clear_log(self) -> None:
        with self._lock:
            self.hits.clear()

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?", 1)[0]
        with self._lock:
            route = self.routes.get(req.path) or self.routes.get(path)
        headers = {k.lower(): v for k, v in req.headers.items()}
        if route is None:
            self._send(req, 404, b"not found", {"Content-Type": "text/plain"}, headers)
            return
        etag = '"' + hashlib.sha1(route.body).hexdigest()[:16] + '"'
        extra = dict(route.headers)
        if route.conditional and route.status == 200:
            extra.setdefault("ETag", etag)
            extra.setdefault("Last-Modified", formatdate(1_700_000_000, usegmt=True))
            if headers.get("if-none-match") == etag:
                self._send(req, 304, b"", extra, headers)
                return
        extra["Content-Type"] = route.content_type
        self._send(req, route.status, route.body, extra, headers)

    def _send(
        self,
        req: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        hdrs: dict[str, str],
        seen: dict[str, str],
    ) -> None:
        with self._lock:
            self.hits.append(Hit(req.path.split("?", 1)[0], status, seen))
        req.send_response(status)
        for k, v in hdrs.items():
            req.send_header(k, v)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


BOILERPLATE_TOP = """
<div class="cookie-banner" id="cookie-consent"><p>We use cookies to improve your experience.
By continuing to browse you agree to our use of cookies. <a href="/privacy">Manage preferences</a></p>
<button>Accept all cookies</button></div>
<header class="site-header"><nav class="main-nav"><ul>
<li><a href="/">Home</a></li><li><a href="/world">World</a></li><li><a href="/business">Business</a></li>
<li><a href="/tech">Technology</a></li><li><a href="/science">Science</a></li><li><a href="/opinion">Opinion</a></li>
</ul></nav><form class="search"><input name="q" placeholder="Search"></form></header>
"""

BOILERPLATE_BOTTOM = """
<div class="share-bar"><a href="#">Share on X</a> <a href="#">Share on Facebook</a> <a href="#">Email</a></div>
<aside class="related-articles"><h3>Related stories</h3><ul>
<li><a href="/a1">Chipmakers race to meet demand for AI accelerators in the coming year</a></li>
<li><a href="/a2">Why investors are betting on the next generation of cloud computing</a></li>
<li><a href="/a3">Five things to know about the new export rules announced this week</a></li>
</ul></aside>
<section class="comments" id="comments"><h3>Comments (3)</h3>
<div class="comment"><p>Great article, thanks for sharing this with all of us here!</p></div>
<div class="comment"><p>I disagree with the premise of this piece entirely, frankly.</p></div></section>
<footer class="site-footer"><p>Copyright 2026 Example Media Group. All rights reserved.</p>
<ul><li><a href="/about">About us</a></li><li><a href="/contact">Contact</a></li><li><a href="/terms">Terms</a></li></ul>
</footer><script>window.dataLayer = [{"event": "pageview"}]; alert('tracking');</script>
"""


def article_page(
    title: str,
    paragraphs: list[str],
    *,
    canonical: str | None = None,
    published: str = "2026-11-20T08:00:00Z",
    author: str = "Staff Reporter",
) -> str:
    """A realistic news page: cookie banner, navigation, share bar, related list, comments, footer."""
    paras = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    canon = f'<link rel="canonical" href="{html.escape(canonical)}">' if canonical else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)} | Example News</title>{canon}
<meta property="og:title" content="{html.escape(title)}">
<meta property="article:published_time" content="{published}">
<meta name="author" content="{html.escape(author)}">
<style>.cookie-banner{{position:fixed}}</style></head><body>
{BOILERPLATE_TOP}
<main><article class="story"><h1>{html.escape(title)}</h1>
<p class="byline">By {html.escape(author)}</p>
<div class="article-body">{paras}</div></article></main>
{BOILERPLATE_BOTTOM}
</body></html>"""


def rss(items: list[dict[str, str]], *, title: str = "Example feed", version: str = "2.0") -> str:
    """RSS 2.0 (or 0.91) with the given items: title, link, guid?, description?, pubDate?"""
    body = []
    for it in items:
        guid = f"<guid>{html.escape(it['guid'])}</guid>" if it.get("guid") else ""
        date = f"<pubDate>{it['pubDate']}</pubDate>" if it.get("pubDate") else ""
        body.append(
            f"<item><title>{html.escape(it['title'])}</title><link>{html.escape(it['link'])}</link>"
            f"{guid}<description>{html.escape(it.get('description', ''))}</description>{date}</item>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="{version}"><channel><title>{title}</title>'
        f"<link>http://example.org/</link><description>d</description>{''.join(body)}</channel></rss>"
    )


def atom(entries: list[dict[str, str]], *, title: str = "Example Atom") -> str:
    body = []
    for e in entries:
        body.append(
            f'<entry><title>{html.escape(e["title"])}</title><link href="{html.escape(e["link"])}"/>'
            f"<id>{html.escape(e.get('id', e['link']))}</id><updated>{e.get('updated', '2026-11-20T08:00:00Z')}</updated>"
            f"<summary>{html.escape(e.get('summary', ''))}</summary></entry>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>{title}</title>'
        f"<id>urn:x</id><updated>2026-11-20T08:00:00Z</updated>{''.join(body)}</feed>"
    )


def rdf(items: list[dict[str, str]], *, title: str = "Example RDF") -> str:
    body = "".join(
        f'<item rdf:about="{html.escape(i["link"])}"><title>{html.escape(i["title"])}</title>'
        f"<link>{html.escape(i['link'])}</link><description>{html.escape(i.get('description', ''))}</description></item>"
        for i in items
    )
    return (
        '<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns="http://purl.org/rss/1.0/"><channel rdf:about="http://example.org/"><title>'
        f"{title}</title><link>http://example.org/</link><description>d</description></channel>{body}</rdf:RDF>"
    )


def page_with_feeds(site: Site, path: str = "/") -> str:
    """A home page announcing three feeds (RSS, Atom, and a comments feed listed first) as
    alternate links, with the feeds served; its URL."""
    site.add(
        "/feed.xml",
        rss([{"title": "a", "link": site.url("/a"), "guid": "a"}], title="Example RSS"),
        "application/rss+xml",
    )
    site.add(
        "/atom.xml",
        atom([{"title": "a", "link": site.url("/a")}], title="Example Atom"),
        "application/atom+xml",
    )
    site.add("/comments.xml", rss([], title="Comments on Example"), "application/rss+xml")
    return site.add(
        path,
        """<!doctype html><html><head><title>Example News</title>
<link rel="alternate" type="application/rss+xml" title="Comments" href="/comments.xml">
<link rel="alternate" type="application/rss+xml" title="Example RSS" href="/feed.xml">
<link rel="alternate" type="application/atom+xml" href="atom.xml">
<link rel="stylesheet" href="/style.css"></head><body><main><p>Home</p></main></body></html>""",
    )
