"""RELIABILITY item 27: malformed channel URLs and secrets.

A URL the sender cannot use is refused when the config loads (exit 2, key and line, no secret);
injected past the loader, it makes a failed delivery with ``last_error`` while the other channel
delivers in the same pass; and no output of a real run (stdout, stderr, logs, stored errors) holds
any 6-character fragment of a secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from crawler.alerts.admin import test_channel as channel_test
from crawler.bounds.redact import FRAGMENT
from crawler.config import ChannelConfig, Settings, parse_settings
from crawler.errors import PermanentDeliveryError
from crawler.pipeline import run_once
from storage.db import open_database
from storage.models import DeliveryRow, FetchLogRow
from tests.alertkit import Receiver, Reply
from tests.sitekit import Site, article_page, rss

STORYWATCH = str(Path(sys.executable).parent / "storywatch")
RULES = "version: 1\nrules:\n  - id: t.cluster\n    title: Cluster\n    severity: low\n    query: 'cluster'\n"


def marked(tag: str) -> str:
    """A secret no output can contain by chance: any 6 characters of it found in output are a leak."""
    return f"SWSEC{tag}{secrets.token_hex(8)}"


def leaks(text: str, *values: str) -> list[str]:
    """Every FRAGMENT-long piece of a secret found in ``text``."""
    return sorted(
        {v[i : i + FRAGMENT] for v in values for i in range(len(v) - FRAGMENT + 1) if v[i : i + FRAGMENT] in text}
    )


def cli(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "STORYWATCH_DATA_DIR": str(tmp / "data"), **(env or {})}
    full.pop("STORYWATCH_CONFIG", None)
    return subprocess.run(
        [STORYWATCH, "--config", str(tmp / "storywatch.yaml"), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("kind", "url_of"),
    [
        ("slack", lambda pw: f"https://hooks:{pw[:12]}/{pw[12:]}@127.0.0.1:8443/services/hook"),
        ("webhook", lambda pw: f"https://127.0.0.1:99999/{pw}"),
    ],
)
def test_malformed_channel_url_is_refused_at_load_with_exit_2_and_no_secret(
    tmp_path: Path, kind: str, url_of: object
) -> None:
    secret = marked("load")
    url = url_of(secret)  # type: ignore[operator]
    (tmp_path / "storywatch.yaml").write_text(
        "alerts:\n  channels:\n    out:\n"
        f"      type: {kind}\n      url: ${{HOOK_URL}}\n"
        "sources: []\n",
        "utf-8",
    )
    done = cli(tmp_path, "sources", env={"HOOK_URL": url})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "alerts.channels.out.url: line 5:" in done.stderr, done.stderr
    assert leaks(done.stdout + done.stderr, secret) == [], done.stderr


def _pass_settings(tmp: Path, site: Site, rx: Receiver) -> Settings:
    (tmp / "rules.yaml").write_text(RULES, "utf-8")
    return parse_settings(f"""
database: "sqlite:///{tmp / 'sw.db'}"
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s}}
rules: {{paths: ["{tmp / 'rules.yaml'}"]}}
alerts:
  channels:
    good: {{type: webhook, url: "{rx.url}", rate_per_second: 100, timeout: 2}}
sources: [{{id: s, kind: feed, url: "{site.url('/feed')}"}}]
""")


def _inject(settings: Settings, **urls: str) -> Settings:
    """Channels whose URLs never went through the loader (the loader refuses them)."""
    channels = dict(settings.alerts.channels)
    for name, url in urls.items():
        channels[name] = ChannelConfig.model_construct(type="slack", url=SecretStr(url), rate_per_second=100.0)
    return settings.model_copy(update={"alerts": settings.alerts.model_copy(update={"channels": channels})})


def _site(site: Site) -> None:
    site.add("/a", article_page("Cluster news", ["The training cluster links tens of thousands of cards."] * 3))
    site.add("/feed", rss([{"title": "Cluster", "link": site.url("/a"), "guid": "1"}]), "application/rss+xml")


def test_injected_malformed_urls_fail_their_delivery_while_the_other_channel_delivers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pw, token = marked("pw"), marked("tok")
    bad_password = f"https://hooks:{pw[:10]}/{pw[10:]}@127.0.0.1:8443/services/x"
    bad_port = f"http://127.0.0.1:99999/services/{token}"
    with Site() as site, Receiver() as rx:
        _site(site)
        settings = _inject(_pass_settings(tmp_path, site, rx), slash=bad_password, port=bad_port)
        with caplog.at_level(logging.DEBUG):
            report = asyncio.run(run_once(settings, settings.source_specs()))
        assert len(rx.requests) == 1  # the good channel, in the same `once`
    by_channel = {a.channel: a for a in report.delivery.attempts}
    assert by_channel["good"].outcome == "sent"
    assert by_channel["slash"].outcome == "failed" and by_channel["port"].outcome == "failed"
    db = open_database(settings.database_url)
    with db.read() as s:
        rows = {r.channel: r for r in s.scalars(select(DeliveryRow))}
    for name in ("slash", "port"):
        assert rows[name].state == "failed" and rows[name].last_error, name
        assert "alerts.channels." + name in rows[name].last_error
    everything = caplog.text + json.dumps(report.as_json(), default=str)
    everything += " ".join(r.last_error or "" for r in rows.values())
    assert leaks(everything, pw, token) == []


def test_a_real_pass_prints_and_stores_no_fragment_of_any_secret(tmp_path: Path) -> None:
    """`once`, `alerts list/show`, `alerts test` and `status` as real processes; secrets marked."""
    token, key, smtp_pw, src_pw = marked("slack"), marked("hmac"), marked("smtp"), marked("src")
    with Site() as site, Receiver(default=Reply(404, f"no such hook: /services/{token}")) as rx:
        _site(site)
        site.add("/private", "<p>hidden</p>", status=401)
        (tmp_path / "rules.yaml").write_text(RULES, "utf-8")
        host = site.base.split("://")[1]
        (tmp_path / "storywatch.yaml").write_text(
            f"""
database: "sqlite:///{tmp_path / 'sw.db'}"
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s}}
rules: {{paths: ["{tmp_path / 'rules.yaml'}"]}}
alerts:
  channels:
    slack: {{type: slack, url: "${{SLACK_URL}}", rate_per_second: 100, timeout: 2, max_tries: 1}}
    hook: {{type: webhook, url: "{rx.url}", secret: "${{HOOK_SECRET}}", rate_per_second: 100, max_tries: 1}}
    mail: {{type: email, host: 127.0.0.1, port: 9, security: none, username: u, password: "${{SMTP_PW}}",
            sender: a@example.org, recipients: [b@example.org], timeout: 2, max_tries: 1}}
sources:
  - {{id: s, kind: feed, url: "{site.url('/feed')}"}}
  - {{id: locked, kind: feed, url: "http://reader:${{SRC_PW}}@{host}/private"}}
""",
            "utf-8",
        )
        env = {
            "SLACK_URL": f"{rx.url}/services/{token}",
            "HOOK_SECRET": key,
            "SMTP_PW": smtp_pw,
            "SRC_PW": src_pw,
        }
        runs = [
            cli(tmp_path, "once", env=env),
            cli(tmp_path, "alerts", "show", "1", "--json", env=env),
            cli(tmp_path, "alerts", "test", "slack", env=env),
            cli(tmp_path, "alerts", "test", "mail", env=env),
            cli(tmp_path, "status", env=env),
            cli(tmp_path, "sources", "--json", env=env),
            cli(tmp_path, "status", "--json", env=env),
        ]
    assert runs[0].returncode == 1  # the locked source failed (401)
    assert "locked" in runs[0].stdout + runs[0].stderr
    assert runs[2].returncode == 1 and runs[3].returncode == 1  # 404 and a closed SMTP port
    db = open_database(f"sqlite:///{tmp_path / 'sw.db'}")
    with db.read() as s:
        errors = [e or "" for e in s.scalars(select(DeliveryRow.last_error))]
        fetch_errors = [e or "" for e in s.scalars(select(FetchLogRow.error))]
    assert any("HTTP 404" in e for e in errors), errors
    output = "\n".join(r.stdout + r.stderr for r in runs) + "\n".join(errors + fetch_errors)
    assert leaks(output, token, key, smtp_pw, src_pw) == [], output


def test_alerts_test_on_a_malformed_url_is_a_delivery_error_not_a_crash(tmp_path: Path) -> None:
    token = marked("test")
    settings = _inject(parse_settings(f'database: "sqlite:///{tmp_path / "sw.db"}"'),
                       bad=f"https://hooks:{token[:8]}/{token[8:]}@127.0.0.1:8443/services/x")
    with pytest.raises(PermanentDeliveryError, match=r"alerts\.channels\.bad") as info:
        asyncio.run(channel_test(settings, "bad"))
    assert leaks(str(info.value), token) == []
