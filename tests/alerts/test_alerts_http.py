"""Slack and webhook channels through the relay, against a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from crawler.alerts.admin import retry_delivery, show_alert, test_channel
from crawler.alerts.relay import Relay
from crawler.config import ConfigError, Settings, parse_settings
from crawler.errors import PermanentDeliveryError
from storage.db import Database
from tests.alertkit import (
    T0,
    Receiver,
    Reply,
    add_document,
    add_story,
    alerts_cfg,
    match,
    new_db,
    record,
    run,
)


def slack(url: str, **kw: Any) -> dict[str, Any]:
    return {"type": "slack", "url": url, "rate_per_second": 100, "timeout": 2, **kw}


def webhook(url: str, **kw: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, "rate_per_second": 100, "timeout": 2, **kw}


def one_alert(db: Database, cfg: Any, evidence: str | None = None) -> int:
    story, docs = add_story(db)
    out = record(db, cfg, story, docs[0], match(evidence) if evidence else None)
    return out.alert_id


def states(db: Database, alert_id: int) -> list[str]:
    return [d.state for d in show_alert(db, alert_id).deliveries]


def test_500_then_200_is_delivered_once_on_retry(tmp_path: Path) -> None:
    with Receiver([Reply(500, "boom")]) as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"slack": slack(rx.url)})
        alert_id = one_alert(db, cfg)
        relay = Relay(db, cfg, rng=random.Random(7))
        first = run(relay, T0)
        assert [a.outcome for a in first.attempts] == ["retry"]
        (d,) = show_alert(db, alert_id).deliveries
        assert d.state == "pending" and d.tries == 1 and "HTTP 500" in (d.last_error or "")
        assert T0 + timedelta(seconds=15) <= d.next_attempt_at <= T0 + timedelta(seconds=30)
        assert run(relay, T0 + timedelta(seconds=10)).attempts == ()  # not due yet
        assert run(relay, T0 + timedelta(seconds=31)).sent == 1
        assert run(relay, T0 + timedelta(hours=1)).attempts == ()
        assert len(rx.requests) == 2
        keys = {r.headers["x-storywatch-idempotency-key"] for r in rx.requests}
        assert keys == {f"alert-{alert_id}-slack-r0"}
        assert states(db, alert_id) == ["sent"]


def test_429_with_retry_after_pauses_the_channel_then_delivers(tmp_path: Path) -> None:
    with Receiver([Reply(429, "rate_limited", {"Retry-After": "120"})]) as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"slack": slack(rx.url)})
        story, docs = add_story(db)
        a1 = record(db, cfg, story, docs[0]).alert_id
        a2 = record(
            db, cfg, story, docs[0], match("A second sentence names Huawei Ascend 910C too.")
        ).alert_id
        relay = Relay(db, cfg)
        report = run(relay, T0)
        assert [a.outcome for a in report.attempts] == ["retry", "released"]
        assert report.paused["slack"] == T0 + timedelta(seconds=120)
        assert len(rx.requests) == 1
        assert run(relay, T0 + timedelta(seconds=60)).attempts == ()
        assert (
            run(Relay(db, cfg), T0 + timedelta(seconds=60)).attempts == ()
        )  # the pause is in the database too
        assert len(rx.requests) == 1
        assert run(relay, T0 + timedelta(seconds=121)).sent == 2
        assert states(db, a1) == ["sent"] and states(db, a2) == ["sent"]
        assert len(rx.requests) == 3


def test_404_is_permanent_not_retried_and_shown_as_failed(tmp_path: Path) -> None:
    with Receiver(default=Reply(404, "no_service")) as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"slack": slack(rx.url)})
        alert_id = one_alert(db, cfg)
        relay = Relay(db, cfg)
        assert [a.outcome for a in run(relay, T0).attempts] == ["failed"]
        assert run(relay, T0 + timedelta(days=1)).attempts == ()
        assert len(rx.requests) == 1
        (d,) = show_alert(db, alert_id).deliveries
        assert (
            d.state == "failed"
            and "HTTP 404" in (d.last_error or "")
            and "no_service" in (d.last_error or "")
        )


def test_timeout_is_temporary(tmp_path: Path) -> None:
    with Receiver([Reply(200, delay=1.5)]) as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"hook": webhook(rx.url, timeout=0.3)})
        alert_id = one_alert(db, cfg)
        relay = Relay(db, cfg)
        assert [a.outcome for a in run(relay, T0).attempts] == ["retry"]
        (d,) = show_alert(db, alert_id).deliveries
        assert d.state == "pending" and "timed out" in (d.last_error or "")
        assert run(relay, T0 + timedelta(minutes=5)).sent == 1
        assert states(db, alert_id) == ["sent"]


def test_a_failing_channel_never_blocks_or_resends_another(tmp_path: Path) -> None:
    with Receiver(default=Reply(503, "down")) as bad, Receiver() as good:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"bad": webhook(bad.url), "good": webhook(good.url)})
        story, docs = add_story(db)
        record(db, cfg, story, docs[0])
        record(db, cfg, story, docs[0], match("Huawei Ascend 910C confirmed again, in other words."))
        relay = Relay(db, cfg)
        report = run(relay, T0)
        assert sorted(a.outcome for a in report.attempts if a.channel == "good") == ["sent", "sent"]
        assert sorted(a.outcome for a in report.attempts if a.channel == "bad") == ["released", "retry"]
        for hours in (1, 2, 3):
            run(relay, T0 + timedelta(hours=hours))
        assert len(good.requests) == 2  # never re-sent because "bad" keeps failing
        assert len({r.headers["idempotency-key"] for r in good.requests}) == 2
        assert len(bad.requests) >= 4


def test_dead_after_max_tries_then_retry_delivers(tmp_path: Path) -> None:
    with Receiver([Reply(500), Reply(500)]) as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"hook": webhook(rx.url, max_tries=2)})
        alert_id = one_alert(db, cfg)
        relay = Relay(db, cfg)
        run(relay, T0)
        assert [a.outcome for a in run(relay, T0 + timedelta(hours=1)).attempts] == ["dead"]
        assert run(relay, T0 + timedelta(days=1)).attempts == ()
        assert states(db, alert_id) == ["dead"]
        assert len(retry_delivery(db, alert_id, now=T0 + timedelta(days=1)).delivery_ids) == 1
        assert run(relay, T0 + timedelta(days=1)).sent == 1
        assert states(db, alert_id) == ["sent"] and len(rx.requests) == 3


def test_webhook_is_signed_and_carries_the_idempotency_key(tmp_path: Path) -> None:
    with Receiver() as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"hook": webhook(rx.url, secret="s3cret")})
        alert_id = one_alert(db, cfg)
        run(Relay(db, cfg), T0)
        (req,) = rx.requests
        want = "sha256=" + hmac.new(b"s3cret", req.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(req.headers["x-storywatch-signature"], want)
        assert (
            req.headers["idempotency-key"]
            == req.headers["x-storywatch-idempotency-key"]
            == f"alert-{alert_id}-hook-r0"
        )
        assert req.headers["x-storywatch-timestamp"].isdigit()
        body = req.json()
        assert body["event"] == "alert" and body["alert"]["id"] == alert_id
        assert body["alert"]["evidence"].startswith("Meituan said") and body["alert"]["source_count"] == 1


def _texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [
            t for k, v in node.items() for t in ([v] if k == "text" and isinstance(v, str) else _texts(v))
        ]
    if isinstance(node, list):
        return [t for v in node for t in _texts(v)]
    return []


def test_slack_feed_text_cannot_mention_anyone_or_break_the_message(tmp_path: Path) -> None:
    hostile = (
        "<!channel> hi <@U123> & <https://evil.example|click me> " + "Huawei Ascend 910C " + "x&<>" * 12_500
    )
    assert len(hostile) > 50_000
    with Receiver() as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"slack": slack(rx.url)})
        story, _ = add_story(db, title="<!here> Breaking & <@U999> news")
        with db.write() as s:
            doc = add_document(s, story)
        out = record(db, cfg, story, doc, match(hostile))
        assert run(Relay(db, cfg), T0).sent == 1
        body = rx.requests[0].json()
        texts = _texts(body)
        assert texts and all(len(t) <= 3000 for t in texts)
        raw = rx.requests[0].body.decode()
        for bad in ("<!channel>", "<@U123>", "<!here>", "<@U999>", "<https://evil"):
            assert bad not in raw and all(bad not in t for t in texts)
        joined = "\n".join(texts)
        assert "&lt;!channel&gt;" in joined and "&amp;" in joined and "…[truncated]" in joined
        # The only links left are ours (document and source URLs), never text from the feed.
        assert all(link.startswith("https://wire.example/") for link in re.findall(r"<([^>]*)>", joined))
        assert re.search(r"&(?!amp;|lt;|gt;)", joined) is None  # no bare or half-cut entity
        assert show_alert(db, out.alert_id).alert.evidence == hostile  # the alert keeps the full text


def test_rate_limit_spaces_messages_per_channel(tmp_path: Path) -> None:
    with Receiver() as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"slack": slack(rx.url, rate_per_second=5)})
        story, docs = add_story(db)
        for i in range(3):
            record(db, cfg, story, docs[0], match(f"Statement {i}: Huawei Ascend 910C was used."))
        assert run(Relay(db, cfg), T0).sent == 3
        # 5 per second: the three sends start 0.2 s apart (the receiver sees them >= ~0.3 s apart
        # overall, whatever the connection set-up time of the first one); never a burst.
        assert len(rx.requests) == 3 and rx.requests[2].at - rx.requests[0].at >= 0.3


def test_test_channel_sends_a_sample_through_the_real_channel(tmp_path: Path) -> None:
    with Receiver() as rx:
        settings = Settings.model_validate({"alerts": {"channels": {"slack": slack(rx.url)}}})
        result = asyncio.run(test_channel(settings, "slack"))
        assert result.status == 200 and len(rx.requests) == 1
        body = rx.requests[0].json()
        assert "_Test message from storywatch_" in body["blocks"][0]["text"]["text"]
        assert rx.requests[0].headers["x-storywatch-idempotency-key"].startswith("test-slack-")
        with pytest.raises(ConfigError, match="no channel named 'nope'"):
            asyncio.run(test_channel(settings, "nope"))


def test_test_channel_reports_a_failing_channel(tmp_path: Path) -> None:
    with Receiver(default=Reply(403, "invalid_token")) as rx:
        settings = Settings.model_validate({"alerts": {"channels": {"slack": slack(rx.url)}}})
        with pytest.raises(PermanentDeliveryError, match="HTTP 403: invalid_token"):
            asyncio.run(test_channel(settings, "slack"))


def test_retry_backoff_is_configured_and_each_sent_delivery_logs_one_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = alerts_cfg({"slack": slack("http://x")}, retry_backoff={"first": "2m", "factor": 3, "cap": "30m"})
    relay = Relay(new_db(tmp_path), cfg, rng=random.Random(7))
    waits = [relay.backoff(tries, None) for tries in (1, 2, 3, 4)]
    for wait, full in zip(waits, (120, 360, 1080, 1800), strict=True):
        assert full / 2 <= wait <= full  # 50-100% jitter of first * factor ** (tries - 1), capped
    assert relay.backoff(1, 7.0) == 7.0  # the receiver's Retry-After wins
    with pytest.raises(ConfigError, match=r"alerts\.retry_backoff: line 2: need 0 < first <= cap"):
        parse_settings("alerts:\n  retry_backoff: {first: 2h, cap: 1h}\n", name="x.yaml")
    with Receiver([Reply(500, "boom")]) as rx:
        db = new_db(tmp_path / "b")
        cfg = alerts_cfg({"slack": slack(rx.url)}, retry_backoff={"first": "5s"})
        alert_id = one_alert(db, cfg)
        relay = Relay(db, cfg, rng=random.Random(7))
        caplog.set_level("INFO", logger="storywatch")
        run(relay, T0)
        (d,) = show_alert(db, alert_id).deliveries
        assert T0 + timedelta(seconds=2.5) <= d.next_attempt_at <= T0 + timedelta(seconds=5)
        assert run(relay, T0 + timedelta(seconds=6)).sent == 1
    sent = [r for r in caplog.records if " sent (" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in sent] == [
        ("INFO", f"delivery {d.id} to slack sent (alert, alert {alert_id}, try 2)")
    ]
