"""Who may listen where, who may read, which writes count: the token, the login cookie, CSRF,
read-only mode, and the CLI refusing a public address without a token."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from crawler.cli import register_all
from crawler.cli.base import cli
from crawler.config import parse_settings
from crawler.errors import ConfigError
from crawler.web import check_listen
from tests.web.webkit import serving

register_all(cli)
TOKEN = "correct-horse-battery-staple-42"


def _settings(tmp: Path, web: str = "") -> str:
    return f'database: "sqlite:///{tmp / "sw.db"}"\n{web}'


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    settings = parse_settings(_settings(tmp_path, 'web: {token: "${TOKEN}"}\n'), env={"TOKEN": TOKEN})
    with serving(settings) as base:
        yield base


def _csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def test_web_on_a_public_address_without_a_token_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(_settings(tmp_path), "utf-8")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "web", "--listen", "0.0.0.0:8087"])
    assert result.exit_code == 2
    assert "refusing to serve the web dashboard on 0.0.0.0" in result.output and "web.token" in result.output


def test_listen_policy_loopback_only_without_token() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_listen(host, has_token=False)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.org"):
        with pytest.raises(ConfigError, match=r"web\.token"):
            check_listen(host, has_token=False)
        check_listen(host, has_token=True)


def test_the_token_must_be_long_and_daemon_metrics_is_an_alias_of_daemon_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        parse_settings(_settings(tmp_path, "web: {token: short}\n"))
    old = parse_settings(_settings(tmp_path, 'daemon: {metrics: "127.0.0.1:9465"}\n'))
    new = parse_settings(_settings(tmp_path, 'daemon: {http: "127.0.0.1:9465"}\n'))
    assert old.daemon.http == new.daemon.http == "127.0.0.1:9465"
    assert "**********" in repr(parse_settings(_settings(tmp_path, f"web: {{token: {TOKEN}}}\n")).web)


def test_api_needs_the_token_as_a_bearer_header_never_in_the_url(guarded: str) -> None:
    assert httpx.get(f"{guarded}/api/v1/developments").status_code == 401
    assert httpx.get(f"{guarded}/api/v1/developments", params={"token": TOKEN}).status_code == 401
    assert httpx.get(f"{guarded}/metrics").status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert httpx.get(f"{guarded}/api/v1/developments", headers=wrong).status_code == 401
    ok = httpx.get(f"{guarded}/api/v1/developments", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json() == {"items": [], "next_cursor": None}
    assert httpx.get(f"{guarded}/healthz").status_code == 200  # liveness stays open
    page = httpx.get(f"{guarded}/silences")
    assert page.status_code == 303 and page.headers["location"] == "/login"


def test_a_post_without_the_csrf_token_gets_403(guarded: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"rule": "longcat.*", "duration": "1h"}
    with httpx.Client(base_url=guarded, headers=auth) as client:
        assert client.post("/api/v1/silences", json=body).status_code == 403
        bad = client.post("/api/v1/silences", json=body, headers={"X-CSRF-Token": "0" * 64})
        assert bad.status_code == 403
        assert client.get("/api/v1/silences").json() == []
        token = client.get("/api/v1/csrf").json()["csrf_token"]
        made = client.post("/api/v1/silences", json=body, headers={"X-CSRF-Token": token})
        assert made.status_code == 201 and made.json()["matcher"] == {"rule": "longcat.*"}
    assert (
        httpx.post(f"{guarded}/api/v1/silences", json=body, headers={"X-CSRF-Token": token}).status_code
        == 401
    )


def test_login_form_sets_a_cookie_that_is_not_the_token(guarded: str) -> None:
    with httpx.Client(base_url=guarded) as browser:
        form = browser.get("/login")
        assert form.status_code == 200 and 'type="password"' in form.text
        csrf = _csrf_from(form.text)
        assert browser.post("/login", data={"token": TOKEN}).status_code == 403  # no CSRF field
        wrong = browser.post("/login", data={"token": "guess-guess-guess-guess", "csrf_token": csrf})
        assert wrong.status_code == 401 and "not the token" in wrong.text
        good = browser.post("/login", data={"token": TOKEN, "csrf_token": csrf})
        assert good.status_code == 303 and good.headers["location"] == "/"
        session = browser.cookies.get("sw_session")
        assert session and TOKEN not in session
        assert (
            "httponly" in good.headers["set-cookie"].lower()
            and "samesite=strict" in good.headers["set-cookie"].lower()
        )
        assert browser.get("/").status_code == 200 and browser.get("/api/v1/silences").status_code == 200
        page = browser.get("/silences")
        added = browser.post(
            "/silences", data={"rule": "industry.*", "duration": "2h", "csrf_token": _csrf_from(page.text)}
        )
        assert added.status_code == 303
        assert [s["matcher"]["rule"] for s in browser.get("/api/v1/silences").json()] == ["industry.*"]
        browser.post("/logout", data={"csrf_token": _csrf_from(browser.get("/").text)})
        assert browser.get("/api/v1/silences").status_code == 401


def test_read_only_turns_writes_off(tmp_path: Path) -> None:
    settings = parse_settings(_settings(tmp_path, "web: {read_only: true}\n"))
    with serving(settings) as base, httpx.Client(base_url=base) as client:
        page = client.get("/silences")
        assert "read-only" in page.text and 'action="/silences"' not in page.text
        csrf = client.get("/api/v1/csrf").json()["csrf_token"]
        refused = client.post("/api/v1/silences", json={"rule": "x*"}, headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 403 and "read_only" in refused.json()["detail"]
        form = client.post(
            "/silences", data={"rule": "x*", "csrf_token": _csrf_from(client.get("/rules").text)}
        )
        assert form.status_code == 403
        assert client.get("/api/v1/silences").json() == []
        test = client.post("/api/v1/rules/test", json={"text": "nothing"}, headers={"X-CSRF-Token": csrf})
        assert test.status_code == 200  # the playground writes nothing


def test_page_forms_need_their_csrf_token_without_a_token_too(tmp_path: Path) -> None:
    settings = parse_settings(_settings(tmp_path))
    with serving(settings) as base, httpx.Client(base_url=base) as client:
        page = client.get("/silences")
        assert client.post("/silences", data={"rule": "x*"}).status_code == 403
        other = httpx.Client(base_url=base)  # another browser: its session id does not match this token
        other.get("/")
        assert (
            other.post("/silences", data={"rule": "x*", "csrf_token": _csrf_from(page.text)}).status_code
            == 403
        )
        ok = client.post("/silences", data={"rule": "x*", "csrf_token": _csrf_from(page.text)})
        assert ok.status_code == 303


def test_storywatch_web_serves_the_configured_database(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(_settings(tmp_path), "utf-8")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from crawler.cli import main; main()",
            "--config",
            str(cfg),
            "web",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/developments", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["items"] == []
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"serving http://127.0.0.1:{port}/" in err


def test_a_bad_filter_is_a_400_page_not_a_crash(tmp_path: Path) -> None:
    settings = parse_settings(_settings(tmp_path))
    with serving(settings) as base, httpx.Client(base_url=base) as client:
        bad = client.get("/", params={"since": "whenever"})
        assert bad.status_code == 400 and "text/html" in bad.headers["content-type"]
        assert "since=&#39;whenever&#39;" in bad.text and "<h1>Cannot show this</h1>" in bad.text
        assert client.get("/", params={"limit": "many", "refresh": "-1"}).status_code == 200
        assert (
            client.get("/api/v1/developments", params={"since": "whenever"}).json()["error"]
            == "StorywatchError"
        )
        assert client.get("/stories/77").status_code == 404


def test_the_app_follows_the_settings_it_is_given(tmp_path: Path) -> None:
    from crawler.web import WebServer, bind, create_app
    from storage.db import open_database

    first = parse_settings(_settings(tmp_path))
    later = parse_settings(
        _settings(tmp_path, "sources:\n  - {id: added, kind: feed, url: 'https://example.org/f'}\n")
    )
    current = [first]
    db = open_database(first.database_url)
    app = create_app(first, db, current=lambda: current[0])
    server = WebServer(app, bind("127.0.0.1:0", has_token=False, key="test")).start()
    try:
        url = f"http://{server.address}/api/v1/sources"
        for _ in range(100):
            try:
                assert httpx.get(url).json() == []
                break
            except httpx.TransportError:
                time.sleep(0.05)
        current[0] = later  # what a daemon reload does
        assert [s["id"] for s in httpx.get(url).json()] == ["added"]
    finally:
        server.stop()
        db.dispose()
