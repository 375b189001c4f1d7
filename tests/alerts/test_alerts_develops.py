"""One development across stories and languages: a rule's ``develops_on`` captures make the
English and the Chinese report of the same vendor disclosure one alert (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select

from crawler.alerts.admin import show_alert
from crawler.types import Match
from storage.db import Database, open_database
from storage.models import AlertRow, DeliveryRow
from tests.alertkit import T0, add_story, alerts_cfg, match, record

WINDOW = timedelta(hours=72)
EN = "Meituan confirmed LongCat-2.0 was pre-trained on Huawei Ascend 910C chips."
ZH = "美团确认，LongCat-2.0的预训练在华为昇腾910C集群上完成。"
CAMBRICON = "Meituan said LongCat-2.0 is now also served on Cambricon MLU590 cards."


def vendor_match(evidence: str, vendor: str) -> Match:
    m = match(evidence, term=vendor)
    return replace(m, captures={"vendor": vendor}, development=f"vendor={vendor}", development_window=WINDOW)


def count(db: Database, model: type) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_same_capture_in_another_story_and_language_corroborates(db_url: str) -> None:
    db = open_database(db_url)
    cfg = alerts_cfg({"a": {"type": "console"}, "b": {"type": "console"}})
    en_story, en_docs = add_story(db, "Huawei chips behind LongCat-2.0", source="wire")
    zh_story, zh_docs = add_story(db, "美团LongCat-2.0训练芯片揭晓", source="cn-news")
    first = record(db, cfg, en_story, en_docs[0], vendor_match(EN, "Huawei"), language="en")
    second = record(
        db,
        cfg,
        zh_story,
        zh_docs[0],
        vendor_match(ZH, "Huawei"),
        sources=[("cn-news", "https://cn-news.example/a/1")],
        now=T0 + timedelta(hours=5),
        language="zh",
    )
    assert first.status == "new"
    assert second.status == "corroborated" and second.alert_id == first.alert_id
    assert count(db, AlertRow) == 1
    detail = show_alert(db, first.alert_id)
    assert [s["source_id"] for s in detail.details["sources"]] == ["wire", "cn-news"]
    assert detail.details["languages"] == ["en", "zh"]
    assert detail.alert.source_count == 2
    with db.read() as s:
        rows = s.execute(select(DeliveryRow.kind, DeliveryRow.payload)).all()
    assert sorted(kind for kind, _ in rows) == ["alert", "alert"]  # one per channel
    for _, payload in rows:  # the waiting rows carry both stories' sources and languages
        assert [x["source_id"] for x in payload["alert"]["sources"]] == ["wire", "cn-news"]
        assert payload["alert"]["languages"] == ["en", "zh"]


def test_another_capture_or_after_the_window_is_a_new_development(db_url: str) -> None:
    db = open_database(db_url)
    cfg = alerts_cfg({"a": {"type": "console"}})
    s1, d1 = add_story(db)
    s2, d2 = add_story(db, "Cambricon too", source="other")
    s3, d3 = add_story(db, "Huawei again, weeks later", source="late")
    huawei = record(db, cfg, s1, d1[0], vendor_match(EN, "Huawei"))
    cambricon = record(db, cfg, s2, d2[0], vendor_match(CAMBRICON, "Cambricon"), now=T0 + timedelta(hours=1))
    late = record(db, cfg, s3, d3[0], vendor_match(ZH, "Huawei"), now=T0 + WINDOW + timedelta(minutes=1))
    assert huawei.status == cambricon.status == late.status == "new"
    assert len({huawei.alert_id, cambricon.alert_id, late.alert_id}) == 3


def test_rules_without_develops_on_keep_one_alert_per_story(db_url: str) -> None:
    db = open_database(db_url)
    cfg = alerts_cfg({"a": {"type": "console"}})
    s1, d1 = add_story(db)
    s2, d2 = add_story(db, "Another story", source="other")
    plain_en, plain_zh = match(EN, term="Huawei"), match(ZH, term="华为")
    assert plain_en.development is None
    first = record(db, cfg, s1, d1[0], plain_en)
    second = record(db, cfg, s2, d2[0], plain_zh)
    assert (first.status, second.status) == ("new", "new")


def test_two_writers_recording_one_development_at_once_make_one_alert(pg_url: str) -> None:
    """The English and the Chinese story ingested by two processes at the same moment (PostgreSQL)."""
    import threading

    db = open_database(pg_url)
    cfg = alerts_cfg({"a": {"type": "console"}})
    stories = [add_story(db, f"story {i}", source=f"src{i}") for i in range(2)]
    writers = [open_database(pg_url, migrate=False) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def write(i: int) -> None:
        story, docs = stories[i]
        m = vendor_match(EN if i == 0 else ZH, "Huawei")
        barrier.wait()
        outcomes.append(record(writers[i], cfg, story, docs[0], m, sources=[(f"src{i}", None)]).status)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["corroborated", "new"]
    assert count(db, AlertRow) == 1
