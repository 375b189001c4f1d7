"""The one sentence splitter (rules.textspans.split_sentences) keeps what both old splitters did.

The rules engine's splitter gave exact, trimmed spans; the dedup splitter (crawler.dedup.text, now
``sentence_texts`` over the same spans) gave whitespace-collapsed sentences, never cut after an
abbreviation, an initial or ``No.`` before a number, and cut at ``。！？`` without a space. A document
is generated from known sentences; the splitter must find exactly them, as spans and as texts.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.dedup import sentence_texts
from rules import split_sentences

WORDS = st.sampled_from(
    ["Meituan", "LongCat-2.0", "trained", "the", "model", "on", "chips", "3.5", "percent", "Huawei's",
     "cluster", "said", "“quoted”", "(aside)", "e-mail", "U.S.", "Mr.", "Dr.", "J.", "e.g.", "Jan.", "No. 5"]
)  # fmt: skip
LATIN_END = st.sampled_from([".", "!", "?", ".”", "?)", "…"])
CJK_SENTENCE = st.builds(
    lambda body, end: body + end,
    st.text(alphabet="美团发布了模型芯片训练昇腾华为参数", min_size=1, max_size=12),
    st.sampled_from(["。", "！", "？", "。”"]),
)


@st.composite
def latin_sentence(draw: st.DrawFn) -> str:
    first = draw(st.sampled_from(["Meituan", "The", "Huawei", "It", "Analysts", "LongCat-2.0"]))
    rest = draw(st.lists(WORDS, max_size=8))
    return " ".join([first, *rest]) + draw(LATIN_END)


SENTENCES = st.lists(st.one_of(latin_sentence(), CJK_SENTENCE), min_size=1, max_size=8)
GAPS = st.sampled_from([" ", "  ", "\n", " \n\n ", "\t"])


def _join(sentences: list[str], gaps: list[str]) -> str:
    out = ""
    for i, s in enumerate(sentences):
        # CJK sentences need no space after them; Latin ones do
        gap = gaps[i % len(gaps)] if i else ""
        after_cjk = i and sentences[i - 1].rstrip("”")[-1] in "。！？"
        out += ("" if after_cjk and gap == " " else gap) + s
    return out


@settings(max_examples=300, deadline=None)
@given(SENTENCES, st.lists(GAPS, min_size=1, max_size=4), st.sampled_from(["", " ", "\n "]))
def test_split_finds_the_generated_sentences(sentences: list[str], gaps: list[str], pad: str) -> None:
    text = pad + _join(sentences, gaps) + pad
    spans = split_sentences(text)
    # the rules engine's contract: ordered, non-overlapping, trimmed spans of the text
    assert all(a < b for a, b in spans)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    assert all(text[a:b] == text[a:b].strip() for a, b in spans)
    # the dedup contract: the sentences, whitespace collapsed, nothing lost or cut after "Mr."
    assert sentence_texts(text) == [" ".join(s.split()) for s in sentences]


def test_split_keeps_spans_exact_inside_a_window() -> None:
    text = "Intro. Meituan said it used Huawei chips. Then it left."
    start = text.index("Meituan")
    assert [text[a:b] for a, b in split_sentences(text, start)] == [
        "Meituan said it used Huawei chips.",
        "Then it left.",
    ]


def test_ellipsis_ends_a_sentence_only_after_a_word() -> None:
    assert sentence_texts("It trailed off… Then Meituan spoke.") == ["It trailed off…", "Then Meituan spoke."]
    assert sentence_texts("It said bullying. … You get it.") == ["It said bullying.", "… You get it."]
    assert sentence_texts("wait… and see") == ["wait… and see"]
