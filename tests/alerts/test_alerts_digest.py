"""Digest channels, quiet hours and the timing rules (simulated time: every pass gets ``now``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crawler.alerts.admin import check_alerts, show_alert
from crawler.alerts.relay import Relay
from crawler.alerts.routing import digest_period, quiet_until, schedule
from crawler.config import ChannelConfig, ConfigError, Settings
from tests.alertkit import (
    T0,
    Receiver,
    add_document,
    add_story,
    alerts_cfg,
    first_alert,
    match,
    new_db,
    record,
    run,
    section_text,
    slack_digest,
)


def test_digest_channel_gets_one_message_per_period(tmp_path: Path) -> None:
    with Receiver() as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"digest": slack_digest(rx.url, timezone="Europe/Paris")})
        story, docs = add_story(db)
        ids = [
            record(
                db,
                cfg,
                story,
                docs[0],
                match(f"Item {i}: Huawei Ascend 910C."),
                now=T0 + timedelta(minutes=m),
            ).alert_id
            for i, m in enumerate((5, 20, 50))
        ]
        assert {d.state for i in ids for d in show_alert(db, i).deliveries} == {"held"}
        relay = Relay(db, cfg)
        assert run(relay, T0 + timedelta(minutes=59)).attempts == ()
        report = run(relay, T0 + timedelta(minutes=61))
        assert report.digests == 1 and report.sent == 1
        late = record(
            db, cfg, story, docs[0], match("Item 3: Huawei Ascend 910C."), now=T0 + timedelta(minutes=70)
        )
        assert run(relay, T0 + timedelta(minutes=90)).attempts == ()
        assert run(relay, T0 + timedelta(minutes=121)).sent == 1
        assert len(rx.requests) == 2
    first, second = (r.json() for r in rx.requests)
    text = section_text(first)
    assert "*3 alerts*" in text and "10:00 to 2026-11-27 11:00 (Europe/Paris)" in text
    assert all(f"Item {i}" in text for i in range(3)) and "Item 3" not in text
    assert "*1 alert*" in second["blocks"][0]["text"]["text"]
    details = show_alert(db, ids[0]).deliveries[0]
    assert details.state == "digested" and details.detail["digest_state"] == "sent"
    assert show_alert(db, late.alert_id).deliveries[0].state == "digested"


def test_corroboration_while_held_is_folded_into_the_digest(tmp_path: Path) -> None:
    daily = {"type": "console", "mode": "digest", "digest": "daily", "digest_at": "08:00"}
    db, cfg, story, first, relay, bufs, _ = first_alert(new_db(tmp_path), {"d": daily})
    with db.write() as s:
        doc2 = add_document(s, story, source="reprint")
    record(db, cfg, story, doc2, sources=[("wire", None), ("reprint", None)], now=T0 + timedelta(hours=1))
    assert [d.kind for d in show_alert(db, first).deliveries] == ["alert"]
    assert run(relay, T0 + timedelta(days=1)).sent == 1
    assert "1 alert, daily digest" in bufs["d"].getvalue() and "Reported by 2 sources" in bufs["d"].getvalue()


def test_quiet_hours_hold_immediate_deliveries_until_they_end(tmp_path: Path) -> None:
    quiet = {"type": "console", "quiet_hours": "22:00-07:00", "timezone": "Europe/Paris"}
    night = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)  # 23:30 in Paris
    db, _, _, alert_id, relay, bufs, _ = first_alert(new_db(tmp_path), {"q": quiet}, now=night)
    (d,) = show_alert(db, alert_id).deliveries
    assert d.state == "pending" and d.next_attempt_at == datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    assert run(relay, night + timedelta(hours=2)).attempts == ()
    assert (
        run(relay, datetime(2026, 11, 28, 6, 1, tzinfo=UTC)).sent == 1 and "Meituan" in bufs["q"].getvalue()
    )


def _ch(**kw: object) -> ChannelConfig:
    return ChannelConfig.model_validate({"type": "console", **kw})


def test_daily_digest_period_follows_the_local_clock_across_dst() -> None:
    ny = _ch(mode="digest", digest="daily", digest_at="08:00", timezone="America/New_York")
    start, end = digest_period("n", ny, datetime(2026, 11, 27, 9, 0, tzinfo=UTC))  # 04:00 EST
    assert end == datetime(2026, 11, 27, 13, 0, tzinfo=UTC) and start == end - timedelta(days=1)
    start, end = digest_period("n", ny, datetime(2026, 3, 8, 6, 0, tzinfo=UTC))  # DST starts that night
    assert end == datetime(2026, 3, 8, 12, 0, tzinfo=UTC) and end - start == timedelta(hours=23)
    at_boundary = digest_period("n", ny, datetime(2026, 11, 27, 13, 0, tzinfo=UTC))[1]
    assert at_boundary == datetime(2026, 11, 28, 13, 0, tzinfo=UTC)  # the end is exclusive


def test_hourly_digest_in_a_half_hour_zone() -> None:
    india = _ch(mode="digest", digest="hourly", timezone="Asia/Kolkata")
    start, end = digest_period("i", india, datetime(2026, 11, 27, 9, 10, tzinfo=UTC))  # 14:40 IST
    assert (start, end) == (
        datetime(2026, 11, 27, 8, 30, tzinfo=UTC),
        datetime(2026, 11, 27, 9, 30, tzinfo=UTC),
    )
    assert schedule("i", india, datetime(2026, 11, 27, 9, 10, tzinfo=UTC)).state == "held"


def test_quiet_hours_window_edges() -> None:
    ch = _ch(quiet_hours="22:00-07:00", timezone="UTC")
    assert quiet_until("c", ch, datetime(2026, 11, 27, 21, 59, tzinfo=UTC)) is None
    assert quiet_until("c", ch, datetime(2026, 11, 27, 22, 0, tzinfo=UTC)) == datetime(
        2026, 11, 28, 7, 0, tzinfo=UTC
    )
    assert quiet_until("c", ch, datetime(2026, 11, 28, 6, 59, tzinfo=UTC)) == datetime(
        2026, 11, 28, 7, 0, tzinfo=UTC
    )
    assert quiet_until("c", ch, datetime(2026, 11, 28, 7, 0, tzinfo=UTC)) is None
    day = _ch(quiet_hours="12:00-13:30", timezone="UTC")
    assert quiet_until("c", day, datetime(2026, 11, 27, 12, 45, tzinfo=UTC)) == datetime(
        2026, 11, 27, 13, 30, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("timezone", "Mars/Olympus", "unknown time zone"),
        ("quiet_hours", "22-07", "not a time of day"),
        ("quiet_hours", "late", "not a time range"),
        ("digest_at", "8am", "not a time of day"),
    ],
)
def test_bad_timing_settings_are_clear_config_errors(key: str, value: str, needle: str) -> None:
    settings = Settings.model_validate({"alerts": {"channels": {"c": {"type": "console", key: value}}}})
    with pytest.raises(ConfigError, match=needle) as err:
        check_alerts(settings)
    assert f"alerts.channels.c.{key}" in str(err.value)
