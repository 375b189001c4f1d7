"""crawler.extract.article: main text and metadata of golden pages, watched regions, charsets, metadata parsing.

Golden pages live in tests/data/extract/ (written for these tests); ``<name>.txt`` beside a page holds
the exact text the extractor must return for it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from crawler.config import validate_selector
from crawler.errors import ConfigError, ParseError, SelectorNotFound
from crawler.extract import decode_html, detect_charset, extract_article, extract_region
from crawler.extract.meta import clean_title, parse_date, read_meta
from crawler.types import Article

DATA = Path(__file__).parents[1] / "data" / "extract"


def page(name: str) -> bytes:
    return (DATA / name).read_bytes()


def expected_text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8").strip()


def paragraphs(article: Article) -> list[str]:
    return article.text.split("\n\n")


# --- golden articles ---------------------------------------------------------------------------


def test_news_article_keeps_the_story_and_drops_every_kind_of_boilerplate() -> None:
    url = "https://circuit.example.com/tech/2026/11/27/longcat-hardware?utm_source=rss"
    article = extract_article(page("news_article.html"), url=url, content_type="text/html; charset=utf-8")
    assert article.text == expected_text("news_article.txt")
    for boilerplate in (
        "cookies",  # cookie banner
        "Technology",  # navigation
        "Share on",  # share bar
        "Advertisement",  # ad slot
        "loadAd",  # script
        "Related stories",  # related list
        "memory wall: what limits",  # related list item
        "HCCL mention gives it away",  # comment
        "Sign up",  # newsletter box
        "All rights reserved",  # footer
        "Image:",  # figure caption
        "font-family",  # style
    ):
        assert boilerplate not in article.text, boilerplate
    assert article.url == url
    assert article.title == "Meituan keeps LongCat-2.0 hardware under wraps"
    assert article.canonical_url == "https://circuit.example.com/tech/2026/11/27/longcat-hardware"
    assert article.published == datetime(2026, 11, 27, 0, 30, tzinfo=UTC)
    assert article.author == "Lin Wei"
    assert article.language == "en-GB"


def test_blog_post_with_sidebar_comments_and_share_widget() -> None:
    url = "https://rechenwerk.example.org/2026/11/notizen-trainingscluster/"
    article = extract_article(page("blog_post.html"), url=url)
    assert article.text == expected_text("blog_post.txt")
    assert "Kommentar" not in article.text and "Teilen" not in article.text
    assert article.title == "Notizen zum Trainingscluster"  # the <h1>; <title> has " – Rechenwerk Blog"
    assert article.canonical_url == url
    assert article.published == datetime(2026, 11, 29, 19, 5, tzinfo=timezone(timedelta(hours=1)))
    assert article.author is None  # no author meta, no JSON-LD
    assert article.language == "de-DE"


def test_jsonld_graph_gives_metadata_and_broken_jsonld_is_ignored() -> None:
    article = extract_article(page("jsonld_graph.html"), url="https://ocr.example.net/hetao/")
    assert article.title == "Hetao team post-trains a 1.6T model on Ascend"
    # the NewsArticle node of the @graph wins over the WebPage node's date
    assert article.published == datetime(2026, 11, 26, 13, 15, tzinfo=UTC)
    assert article.author == "Mara Okafor, Chen Bo"
    assert article.language == "en-us"
    assert article.canonical_url is None
    assert paragraphs(article)[0].startswith("A team at the Shenzhen Hetao Institute")
    assert len(paragraphs(article)) == 3
    assert "Most read" not in article.text and "Subscribe" not in article.text


def test_cp1252_page_without_any_declaration_reads_correctly() -> None:
    body = page("cp1252_undeclared.html")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    article = extract_article(body, url="http://old.example.com/memory.html", content_type="text/html")
    assert article.title == "Café society: the “memory wall” explained"
    assert "The naïve view" in article.text
    assert "model’s weights" in article.text
    assert "€12,000 per card, according to one résumé" in article.text
    assert "\ufffd" not in article.text
    assert "Archive" not in article.text  # the menu cell of the layout table


def test_utf16_page_with_bom() -> None:
    body = page("utf16_bom.html")
    assert body.startswith(b"\xff\xfe")
    article = extract_article(body, url="http://jp.example.com/longcat")
    assert article.title == "長文脱字テスト — UTF-16 page"
    assert paragraphs(article)[0].startswith("美団はLongCat-2.0の重みを公開したが")
    assert "with café and naïve" in article.text
    assert "ホーム" not in article.text  # navigation
    assert article.language == "ja"


def test_article_in_divs_with_br_paragraphs() -> None:
    article = extract_article(page("div_br.html"), url="http://notes.example.com/cluster-room.html")
    assert article.title == "Field notes from the cluster room"
    assert paragraphs(article) == [
        "The first thing you notice in a room with thousands of accelerator cards is the noise, a steady "
        "roar that makes conversation impossible without headsets.",
        "The second thing is the cabling. Every card talks to its neighbours over a high-speed interconnect, "
        "and the layout of those links decides how well the training run scales beyond a single rack.",
        "Operators told me that the hardest part of a long run is not the hardware failing, which happens "
        "every day, but restarting from a checkpoint quickly enough that the cluster does not sit idle for "
        "hours.",
        "They keep a spare pool of cards for exactly that reason.",
    ]


def test_misnamed_layout_wrapper_does_not_hide_the_article() -> None:
    prose = "".join(
        f"<p>Paragraph {i} of the story, long enough to count as real prose for the scorer.</p>"
        for i in range(8)
    )
    html = f"""<html><body><div class="ad-margins has-sidebar"><div class="story-text">{prose}</div>
        <div class="sidebar"><a href="/1">Other story one</a><a href="/2">Other story two</a></div></div>
        <div class="teaser"><p>A short teaser outside the wrapper that must not win.</p></div>
        </body></html>"""
    article = extract_article(html.encode(), url="http://x.example/")
    assert len(paragraphs(article)) == 8
    assert "Other story" not in article.text


def test_comment_thread_is_not_taken_for_a_wrapper() -> None:
    story = "<p>The story itself is short but it is the article, with enough words to be prose.</p>"
    comments = "".join(
        f"<div class='comment'><p>Comment {i}: a long and thoughtful reader comment, full of words and "
        "commas, which is nonetheless not part of the article.</p></div>"
        for i in range(10)
    )
    html = f"<html><body><article>{story}</article><section id='comments'>{comments}</section></body></html>"
    article = extract_article(html.encode(), url="http://x.example/")
    assert article.text.startswith("The story itself is short")
    assert "reader comment" not in article.text


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", None),
        (b"   \r\n\t ", "text/html"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None),
        (b'{"not": "html"}', "application/json"),
        (b"<html><head><script>var x = 1;</script></head><body><script>run()</script></body></html>", None),
        (b"<html><body><nav><a href='/'>Home</a></nav><img src='x.png'></body></html>", None),
    ],
)
def test_pages_without_text_raise_parse_error_with_the_url(body: bytes, content_type: str | None) -> None:
    with pytest.raises(ParseError) as caught:
        extract_article(body, url="http://empty.example/page", content_type=content_type)
    assert caught.value.url == "http://empty.example/page"
    assert "http://empty.example/page" in str(caught.value)


def test_deeply_nested_page_does_not_blow_the_stack() -> None:
    """With the nesting cap raised (extract.max_depth), 5,000 levels are walked without recursion."""
    text = "Deep text, with commas, that sits below thousands of wrappers. " * 5
    html = "<div>" * 5000 + f"<p>{text}<script>evil()</script></p>" + "</div>" * 5000
    article = extract_article(html.encode(), url="http://deep.example/", max_depth=6000)
    assert "Deep text, with commas" in article.text
    assert "evil" not in article.text


def test_invalid_utf8_bytes_do_not_crash() -> None:
    html = "<html><body><article><p>Valid UTF-8 text about LongCat-2.0 and caf\u00e9s, ".encode()
    html += b"with one broken byte \xff\xfe here, and the rest still readable.</p></article></body></html>"
    article = extract_article(html, url="http://x.example/")
    assert "LongCat-2.0 and cafés" in article.text
    assert "the rest still readable" in article.text


_FRAGMENTS = [
    "<div>",
    "</div>",
    "<p>",
    "</p>",
    "<a href='/x'>",
    "</a>",
    "<br>",
    "<table><tr><td>",
    "</td></tr></table>",
    "<ul><li>",
    "</li></ul>",
    "<div class='comment'>",
    "<span class='share'>",
    "<!--",
    "-->",
    "&amp;",
    "<h1>",
    "</h1>",
    "<b>",
    "</b>",
    "plain words here, ",
    "Zeit für Ärger. ",
    "\x00",
    "\ufffd",
    "&#0;",
]
_SCRIPT = "<script>secret_payload()</script><style>.secret_style{}</style>"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(_FRAGMENTS), max_size=80),
    st.sampled_from(["utf-8", "cp1252", "utf-16"]),
    st.sampled_from([None, "text/html", "text/html; charset=utf-8", "text/html; charset=iso-8859-1"]),
)
def test_any_markup_gives_text_or_parse_error_and_never_script(
    fragments: list[str], encoding: str, content_type: str | None
) -> None:
    html = _SCRIPT + "".join(fragments) + _SCRIPT
    body = html.encode(encoding, errors="replace")
    try:
        article = extract_article(body, url="http://fuzz.example/", content_type=content_type)
    except ParseError as exc:
        assert exc.url == "http://fuzz.example/"
    else:
        assert article.text.strip()
        assert "secret_" not in article.text
    try:
        region = extract_region(body, url="http://fuzz.example/", selector="body", content_type=content_type)
    except ParseError:
        return
    assert "secret_" not in region


# --- watched regions ---------------------------------------------------------------------------


def test_region_lines_and_table_rows() -> None:
    text = extract_region(page("leaderboard_v1.html"), url="http://board.example/", selector="#board")
    assert text.split("\n") == [
        "Text arena: open-weight models",
        "Updated 28 Nov 2026",
        "Rank | Model | Score | Organisation",
        "1 | Model Alpha 3 | 1418 | Alpha Labs",
        "2 | DeepSeek-V4-Pro | 1409 | DeepSeek",
        "3 | Qwen 4 Max | 1396 | Alibaba",
    ]


def test_region_shows_an_added_table_row() -> None:
    selector = "table.leaderboard tbody"
    before = extract_region(page("leaderboard_v1.html"), url="http://board.example/", selector=selector)
    after = extract_region(page("leaderboard_v2.html"), url="http://board.example/", selector=selector)
    added = set(after.split("\n")) - set(before.split("\n"))
    assert "3 | LongCat-2.0 | 1401 | Meituan" in added
    assert "4 | Qwen 4 Max | 1396 | Alibaba" in added


def test_region_never_contains_scripts_or_styles() -> None:
    for name in ("leaderboard_v1.html", "leaderboard_v2.html"):
        for selector in ("#board", "body", "html"):
            text = extract_region(page(name), url="http://board.example/", selector=selector)
            assert "renderSparkline" not in text and "boardVersion" not in text and "padding" not in text


def test_region_missing_selector_raises_selector_not_found() -> None:
    with pytest.raises(SelectorNotFound) as caught:
        extract_region(page("leaderboard_v1.html"), url="http://board.example/", selector="#no-such-thing")
    assert caught.value.url == "http://board.example/"
    assert "#no-such-thing" in str(caught.value)


def test_region_invalid_selector_is_a_parse_error_and_a_config_error() -> None:
    with pytest.raises(ParseError):
        extract_region(page("leaderboard_v1.html"), url="http://board.example/", selector="table[")
    with pytest.raises(ConfigError):
        validate_selector("table[")
    validate_selector("table.leaderboard tbody > tr:nth-child(2)")


def test_region_nested_matches_are_not_repeated() -> None:
    html = b"<div class='x'><p>outer</p><div class='x'><p>inner</p></div></div><div class='x'>second</div>"
    assert extract_region(html, url="http://x.example/", selector=".x").split("\n") == [
        "outer",
        "inner",
        "second",
    ]


def test_region_whitespace_collapsed_and_br_breaks_lines() -> None:
    html = (
        b"<ul id='l'><li>  one\n\t item </li><li>two<br>lines</li></ul>"
        b"<table id='t'><tr><td> a </td><td></td><td>b</td></tr></table>"
    )
    assert extract_region(html, url="http://x.example/", selector="#l") == "one item\ntwo\nlines"
    assert extract_region(html, url="http://x.example/", selector="#t") == "a | b"


# --- charset -----------------------------------------------------------------------------------


def test_charset_order_bom_then_header_then_meta_then_sniffing() -> None:
    meta_koi8 = '<meta charset="koi8-r"><p>привет</p>'.encode("koi8-r")
    assert detect_charset(b"\xef\xbb\xbf" + meta_koi8, "text/html; charset=iso-8859-2") == "utf-8"
    assert detect_charset(meta_koi8, 'text/html; charset="KOI8-R"') == "koi8-r"
    assert detect_charset(meta_koi8, "text/html") == "koi8-r"
    assert decode_html(meta_koi8, None).endswith("<p>привет</p>")
    http_equiv = b'<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
    assert detect_charset(http_equiv, None) == "cp1251"


def test_charset_labels_follow_whatwg() -> None:
    assert detect_charset(b"<p>x</p>", "text/html; charset=ISO-8859-1") == "cp1252"
    assert detect_charset(b"<p>x</p>", "text/html; charset=us-ascii") == "cp1252"
    assert detect_charset(b'<meta charset="utf-16"><p>x</p>', None) == "utf-8"
    assert detect_charset(b"<p>x</p>", "text/html; charset=no-such-charset") == "utf-8"


def test_decode_html_never_raises() -> None:
    assert decode_html("<p>café – “ok”</p>".encode("cp1252"), None) == "<p>café – “ok”</p>"
    assert decode_html("<p>café</p>".encode() + b"\xff", None) == "<p>café</p>\ufffd"
    assert decode_html("<p>café</p>".encode("utf-16-be"), "text/html; charset=utf-16be") == "<p>café</p>"
    assert decode_html(codec_bom_utf16be("<p>é</p>"), None) == "<p>é</p>"
    assert decode_html(bytes(range(256)), "text/html; charset=utf-8").startswith("\x00\x01")


def codec_bom_utf16be(text: str) -> bytes:
    return b"\xfe\xff" + text.encode("utf-16-be")


# --- metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T08:30:00+08:00", datetime(2026, 11, 27, 0, 30, tzinfo=UTC)),
        ("2026-11-27T08:30:00Z", datetime(2026, 11, 27, 8, 30, tzinfo=UTC)),
        ("2026-11-27T08:30:00+0000", datetime(2026, 11, 27, 8, 30, tzinfo=UTC)),
        ("2026-11-27T08:30:00.123456-05:00", datetime(2026, 11, 27, 13, 30, 0, 123456, tzinfo=UTC)),
        ("2026-11-27 08:30:00", datetime(2026, 11, 27, 8, 30, tzinfo=UTC)),
        ("2026-11-27", datetime(2026, 11, 27, tzinfo=UTC)),
        ("Fri, 27 Nov 2026 08:30:00 GMT", datetime(2026, 11, 27, 8, 30, tzinfo=UTC)),
        ("27.11.2026", datetime(2026, 11, 27, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        ("2026-13-45", None),
    ],
)
def test_parse_date(value: str, expected: datetime | None) -> None:
    parsed = parse_date(value)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("title", "site", "expected"),
    [
        (
            "Meituan keeps hardware under wraps | The Daily Circuit",
            None,
            "Meituan keeps hardware under wraps",
        ),
        ("Meituan keeps hardware under wraps - Daily Circuit", None, "Meituan keeps hardware under wraps"),
        (
            "Daily Circuit | Meituan keeps hardware under wraps",
            "Daily Circuit",
            "Meituan keeps hardware under wraps",
        ),
        (
            "Covid-19 - what we know about the new variant so far",
            None,
            "Covid-19 - what we know about the new variant so far",
        ),
        ("  A   title\nwithout site  ", None, "A title without site"),
        ("LongCat-2.0 explained", None, "LongCat-2.0 explained"),
    ],
)
def test_clean_title(title: str, site: str | None, expected: str) -> None:
    assert clean_title(title, site) == expected


def test_meta_itemprop_date_on_a_body_element_and_relative_canonical() -> None:
    meta = read_meta(
        LexborHTMLParser(
            '<html><head><link rel="canonical" href="../c?id=1"></head><body>'
            '<span itemprop="datePublished" content="2026-11-20T10:00:00Z">20 Nov</span></body></html>'
        ),
        "https://news.example.com/a/b",
    )
    assert meta.canonical_url == "https://news.example.com/c?id=1"
    assert meta.published == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_meta_time_element_fallback_and_og_locale() -> None:
    meta = read_meta(
        LexborHTMLParser(
            '<html><head><meta property="og:locale" content="pt_BR"><meta property="og:url" content="http://x/y">'
            "</head><body><time datetime='2026-11-02'>2 Nov</time>"
            "<time pubdate datetime='2026-11-01T12:00:00+00:00'>1 Nov</time></body></html>"
        ),
        "http://x/",
    )
    assert meta.published == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # <time pubdate> beats the first <time>
    assert meta.language == "pt-BR"
    assert meta.canonical_url == "http://x/y"


def test_meta_author_sources_and_url_authors_are_ignored() -> None:
    meta = read_meta(
        LexborHTMLParser(
            '<html><head><meta property="article:author" content="https://facebook.com/someone">'
            '<script type="application/ld+json">{"@type": "BlogPosting", "author": {"@type": "Person", '
            '"name": "Ada Writer"}, "datePublished": "2026-10-10T10:10:10+02:00"}</script>'
            "</head><body></body></html>"
        ),
        "http://x/",
    )
    assert meta.author == "Ada Writer"
    assert meta.published == datetime(2026, 10, 10, 8, 10, 10, tzinfo=UTC)


def test_meta_title_falls_back_to_cleaned_title_element() -> None:
    meta = read_meta(
        LexborHTMLParser("<html><head><title>Plain headline here | Example Site</title></head></html>"),
        "http://x/",
    )
    assert meta.title == "Plain headline here"
    assert (
        meta.canonical_url is None
        and meta.published is None
        and meta.author is None
        and meta.language is None
    )


def test_meta_jsonld_in_body_and_non_http_canonical_rejected() -> None:
    meta = read_meta(
        LexborHTMLParser(
            '<html><head><link rel="canonical" href="javascript:alert(1)"></head><body><p>x</p>'
            '<script type="application/ld+json">[{"@type": "NewsArticle", "headline": "From the body", '
            '"datePublished": "2026-09-09"}]</script></body></html>'
        ),
        "http://x/",
    )
    assert meta.title == "From the body"
    assert meta.published == datetime(2026, 9, 9, tzinfo=UTC)
    assert meta.canonical_url is None
