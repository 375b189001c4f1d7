"""The rules engine: term matching, operators, fields, source conditions, evidence and statuses."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.types import Document, Match
from rules.engine import RuleInput, RuleSet, load_rules


def make_rules(tmp_path: Path, query: str, extra: str = "", lists: str = "") -> RuleSet:
    text = "version: 1\n" + ("lists:\n" + lists if lists else "")
    text += (
        "rules:\n  - id: t.rule\n    title: Test rule\n    severity: medium\n    labels: {story: test}\n"
        f"    query: |\n      {query}\n{extra}"
    )
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    return load_rules([path])


def fire(rules: RuleSet, text: str, title: str = "", **meta: object) -> Match | None:
    matches = rules.evaluate(RuleInput(title=title, text=text, **meta))  # type: ignore[arg-type]
    assert len(matches) <= 1
    return matches[0] if matches else None


def fires(rules: RuleSet, text: str, title: str = "", **meta: object) -> bool:
    return fire(rules, text, title, **meta) is not None


def test_spelling_variants_and_number_edges(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "LongCat-2.0 OR Longcat-2")
    for text in ("LONGCAT 2.0 is out.", "LongCat2.0 is out.", "Longcat-2 is out.", "see LongCat 2, now"):
        assert fires(rs, text), text
    for text in ("LongCat-2.5 is out.", "LongCat-20 is out.", "xLongCat-2.0 is out."):
        assert not fires(rs, text), text
    rs = make_rules(tmp_path, "50 AND cards")
    assert fires(rs, "about 50 cards")
    assert not fires(rs, "about 50,000 cards")
    assert not fires(rs, "about 2.50 cards")


def test_truncation_phrases_and_separators(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, '"pre-train*" AND disclos*')
    for text in ("it was pretrained and disclosed", "pre-training was disclosed", "pre trained, disclosure"):
        assert fires(rs, text), text
    assert not fires(rs, "it was trained and disclosed")
    rs = make_rules(tmp_path, '"Huawei Ascend"')
    assert fires(rs, "on Huawei  Ascend chips")
    assert not fires(rs, "on Ascend chips from Huawei")


def test_case_sensitive_and_regex_terms(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "{AMD}")
    assert fires(rs, "chips from AMD")
    assert not fires(rs, "amd is a word here")
    rs = make_rules(tmp_path, "/MLU\\d{3}/ AND Cambricon")
    assert fires(rs, "Cambricon MLU590 cards")
    assert not fires(rs, "Cambricon mlu590 cards")
    rs = make_rules(tmp_path, "/mlu\\d{3}/i")
    assert fires(rs, "Cambricon MLU590 cards")


def test_near_counts_words_and_onear_keeps_order(tmp_path: Path) -> None:
    text = "Meituan one two three Huawei"
    assert fires(make_rules(tmp_path, "Meituan NEAR/3 Huawei"), text)
    assert not fires(make_rules(tmp_path, "Meituan NEAR/2 Huawei"), text)
    assert fires(make_rules(tmp_path, "Huawei NEAR/3 Meituan"), text)
    assert fires(make_rules(tmp_path, "Meituan ONEAR/3 Huawei"), text)
    assert not fires(make_rules(tmp_path, "Huawei ONEAR/3 Meituan"), text)


def test_near_in_chinese_counts_two_characters_as_a_word(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "美团 NEAR/2 华为")
    assert fires(rs, "美团今日确认华为")  # 4 characters between = 2 words
    assert not fires(rs, "美团今日已确认华为")  # 5 characters = 3 words
    assert fires(make_rules(tmp_path, "LongCat NEAR/1 华为"), "LongCat在华为")


def test_sentence_scope_versus_document_and(tmp_path: Path) -> None:
    text = "Meituan released LongCat-2.0 on Monday. Researchers used Ascend 910C chips."
    assert fires(make_rules(tmp_path, "LongCat-2.0 AND Ascend"), text)
    assert not fires(make_rules(tmp_path, "SENT(LongCat-2.0 AND Ascend)"), text)
    assert not fires(make_rules(tmp_path, "LongCat-2.0 w/s Ascend"), text)
    assert fires(make_rules(tmp_path, "LongCat-2.0 w/p Ascend"), text)
    two_paras = "LongCat-2.0 launched.\n\nIt runs on Ascend chips."
    assert not fires(make_rules(tmp_path, "PARA(LongCat-2.0 AND Ascend)"), two_paras)
    assert fires(make_rules(tmp_path, "SENT(Ascend AND NOT LongCat-2.0)"), text)
    facts = make_rules(tmp_path, "SENT((tag:board OR kind:page) AND Ascend)")
    assert fires(facts, text, source_kind="page") and not fires(facts, text)


def test_scoped_exclusions_keep_the_other_sentences(tmp_path: Path) -> None:
    text = "Meituan did not disclose the vendor. The technical report names Ascend 910C chips."
    assert not fires(make_rules(tmp_path, "Ascend AND NOT disclose"), text)
    m = fire(make_rules(tmp_path, "Ascend NOT/s disclose"), text)
    assert m is not None and m.evidence == "The technical report names Ascend 910C chips."
    assert not fires(make_rules(tmp_path, "Ascend NOT/p disclose"), text)
    same_sentence = "Meituan did not disclose that Ascend chips were used."
    assert not fires(make_rules(tmp_path, "Ascend NOT/s disclose"), same_sentence)
    clauses = "The vendor is Ascend; Meituan would not disclose more."
    assert fires(make_rules(tmp_path, "Ascend NOT/c disclose"), clauses)
    assert not fires(make_rules(tmp_path, "Ascend NOT/s disclose"), clauses)
    assert not fires(
        make_rules(tmp_path, "Ascend NOTNEAR/3 (than OR versus)"), "less memory than Ascend chips"
    )
    assert fires(
        make_rules(tmp_path, "Ascend NOTNEAR/3 (than OR versus)"), "more than most of its peers, Ascend"
    )


def test_fields(tmp_path: Path) -> None:
    text = "First paragraph about LongCat-2.0.\n\nSecond paragraph mentions Ascend."
    m = fire(make_rules(tmp_path, "title:Ascend"), text, title="Ascend chips")
    assert m is not None and m.field == "title" and m.evidence == "Ascend chips"
    assert not fires(make_rules(tmp_path, "title:Ascend"), text, title="Other")
    assert fires(make_rules(tmp_path, "lead:LongCat-2.0"), text)
    assert not fires(make_rules(tmp_path, "lead:Ascend"), text)
    assert fires(make_rules(tmp_path, "top:LongCat-2.0"), text, title="x")
    assert fires(make_rules(tmp_path, "top:Ascend"), text, title="Ascend")
    assert not fires(make_rules(tmp_path, "body:Ascend"), "nothing", title="Ascend")
    long_lead = "One. Two. Three. Four mentions Ascend. Five."
    assert not fires(make_rules(tmp_path, "lead:Ascend"), long_lead)


def test_document_facts(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "LongCat AND (tag:leaderboard OR kind:page)")
    assert fires(rs, "LongCat | 1402", source_tags=("leaderboard",))
    assert fires(rs, "LongCat | 1402", source_kind="page")
    assert not fires(rs, "LongCat | 1402", source_kind="feed")
    rs = make_rules(tmp_path, "LongCat AND site:example.com AND lang:zh")
    assert fires(rs, "LongCat", url="https://news.example.com/a", language="zh-CN")
    assert not fires(rs, "LongCat", url="https://example.org/a", language="zh-CN")
    assert fires(make_rules(tmp_path, "LongCat AND source:gnews-*"), "LongCat", source_id="gnews-longcat")
    assert fires(make_rules(tmp_path, "LongCat AND url:*/2026/*"), "LongCat", url="https://x.test/2026/11/a")
    assert not fires(
        make_rules(tmp_path, "LongCat NOT/s tag:aggregator"), "LongCat", source_tags=("aggregator",)
    )


def test_atleast(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "ATLEAST 3 LongCat")
    assert fires(rs, "LongCat. LongCat again. And LongCat.")
    assert not fires(rs, "LongCat. LongCat again.")


def test_rule_source_condition_and_vetoes(tmp_path: Path) -> None:
    extra = "    source: {tags: [news], exclude_ids: [spam-*]}\n    vetoes:\n      - query: rumour\n        scope: clause\n"
    rs = make_rules(tmp_path, "LongCat", extra)
    assert fires(rs, "LongCat launched.", source_id="wire", source_tags=("news",))
    assert not fires(rs, "LongCat launched.", source_id="wire")
    assert not fires(rs, "LongCat launched.", source_id="spam-1", source_tags=("news",))
    assert not fires(rs, "LongCat rumour.", source_id="wire", source_tags=("news",))
    assert fires(rs, "LongCat launched; rumour elsewhere.", source_id="wire", source_tags=("news",))
    doc_veto = make_rules(
        tmp_path, "LongCat", "    vetoes:\n      - query: rumour\n        scope: document\n"
    )
    assert not fires(doc_veto, "LongCat launched.\n\nA rumour elsewhere.")


def test_evidence_spans_captures_and_labels(tmp_path: Path) -> None:
    lists = "  vendors:\n    capture: vendor\n    terms:\n      Huawei: [Huawei, Ascend, 昇腾]\n"
    rs = make_rules(tmp_path, "SENT(@vendors AND train*)", lists=lists)
    text = "Intro sentence. Meituan said it trained the model on Ascend chips. Outro."
    m = fire(rs, text)
    assert m is not None
    assert m.evidence == "Meituan said it trained the model on Ascend chips."
    assert [(m.evidence[s.start : s.end], s.term) for s in m.spans] == [
        ("trained", "train*"),
        ("Ascend", "Ascend"),
    ]
    assert dict(m.captures) == {"vendor": "Huawei"}
    assert dict(m.labels) == {"story": "test"}
    assert (m.rule_id, m.title, m.severity, m.status) == ("t.rule", "Test rule", "medium", "asserted")


def test_statuses_and_fire_on(tmp_path: Path) -> None:
    hedged = "LongCat reportedly runs on Ascend."
    negated = "LongCat does not run on Ascend."
    asserted_rules = make_rules(tmp_path, "SENT(LongCat AND Ascend)")
    assert not fires(asserted_rules, hedged) and not fires(asserted_rules, negated)
    results = asserted_rules.explain(RuleInput(text=hedged))
    assert [(r.rule_id, r.fires, [h.status for h in r.hits]) for r in results] == [
        ("t.rule", False, ["hedged"])
    ]
    hedge_rules = make_rules(tmp_path, "SENT(LongCat AND Ascend)", "    fire_on: [hedged]\n")
    m = fire(hedge_rules, hedged)
    assert m is not None and m.status == "hedged"
    assert not fires(hedge_rules, "LongCat runs on Ascend.")
    neg_rules = make_rules(tmp_path, "SENT(LongCat AND Ascend)", "    fire_on: [negated]\n")
    m = fire(neg_rules, negated)
    assert m is not None and m.status == "negated"


def test_best_hit_prefers_asserted_and_more_terms(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "SENT(LongCat AND (Ascend OR Huawei))")
    text = "LongCat may use Ascend. LongCat uses Huawei Ascend chips. LongCat and Huawei."
    m = fire(rs, text)
    assert m is not None and m.evidence == "LongCat uses Huawei Ascend chips."
    [result] = rs.explain(RuleInput(text=text))
    assert [h.status for h in result.hits] == ["asserted", "asserted", "hedged"]
    assert result.fired == m
    assert rs.explain(RuleInput(text=text), firing_only=True) == (result,)


def test_explain_firing_only_keeps_the_rules_that_fire(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "SENT(LongCat AND Ascend)")  # fires on asserted hits only
    hedged = RuleInput(text="LongCat reportedly runs on Ascend.")
    assert [r.fires for r in rs.explain(hedged)] == [False]
    assert rs.explain(hedged, firing_only=True) == ()


def test_rule_input_from_document_and_pickling(tmp_path: Path) -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    doc = Document(
        source_id="lmarena",
        url="https://lmarena.ai/?utm_source=x",
        canonical_url="https://lmarena.ai/",
        title="Board",
        text="LongCat-2.0 | 1402",
        discovered=now,
        content_hash="x",
        source_kind="page",
        source_tags=("leaderboard",),
        language="en",
        published=now,
    )
    ri = RuleInput.from_document(doc)
    assert (ri.source_id, ri.source_kind, ri.source_tags, ri.published) == (
        "lmarena",
        "page",
        ("leaderboard",),
        now,
    )
    assert (ri.url, ri.text) == ("https://lmarena.ai/", "LongCat-2.0 | 1402")  # the canonical URL
    assert RuleInput.from_document(doc, text="only new sentences").text == "only new sentences"
    rs = make_rules(tmp_path, "LongCat-2.0 AND tag:leaderboard")
    again = pickle.loads(pickle.dumps(rs))
    assert [m.rule_id for m in again.evaluate(ri)] == ["t.rule"] == [m.rule_id for m in rs.evaluate(ri)]


def test_disabled_rules_are_not_evaluated(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "LongCat", "    enabled: false\n")
    assert len(rs) == 0 and not fires(rs, "LongCat")


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "。", "?!"])
def test_degenerate_documents(tmp_path: Path, text: str) -> None:
    assert not fires(make_rules(tmp_path, "LongCat OR /x+/"), text)


def test_prefilter_never_changes_the_result(tmp_path: Path) -> None:
    """The literal prefilter and the skipped searches are pure optimisations: compare with a
    brute-force evaluation of every rule on random documents."""
    import random

    from rules.engine import _first_firing
    from rules.evaluate import DocContext, DocMeta

    queries = [
        '"pre-train*" AND Ascend',
        "SENT(@v AND train*)",
        "Meituan NEAR/3 (Huawei OR 华为)",
        "LongCat-2.0 ONEAR/2 trained",
        "(Ascend OR Cambricon) NOT/s denied",
        "title:LongCat OR ATLEAST 2 Ascend",
        "PARA(@v AND 美团) NOTNEAR/2 not",
        "/Atlas\\s+9\\d0/ AND train*",
        "{AMD} AND NOT Nvidia",
    ]
    lists = "  v:\n    capture: vendor\n    terms: {Huawei: [Huawei, Ascend, 昇腾], Cambricon: [Cambricon]}\n"
    text = (
        "version: 1\nlists:\n"
        + lists
        + "rules:\n"
        + "".join(
            f"  - id: r{i}\n    title: r\n    severity: low\n    query: |\n      {q}\n"
            for i, q in enumerate(queries)
        )
    )
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    rs = load_rules([path])
    words = [
        *("LongCat-2.0", "Meituan", "Huawei", "华为", "美团", "昇腾", "Ascend", "Cambricon", "AMD", "amd"),
        *(
            "Nvidia",
            "trained",
            "pre-trained",
            "not",
            "denied",
            "Atlas",
            "950",
            "the",
            "was",
            "on",
            ".",
            "\n\n",
        ),
    ]
    rnd = random.Random(5)
    for _ in range(300):
        body = " ".join(rnd.choice(words) for _ in range(rnd.randrange(3, 40)))
        title = " ".join(rnd.choice(words) for _ in range(rnd.randrange(0, 5)))
        fast = {m.rule_id for m in rs.evaluate(RuleInput(title=title, text=body))}
        ctx = DocContext(title, body, DocMeta())
        slow = {cr.rule.id for cr in rs._compiled if _first_firing(cr, ctx) is not None}
        assert fast == slow, (title, body)


def test_clause_scope(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "SENT(LongCat AND CLAUSE(Kunlunxin AND serv*))")
    assert fires(rs, "Meituan said LongCat is served on Kunlunxin chips.")
    assert not fires(rs, "Meituan serves LongCat on its own cards, while Kunlunxin supplies Baidu.")
    m = fire(rs, "LongCat news: Kunlunxin serves it.")
    assert m is not None and [s.term for s in m.spans] == ["LongCat", "Kunlunxin", "serv*"]
    zh = make_rules(tmp_path, "CLAUSE(华为 AND 训练)")
    assert fires(zh, "美团确认，模型在华为集群上完成训练。")
    assert not fires(zh, "华为未回应，美团称训练已完成。")


def test_list_include_keeps_canonical_captures(tmp_path: Path) -> None:
    lists = (
        "  domestic:\n    capture: vendor\n    terms:\n      Huawei: [Huawei, Ascend, 华为, 昇腾]\n"
        "  foreign:\n    capture: vendor\n    terms:\n      Nvidia: [Nvidia, H20, 英伟达]\n"
        "  vendors:\n    capture: chipmaker\n    include: [domestic, foreign]\n"
        "  hw:\n    capture: vendor\n    include: [domestic]\n    terms:\n      domestic: [国产]\n"
    )
    rs = make_rules(tmp_path, "SENT(@vendors AND (train* OR 训练))", lists=lists)
    for text, value in [
        ("LongCat was trained on Ascend 910C chips.", "Huawei"),
        ("LongCat在昇腾集群上完成训练。", "Huawei"),
        ("美团在华为昇腾上训练了模型。", "Huawei"),
        ("It was trained on H20s.", None),
        ("它在英伟达H20上训练。", "Nvidia"),
    ]:
        m = fire(rs, text)
        assert (dict(m.captures).get("chipmaker") if m else None) == value, text
    hw = make_rules(tmp_path, "SENT(@hw AND 训练)", lists=lists)
    m = fire(hw, "模型在国产芯片上训练。")
    assert m is not None and dict(m.captures) == {"vendor": "domestic"}
    assert not fires(hw, "模型在英伟达芯片上训练。")


def test_list_include_errors(tmp_path: Path) -> None:
    from rules.engine import lint_paths

    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\nlists:\n  a:\n    include: [b]\n  b:\n    include: [a]\n  c:\n    include: [nope]\n"
        "  d:\n    capture: x\nrules:\n  - id: r\n    title: t\n    severity: low\n    query: '@a OR @c'\n",
        encoding="utf-8",
    )
    messages = [e.message for e in lint_paths([path])]
    assert any("list 'b' includes itself (through a -> b -> a)" in m for m in messages), messages
    assert any("list 'c' includes unknown list 'nope'" in m for m in messages), messages
    assert any("list 'd' needs 'terms' or 'include'" in m for m in messages), messages


def test_a_veto_of_the_evidence_does_not_leave_a_gate_firing_alone(tmp_path: Path) -> None:
    """`top:x AND SENT(...)` yields its operands' hits; vetoing the sentence must fail the AND."""
    extra = "    vetoes:\n      - query: DeepSeek\n        scope: clause\n"
    rs = make_rules(tmp_path, "top:LongCat AND SENT(model AND Ascend)", extra)
    assert fires(rs, "LongCat launched.\n\nThe model was trained on Ascend chips.")
    assert not fires(rs, "LongCat launched.\n\nThe model was trained on Ascend chips, like DeepSeek.")


def test_a_hedged_sentence_does_not_fire_through_an_asserted_gate(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "top:LongCat AND SENT(LongCat AND Ascend)")
    assert not fires(rs, "LongCat could run on Ascend cards in the future.")
    m = fire(rs, "LongCat runs on Ascend cards.")
    assert m is not None and m.status == "asserted"


def test_develops_on_gives_matches_a_canonical_development_key(tmp_path: Path) -> None:
    from datetime import timedelta

    lists = "  vendors:\n    capture: vendor\n    terms:\n      Huawei: [Huawei, Ascend, 华为, 昇腾]\n"
    extra = "    develops_on: [vendor]\n    develops_within: 3d\n"
    rs = make_rules(tmp_path, "SENT(@vendors AND (train* OR 训练))", extra, lists=lists)
    en = fire(rs, "LongCat-2.0 was trained on Ascend 910C chips.")
    zh = fire(rs, "LongCat-2.0在华为昇腾集群上完成训练。")
    assert en is not None and zh is not None
    assert en.development == zh.development == "vendor=Huawei"
    assert en.development_window == timedelta(days=3)
    default = make_rules(tmp_path, "SENT(@vendors AND train*)", "    develops_on: [vendor]\n", lists=lists)
    m = fire(default, "It was trained on Ascend chips.")
    assert m is not None and m.development_window == timedelta(hours=72)
    missing = make_rules(tmp_path, "SENT(Ascend AND train*)", "    develops_on: [vendor]\n")
    m = fire(missing, "It was trained on Ascend chips.")
    assert m is not None and (m.development, m.development_window) == (None, timedelta(hours=72))
    plain = fire(make_rules(tmp_path, "SENT(@vendors AND train*)", lists=lists), "Trained on Ascend.")
    assert plain is not None and (plain.development, plain.development_window) == (None, None)


def test_an_invalid_develops_within_is_a_lint_error(tmp_path: Path) -> None:
    from rules.engine import lint_paths

    path = tmp_path / "w.yaml"
    path.write_text(
        "version: 1\nrules:\n  - id: r\n    title: t\n    severity: low\n    query: a\n"
        "    develops_on: [vendor]\n    develops_within: soon\n",
        encoding="utf-8",
    )
    [error] = lint_paths([path])
    assert (error.line, error.rule_id) == (8, "r") and "72h" in error.message
