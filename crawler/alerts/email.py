"""Email over SMTP (stdlib smtplib in a worker thread): multipart text + HTML.

- Security: ``ssl`` (implicit TLS, port 465), ``starttls`` (port 587) or ``none`` (port 25);
  login when ``username`` is set.
- ``Message-ID: <idempotency-key@storywatch>``: the same on every retry, so a mail system or a
  reader can spot the duplicate left by a crash between send and mark. ``References`` carries the
  alert's group so mail clients thread an alert with its updates.
- The subject is one line: CR, LF and control characters are replaced (no header injection).
- SMTP 4xx and connection problems are temporary; 5xx permanent. smtplib reports recipients that
  were refused while others were accepted only as a returned dict: each is recorded in the
  delivery detail as ``{"recipients": {addr: {"status": "accepted"|"refused", "code", "message"}}}``
  and the delivery counts as sent (partial) with a warning naming the refused addresses.
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import re
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from crawler.config import ChannelConfig
from crawler.errors import PermanentDeliveryError, TemporaryDeliveryError

from .base import DeliveryResult, RenderedMessage, register_channel
from .render import one_line

DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}
_POLICY = email.policy.SMTP.clone(max_line_length=998)  # RFC 5322 limit: one-line subjects stay unfolded


def message_id(key: str, domain: str = "storywatch") -> str:
    """``<key@storywatch>``; characters not allowed in a msg-id are replaced (plus a short hash)."""
    safe = re.sub(r"[^A-Za-z0-9._+=-]", "-", key)[:150]
    if safe != key:
        safe += "." + hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"<{safe}@{domain}>"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _classify(code: int, what: str, channel: str) -> Exception:
    cls = TemporaryDeliveryError if 400 <= code < 500 else PermanentDeliveryError
    return cls(f"SMTP {code} {what}", channel=channel)


@register_channel("email")
class EmailChannel:
    rate_limited = True

    def __init__(self, name: str, config: ChannelConfig) -> None:
        if not (config.host and config.sender and config.recipients):
            raise PermanentDeliveryError("email needs host, sender and recipients", channel=name)
        self.name = name
        self.config = config

    def build(self, message: RenderedMessage, *, idempotency_key: str) -> EmailMessage:
        cfg = self.config
        msg = EmailMessage(policy=_POLICY)
        msg["Subject"] = one_line(message.subject)
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(cfg.recipients)
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = message_id(idempotency_key)
        msg["X-Storywatch-Idempotency-Key"] = one_line(idempotency_key)
        if message.thread:
            msg["References"] = message_id(
                "group-" + hashlib.sha256(message.thread.encode()).hexdigest()[:24]
            )
        msg.set_content(message.text)
        if message.html:
            msg.add_alternative(message.html, subtype="html")
        return msg

    async def send(self, message: RenderedMessage, *, idempotency_key: str) -> DeliveryResult:
        msg = self.build(message, idempotency_key=idempotency_key)
        return await asyncio.to_thread(self._send_sync, msg)

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        host = cfg.host or ""
        port = cfg.port or DEFAULT_PORTS[cfg.security]
        if cfg.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=cfg.timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(host, port, timeout=cfg.timeout)
            if cfg.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
        if cfg.username:
            smtp.login(cfg.username, cfg.password.get_secret_value() if cfg.password else "")
        return smtp

    def _send_sync(self, msg: EmailMessage) -> DeliveryResult:
        cfg = self.config
        try:
            with self._connect() as smtp:
                refused = smtp.send_message(msg, from_addr=cfg.sender, to_addrs=list(cfg.recipients))
        except smtplib.SMTPRecipientsRefused as exc:
            raise self._all_refused(exc.recipients) from exc
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, _text(exc.smtp_error), self.name) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryDeliveryError(f"{type(exc).__name__}: {exc}", channel=self.name) from exc
        return self._result(refused)

    def _result(self, refused: dict[str, tuple[int, bytes]]) -> DeliveryResult:
        recipients: dict[str, Any] = {r: {"status": "accepted"} for r in self.config.recipients}
        for addr, (code, text) in refused.items():
            recipients[addr] = {"status": "refused", "code": code, "message": _text(text)}
        warning = None
        if refused:
            names = ", ".join(f"{a} ({c})" for a, (c, _) in refused.items())
            warning = f"{len(refused)} of {len(recipients)} recipients refused: {names}"
        return DeliveryResult(self.name, 250, {"recipients": recipients}, warning)

    def _all_refused(self, refused: dict[str, tuple[int, bytes]]) -> Exception:
        names = ", ".join(f"{a} {c} {_text(t)}" for a, (c, t) in refused.items())
        temporary = all(400 <= c < 500 for c, _ in refused.values())
        cls = TemporaryDeliveryError if temporary else PermanentDeliveryError
        return cls(f"every recipient refused: {names}", channel=self.name)

    async def aclose(self) -> None:
        return None
