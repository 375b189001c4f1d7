"""Message templates: sandboxed, capped, overridable per channel; a bad template fails its delivery."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crawler.alerts.admin import check_alerts, show_alert
from crawler.alerts.base import TemplateError
from crawler.alerts.payload import sample_payload
from crawler.alerts.relay import Relay
from crawler.alerts.render import TRUNCATED, Renderer
from crawler.config import ChannelConfig, Settings
from tests.alertkit import T0, Receiver, add_story, alerts_cfg, new_db, record, run

NOW = datetime(2026, 11, 27, tzinfo=UTC)
ATTACKS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ alert.__class__.__init__.__globals__ }}",
    "{{ alert.clear() }}",
    "{% set x = alert.update({'title': 'pwned'}) %}{{ alert.title }}",
    "{{ self._TemplateReference__context }}",
]


def _render(tmp_path: Path, source: str, type_: str = "console", name: str = "t.j2", **kw: Any) -> Any:
    (tmp_path / name).write_text(source, "utf-8")
    extra: dict[str, Any] = {"url": "http://127.0.0.1:9/x"} if type_ in ("slack", "webhook") else {}
    if type_ == "email":
        extra = {"host": "127.0.0.1", "sender": "a@example.org", "recipients": ["b@example.org"]}
    cfg = ChannelConfig.model_validate({"type": type_, "template": name, **extra})
    return Renderer(tmp_path, **kw).render("c", cfg, sample_payload(NOW), idempotency_key="k-1")


@pytest.mark.parametrize("attack", ATTACKS)
def test_sandbox_refuses_code_execution(tmp_path: Path, attack: str) -> None:
    with pytest.raises(TemplateError) as err:
        _render(tmp_path, attack)
    assert "t.j2" in str(err.value)
    assert "unsafe template refused by the sandbox" in str(err.value)


def test_text_output_is_capped_while_generating(tmp_path: Path) -> None:
    began = time.monotonic()
    msg = _render(tmp_path, "{% for i in range(100000) %}{{ alert.evidence }}{% endfor %}", max_output=10_000)
    assert len(msg.text) <= 10_000 + len(TRUNCATED) and msg.text.endswith(TRUNCATED)
    assert time.monotonic() - began < 5  # stopped at the cap, not after rendering 8 MB


def test_huge_ranges_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="range"):
        _render(tmp_path, "{% for i in range(10**9) %}x{% endfor %}")


def test_json_templates_must_produce_a_json_object(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="did not produce JSON"):
        _render(tmp_path, "not json {{ alert.title }}", "webhook")
    with pytest.raises(TemplateError, match="over 5000 characters"):
        _render(
            tmp_path,
            '{"x": "{% for i in range(9999) %}{{ alert.id }}{% endfor %}"}',
            "webhook",
            max_output=5000,
        )
    body = _render(
        tmp_path, '{"title": {{ alert.title | tojson }}, "n": {{ alert.source_count }}}', "webhook"
    ).data
    assert body == {"title": "Test alert (storywatch alerts test)", "n": 1}


def test_user_slack_text_template_still_gets_escaped_feed_text(tmp_path: Path) -> None:
    payload = sample_payload(NOW)
    payload["alert"]["headline"] = "<!channel> & <@U1>"
    (tmp_path / "s.j2").write_text("New: {{ alert.headline }} / {{ alert.evidence_marked }}", "utf-8")
    cfg = ChannelConfig.model_validate({"type": "slack", "url": "http://127.0.0.1:9/x", "template": "s.j2"})
    msg = Renderer(tmp_path).render("c", cfg, payload, idempotency_key="k")
    assert msg.data is not None
    assert msg.data["text"].startswith("New: &lt;!channel&gt; &amp; &lt;@U1&gt; / ")
    assert "*Huawei Ascend 910C*" in msg.data["text"]


def test_email_html_override_is_autoescaped(tmp_path: Path) -> None:
    payload = sample_payload(NOW)
    payload["alert"]["headline"] = "<script>alert(1)</script>"
    (tmp_path / "mail.html.j2").write_text(
        "<h1>{{ alert.headline }}</h1>{{ alert.evidence_marked }}", "utf-8"
    )
    cfg = ChannelConfig.model_validate(
        {"type": "email", "host": "h", "sender": "a@b.c", "recipients": ["d@e.f"], "template": "mail.html.j2"}
    )
    msg = Renderer(tmp_path).render("c", cfg, payload, idempotency_key="k")
    assert msg.html is not None and "<script>" not in msg.html and "&lt;script&gt;" in msg.html
    assert "<strong>Huawei Ascend 910C</strong>" in msg.html
    assert "Reported by 1 source" in msg.text  # the default text part stays


def test_syntax_errors_are_reported_at_config_check(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("line one\n{% if %}\n", "utf-8")
    settings = Settings.model_validate(
        {
            "alerts": {"channels": {"c": {"type": "console", "template": "bad.j2"}}},
            "path": str(tmp_path / "storywatch.yaml"),
        }
    )
    with pytest.raises(TemplateError, match=r"bad\.j2: line 2"):
        check_alerts(settings)
    (tmp_path / "bad.j2").write_text("ok {{ alert.title }}", "utf-8")
    check_alerts(settings)


def test_an_unsafe_template_fails_its_delivery_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "evil.j2").write_text(ATTACKS[0], "utf-8")
    with Receiver() as rx:
        db = new_db(tmp_path)
        cfg = alerts_cfg(
            {
                "hook": {"type": "webhook", "url": rx.url, "template": str(tmp_path / "evil.j2")},
                "plain": {"type": "webhook", "url": rx.url},
            }
        )
        story, docs = add_story(db)
        alert_id = record(db, cfg, story, docs[0]).alert_id
        report = run(Relay(db, cfg), T0)
        assert sorted(a.outcome for a in report.attempts) == ["failed", "sent"]
        assert len(rx.requests) == 1
    failed = next(d for d in show_alert(db, alert_id).deliveries if d.channel == "hook")
    assert failed.state == "failed" and "unsafe template" in (failed.last_error or "")
