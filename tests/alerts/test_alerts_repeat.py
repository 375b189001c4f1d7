"""'Still developing' repeats (alerts.repeat_interval): real receivers, simulated time (``now``)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from crawler.alerts.admin import add_silence, expire_silence, show_alert
from crawler.alerts.payload import repeat_payload, sample_payload
from crawler.alerts.render import Renderer
from crawler.alerts.repeats import Notice, RepeatDue, repeat_due
from crawler.cli import register_all
from crawler.cli.base import cli
from crawler.config import AlertsConfig, ChannelConfig
from storage import outbox_relay
from storage.db import Database, open_database
from tests.alertkit import (
    T0,
    WIRE,
    Receiver,
    add_document,
    add_story,
    alerts_cfg,
    consoles,
    first_alert,
    match,
    new_db,
    record,
    run,
    section_text,
    slack_digest,
)

register_all(cli)
H = timedelta(hours=1)


def hook(url: str, **kw: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, "rate_per_second": 1000, **kw}


def corroborate(
    db: Database, cfg: AlertsConfig, story: int, source: str, at: datetime, srcs: list[tuple[str, str | None]]
) -> None:
    """Another document (from ``source``) quoting the same sentence, recorded at ``at``."""
    srcs.append((source, f"https://{source}.example/a"))
    with db.write() as s:
        doc = add_document(s, story, source=source)
    assert record(db, cfg, story, doc, sources=list(srcs), now=at).status == "corroborated"


def kinds(db: Database, alert_id: int, channel: str | None = None) -> list[tuple[str, str]]:
    return [(d.kind, d.state) for d in show_alert(db, alert_id).deliveries if channel in (None, d.channel)]


def test_repeat_is_sent_after_the_interval_while_the_story_keeps_growing(tmp_path: Path) -> None:
    with Receiver() as rx:
        db, cfg, story, alert_id, relay, _, _ = first_alert(
            new_db(tmp_path),
            {"hook": hook(rx.url)},
            sources=[WIRE],
            repeat_interval="6h",
            notify_updates=False,
        )
        assert run(relay, T0).sent == 1
        srcs: list[tuple[str, str | None]] = [WIRE]
        corroborate(db, cfg, story, "reuters", T0 + H, srcs)
        assert run(relay, T0 + H).attempts == ()  # notify_updates off: nothing immediate
        before = run(relay, T0 + 6 * H - timedelta(seconds=1))
        assert before.attempts == () and before.repeats == 0  # not before the interval
        due = run(relay, T0 + 6 * H)
        assert due.repeats == 1 and due.sent == 1
        assert run(relay, T0 + 13 * H).attempts == ()  # the story went quiet: no more repeats
        corroborate(db, cfg, story, "caixin", T0 + 14 * H, srcs)
        corroborate(db, cfg, story, "scmp", T0 + 14 * H, srcs)
        assert run(relay, T0 + 14 * H).sent == 1  # 8h since the last notice: due at once
        assert run(relay, T0 + 30 * H).attempts == ()
    first, repeat1, repeat2 = rx.requests
    assert first.headers["x-storywatch-event"] == "alert"
    assert repeat1.headers["x-storywatch-event"] == "repeat"
    assert repeat1.headers["idempotency-key"] == f"repeat-{alert_id}-hook-1"
    body = repeat1.json()
    assert body["event"] == "repeat" and body["alert"]["source_count"] == 2
    assert (
        body["repeat"]["n"] == 1 and body["repeat"]["new_sources"] == 1 and body["repeat"]["new_reports"] == 1
    )
    assert body["repeat"]["previous_at"] == T0.isoformat()
    assert {s["url"] for s in body["alert"]["sources"]} == {WIRE[1], "https://reuters.example/a"}
    assert "Huawei Ascend 910C" in body["alert"]["evidence"]
    body2 = repeat2.json()
    assert repeat2.headers["idempotency-key"] == f"repeat-{alert_id}-hook-2"
    assert body2["alert"]["source_count"] == 4 and body2["repeat"]["new_sources"] == 2
    assert kinds(db, alert_id) == [("alert", "sent"), ("repeat", "sent"), ("repeat", "sent")]


def test_no_repeat_when_nothing_new_arrived(tmp_path: Path) -> None:
    db, cfg, story, alert_id, relay, bufs, doc = first_alert(new_db(tmp_path), repeat_interval="1h")
    assert run(relay, T0).sent == 1
    for hours in (1, 2, 50):
        report = run(relay, T0 + hours * H)
        assert report.repeats == 0 and report.attempts == ()
    # The same document recorded again is a duplicate, not news.
    record(db, cfg, story, doc, now=T0 + 51 * H)
    assert run(relay, T0 + 53 * H).attempts == ()
    assert kinds(db, alert_id) == [("alert", "sent")] and "Still developing" not in bufs["a"].getvalue()


def test_default_zero_never_repeats(tmp_path: Path) -> None:
    db, cfg, story, alert_id, relay, _, _ = first_alert(new_db(tmp_path), notify_updates=False)
    run(relay, T0)
    corroborate(db, cfg, story, "reuters", T0 + H, [WIRE])
    assert run(relay, T0 + 1000 * H).attempts == ()
    assert kinds(db, alert_id) == [("alert", "sent")]


def test_repeats_cover_what_updates_did_not(tmp_path: Path) -> None:
    """notify_updates on: a new source is an immediate update, so no repeat for it; another report
    from a known source is no update, and the repeat tells it once the interval has passed."""
    db, cfg, story, alert_id, relay, bufs, _ = first_alert(
        new_db(tmp_path), sources=[WIRE], repeat_interval="2h"
    )
    run(relay, T0)
    srcs: list[tuple[str, str | None]] = [WIRE]
    corroborate(db, cfg, story, "reuters", T0 + H, srcs)
    assert run(relay, T0 + H).sent == 1  # the update
    assert run(relay, T0 + 4 * H).attempts == ()  # the update carried everything
    with db.write() as s:
        doc = add_document(s, story, source="reuters")  # the same source reports it again
    record(db, cfg, story, doc, sources=list(srcs), now=T0 + 4 * H)
    assert [k for k, _ in kinds(db, alert_id)] == ["alert", "update"]  # no update: no new source
    assert run(relay, T0 + 4 * H).sent == 1
    assert kinds(db, alert_id)[-1] == ("repeat", "sent")
    text = bufs["a"].getvalue()
    assert (
        "Still developing: now reported by 2 sources, 1 new report, no new source since the last notice"
        in (text)
    )


def test_silence_suppresses_repeats_until_it_ends(tmp_path: Path) -> None:
    db, cfg, story, alert_id, relay, _, _ = first_alert(
        new_db(tmp_path), repeat_interval="1h", notify_updates=False
    )
    run(relay, T0)
    sil = add_silence(db, "longcat.*", duration="12h", now=T0 + H)
    corroborate(db, cfg, story, "reuters", T0 + 2 * H, [WIRE])
    for at in (T0 + 2 * H, T0 + 3 * H + H / 2):
        assert run(relay, at).repeats == 0
    assert kinds(db, alert_id) == [("alert", "sent")]  # silenced: nothing queued, not even silenced rows
    expire_silence(db, sil.id, now=T0 + 3 * H + H / 2)
    assert run(relay, T0 + 3 * H + H / 2).sent == 1  # still developing after the silence: it goes
    assert kinds(db, alert_id) == [("alert", "sent"), ("repeat", "sent")]


def test_old_news_is_not_replayed_after_a_long_silence(tmp_path: Path) -> None:
    """A repeat tells what happened in the last two intervals; a silence (or a stopped daemon, or
    repeats just turned on) longer than that does not replay older corroborations."""
    db, cfg, story, alert_id, relay, _, _ = first_alert(
        new_db(tmp_path), repeat_interval="1h", notify_updates=False
    )
    run(relay, T0)
    sil = add_silence(db, "*", duration="12h", now=T0 + H)
    srcs: list[tuple[str, str | None]] = [WIRE]
    corroborate(db, cfg, story, "reuters", T0 + 2 * H, srcs)
    expire_silence(db, sil.id, now=T0 + 12 * H)
    assert run(relay, T0 + 12 * H).attempts == ()
    corroborate(db, cfg, story, "caixin", T0 + 13 * H, srcs)  # fresh news: repeated, with the old
    assert run(relay, T0 + 13 * H).sent == 1
    assert kinds(db, alert_id) == [("alert", "sent"), ("repeat", "sent")]


def test_per_channel_interval_overrides_the_global_one(tmp_path: Path) -> None:
    channels: dict[str, dict[str, Any]] = {
        "inherit": {"type": "console"},
        "fast": {"type": "console", "repeat_interval": "1h"},
        "never": {"type": "console", "repeat_interval": 0},
    }
    db, cfg, story, alert_id, relay, bufs, _ = first_alert(
        new_db(tmp_path), channels, repeat_interval="6h", notify_updates=False
    )
    assert run(relay, T0).sent == 3
    corroborate(db, cfg, story, "reuters", T0 + timedelta(minutes=10), [WIRE])
    assert run(relay, T0 + H).sent == 1 and "Still developing" in bufs["fast"].getvalue()
    assert run(relay, T0 + 5 * H).attempts == ()
    assert run(relay, T0 + 6 * H).sent == 1 and "Still developing" in bufs["inherit"].getvalue()
    assert run(relay, T0 + 100 * H).attempts == ()
    assert kinds(db, alert_id, "never") == [("alert", "sent")]
    assert (
        kinds(db, alert_id, "fast")
        == kinds(db, alert_id, "inherit")
        == [("alert", "sent"), ("repeat", "sent")]
    )


def test_digest_channel_holds_the_repeat_for_its_digest(tmp_path: Path) -> None:
    with Receiver() as rx:
        db, cfg, story, alert_id, relay, _, _ = first_alert(
            new_db(tmp_path), {"d": slack_digest(rx.url)}, repeat_interval="2h", notify_updates=False
        )
        assert run(relay, T0 + H).sent == 1  # the 09:00-10:00 digest, sent at 10:00
        corroborate(db, cfg, story, "reuters", T0 + 90 * timedelta(minutes=1), [WIRE])
        assert run(relay, T0 + 2 * H).attempts == ()
        composed = run(relay, T0 + 3 * H + timedelta(minutes=5))  # 2h after the digest was sent
        assert composed.repeats == 1 and composed.attempts == ()
        assert kinds(db, alert_id) == [("alert", "digested"), ("repeat", "held")]
        assert run(relay, T0 + 4 * H).sent == 1  # the 12:00-13:00 digest carries it
        assert run(relay, T0 + 20 * H).attempts == ()
    assert len(rx.requests) == 2
    text = section_text(rx.requests[1].json())
    assert "*1 alert*" in text and "(still developing, 1 new source since the last notice)" in text
    (_, repeat) = show_alert(db, alert_id).deliveries
    assert repeat.state == "digested" and repeat.detail["digest_state"] == "sent"


def test_quiet_hours_delay_a_repeat_and_new_sources_refresh_it(tmp_path: Path) -> None:
    quiet = {"q": {"type": "console", "quiet_hours": "22:00-07:00"}}
    db, cfg, story, alert_id, relay, bufs, _ = first_alert(new_db(tmp_path), quiet, repeat_interval="4h")
    run(relay, T0)
    with db.write() as s:
        doc = add_document(s, story, source="wire")
    record(db, cfg, story, doc, sources=[WIRE], now=T0 + 11 * H)  # a second wire story: no update
    night = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    assert run(relay, night).repeats == 1
    (_, repeat) = show_alert(db, alert_id).deliveries
    assert repeat.state == "pending" and repeat.next_attempt_at == datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    corroborate(db, cfg, story, "reuters", night + H, [WIRE])  # folded into the waiting repeat
    assert [k for k, _ in kinds(db, alert_id)] == ["alert", "repeat"]
    assert run(relay, datetime(2026, 11, 28, 7, 0, tzinfo=UTC)).sent == 1
    assert "now reported by 2 sources, 1 new source since the last notice" in bufs["q"].getvalue()


def _two_relays_compose(db_url: str, n_alerts: int) -> tuple[list[int], Database]:
    db = open_database(db_url)
    cfg = alerts_cfg({"a": {"type": "console"}}, repeat_interval="1h", notify_updates=False)
    story, docs = add_story(db)
    ids = [
        record(db, cfg, story, docs[0], match(f"Fact {i}: Huawei Ascend 910C.")).alert_id
        for i in range(n_alerts)
    ]
    relay, _ = consoles(db, cfg)
    assert run(relay, T0).sent == n_alerts
    for i in range(n_alerts):
        with db.write() as s:
            doc = add_document(s, story, source="reuters")
        record(
            db,
            cfg,
            story,
            doc,
            match(f"Fact {i}: Huawei Ascend 910C."),
            sources=[WIRE, ("reuters", None)],
            now=T0 + H,
        )
    others = [open_database(db_url, migrate=False) for _ in range(2)]
    start = threading.Barrier(2)
    made: list[int] = []

    def compose(wdb: Database) -> None:
        start.wait()
        made.append(outbox_relay.compose_repeats(wdb, cfg, T0 + 2 * H))

    threads = [threading.Thread(target=compose, args=(o,)) for o in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for o in others:
        o.dispose()
    assert sum(made) == n_alerts, made
    return ids, db


def test_two_relays_composing_at_once_create_one_repeat(db_url: str) -> None:
    ids, db = _two_relays_compose(db_url, 6)
    assert all(kinds(db, i) == [("alert", "sent"), ("repeat", "pending")] for i in ids)
    # And two relays running whole passes at the same moment send each repeat once.
    cfg = alerts_cfg({"a": {"type": "console"}}, repeat_interval="1h", notify_updates=False)
    relays, bufs = zip(*(consoles(db, cfg) for _ in range(2)), strict=True)

    async def both() -> None:
        await asyncio.gather(*(r.run_once(T0 + 2 * H) for r in relays))

    asyncio.run(both())
    out = "".join(b["a"].getvalue() for b in bufs)
    assert out.count("--- [storywatch] Still developing") == 6  # one message (subject line) each
    assert all(kinds(db, i) == [("alert", "sent"), ("repeat", "sent")] for i in ids)
    db.dispose()


def test_alerts_show_lists_repeats(tmp_path: Path) -> None:
    db_path = tmp_path / "sw.db"
    conf = tmp_path / "storywatch.yaml"
    conf.write_text(f'database: "sqlite:///{db_path}"\nalerts: {{repeat_interval: 1h}}\n', "utf-8")
    db, cfg, story, alert_id, relay, _, _ = first_alert(
        open_database(f"sqlite:///{db_path}"),
        {"console": {"type": "console"}},
        repeat_interval="1h",
        notify_updates=False,
    )
    run(relay, T0)
    corroborate(db, cfg, story, "reuters", T0 + H, [WIRE])
    run(relay, T0 + 2 * H)
    result = CliRunner().invoke(cli, ["--config", str(conf), "alerts", "show", str(alert_id)])
    assert result.exit_code == 0, result.output
    assert "repeat" in result.output
    as_json = CliRunner().invoke(cli, ["--config", str(conf), "alerts", "show", str(alert_id), "--json"])
    rows = json.loads(as_json.output)["deliveries"]
    assert [(r["kind"], r["state"], r["idempotency_key"]) for r in rows] == [
        ("alert", "sent", f"alert-{alert_id}-console-r0"),
        ("repeat", "sent", f"repeat-{alert_id}-console-1"),
    ]
    db.dispose()


def _n(kind: str, state: str, at: datetime, corr: int) -> Notice:
    return Notice(kind, state, at, at if state == "sent" else None, corr + 1, corr)


def due(notices: Sequence[Notice], corr: int, now: datetime, interval: float = 3600) -> RepeatDue | None:
    return repeat_due(notices, corroborations=corr, updated_at=now - H / 2, interval=interval, now=now)


def test_repeat_due_rules() -> None:
    sent: Sequence[Notice] = [_n("alert", "sent", T0, 0)]
    assert due(sent, 1, T0 + H) is not None
    assert due(sent, 0, T0 + 9 * H) is None  # nothing new
    assert due(sent, 1, T0 + 9 * H, interval=0) is None  # off
    assert due(sent, 1, T0 + H / 2) is None  # too early
    stale = repeat_due(sent, corroborations=1, updated_at=T0 + H, interval=3600, now=T0 + 3 * H)
    assert stale is None  # last corroborated two intervals ago
    assert due([*sent, _n("update", "pending", T0 + H, 1)], 2, T0 + 9 * H) is None  # something waits
    never: Mapping[str, Sequence[Notice]] = {
        "failed": [_n("alert", "failed", T0, 0)],
        "silenced": [_n("alert", "silenced", T0, 0)],
    }
    assert all(due(v, 3, T0 + H, interval=60) is None for v in never.values())
    # A repeat that failed for good is not re-queued on every pass: the interval restarts from it.
    failed = [*sent, _n("repeat", "failed", T0 + 2 * H, 1)]
    assert due(failed, 1, T0 + 2 * H + H / 2) is None
    again = due(failed, 1, T0 + 3 * H)
    assert (
        again is not None and again.n == 2 and again.previous_at == T0 and again.previous_corroborations == 0
    )


def test_every_channel_format_says_it_is_a_repeat() -> None:
    alert = dict(sample_payload(T0)["alert"], source_count=3, corroborations=2)
    payload = repeat_payload(alert, n=1, previous_at=T0, previous_source_count=1, previous_corroborations=0)
    renderer = Renderer()
    extra: dict[str, dict[str, Any]] = {
        "console": {},
        "slack": {"url": "https://hooks.example/x"},
        "webhook": {"url": "https://hooks.example/y"},
        "email": {"host": "mail.example", "sender": "a@example.org", "recipients": ["b@example.org"]},
    }
    news = "now reported by 3 sources, 2 new sources since the last notice"
    for kind, keys in extra.items():
        cfg = ChannelConfig.model_validate({"type": kind, **keys})
        msg = renderer.render(kind, cfg, payload, idempotency_key="repeat-0-x-1")
        assert msg.kind == "repeat" and msg.subject.startswith("[storywatch] Still developing:")
        if kind == "webhook":
            assert msg.data is not None and msg.data["event"] == "repeat"
            assert msg.data["repeat"] == {
                "n": 1,
                "previous_at": T0.isoformat(),
                "new_sources": 2,
                "new_reports": 2,
            }
            continue
        body = json.dumps(msg.data) if msg.data else msg.text
        assert news in body and "example.com/storywatch-test" in body, kind
    email = renderer.render(
        "e", ChannelConfig.model_validate({"type": "email", **extra["email"]}), payload, idempotency_key="k"
    )
    assert email.html is not None and f"<strong>Still developing:</strong> {news}" in email.html


def test_a_burst_of_due_repeats_is_spread_over_passes(tmp_path: Path) -> None:
    db = new_db(tmp_path)
    cfg = alerts_cfg({"a": {"type": "console"}}, repeat_interval="1h", notify_updates=False)
    story, docs = add_story(db)
    n = outbox_relay.MAX_REPEATS_PER_PASS + 5
    ids = [
        record(db, cfg, story, docs[0], match(f"Fact {i}: Huawei Ascend 910C.")).alert_id for i in range(n)
    ]
    relay, _ = consoles(db, cfg)
    assert sum(run(relay, T0).sent for _ in range(3)) == n  # 50 rows per lease
    with db.write() as s:
        doc = add_document(s, story, source="reuters")
    for i in range(n):
        fact = match(f"Fact {i}: Huawei Ascend 910C.")
        record(db, cfg, story, doc, fact, sources=[WIRE, ("reuters", None)], now=T0 + H)
    assert outbox_relay.compose_repeats(db, cfg, T0 + 2 * H) == outbox_relay.MAX_REPEATS_PER_PASS
    assert outbox_relay.compose_repeats(db, cfg, T0 + 2 * H) == 5
    assert outbox_relay.compose_repeats(db, cfg, T0 + 2 * H) == 0
    assert all(kinds(db, i) == [("alert", "sent"), ("repeat", "pending")] for i in ids)
