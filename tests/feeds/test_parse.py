"""crawler.feeds.parse: golden feeds in tests/data/feeds/, hostile XML, identities, dates, hints, paging links."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer

from crawler.errors import ParseError
from crawler.feeds import parse_feed, screen_declarations
from crawler.types import ParsedFeed

FEEDS = Path(__file__).parents[1] / "data" / "feeds"
URL = "https://host.example.com/dir/feed.xml"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# ------------------------------------------------------------------ I/O guard (audit hook, never removed)
_IO_EVENTS: list[tuple[str, str]] | None = None
_PY_DIRS = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _IO_EVENTS is None:
        return
    if event.startswith("socket.") or event.startswith("urllib."):
        _IO_EVENTS.append((event, repr(args)[:200]))
    elif event == "open" and args and isinstance(args[0], str | bytes):
        path = args[0] if isinstance(args[0], str) else args[0].decode("utf-8", "replace")
        if not path.startswith(_PY_DIRS):  # lazy imports of codecs/modules are fine
            _IO_EVENTS.append((event, path))


sys.addaudithook(_audit)


@contextmanager
def no_io() -> Iterator[list[tuple[str, str]]]:
    """Record every file opened outside the Python installation and every socket/urllib use."""
    global _IO_EVENTS
    events: list[tuple[str, str]] = []
    _IO_EVENTS = events
    try:
        yield events
    finally:
        _IO_EVENTS = None


def parse(body: bytes, **kwargs: Any) -> ParsedFeed:
    kwargs.setdefault("url", URL)
    kwargs.setdefault("now", NOW)
    with no_io() as events:
        feed = parse_feed(body, **kwargs)
    assert events == [], f"parse_feed did I/O: {events}"
    return feed


def golden(name: str, **kwargs: Any) -> ParsedFeed:
    return parse((FEEDS / name).read_bytes(), **kwargs)


def all_text(feed: ParsedFeed) -> str:
    parts = [feed.title, *feed.warnings]
    for e in feed.entries:
        parts += [e.entry_id, e.link or "", e.title, e.summary, e.author or ""]
    return "\n".join(parts)


# ------------------------------------------------------------------ formats


def test_rss091_latin1_without_guids_gets_hash_ids() -> None:
    feed = golden("rss091.xml", headers={"Content-Type": "application/rss+xml"})
    assert feed.title == "Wire Desk 0.91"
    assert feed.link == "http://wire.example.com/"
    first, second = feed.entries
    assert first.title == "Café chips: Meituan's LongCat-2.0 trained at home"  # ISO-8859-1 byte decoded
    assert first.summary.endswith("Naïve estimates differ.")
    assert first.entry_id.startswith("h:") and second.entry_id.startswith("h:")
    assert first.entry_id != second.entry_id
    assert first.published is None
    assert not any("DOCTYPE" in w for w in feed.warnings)  # an external DTD id alone is not a warning


def test_rss10_rdf() -> None:
    feed = golden("rss10.rdf")
    assert feed.title == "cs.CL updates"
    assert [e.entry_id for e in feed.entries] == [
        "https://arxiv.example.org/abs/2611.00001",
        "https://arxiv.example.org/abs/2611.00002",
    ]
    first = feed.entries[0]
    assert first.published == datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # +08:00 converted to UTC
    assert first.published is not None and first.published.utcoffset() is not None
    assert first.author == "A. Author, B. Author"
    assert feed.hints.update_period_seconds == 86400 / 4


def test_rss20_fields() -> None:
    feed = golden("rss20.xml")
    assert feed.title == "Tech News – AI"
    a, b = feed.entries
    assert a.entry_id == "news-example-1001"
    assert a.link == "https://news.example.com/ai/longcat-2-weights"
    assert a.summary == "Meituan released LongCat-2.0 and its weights."  # description, as plain text
    assert a.published == datetime(2026, 11, 23, 1, 30, tzinfo=UTC)
    assert a.author == "Jane Reporter"
    assert b.entry_id == b.link == "https://news.example.com/ai/who-made-the-chips"
    assert b.author == "desk@news.example.com (AI Desk)"
    assert feed.warnings == ()


def test_atom10_with_xml_base() -> None:
    feed = golden("atom10.xml")
    assert feed.title == "Release notes from LongCat"
    assert feed.link == "https://github.example.com/longcat/releases"
    a, b = feed.entries
    assert a.entry_id == "tag:github.example.com,2008:Repository/1/v2.0.1"
    assert a.link == "https://github.example.com/longcat/releases/tag/v2.0.1"
    assert a.published == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # published wins over updated
    assert a.summary == "Fixes HCCL timeout memory"  # content used when there is no summary
    assert a.author == "longcat-bot"
    assert b.title == "v2.0.0 initial"  # xhtml title
    assert b.summary == "First release"  # block elements become spaces
    assert b.published == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # updated when no published


def test_atom03() -> None:
    feed = golden("atom03.xml")
    assert feed.title == "Old <Atom> 0.3 blog"
    (entry,) = feed.entries
    assert entry.entry_id == "tag:blog.example.net,2026:1"
    assert entry.link == "http://blog.example.net/2026/11/atom03"
    assert entry.summary == "Escaped HTML content"
    assert entry.published == datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
    assert entry.author == "Blogger"


def test_jsonfeed() -> None:
    feed = golden("jsonfeed.json", headers={"content-type": "application/feed+json"})
    assert feed.title == "JSON & Feed"
    assert feed.link == "https://json.example.com/"
    assert feed.archive_links == {
        "self": "https://json.example.com/feed.json",
        "next": "https://host.example.com/dir/feed.json?page=2",
    }
    first, second, third = feed.entries
    assert (first.entry_id, first.link) == ("j-1", "https://host.example.com/posts/1")
    assert first.summary == "Hello world" and "JSONSCRIPT" not in all_text(feed)
    assert first.published == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert first.author == "Ann, Bob"
    assert (second.entry_id, second.summary, second.author) == ("2", "The summary wins", "Legacy Author")
    assert third.entry_id.startswith("h:") and third.published is None  # 1969: absurd
    assert any("duplicate entry id 'j-1'" in w for w in feed.warnings)
    assert any("not an object" in w for w in feed.warnings)


# ------------------------------------------------------------------ not a feed


def test_ill_formed_feed_still_yields_entries_with_warning() -> None:
    feed = golden("illformed.xml")
    assert [e.entry_id for e in feed.entries] == ["broken-1", "broken-2"]
    assert feed.entries[0].link == "https://broken.example.com/a?x=1&y=2"
    assert feed.entries[0].summary == "Mismatched tags everywhere"
    assert any(w.startswith("ill-formed feed:") and "not well-formed" in w for w in feed.warnings)


def test_html_served_as_feed_raises() -> None:
    body = (FEEDS / "html_page.html").read_bytes()
    with pytest.raises(ParseError, match="not a feed: looks like HTML") as info:
        parse(body, headers={"content-type": "application/rss+xml"}, source_id="tech-news")
    assert info.value.source_id == "tech-news" and info.value.url == URL
    assert "[tech-news]" in str(info.value)


@pytest.mark.parametrize("body", [b"", b"   \r\n\t  "])
def test_empty_body_raises(body: bytes) -> None:
    with pytest.raises(ParseError, match="not a feed: empty body"):
        parse(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00\x01\x02 binary garbage \xff\xfe", "no RSS, Atom or RDF"),
        (b"Just some plain text, no markup at all.", "no RSS, Atom or RDF"),
        (b"<?xml version='1.0'?><catalog><book>x</book></catalog>", "no RSS, Atom or RDF"),
        (b'{"name": "not a feed", "items": []}', "without a jsonfeed.org version"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "invalid JSON"),
        (b'{"a":' * 100_000, "invalid JSON"),  # nesting deep enough to hit the recursion limit
        (b'{"version": "https://jsonfeed.org/version/1", "items": []}', "no title and no items"),
    ],
)
def test_not_a_feed_raises(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(body)


def test_feed_with_title_and_no_entries_is_empty_not_an_error() -> None:
    feed = parse(b'<rss version="2.0"><channel><title>Quiet</title></channel></rss>')
    assert (feed.title, feed.entries) == ("Quiet", ())


def test_body_over_the_cap_is_refused() -> None:
    body = (FEEDS / "rss20.xml").read_bytes()
    with pytest.raises(ParseError, match="over the 1000-byte cap"):
        parse(body, max_bytes=1000)
    assert parse(body, max_bytes=len(body)).entries


# ------------------------------------------------------------------ identity


def test_missing_guids_give_stable_distinct_hash_ids() -> None:
    body = (FEEDS / "no_guids.xml").read_bytes()
    first, again = parse(body), parse(body, url="https://mirror.example.org/other/path.rss")
    ids = [e.entry_id for e in first.entries]
    assert ids == [e.entry_id for e in again.entries]  # stable across parses and feed URLs
    assert len(ids) == len(set(ids)) == 5  # same link, other title -> other id; blank guid -> hash
    assert all(i.startswith("h:") and len(i) == 42 for i in ids)
    # The id depends on link + title only: the same item in another feed document has the same id.
    moved = body.replace(
        b"<item><title>First story", b"<item><description>new</description><title>First story"
    )
    assert parse(moved).entries[0].entry_id == ids[0]
    assert first.entries[3].link is None and first.entries[3].summary == "Only a title."


def test_guid_is_kept_verbatim_not_resolved_against_the_feed_url() -> None:
    body = (FEEDS / "hints.xml").read_bytes()  # <guid>h-1</guid>, isPermaLink defaults to true
    for url in (URL, "http://elsewhere.example.net/x/y.xml"):
        (entry,) = parse(body, url=url).entries
        assert entry.entry_id == "h-1"
        assert entry.link is None  # "h-1" is no URL, so it is no permalink either


def test_duplicate_guids_keep_the_first_and_warn() -> None:
    feed = golden("dup_guids.xml")
    assert [(e.entry_id, e.title) for e in feed.entries] == [
        ("same-guid", "Original"),
        ("other-guid", "Other"),
    ]
    assert "duplicate entry id 'same-guid': kept the first" in feed.warnings


def test_absent_and_absurd_dates_become_none_with_warnings() -> None:
    feed = golden("dates.xml")
    dates = {e.entry_id: e.published for e in feed.entries}
    assert dates["good"] == datetime(2026, 11, 20, 19, 0, tzinfo=UTC)
    assert dates["dc-only"] == datetime(2026, 11, 19, 10, 0, tzinfo=UTC)
    assert dates["tomorrow"] == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # within the 2-day slack
    assert dates["none"] is dates["epoch"] is dates["future"] is dates["garbage"] is None
    assert any("'epoch': absurd date 1970-01-01" in w for w in feed.warnings)
    assert any("'future': absurd date 2999-01-01" in w for w in feed.warnings)
    assert "4 of 7 entries have no usable date" in feed.warnings
    # "now" moves the future bound: seen from 2026-11-20 the 24th is too far ahead.
    earlier = golden("dates.xml", now=datetime(2026, 11, 20, tzinfo=UTC))
    assert {e.entry_id: e.published for e in earlier.entries}["tomorrow"] is None


# ------------------------------------------------------------------ hostile XML


def test_xxe_file_entity_reads_nothing() -> None:
    feed = golden("xxe_file.xml")
    text = all_text(feed)
    assert "root:" not in text and "/bin/" not in text
    assert feed.title == "XXE fine"  # the safe internal entity still works
    assert feed.entries[0].entry_id == "xxe-1"
    assert any("removed 2 unsafe entity declaration" in w for w in feed.warnings)


def test_xxe_http_entities_and_external_dtd_open_no_connection(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/entity").respond_with_data("LEAKED-ENTITY")
    httpserver.expect_request("/parameter.dtd").respond_with_data('<!ENTITY fromdtd "LEAKED-DTD">')
    httpserver.expect_request("/external.dtd").respond_with_data('<!ENTITY fromdtd "LEAKED-EXT">')
    server = f"{httpserver.host}:{httpserver.port}"
    body = (FEEDS / "xxe_http.xml").read_bytes().replace(b"@SERVER@", server.encode())
    for encoding in ("utf-8", "utf-16"):
        data = body if encoding == "utf-8" else body.decode().replace("utf-8", "utf-16").encode("utf-16")
        feed = parse(data)  # the audit-hook guard inside parse() also fails on any socket use
        assert feed.entries[0].entry_id == "xxe-http-1"
        assert "LEAKED" not in all_text(feed)
    assert httpserver.log == []


@pytest.mark.parametrize("system_id", ["file:///etc/passwd", "/etc/passwd", "../../../../etc/passwd"])
def test_external_dtd_system_id_is_never_opened(system_id: str) -> None:
    # feedparser issue #107: a DOCTYPE system id was stat()ed/opened; parse()'s guard fails on any open.
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "{system_id}">\n<rss version="2.0"><channel>'
        "<title>DTD</title><item><guid>d</guid><title>&nbsp;x</title></item></channel></rss>"
    ).encode()
    feed = parse(body)
    assert feed.entries[0].entry_id == "d" and "root:" not in all_text(feed)


def test_one_line_doctype_is_screened_too() -> None:
    feed = golden("xxe_oneline.xml")
    assert feed.title == "One line kept"  # single-quoted safe entity kept
    assert "root:" not in all_text(feed)
    assert "@" * 300 not in all_text(feed)  # over the 256-byte value limit: dropped
    assert any("removed 2 unsafe entity declaration" in w for w in feed.warnings)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_billion_laughs_ends_fast_with_bounded_memory(encoding: str) -> None:
    text = (FEEDS / "billion_laughs.xml").read_text()
    body = text.replace('encoding="utf-8"', f'encoding="{encoding}"').encode(encoding)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        feed = parse(body)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 20 * 2**20
    assert feed.entries[0].entry_id == "lol-1"
    assert "lollollol" not in all_text(feed)
    assert any("removed 9 unsafe entity declaration" in w for w in feed.warnings)


def test_quadratic_blowup_is_refused_by_the_expansion_budget() -> None:
    value = "x" * 200  # a "safe" entity by shape, referenced 6,000 times: 1.2 MB of expansion
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "{value}">\n]>\n<rss version="2.0"><channel>'
        f"<title>Q</title><item><guid>q</guid><description>{'&a;' * 6_000}</description></item>"
        "</channel></rss>"
    ).encode()
    tracemalloc.start()
    try:
        feed = parse(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert value not in feed.entries[0].summary
    assert peak < 50 * 2**20
    assert any("could expand past" in w for w in feed.warnings)
    # The same entity used a few times stays within budget and is expanded.
    small = body.replace(b"&a;" * 6_000, b"&a;&a;")
    assert parse(small).entries[0].summary == value * 2


def test_entity_declarations_outside_or_after_a_doctype_are_removed() -> None:
    big = "y" * 250
    body = (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY ok "fine">\n]>\n'
        f'<!ENTITY big "{big}">\n<!DOCTYPE again [\n<!ENTITY big2 "{big}">\n]>\n'
        f'<rss version="2.0"><channel><title>T &ok;</title><item><guid>s</guid>'
        f"<description>{'&big;&big2;' * 5000}</description></item></channel></rss>"
    ).encode()
    feed = parse(body)
    assert big not in all_text(feed)
    assert feed.entries[0].entry_id == "s"


def test_unterminated_doctype_is_cut_at_the_first_start_tag() -> None:
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "'
        + b"z" * 100
        + b'">\n<!ENTITY x SYSTEM "file:///etc/passwd'
        b'\n<rss version="2.0"><channel><title>Cut</title><item><guid>u</guid><title>&a; &x;</title></item>'
        b"</channel></rss>"
    )
    feed = parse(body)
    assert [e.entry_id for e in feed.entries] == ["u"]
    assert "root:" not in all_text(feed)


def test_prolog_scan_skips_comments_but_not_what_follows_them() -> None:
    body = (
        "<!-- a <b>comment</b> that mentions <!DOCTYPE html> -->\n"
        f'<!DOCTYPE rss [\n<!ENTITY big "{"x" * 200}">\n]>\n'
        '<rss version="2.0"><channel><title>C</title><item><guid>c</guid>'
        f"<title><![CDATA[ <!DOCTYPE ]]></title><description>{'&big;' * 6_000}</description></item>"
        "</channel></rss>"
    ).encode()
    feed = parse(body)
    (entry,) = feed.entries
    assert entry.title == "<!DOCTYPE"  # a DOCTYPE inside CDATA is text, not screened
    assert "x" * 200 not in entry.summary  # the DOCTYPE after the comment was screened
    assert any("could expand past" in w for w in feed.warnings)


@pytest.mark.parametrize(
    "prolog",
    [
        b"<!--" * 200_000,
        b"<?" * 200_000,
        b"<!DOCTYPE rss [" + b"<!--" * 200_000,
        b"<!DOCTYPE rss [" + b"'" * 200_001,
    ],
    ids=["unclosed-comments", "unclosed-pis", "doctype-comments", "doctype-quotes"],
)
def test_pathological_prologs_are_scanned_in_linear_time(prolog: bytes) -> None:
    body = (
        prolog + b'\n<rss version="2.0"><channel><title>P</title><item><guid>p</guid></item></channel></rss>'
    )
    started = time.perf_counter()
    with contextlib.suppress(ParseError):  # refusing is fine; hanging or crashing is not
        parse(body)
    assert time.perf_counter() - started < 2.0


def test_safe_internal_entity_is_expanded() -> None:
    body = (
        b'<!DOCTYPE rss [\n  <!ENTITY id "tag:example.com,">\n  <!ENTITY copy "&#169;">\n]>\n'
        b'<rss version="2.0"><channel><title>&copy; Safe</title><item>'
        b'<guid isPermaLink="false">&id;2006:/blog/</guid></item></channel></rss>'
    )
    feed = parse(body)
    assert feed.title == "© Safe"
    assert feed.entries[0].entry_id == "tag:example.com,2006:/blog/"
    assert not any("ill-formed" in w or "DOCTYPE" in w for w in feed.warnings)


def test_screen_rebuilds_the_doctype_with_safe_entities_only() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "x"><!ENTITY b SYSTEM "f">'
        b'<!ATTLIST r v CDATA "&a;">]><r/>'
    )
    screened, warnings = screen_declarations(body)
    assert screened == b'<?xml version="1.0"?>\n<!DOCTYPE feed [\n<!ENTITY a "x">\n]><r/>'
    assert len(warnings) == 1 and warnings[0].startswith("DOCTYPE: removed 1 unsafe entity declaration")
    assert screen_declarations(screened) == (screened, ())  # a screened prolog passes unchanged
    plain = (FEEDS / "rss20.xml").read_bytes()
    assert screen_declarations(plain)[0] is plain  # no declarations: the same object, no copy


# ------------------------------------------------------------------ hints and links


def test_ttl_and_sy_update_hints() -> None:
    feed = golden("hints.xml")
    assert feed.hints.ttl_seconds == 45 * 60
    assert feed.hints.update_period_seconds == 3600 / 4


def test_bad_hints_are_ignored_with_warnings() -> None:
    body = (
        (FEEDS / "hints.xml")
        .read_bytes()
        .replace(b"<ttl>45", b"<ttl>soon")
        .replace(b">hourly<", b">fortnightly<")
    )
    feed = parse(body)
    assert (feed.hints.ttl_seconds, feed.hints.update_period_seconds) == (None, None)
    assert any("ttl 'soon'" in w for w in feed.warnings)
    assert any("'fortnightly'" in w for w in feed.warnings)
    no_hints = golden("rss20.xml").hints
    assert (no_hints.ttl_seconds, no_hints.update_period_seconds) == (None, None)


def test_rfc5005_archive_links() -> None:
    feed = golden("archive.xml", url="https://archive.example.org/feeds/2026-10.atom")
    assert feed.archive_links == {
        "current": "https://archive.example.org/feed.atom",
        "self": "https://archive.example.org/feeds/2026-10.atom",
        "prev-archive": "https://archive.example.org/feeds/2026-09.atom",  # first of two wins
        "next-archive": "https://archive.example.org/feeds/2026-11.atom",
    }  # rel="alternate" is not paging; the javascript: "first" link is dropped
    assert feed.entries[0].link == "https://archive.example.org/2026/10/entry"


def test_atom_links_inside_rss_give_paging() -> None:
    links = golden("rss20.xml").archive_links
    assert links == {
        "self": "https://news.example.com/ai/feed/",
        "next": "https://news.example.com/ai/feed/?page=2",
    }


def test_relative_links_resolved_against_feed_url_and_content_location() -> None:
    feed = golden("relative_links.xml")
    links = {e.entry_id: e.link for e in feed.entries}
    assert feed.link == "https://host.example.com/blog/"
    assert links["r-1"] == "https://host.example.com/blog/2026/root-relative"
    assert links["r-2"] == "https://host.example.com/dir/posts/path-relative.html"
    assert links["r-3"] == "https://host.example.com/elsewhere/up.html"
    assert links["r-4"] == "https://other.example.org/abs"
    assert links["r-5"] is None  # javascript: never becomes a link
    assert any("'javascript:alert(document.cookie)' is not http(s)" in w for w in feed.warnings)
    moved = golden("relative_links.xml", headers={"Content-Location": "/moved/here.xml"})
    assert {e.entry_id: e.link for e in moved.entries}[
        "r-2"
    ] == "https://host.example.com/moved/posts/path-relative.html"


# ------------------------------------------------------------------ text


def test_html_in_titles_is_stripped_and_entities_unescaped() -> None:
    feed = golden("html_titles.xml")
    assert feed.title == "Titles with HTML"
    titles = [e.title for e in feed.entries]
    assert titles == ["LongCat 2.0: a first look", "Café & ‘chips’", "Tom & Jerry — 5 < 6"]
    assert feed.entries[2].summary == "Heading Para one line two a b"
    assert "\xa0" not in feed.entries[2].summary


def test_scripts_event_handlers_and_css_never_reach_the_text() -> None:
    feed = golden("scripts.xml")
    text = all_text(feed)
    for needle in (
        "SCRIPTTEXT",
        "ONERROR",
        "alert",
        "steal",
        "CSSTEXT",
        "color",
        "JSLINK",
        "SVGSCRIPT",
        "NOSCRIPT",
    ):
        assert needle not in text, needle
    first, second = feed.entries
    assert feed.title == "Hostile content"
    assert first.title == "Hello world"
    assert first.summary.startswith("Visible text") and first.summary.endswith("tail")
    assert second.summary == "Safe words"  # content:encoded used when there is no description


def test_plain_text_that_looks_like_markup_is_treated_as_html() -> None:
    (entry,) = golden("atom_text_markup.xml").entries
    assert entry.title == "Plain title"
    assert entry.summary == "5 < 6 and 7 > 3, AT&T"
    assert entry.link is None  # the Atom id is a URN, not a link


def test_charset_from_content_type_header() -> None:
    xml = '<rss version="2.0"><channel><title>Café – naïve</title><item><guid>c</guid></item></channel></rss>'
    declared = parse(xml.encode("cp1252"), headers={"Content-Type": "application/xml; charset=windows-1252"})
    assert declared.title == "Café – naïve"
    undeclared = parse(xml.encode("cp1252"))  # invalid UTF-8: falls back, readable, with a warning
    assert undeclared.title == "Café – naïve"
    assert any(w.startswith("encoding:") for w in undeclared.warnings)


def test_jsonfeed_with_bad_field_types_does_not_crash() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": ["not", "a", "string"],
        "items": [
            {"id": True, "title": 5, "url": {"x": 1}, "date_published": "yesterday", "authors": "x"},
            {
                "id": "s",
                "title": "lone \ud800surrogate\u0000 and NUL",
                "date_published": "2026-11-20T10:00:00",
            },
        ],
    }
    feed = parse(json.dumps(doc).encode())
    entry, odd = feed.entries
    assert entry.entry_id.startswith("h:") and entry.link is None and entry.published is None
    assert feed.title == ""
    assert odd.title == "lone surrogate and NUL"  # storable text: no lone surrogates, no control characters
    assert odd.published == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # naive timestamps are taken as UTC
    naive_now = parse(json.dumps(doc).encode(), now=datetime(2026, 11, 23, 12, 0))
    assert naive_now.entries[1].published == odd.published


@pytest.mark.parametrize(
    "body",
    [
        b'<rss version="2.0"><channel><title>x &#x110000;</title><item><guid>1</guid></item></channel></rss>',
        b'<?xml version="1.0" encoding="\xb3"?><rss version="2.0"><channel><title>x</title></channel></rss>',
    ],
    ids=["charref-out-of-range", "undecodable-encoding-name"],
)
def test_feedparser_crashes_become_parse_errors(body: bytes) -> None:
    with pytest.raises(ParseError, match="feedparser failed on this body") as info:
        parse(body, source_id="fuzzed")
    assert info.value.source_id == "fuzzed" and info.value.__cause__ is not None


_TOKENS = [
    b"<rss version='2.0'>",
    b"<channel>",
    b"<item>",
    b"</item>",
    b"<title>",
    b"</title>",
    b"<guid>",
    b"</guid>",
    b"<link>",
    b"</link>",
    b"<feed xmlns='http://www.w3.org/2005/Atom'>",
    b"<entry>",
    b"<!DOCTYPE x [",
    b"<!ENTITY a 'b'>",
    b"<!ENTITY % p SYSTEM 'file:///etc/passwd'>",
    b"]>",
    b"&a;",
    b"&#0;",
    b"&amp;",
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b"<?xml version='1.0' encoding='utf-16'?>",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"{",
    b'"version": "https://jsonfeed.org/version/1"',
    b"javascript:x",
    b"http://[::1",
    b"<script>",
    b"text",
    b" ",
]


@given(st.lists(st.sampled_from(_TOKENS) | st.binary(max_size=8), max_size=40))
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bodies_return_or_raise_parse_error(chunks: list[bytes]) -> None:
    body = b"".join(chunks)
    try:
        feed = parse_feed(body, url=URL, now=NOW)
    except ParseError:
        return
    assert feed == parse_feed(body, url=URL, now=NOW)  # pure: same bytes, same result
    assert all(e.link is None or e.link.startswith(("http://", "https://")) for e in feed.entries)
