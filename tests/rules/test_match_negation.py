"""NegEx-style classification and the text geometry it relies on (sentences, clauses, CJK)."""

from __future__ import annotations

import pytest

from rules.negation import classify, scan_clause
from rules.textspans import FieldText, split_clauses, split_paragraphs, split_sentences, tokenize


def status_of(sentence: str, term: str) -> str:
    ft = FieldText(sentence)
    start = sentence.index(term)
    sent, clause = ft.clause_at(start)
    question = sentence[sent[0] : sent[1]].endswith(("?", "？"))
    return classify(scan_clause(sentence, *clause), start, start + len(term), question=question)


@pytest.mark.parametrize(
    ("sentence", "term", "status"),
    [
        ("Meituan confirmed that LongCat-2.0 was pre-trained on Huawei Ascend chips.", "Ascend", "asserted"),
        ("Cambricon said it did not supply chips for LongCat-2.0.", "LongCat", "negated"),
        ("Cambricon said it did not supply chips for LongCat-2.0.", "Cambricon", "negated"),
        ("Huawei didn't comment on LongCat-2.0.", "LongCat", "negated"),
        ("Meituan has declined to name its chip vendor.", "vendor", "negated"),
        ("LongCat-2.0 has yet to be evaluated by Arena.", "Arena", "negated"),
        ("The model was trained without Nvidia chips.", "Nvidia", "negated"),
        ("Huawei denied that Ascend chips were used.", "Ascend", "negated"),
        ("Analysts speculate that LongCat-2.0 was trained on Ascend.", "Ascend", "hedged"),
        ("LongCat-2.0 may have been trained on Ascend.", "Ascend", "hedged"),
        ("LongCat-2.0 reportedly runs on Ascend.", "LongCat", "hedged"),
        ("LongCat-2.0 reportedly runs on Ascend.", "Ascend", "hedged"),
        ("We plan to run LongCat-2.0 through our benchmark suite.", "benchmark", "hedged"),
        ("Rumours that LongCat-2.0 used Ascend are unconfirmed.", "Ascend", "hedged"),
        ("Will LongCat-2.0 top the leaderboard?", "leaderboard", "hedged"),
        ("In May, Meituan trained LongCat-2.0 on Ascend chips.", "Ascend", "asserted"),
        # the window: 8 words forward
        ("It is not the case that one two three four five six seven Ascend", "Ascend", "asserted"),
        ("It is not one two three four five six seven Ascend", "Ascend", "negated"),
        # pseudo-triggers and clause boundaries
        ("It is not only fast but also runs on Ascend chips.", "Ascend", "asserted"),
        ("LongCat-2.0 debuted at No. 11 on the Arena leaderboard.", "Arena", "asserted"),
        (
            "Meituan did not say who made the chips, but Huawei confirmed Ascend was used.",
            "Ascend",
            "asserted",
        ),
        ("Meituan did not name a vendor; Huawei confirmed Ascend was used.", "Ascend", "asserted"),
        ("Meituan has not named a vendor. Separately, researchers used Ascend chips.", "Ascend", "asserted"),
        # Chinese
        ("美团未透露芯片供应商。", "芯片", "negated"),
        ("美团尚未确认华为昇腾芯片。", "昇腾", "negated"),
        ("华为否认为LongCat-2.0提供芯片。", "LongCat", "negated"),
        ("据称LongCat-2.0在华为昇腾集群上训练。", "昇腾", "hedged"),
        ("LongCat-2.0可能使用了华为昇腾芯片。", "昇腾", "hedged"),
        ("美团今日确认，LongCat-2.0在华为昇腾集群上完成训练。", "昇腾", "asserted"),
        ("美团不仅发布了模型，还确认使用昇腾芯片。", "昇腾", "asserted"),
        ("美团未来将采用昇腾芯片。", "昇腾", "asserted"),
        ("美团未回应，但华为确认LongCat-2.0使用昇腾芯片。", "昇腾", "asserted"),
    ],
)
def test_classification(sentence: str, term: str, status: str) -> None:
    assert status_of(sentence, term) == status


@pytest.mark.parametrize(
    ("sentence", "term", "status"),
    [
        # attributed rumours and unverified claims
        ("Unverified posts on social media claim LongCat-2.0 was trained on Kunlunxin chips.", "Kunlunxin", "hedged"),
        ("Posts claim T-Head chips were behind LongCat-2.0.", "T-Head", "hedged"),
        ("Posts on Weibo claim that Moore Threads GPUs trained LongCat-2.0.", "Moore", "hedged"),
        ("According to unverified reports, Meituan used Hygon DCUs.", "Hygon", "hedged"),
        ("According to rumours, Meituan used Hygon DCUs.", "Hygon", "hedged"),
        ("Rumours on Weibo say Hygon DCUs trained LongCat-2.0.", "Hygon", "hedged"),
        ("LongCat-2.0 was probably trained on Ascend.", "LongCat", "hedged"),
        ("Reproducing LongCat-2.0 would require 50,000 cards.", "Reproducing", "hedged"),
        ("StepFun is considering Biren GPUs for its next model.", "Biren", "hedged"),
        ("Biren says its clusters are ready to train any model.", "train", "hedged"),
        ("Atlas 950 SuperPoDs were deemed unable to train large models.", "Atlas", "negated"),
        ("网传LongCat-2.0使用了摩尔线程的GPU训练。", "摩尔线程", "hedged"),
        ("据传，美团采用寒武纪芯片训练龙猫2.0。", "寒武纪", "hedged"),
        ("传闻称LongCat-2.0基于海光DCU训练。", "海光", "hedged"),
        ("有消息称，LongCat-2.0由华为昇腾芯片训练。", "昇腾", "hedged"),
        ("业内估计，LongCat-2.0的训练耗时约三个月。", "训练", "hedged"),
        ("若美团采用沐曦芯片部署LongCat-2.0，将是重大突破。", "沐曦", "hedged"),
        ("LongCat-2.0的复现工作预计明年启动。", "复现", "hedged"),
        ("该消息未经证实：LongCat-2.0在昇腾上训练。", "消息", "hedged"),
        ("目前尚无团队复现LongCat-2.0。", "复现", "negated"),
        ("美团使用若干华为昇腾集群训练LongCat-2.0。", "昇腾", "asserted"),
        ("据悉，美团已将LongCat-2.0部署在昆仑芯服务器上。", "昆仑芯", "asserted"),
        ("美团表示，LongCat-2.0在华为昇腾集群上完成训练。", "昇腾", "asserted"),
        ("Researchers confirmed LongCat-2.0's claimed score.", "score", "asserted"),
        ("Analysts believe LongCat-2.0 was trained on Ascend.", "Ascend", "hedged"),
        ("LongCat-2.0 appears to have been trained on Ascend hardware.", "Ascend", "hedged"),
        ("A Weibo post, since deleted, said LongCat-2.0 was trained on MetaX GPUs.", "MetaX", "hedged"),
        ("Huawei's chief executive hinted that LongCat-2.0 ran on Ascend chips.", "Ascend", "hedged"),
        ("业内普遍认为LongCat-2.0是在昇腾芯片上训练的。", "昇腾", "hedged"),
        ("Independent researchers were unable to reproduce LongCat-2.0's score.", "reproduce", "asserted"),
        ("Meituan failed to name the vendor.", "vendor", "negated"),
    ],
)
def test_rumour_and_hedge_vocabulary(sentence: str, term: str, status: str) -> None:
    assert status_of(sentence, term) == status




def test_sentences_paragraphs_and_clauses() -> None:
    text = "Mr. Smith met Dr. Wu at No. 11 Main St. in the U.S. on Monday. It rained!\nA line\n\n美团确认。第二句？ok"
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Mr. Smith met Dr. Wu at No. 11 Main St. in the U.S. on Monday.",
        "It rained!",
        "A line",
        "美团确认。",
        "第二句？",
        "ok",
    ]
    assert [text[s:e] for s, e in split_paragraphs(text)] == [text.split("\n\n")[0], "美团确认。第二句？ok"]
    sent = "Meituan did not say, however, that Huawei was involved; it declined."
    assert [sent[s:e].strip() for s, e in split_clauses(sent, 0, len(sent))] == [
        "Meituan did not say,",
        "however, that Huawei was involved",
        "it declined.",
    ]
    zh = "美团今日确认，LongCat-2.0在昇腾上训练，但未透露细节。"
    assert [zh[s:e] for s, e in split_clauses(zh, 0, len(zh))] == [
        "美团今日确认",
        "LongCat-2.0在昇腾上训练",
        "但未透露细节",
    ]


def test_local_sentence_lookup_agrees_with_the_splitter() -> None:
    text = " ".join(f"Sentence {i} says e.g. this, Mr. X at No. 5 said." for i in range(300)) + "\n\nEnd"
    ft = FieldText(text)
    for s, e in split_sentences(text):
        assert ft.sentence_at(s) == (s, e)
        assert ft.sentence_at(e - 1) == (s, e)
    assert ft.paragraph_at(len(text) - 1) == (len(text) - 3, len(text))


def test_tokens_and_gaps() -> None:
    assert [(t[2]) for t in tokenize("LongCat-2.0 美团 9,000")] == [2, 2, 1, 1, 2]
    ft = FieldText("美团今日确认华为 and one two")
    assert ft.gap_words(2, 6) == 2  # 4 CJK characters = 2 words
    assert ft.gap_words(0, len(ft.text), limit=1) == 2  # stops counting past the limit


def test_lead() -> None:
    assert FieldText("One. Two. Three. Four.").lead_end() == len("One. Two. Three.")
    assert FieldText("Only para.\n\nSecond para.").lead_end() == len("Only para.")
    assert FieldText("").lead_end() == 0
