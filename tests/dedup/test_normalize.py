"""crawler.dedup.text: canonical URLs, search-redirect unwrapping, text keys, sentences."""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.dedup import (
    TRACKING_PARAMS,
    canonicalize_url,
    content_hash,
    normalize_text,
    sentence_key,
    unwrap_search_redirect,
)
from crawler.dedup import text as normalize
from crawler.dedup.text import sentence_texts as split_sentences

ARTICLE = "https://example.com/2026/11/23/longcat-2-0"


@pytest.mark.parametrize(
    "variant",
    [
        ARTICLE,
        "HTTPS://EXAMPLE.COM/2026/11/23/longcat-2-0",
        "https://example.com:443/2026/11/23/longcat-2-0",
        "https://example.com/2026/11/23/longcat-2-0/",
        "https://example.com/2026/11/23/longcat-2-0#comments",
        "https://www.example.com/2026/11/23/longcat-2-0",
        "https://m.example.com/2026/11/23/longcat-2-0",
        "https://mobile.example.com/2026/11/23/longcat-2-0",
        "https://amp.example.com/2026/11/23/longcat-2-0",
        "https://www.m.example.com/2026/11/23/longcat-2-0",
        "https://example.com/2026/11/23/longcat-2-0/amp",
        "https://example.com/2026/11/23/longcat-2-0/amp/",
        "https://example.com/amp/2026/11/23/longcat-2-0",
        "https://example.com/2026/11/23/longcat-2-0.amp",
        "https://example.com/2026/11/23/longcat-2-0?amp=1",
        "https://example.com/2026/11/23/longcat-2-0?amp",
        "https://example.com/2026/11/23/longcat-2-0?outputType=amp",
        "https://example.com/2026/11/23/longcat-2-0/index.html",
        "https://example.com/2026/./11/x/../23/longcat-2-0",
        "https://example.com/2026/11/23/longcat%2D2%2D0",
        "https://example.com/2026/11/23/longcat-2-0?utm_source=rss&utm_medium=feed&utm_campaign=x",
        "https://example.com/2026/11/23/longcat-2-0?fbclid=abc&gclid=def&mc_cid=1&mc_eid=2",
        "https://example.com/2026/11/23/longcat-2-0?ref=hn&ref_src=twsrc&igshid=9&_ga=2.1&spm=a.b",
        "https://example.com/2026/11/23/longcat-2-0?CMP=share_btn_tw&ocid=msn&smid=tw-nytimes",
        "https://www-example-com.cdn.ampproject.org/c/s/www.example.com/2026/11/23/longcat-2-0/amp",
        "https://www.google.com/amp/s/www.example.com/2026/11/23/longcat-2-0",
        " \thttps://example.com/2026/11/23/longcat-2-0\n",
    ],
)
def test_variants_of_one_article_share_one_canonical_url(variant: str) -> None:
    assert canonicalize_url(variant) == ARTICLE


def test_meaningful_query_is_kept_and_sorted() -> None:
    url = "https://example.com/story?utm_source=x&page=2&id=42&fbclid=1"
    assert canonicalize_url(url) == "https://example.com/story?id=42&page=2"
    assert canonicalize_url("https://example.com/s?b=2&a=1") == canonicalize_url(
        "https://example.com/s?a=1&b=2"
    )


def test_distinct_articles_stay_distinct() -> None:
    urls = [
        "https://example.com/story?id=1",
        "https://example.com/story?id=2",
        "https://example.com/Story?id=1",  # paths are case-sensitive
        "http://example.com/story?id=1",  # the scheme is kept
        "https://example.com:8443/story?id=1",
        "https://other.example.com/story?id=1",
        "https://example.com/amplifier",  # "amp" only as a whole segment/suffix
    ]
    assert len({canonicalize_url(u) for u in urls}) == len(urls)


def test_tracking_list_covers_the_common_parameters() -> None:
    for name in ("fbclid", "gclid", "msclkid", "mc_cid", "igshid", "yclid", "ocid", "cmpid", "at_medium"):
        assert name in TRACKING_PARAMS
    assert canonicalize_url("https://example.com/a?UTM_Source=x&FbClId=y") == "https://example.com/a"


def test_extra_tracking_params_from_config() -> None:
    url = "https://example.com/a?src=feed&id=3"
    assert canonicalize_url(url) == "https://example.com/a?id=3&src=feed"
    assert canonicalize_url(url, extra_tracking=["SRC"]) == "https://example.com/a?id=3"


def test_idna_hosts_use_the_ascii_form() -> None:
    assert canonicalize_url("https://Bücher.example/ä") == "https://xn--bcher-kva.example/%C3%A4"
    assert canonicalize_url("https://xn--bcher-kva.example/%c3%a4") == "https://xn--bcher-kva.example/%C3%A4"


def test_page_canonical_wins_when_same_site() -> None:
    found = "https://m.example.com/a?id=3&utm_source=x"
    assert (
        canonicalize_url(found, page_canonical="https://www.example.com/news/a/")
        == "https://example.com/news/a"
    )
    assert canonicalize_url(found, page_canonical="/news/a") == "https://example.com/news/a"
    news = "https://news.bbc.co.uk/x"
    assert canonicalize_url(news, page_canonical="https://www.bbc.co.uk/y") == "https://bbc.co.uk/y"


@pytest.mark.parametrize(
    "claimed",
    [
        "https://aggregator.example.net/a",  # another site
        "https://www.example.com/",  # the home page: a CMS default, not this article
        "javascript:alert(1)",
        "   ",
        "http://[broken",
    ],
)
def test_implausible_page_canonical_is_ignored(claimed: str) -> None:
    assert canonicalize_url("https://example.com/a/b", page_canonical=claimed) == "https://example.com/a/b"


@pytest.mark.parametrize(
    "junk",
    ["", "not a url", "javascript:alert(1)", "mailto:x@example.com", "http://[::1", "http://h:99999/", "//"],
)
def test_junk_never_raises_and_comes_back_stripped(junk: str) -> None:
    assert canonicalize_url(f"  {junk}  ") == junk.strip()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_canonicalize_never_raises_and_is_idempotent(text: str) -> None:
    once = canonicalize_url(text)
    assert canonicalize_url(once) == once


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "Z", "%41", "~", "ü", "amp", "index.html", "..", "."]), max_size=6),
    st.dictionaries(st.sampled_from(["id", "p", "utm_x", "amp", "q"]), st.text(max_size=5), max_size=4),
)
def test_canonical_http_urls_are_idempotent(segments: list[str], query: dict[str, str]) -> None:
    qs = "&".join(f"{k}={quote(v)}" for k, v in query.items())
    once = canonicalize_url(f"https://WWW.Example.com/{'/'.join(segments)}?{qs}")
    assert once.startswith("https://example.com/")
    assert canonicalize_url(once) == once


# --- search redirects ---------------------------------------------------------------------------

TARGET = "https://www.reuters.com/technology/longcat-2-0?id=7"


def _bing_ck(url: str) -> str:
    token = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    return f"https://www.bing.com/ck/a?!&&p=abc123&ptn=3&ver=2&hsh=3&u=a1{token}&ntb=1"


@pytest.mark.parametrize(
    "wrapped",
    [
        "https://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=ABC&url="
        + quote(TARGET, safe="")
        + "&c=1&mkt=en-us",
        _bing_ck(TARGET),
        "https://www.google.com/url?rct=j&sa=t&url=" + quote(TARGET, safe="") + "&ct=ga&cd=1",
        "https://www.google.co.uk/url?q=" + quote(TARGET, safe="") + "&sa=U",
        "https://r.search.yahoo.com/_ylt=AwrX;_ylu=Y29s/RV=2/RE=1700000000/RO=10/RU="
        + quote(TARGET, safe="")
        + "/RK=2/RS=abc-",
        "https://duckduckgo.com/l/?uddg=" + quote(TARGET, safe="") + "&rut=abc",
        "//duckduckgo.com/l/?uddg=" + quote(TARGET, safe=""),
        # nested: a Google redirect around a Bing one
        "https://www.google.com/url?q=" + quote(_bing_ck(TARGET), safe=""),
    ],
)
def test_search_redirects_unwrap_to_the_article(wrapped: str) -> None:
    assert unwrap_search_redirect(wrapped) == TARGET


def test_google_news_links_are_opaque() -> None:
    assert (
        unwrap_search_redirect("https://news.google.com/rss/articles/CBMiK2h0dHBzOi8vZXhhbXBsZQ?oc=5") is None
    )
    assert unwrap_search_redirect("https://news.google.com/articles/CBMiK2h0dHBz?hl=en-US") is None


@pytest.mark.parametrize(
    "broken",
    [
        "https://www.bing.com/ck/a?!&&p=abc&u=a1%%%notbase64",
        "https://www.bing.com/news/apiclick.aspx?ref=FexRss",
        "https://www.google.com/url?q=javascript:alert(1)",
    ],
)
def test_wrappers_without_a_readable_http_target_are_opaque(broken: str) -> None:
    assert unwrap_search_redirect(broken) is None


def test_plain_links_come_back_unchanged() -> None:
    for url in (TARGET, "https://www.bing.com/news/search?q=longcat", "https://www.google.com/search?q=x"):
        assert unwrap_search_redirect(url) == url


# --- text ---------------------------------------------------------------------------------------


def test_normalize_text_unifies_width_quotes_dashes_case_and_space() -> None:
    a = "Meituan’s  “LongCat—2.0”\u200b model\n\n is ＬＡＲＧＥ"
    b = 'meituan\'s "longcat-2.0" model is large'
    assert normalize_text(a) == b
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(b + "r")
    assert len(content_hash("")) == 64


def test_split_sentences_latin() -> None:
    text = (
        "Mr. Smith flew to the U.S. on Monday. He said: “It is 2.0.” Then he left!\n"
        "Did Meituan confirm? No. Prices rose 3.5 percent, e.g. in Jan. and Feb. too.\n\n"
        "J. R. Doe wrote it"
    )
    assert split_sentences(text) == [
        "Mr. Smith flew to the U.S. on Monday.",
        "He said: “It is 2.0.”",
        "Then he left!",
        "Did Meituan confirm?",
        "No.",
        "Prices rose 3.5 percent, e.g. in Jan. and Feb. too.",
        "J. R. Doe wrote it",
    ]


def test_split_sentences_chinese() -> None:
    text = "美团发布了LongCat-2.0。该模型有1.6万亿参数！是否使用昇腾芯片？美团没有说明”"
    assert split_sentences(text) == [
        "美团发布了LongCat-2.0。",
        "该模型有1.6万亿参数！",
        "是否使用昇腾芯片？",
        "美团没有说明”",
    ]


def test_split_sentences_collapses_space_and_drops_empty() -> None:
    assert split_sentences("  one   two.\n\n   \n Three  four ") == ["one two.", "Three four"]
    assert split_sentences("") == []


def test_sentence_key_ignores_case_punctuation_and_quote_style() -> None:
    a = sentence_key("Meituan said it used Huawei’s HCCL.")
    assert a == sentence_key("meituan said it used huawei's HCCL")
    assert a == sentence_key("  Meituan   said it used Huawei's HCCL!  ")
    assert a != sentence_key("Meituan said it used Nvidia's NCCL.")
    assert len(a) == 64


@pytest.mark.parametrize(
    "text",
    [
        "Meituan\u2019s \u201cLongCat\u201d \u2014 re\u00adleased\u200b today",
        "ＬｏｎｇＣａｔ－２．０ ｆｕｌｌ\ufeffwidth",
        "plain ascii, with 'quotes' - and dashes",
        "美团发布了\u200dLongCat",
    ],
)
def test_fold_words_keeps_the_words_of_fold_text(text: str) -> None:
    assert normalize.word_tokens(normalize.fold_words(text)) == normalize.word_tokens(
        normalize.fold_text(text)
    )


@given(st.text())
@settings(max_examples=300)
def test_fold_words_and_word_tokens_agree_with_the_regex_on_any_text(text: str) -> None:
    folded = normalize.fold_text(text)
    expected = [w.encode("utf-8", "surrogatepass") for w in re.findall(r"\w+", folded)]
    assert normalize.word_tokens(folded) == expected
    assert normalize.word_tokens(normalize.fold_words(text)) == expected
