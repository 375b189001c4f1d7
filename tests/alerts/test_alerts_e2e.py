"""Issue 4 acceptance 1: `storywatch once` delivers exactly the expected alerts to Slack, a webhook
and a real SMTP server, with evidence and links; a second pass delivers nothing."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from click.testing import CliRunner

from crawler.cli import register_all
from crawler.cli.base import cli
from tests.alertkit import Receiver, SMTPSink, smtp_server
from tests.sitekit import Site, article_page, rss

register_all(cli)

VENDOR = (
    "Meituan confirmed on Thursday that LongCat-2.0 was pre-trained on Huawei Ascend 910C accelerators, "
    "ending weeks of speculation about the supplier."
)
FILLER = [
    "The announcement came during a briefing for analysts in Beijing, where executives also discussed "
    "the company's plans for its delivery business over the coming year.",
    "Meituan shares were little changed in Hong Kong after the statement was published on its website.",
]
OTHER = [
    "A new data centre outside the city will host thousands of servers for cloud customers, the "
    "operator said, with construction expected to finish next spring.",
    "Local officials welcomed the investment but raised questions about water use and power supply.",
]
RULES = """version: 1
rules:
  - id: e2e.vendor
    title: Chip vendor named
    severity: high
    query: 'SENT("Ascend 910C" AND (confirm* OR said))'
"""


def _config(tmp_path: Path, site: Site, slack: Receiver, hook: Receiver, smtp_port: int) -> Path:
    (tmp_path / "rules.yaml").write_text(RULES, "utf-8")
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(
        f"""
database: "sqlite:///{tmp_path / "sw.db"}"
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s}}
rules: {{paths: ["{tmp_path / "rules.yaml"}"]}}
alerts:
  channels:
    slack: {{type: slack, url: "{slack.url}", rate_per_second: 50}}
    hook: {{type: webhook, url: "{hook.url}", secret: "${{HOOK_SECRET}}"}}
    mail:
      type: email
      host: 127.0.0.1
      port: {smtp_port}
      security: none
      sender: "storywatch <alerts@example.org>"
      recipients: ["analyst@example.org"]
sources:
  - {{id: wire, kind: feed, url: "{site.url("/feed")}"}}
""",
        "utf-8",
    )
    return cfg


def test_once_delivers_each_alert_once_to_every_channel(tmp_path: Path) -> None:
    sink = SMTPSink()
    with Site() as site, Receiver() as slack, Receiver() as hook, smtp_server(sink) as port:
        site.add("/news/vendor", article_page("Huawei chips behind LongCat-2.0", [VENDOR, *FILLER]))
        site.add("/news/dc", article_page("New data centre", OTHER))
        items = [
            {"title": "Huawei chips behind LongCat-2.0", "link": site.url("/news/vendor"), "guid": "1"},
            {"title": "New data centre", "link": site.url("/news/dc"), "guid": "2"},
        ]
        site.add("/feed", rss(items), "application/rss+xml")
        cfg = _config(tmp_path, site, slack, hook, port)
        runner = CliRunner(env={"HOOK_SECRET": "s3cret"})
        first = runner.invoke(cli, ["--config", str(cfg), "once", "--json"])
        assert first.exit_code == 0, first.output

        assert len(slack.requests) == 1
        blocks = slack.requests[0].json()
        text = str(blocks)
        assert "Chip vendor named" in text and "*Ascend 910C*" in text and site.url("/news/vendor") in text

        assert len(hook.requests) == 1
        req = hook.requests[0]
        body = req.json()
        assert body["event"] == "alert"
        assert body["alert"]["evidence"] == VENDOR
        signature = hmac.new(b"s3cret", req.body, hashlib.sha256).hexdigest()
        assert req.headers["x-storywatch-signature"] == f"sha256={signature}"
        assert req.headers["idempotency-key"] == body["idempotency_key"]

        assert len(sink.messages) == 1
        rcpts, msg = sink.messages[0]
        assert rcpts == ("analyst@example.org",)
        assert "Chip vendor named" in msg["Subject"]
        plain = msg.get_body(preferencelist=("plain",))
        assert plain is not None
        content = plain.get_content()
        assert VENDOR in " ".join(content.split()) and site.url("/news/vendor") in content
        assert msg["Message-ID"]

        second = runner.invoke(cli, ["--config", str(cfg), "once", "--json"])
        assert second.exit_code == 0, second.output
        assert (len(slack.requests), len(hook.requests), len(sink.messages)) == (1, 1, 1)
