"""The email channel's TLS modes against a real aiosmtpd server with a throwaway CA (trustme).

``security: ssl`` is implicit TLS, ``starttls`` upgrades a plain connection; both verify the
server certificate, against ``ca_file`` when set. A certificate that does not verify is a
configuration problem: the delivery fails permanently with a message saying what to fix.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from crawler.alerts.admin import show_alert
from crawler.alerts.base import ChannelUnavailable, build_channel
from crawler.alerts.relay import Relay
from tests.alertkit import T0, SMTPSink, add_story, alerts_cfg, free_port, new_db, record, run

# In the dev extra (`pip install -e '.[dev]'`); `.[test]` alone skips these tests with the reason.
trustme = pytest.importorskip("trustme", reason="trustme is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(ctx)
    return ctx


class Logins:
    """aiosmtpd authenticator: accepts one user and password, records who logged in."""

    def __init__(self) -> None:
        self.users: list[str] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"sw", b"pa55")
        if ok:
            self.users.append(data.login.decode())
        return AuthResult(success=ok, handled=False)


@contextmanager
def tls_server(sink: SMTPSink, *, implicit: ssl.SSLContext | None = None, **kw: Any) -> Iterator[int]:
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port, ssl_context=implicit, **kw)
    ctl.start()
    try:
        yield port
    finally:
        ctl.stop()


def mail(port: int, security: str, **kw: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "sender": "sw@example.org",
        "recipients": ["ops@example.org"],
        "rate_per_second": 100,
        "timeout": 5,
        **kw,
    }


def ca_file(tmp_path: Path, ca: trustme.CA) -> str:
    path = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def deliver(tmp_path: Path, channel: dict[str, Any]) -> tuple[int, Any]:
    """Record one alert, run the relay once; (alert id, the delivery afterwards)."""
    db = new_db(tmp_path)
    cfg = alerts_cfg({"mail": channel})
    story, docs = add_story(db)
    alert_id = record(db, cfg, story, docs[0]).alert_id
    relay = Relay(db, cfg)
    run(relay, T0)
    assert run(relay, T0 + timedelta(days=1)).attempts == ()  # sent or failed: never tried again
    (d,) = show_alert(db, alert_id).deliveries
    return alert_id, d


def test_ssl_implicit_tls_with_a_trusted_private_ca(tmp_path: Path, ca: trustme.CA) -> None:
    sink = SMTPSink()
    with tls_server(sink, implicit=server_context(ca)) as port:
        alert_id, d = deliver(tmp_path, mail(port, "ssl", ca_file=ca_file(tmp_path, ca)))
    assert d.state == "sent"
    ((rcpts, msg),) = sink.messages
    assert rcpts == ("ops@example.org",) and msg["Message-ID"] == f"<alert-{alert_id}-mail-r0@storywatch>"


def test_starttls_upgrades_then_logs_in(tmp_path: Path, ca: trustme.CA) -> None:
    sink, logins = SMTPSink(), Logins()
    server = {"tls_context": server_context(ca), "require_starttls": True, "authenticator": logins}
    with tls_server(sink, **server) as port:
        channel = mail(port, "starttls", ca_file=ca_file(tmp_path, ca), username="sw", password="pa55")
        _, d = deliver(tmp_path, channel)
    assert d.state == "sent" and len(sink.messages) == 1
    assert logins.users == ["sw"]  # aiosmtpd refuses AUTH before STARTTLS: the login came after it


def test_untrusted_certificate_fails_permanently_saying_what_to_fix(tmp_path: Path, ca: trustme.CA) -> None:
    sink = SMTPSink()
    with tls_server(sink, implicit=server_context(ca)) as port:
        _, d = deliver(tmp_path, mail(port, "ssl"))  # the system store does not know the private CA
    assert d.state == "failed" and d.tries == 1 and sink.messages == []
    error = d.last_error or ""
    assert f"the TLS certificate of 127.0.0.1:{port} could not be verified" in error
    assert "certificate verify failed" in error or "unable to get local issuer" in error
    assert "set alerts.channels.mail.ca_file to the CA bundle that signed it" in error
    assert "storywatch alerts retry" in error


def test_starttls_with_an_untrusted_certificate_is_permanent_too(tmp_path: Path, ca: trustme.CA) -> None:
    other = trustme.CA()
    sink = SMTPSink()
    with tls_server(sink, tls_context=server_context(other), require_starttls=True) as port:
        _, d = deliver(tmp_path, mail(port, "starttls", ca_file=ca_file(tmp_path, ca)))
    assert d.state == "failed" and "could not be verified" in (d.last_error or "") and sink.messages == []


def test_certificate_for_another_name_is_refused(tmp_path: Path, ca: trustme.CA) -> None:
    sink = SMTPSink()
    with tls_server(sink, implicit=server_context(ca, "mail.example.org")) as port:
        _, d = deliver(tmp_path, mail(port, "ssl", ca_file=ca_file(tmp_path, ca)))
    assert d.state == "failed" and sink.messages == []
    error = d.last_error or ""
    assert (
        "IP address mismatch" in error and "set alerts.channels.mail.host to a name the certificate" in error
    )


def test_starttls_against_a_server_without_it_is_a_configuration_error(tmp_path: Path) -> None:
    sink = SMTPSink()
    with tls_server(sink) as port:  # plain SMTP, no STARTTLS offered
        _, d = deliver(tmp_path, mail(port, "starttls"))
    assert d.state == "failed" and sink.messages == []
    assert "STARTTLS extension not supported" in (d.last_error or "")
    assert "alerts.channels.mail.security" in (d.last_error or "")


def test_an_unreadable_ca_file_makes_the_channel_unavailable(tmp_path: Path) -> None:
    cfg = alerts_cfg({"mail": mail(25, "ssl", ca_file=str(tmp_path / "missing.pem"))})
    with pytest.raises(ChannelUnavailable, match="cannot load the CA bundle") as err:
        build_channel("mail", cfg.channels["mail"])
    assert "alerts.channels.mail.ca_file" in str(err.value)
    db = new_db(tmp_path)
    story, docs = add_story(db)
    alert_id = record(db, cfg, story, docs[0]).alert_id
    report = run(Relay(db, cfg), T0)
    assert "cannot load the CA bundle" in report.unavailable["mail"]
    assert [d.state for d in show_alert(db, alert_id).deliveries] == ["pending"]  # waits for the fix
