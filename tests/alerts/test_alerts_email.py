"""The email channel through the relay, against a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from crawler.alerts.admin import retry_delivery, show_alert
from crawler.alerts.relay import Relay
from tests.alertkit import (
    T0,
    SMTPSink,
    add_document,
    add_story,
    alerts_cfg,
    match,
    new_db,
    record,
    run,
    smtp_server,
)


def email(port: int, recipients: tuple[str, ...] = ("ops@example.org",), **kw: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "sw@example.org",
        "recipients": list(recipients),
        "rate_per_second": 100,
        "timeout": 5,
        **kw,
    }


def test_multipart_message_with_idempotent_message_id(tmp_path: Path) -> None:
    sink = SMTPSink()
    with smtp_server(sink) as port:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"mail": email(port)})
        story, docs = add_story(db)
        alert_id = record(db, cfg, story, docs[0]).alert_id
        assert run(Relay(db, cfg), T0).sent == 1
    ((rcpts, msg),) = sink.messages
    assert rcpts == ("ops@example.org",)
    assert msg["Message-ID"] == f"<alert-{alert_id}-mail-r0@storywatch>"
    assert msg["X-Storywatch-Idempotency-Key"] == f"alert-{alert_id}-mail-r0"
    assert msg["Subject"].startswith("[storywatch] [HIGH] LongCat vendor disclosed")
    text_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    assert "Huawei Ascend 910C" in text and "Reported by 1 source" in text
    assert "<strong>Huawei Ascend 910C</strong>" in html


def test_451_is_retried_then_sent(tmp_path: Path) -> None:
    sink = SMTPSink(data_replies=["451 4.3.0 Try again later"])
    with smtp_server(sink) as port:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"mail": email(port)})
        story, docs = add_story(db)
        alert_id = record(db, cfg, story, docs[0]).alert_id
        relay = Relay(db, cfg)
        assert [a.outcome for a in run(relay, T0).attempts] == ["retry"]
        (d,) = show_alert(db, alert_id).deliveries
        assert d.state == "pending" and "SMTP 451" in (d.last_error or "")
        assert run(relay, T0 + timedelta(minutes=2)).sent == 1
    assert sink.attempts == 2 and len(sink.messages) == 1


def test_550_is_permanent(tmp_path: Path) -> None:
    sink = SMTPSink(data_replies=["550 5.7.1 Rejected as spam"] * 3)
    with smtp_server(sink) as port:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"mail": email(port)})
        story, docs = add_story(db)
        alert_id = record(db, cfg, story, docs[0]).alert_id
        relay = Relay(db, cfg)
        assert [a.outcome for a in run(relay, T0).attempts] == ["failed"]
        assert run(relay, T0 + timedelta(days=1)).attempts == ()
    (d,) = show_alert(db, alert_id).deliveries
    assert d.state == "failed" and "SMTP 550" in (d.last_error or "") and sink.attempts == 1


def test_one_of_two_recipients_refused_is_reported_per_recipient(tmp_path: Path) -> None:
    sink = SMTPSink(refuse={"gone@example.org": "550 5.1.1 No such user"})
    with smtp_server(sink) as port:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"mail": email(port, ("ops@example.org", "gone@example.org"))})
        story, docs = add_story(db)
        alert_id = record(db, cfg, story, docs[0]).alert_id
        report = run(Relay(db, cfg), T0)
    assert [a.outcome for a in report.attempts] == ["partial"]
    assert "gone@example.org" in (report.attempts[0].error or "")
    (d,) = show_alert(db, alert_id).deliveries
    assert d.state == "sent"
    assert d.detail["recipients"]["ops@example.org"] == {"status": "accepted"}
    refused = d.detail["recipients"]["gone@example.org"]
    assert refused["status"] == "refused" and refused["code"] == 550 and "No such user" in refused["message"]
    assert "1 of 2 recipients refused" in (d.last_error or "")
    assert [r for r, _ in sink.messages] == [("ops@example.org",)]


def test_every_recipient_refused_is_permanent(tmp_path: Path) -> None:
    sink = SMTPSink(refuse={"gone@example.org": "550 5.1.1 No such user"})
    with smtp_server(sink) as port:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"mail": email(port, ("gone@example.org",))})
        story, docs = add_story(db)
        alert_id = record(db, cfg, story, docs[0]).alert_id
        run(Relay(db, cfg), T0)
    (d,) = show_alert(db, alert_id).deliveries
    assert d.state == "failed" and "gone@example.org 550" in (d.last_error or "")


def test_cr_lf_in_feed_text_cannot_inject_headers(tmp_path: Path) -> None:
    sink = SMTPSink()
    with smtp_server(sink) as port:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"mail": email(port)})
        story, _ = add_story(db, title="Big news\r\nBcc: victim@example.org\r\nX-Evil: 1\n\nbody")
        with db.write() as s:
            doc = add_document(s, story)
        m = match()
        m = type(m)(**{**m.__dict__, "title": "Vendor\r\nCc: other@example.org"})
        record(db, cfg, story, doc, m)
        assert run(Relay(db, cfg), T0).sent == 1
    ((rcpts, msg),) = sink.messages
    assert rcpts == ("ops@example.org",)
    assert msg["Bcc"] is None and msg["Cc"] is None and msg["X-Evil"] is None
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert "Bcc: victim@example.org" in msg["Subject"]  # kept as harmless text on one line


class FlakySink(SMTPSink):
    """Refuses ``addr`` with ``reply`` for its first ``times`` RCPTs; counts every RCPT per address."""

    def __init__(self, flaky: dict[str, tuple[str, int]], refuse: dict[str, str] | None = None) -> None:
        super().__init__(refuse=refuse)
        self.flaky = dict(flaky)
        self.rcpts: dict[str, int] = {}

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        self.rcpts[address] = self.rcpts.get(address, 0) + 1
        reply, times = self.flaky.get(address, ("", 0))
        if self.rcpts[address] <= times:
            return reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def test_a_temporarily_refused_recipient_is_retried_alone_with_the_same_message_id(tmp_path: Path) -> None:
    sink = FlakySink(
        {"busy@example.org": ("451 4.2.1 Mailbox busy, try later", 1)},
        refuse={"gone@example.org": "550 5.1.1 No such user"},
    )
    rcpts = ("ops@example.org", "busy@example.org", "gone@example.org")
    with smtp_server(sink) as port:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"mail": email(port, rcpts)})
        story, docs = add_story(db)
        alert_id = record(db, cfg, story, docs[0]).alert_id
        relay = Relay(db, cfg)
        first = run(relay, T0)
        assert [a.outcome for a in first.attempts] == ["retry"]
        assert "1 of 3 recipients deferred (busy@example.org 451" in (first.attempts[0].error or "")
        (d,) = show_alert(db, alert_id).deliveries
        assert d.state == "pending" and d.next_attempt_at > T0  # the normal back-off
        states = {a: v["status"] for a, v in d.detail["recipients"].items()}
        assert states == {
            "ops@example.org": "accepted",
            "busy@example.org": "deferred",
            "gone@example.org": "refused",
        }
        assert run(relay, T0 + timedelta(seconds=1)).attempts == ()  # not before the back-off
        second = run(relay, T0 + timedelta(minutes=2))
        assert [a.outcome for a in second.attempts] == ["partial"]
    (d,) = show_alert(db, alert_id).deliveries
    assert d.state == "sent" and d.tries == 2
    assert {a: v["status"] for a, v in d.detail["recipients"].items()} == {
        "ops@example.org": "accepted",
        "busy@example.org": "accepted",
        "gone@example.org": "refused",
    }
    assert d.last_error == "1 of 3 recipients refused: gone@example.org (550)"
    assert [r for r, _ in sink.messages] == [("ops@example.org",), ("busy@example.org",)]
    ids = {m["Message-ID"] for _, m in sink.messages}
    assert ids == {f"<alert-{alert_id}-mail-r0@storywatch>"}
    assert sink.rcpts == {"ops@example.org": 1, "busy@example.org": 2, "gone@example.org": 1}


def test_deferred_recipients_go_dead_after_max_tries_and_alerts_retry_resumes(tmp_path: Path) -> None:
    sink = FlakySink({"busy@example.org": ("452 4.2.2 Mailbox full", 2)})
    with smtp_server(sink) as port:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"mail": email(port, ("ops@example.org", "busy@example.org"), max_tries=2)})
        story, docs = add_story(db)
        alert_id = record(db, cfg, story, docs[0]).alert_id
        relay = Relay(db, cfg)
        assert [a.outcome for a in run(relay, T0).attempts] == ["retry"]
        assert [a.outcome for a in run(relay, T0 + timedelta(hours=1)).attempts] == ["dead"]
        (d,) = show_alert(db, alert_id).deliveries
        assert d.state == "dead" and d.detail["recipients"]["busy@example.org"]["code"] == 452
        assert "Mailbox full" in (d.last_error or "")
        retry_delivery(db, alert_id, now=T0 + timedelta(hours=2))
        assert run(relay, T0 + timedelta(hours=2)).sent == 1
    (d,) = show_alert(db, alert_id).deliveries
    assert d.state == "sent" and d.last_error is None
    assert [r for r, _ in sink.messages] == [("ops@example.org",), ("busy@example.org",)]


def test_every_recipient_deferred_is_retried_for_all_of_them(tmp_path: Path) -> None:
    sink = FlakySink(
        {"a@example.org": ("450 4.2.0 Greylisted", 1), "b@example.org": ("450 4.2.0 Greylisted", 1)}
    )
    with smtp_server(sink) as port:
        db = new_db(tmp_path)
        cfg = alerts_cfg({"mail": email(port, ("a@example.org", "b@example.org"))})
        story, docs = add_story(db)
        alert_id = record(db, cfg, story, docs[0]).alert_id
        relay = Relay(db, cfg)
        assert [a.outcome for a in run(relay, T0).attempts] == ["retry"]
        assert run(relay, T0 + timedelta(minutes=2)).sent == 1
    assert [r for r, _ in sink.messages] == [("a@example.org", "b@example.org")]
    (d,) = show_alert(db, alert_id).deliveries
    assert d.state == "sent" and d.last_error is None
