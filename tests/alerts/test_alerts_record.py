"""Alert creation in the ingest transaction: outbox rows, corroboration, silences, backfill, admin queries."""

from __future__ import annotations

import asyncio
import importlib.util
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crawler.alerts.admin import (
    add_silence,
    expire_silence,
    list_alerts,
    list_silences,
    outbox_depth,
    retry_delivery,
    show_alert,
    to_jsonable,
)
from crawler.alerts.base import AlertNotFound, Channel, ChannelUnavailable, build_channel
from crawler.alerts.console import ConsoleChannel
from crawler.alerts.payload import evidence_hash
from crawler.alerts.relay import Relay
from crawler.config import AlertsConfig, ChannelConfig
from crawler.errors import StorywatchError
from storage.db import Database
from storage.models import AlertRow, DeliveryRow, MatchRow
from storage.outbox import enqueue_notice, release_held
from tests.alertkit import (
    EVIDENCE,
    T0,
    add_document,
    add_story,
    alerts_cfg,
    match,
    new_db,
    record,
    run,
)

TWO = {"a": {"type": "console"}, "b": {"type": "console"}}


def consoles(
    db: Database, cfg: AlertsConfig, names: tuple[str, ...] = ("a", "b")
) -> tuple[Relay, dict[str, io.StringIO]]:
    bufs = {n: io.StringIO() for n in names}
    chans: dict[str, Channel] = {
        n: ConsoleChannel(n, ChannelConfig.model_validate({"type": "console"}), stream=bufs[n]) for n in names
    }
    return Relay(db, cfg, channels=chans), bufs


def count(db: Database, model: type) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_evidence_hash_ignores_case_spacing_and_punctuation() -> None:
    assert evidence_hash("Meituan said: LongCat-2.0 used  Ascend!") == evidence_hash(
        "meituan said longcat 2 0 used ascend"
    )
    assert evidence_hash("Meituan said LongCat used Ascend.") != evidence_hash(
        "Meituan denied LongCat used Ascend."
    )


def test_new_alert_writes_match_alert_and_one_delivery_per_routed_channel(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg({**TWO, "off": {"type": "console", "enabled": False}})
    story, docs = add_story(db)
    out = record(db, cfg, story, docs[0])
    assert out.created and out.status == "new" and out.channels == ("a", "b")
    detail = show_alert(db, out.alert_id)
    assert detail.group_key == f"rule=longcat.vendor-disclosed|story={story}"
    assert detail.details["headline"] == "LongCat-2.0 hardware named"
    assert [(d.channel, d.kind, d.state, d.idempotency_key) for d in detail.deliveries] == [
        ("a", "alert", "pending", f"alert-{out.alert_id}-a-r0"),
        ("b", "alert", "pending", f"alert-{out.alert_id}-b-r0"),
    ]
    with db.read() as s:
        m = s.scalars(select(MatchRow)).one()
    assert m.alert_id == out.alert_id and m.evidence_hash == evidence_hash(EVIDENCE)


def test_routes_send_rules_to_their_channels_only(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    routes = [
        {"rules": ["longcat.*"], "severity": ["high", "critical"], "channels": ["a"]},
        {"rules": ["industry.*"], "channels": ["b"]},
    ]
    cfg = alerts_cfg(TWO, routes=routes)
    story, docs = add_story(db)
    assert record(db, cfg, story, docs[0]).channels == ("a",)
    low = match("LongCat-2.0 low note on Huawei Ascend 910C.", severity="low")
    assert record(db, cfg, story, docs[0], low).channels == ()
    other = match("Another lab trained on Huawei Ascend 910C.", rule="industry.domestic-training")
    assert record(db, cfg, story, docs[0], other).channels == ("b",)


def test_same_document_again_is_a_duplicate(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg(TWO)
    story, docs = add_story(db)
    first = record(db, cfg, story, docs[0])
    again = record(db, cfg, story, docs[0])
    assert again.status == "duplicate" and again.alert_id == first.alert_id
    assert count(db, AlertRow) == 1 and count(db, DeliveryRow) == 2 and count(db, MatchRow) == 1


def test_corroboration_updates_the_alert_and_sends_an_update_not_a_new_alert(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg(TWO)
    story, docs = add_story(db)
    relay, bufs = consoles(db, cfg)
    first = record(db, cfg, story, docs[0])
    assert run(relay, T0).sent == 2
    with db.write() as s:
        doc2 = add_document(s, story, source="reprint")
    reprint = match(
        "MEITUAN said LongCat-2.0 was trained on Huawei Ascend 910C chips!"
    )  # same sentence, restyled
    srcs = [("wire", "https://wire.example/a"), ("reprint", "https://reprint.example/a")]
    second = record(db, cfg, story, doc2, reprint, sources=srcs, now=T0 + timedelta(minutes=5))
    assert second.status == "corroborated" and second.alert_id == first.alert_id and second.source_count == 2
    assert count(db, AlertRow) == 1
    detail = show_alert(db, first.alert_id)
    assert detail.alert.source_count == 2 and detail.alert.corroborations == 1
    assert [(d.kind, d.state) for d in detail.deliveries if d.channel == "a"] == [
        ("alert", "sent"),
        ("update", "pending"),
    ]
    assert run(relay, T0 + timedelta(minutes=6)).sent == 2
    assert "now reported by 2 sources" in bufs["a"].getvalue() and "reprint" in bufs["a"].getvalue()
    # A new evidence sentence in the same story is a second alert.
    third = record(
        db, cfg, story, doc2, match("LongCat-2.0 training also used 8,192 Huawei Ascend 910C per pod.")
    )
    assert third.created and third.alert_id != first.alert_id and count(db, AlertRow) == 2


def test_updates_coalesce_into_the_waiting_row(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg({"a": {"type": "console"}})
    story, docs = add_story(db)
    relay, bufs = consoles(db, cfg, ("a",))
    first = record(db, cfg, story, docs[0])
    srcs: list[tuple[str, str | None]] = [("wire", None)]
    for i, name in enumerate(["s2", "s3", "s4"]):
        srcs.append((name, f"https://{name}.example/x"))
        with db.write() as s:
            doc = add_document(s, story, source=name)
        record(db, cfg, story, doc, sources=srcs, now=T0 + timedelta(minutes=i))
    # Not sent yet: the alert row itself now says 4 sources; no extra rows.
    (d,) = show_alert(db, first.alert_id).deliveries
    assert d.kind == "alert" and d.state == "pending"
    assert run(relay, T0 + timedelta(minutes=5)).sent == 1
    assert "Reported by 4 sources" in bufs["a"].getvalue()
    for name in ["s5", "s6"]:
        srcs.append((name, None))
        with db.write() as s:
            doc = add_document(s, story, source=name)
        record(db, cfg, story, doc, sources=srcs, now=T0 + timedelta(minutes=10))
    kinds = [(d.kind, d.state) for d in show_alert(db, first.alert_id).deliveries]
    assert kinds == [("alert", "sent"), ("update", "pending")]  # two corroborations, one pending update
    assert run(relay, T0 + timedelta(minutes=11)).sent == 1
    assert "now reported by 6 sources" in bufs["a"].getvalue()


def test_reprint_in_another_story_corroborates(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg({"a": {"type": "console"}})
    s1, d1 = add_story(db)
    s2, d2 = add_story(db, title="Reprint with a new headline", source="other")
    first = record(db, cfg, s1, d1[0])
    second = record(db, cfg, s2, d2[0], sources=[("other", "https://other.example/z")])
    assert second.status == "corroborated" and second.alert_id == first.alert_id and count(db, AlertRow) == 1


def test_silenced_rule_sends_nothing_until_the_silence_expires(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg({"a": {"type": "console"}})
    story, docs = add_story(db)
    relay, bufs = consoles(db, cfg, ("a",))
    sil = add_silence(db, "longcat.*", duration="2h", comment="noisy during launch", now=T0)
    assert sil.active and [s.id for s in list_silences(db, now=T0)] == [sil.id]
    out = record(db, cfg, story, docs[0], now=T0 + timedelta(minutes=1))
    assert out.created and out.silenced_by == sil.id
    assert run(relay, T0 + timedelta(minutes=2)).attempts == ()
    assert [d.state for d in show_alert(db, out.alert_id).deliveries] == ["silenced"]
    other = record(
        db, cfg, story, docs[0], match("Other rule fired on Huawei Ascend 910C.", rule="industry.x")
    )
    assert other.silenced_by is None  # the glob does not match industry.*
    # After the silence ends, new alerts are delivered; the silenced one stays silenced (visible, retryable).
    later = record(
        db,
        cfg,
        story,
        docs[0],
        match("Later: Huawei Ascend 910C confirmed by Huawei."),
        now=T0 + timedelta(hours=3),
    )
    assert later.silenced_by is None
    sent = run(relay, T0 + timedelta(hours=3))
    assert sent.sent == 2 and "Later:" in bufs["a"].getvalue() and "Meituan said" not in bufs["a"].getvalue()
    assert list_silences(db, now=T0 + timedelta(hours=3)) == ()
    assert retry_delivery(db, out.alert_id, now=T0 + timedelta(hours=3)).delivery_ids
    assert run(relay, T0 + timedelta(hours=3)).sent == 1 and "Meituan said" in bufs["a"].getvalue()


def test_expire_silence_ends_it_now(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg({"a": {"type": "console"}})
    story, docs = add_story(db)
    sil = add_silence(db, "*", until=T0 + timedelta(days=1), now=T0)
    assert not expire_silence(db, sil.id, now=T0 + timedelta(minutes=1)).active
    assert record(db, cfg, story, docs[0], now=T0 + timedelta(minutes=2)).silenced_by is None
    with pytest.raises(AlertNotFound):
        expire_silence(db, 999)
    with pytest.raises(StorywatchError):
        add_silence(db, "*", now=T0)


@pytest.mark.parametrize(("policy", "rows"), [("none", 0), ("digest", 1), ("all", 1)])
def test_backfill_policies(tmp_path: Path, policy: str, rows: int) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg({"a": {"type": "console"}})
    story, docs = add_story(db)
    relay, bufs = consoles(db, cfg, ("a",))
    out = record(db, cfg, story, docs[0], origin="backfill", backfill_policy=policy)
    record(
        db,
        cfg,
        story,
        docs[0],
        match("Backfill found Huawei Ascend 910C twice."),
        origin="backfill",
        backfill_policy=policy,
    )
    assert out.created and len(show_alert(db, out.alert_id).deliveries) == rows
    report = run(relay, T0 + timedelta(days=30))
    if policy == "digest":
        assert report.attempts == ()  # held until the backfill is over
        assert release_held(db, now=T0 + timedelta(days=30)) == 2
        report = run(relay, T0 + timedelta(days=30))
        assert report.digests == 1 and report.sent == 1 and "2 alerts" in bufs["a"].getvalue()
        assert "backfill" in bufs["a"].getvalue()
    else:
        assert report.sent == (2 if policy == "all" else 0)


def test_notice_goes_to_the_health_channel(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg(TWO, health_channel="b")
    relay, bufs = consoles(db, cfg)
    with db.write() as s:
        assert enqueue_notice(
            s,
            db,
            key="feed-x-failing",
            title="Source feed-x failing",
            text="5 errors in a row",
            alerts_cfg=cfg,
            now=T0,
        ) == ("b",)
        enqueue_notice(s, db, key="feed-x-failing", title="dup", text="dup", alerts_cfg=cfg, now=T0)
    assert run(relay, T0).sent == 1
    assert "Source feed-x failing" in bufs["b"].getvalue() and bufs["a"].getvalue() == ""


def test_list_show_retry_and_depth(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg(TWO)
    story, docs = add_story(db)
    a1 = record(db, cfg, story, docs[0], now=T0).alert_id
    a2 = record(
        db, cfg, story, docs[0], match("Second: Huawei Ascend 910C."), now=T0 + timedelta(hours=1)
    ).alert_id
    assert [a.id for a in list_alerts(db)] == [a2, a1]
    assert [a.id for a in list_alerts(db, since=T0 + timedelta(minutes=30))] == [a2]
    assert list_alerts(db)[0].deliveries == {"a": "pending", "b": "pending"}
    depth = outbox_depth(db)
    assert depth.by_state == {"pending": 4} and depth.by_channel["a"] == {"pending": 2} and depth.pending == 4
    with pytest.raises(AlertNotFound):
        show_alert(db, 12345)
    with pytest.raises(AlertNotFound):
        retry_delivery(db, "d999")
    relay, _ = consoles(db, cfg)
    run(relay, T0 + timedelta(hours=2))
    assert outbox_depth(db).by_state == {"sent": 4}
    first = show_alert(db, a1).deliveries[0]
    with pytest.raises(StorywatchError, match="only failed, dead or silenced"):
        retry_delivery(db, f"d{first.id}")
    data = to_jsonable(show_alert(db, a1))
    assert data["alert"]["id"] == a1 and data["deliveries"][0]["state"] == "sent"
    assert isinstance(data["alert"]["created_at"], str)


def test_a_channel_that_cannot_be_built_waits_while_the_others_deliver(tmp_path: Path) -> None:
    if importlib.util.find_spec("apprise") is not None:
        pytest.skip("apprise is installed: this checks the error when it is missing")
    db = new_db(tmp_path)
    cfg = alerts_cfg({"a": {"type": "console"}, "push": {"type": "apprise", "urls": ["json://127.0.0.1:9/"]}})
    with pytest.raises(ChannelUnavailable, match=r"pip install 'storywatch\[apprise\]'"):
        build_channel("push", cfg.channels["push"])
    story, docs = add_story(db)
    out = record(db, cfg, story, docs[0])
    relay, _ = consoles(db, cfg, ("a",))
    report = run(relay, T0)
    assert report.sent == 1 and "apprise" in report.unavailable["push"]
    assert {d.channel: d.state for d in show_alert(db, out.alert_id).deliveries} == {
        "a": "sent",
        "push": "pending",
    }


def test_run_forever_delivers_as_alerts_arrive_and_stops_on_request(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg({"a": {"type": "console"}}, relay_interval=0.05)
    story, docs = add_story(db)
    relay, bufs = consoles(db, cfg, ("a",))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run_forever(stop))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(record, db, cfg, story, docs[0], now=datetime.now(UTC))
        for _ in range(200):
            if "Meituan said" in bufs["a"].getvalue():
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert bufs["a"].getvalue().count("Meituan said") == 1
    assert outbox_depth(db).by_state == {"sent": 1}
