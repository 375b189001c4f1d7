"""Email over SMTP (stdlib smtplib in a worker thread): multipart text + HTML.

- Security: ``ssl`` (implicit TLS, port 465), ``starttls`` (port 587) or ``none`` (port 25);
  login when ``username`` is set (after TLS). The server's certificate is always verified, against
  the system's CAs or, when ``ca_file`` is set, against that PEM bundle only (a private CA).
  A certificate that does not verify (unknown CA, wrong name, expired) is a configuration
  problem, not an outage: the delivery fails permanently (``failed``, ``alerts retry`` after the
  fix) with a message naming ``ca_file``/``host``. So does a server without STARTTLS or AUTH
  when they are configured. An unreadable ``ca_file`` makes the channel unavailable (its rows
  wait). Other TLS errors (handshake cut short) are temporary.
- ``Message-ID: <idempotency-key@storywatch>``: the same on every retry, so a mail system or a
  reader can spot the duplicate left by a crash between send and mark. ``References`` carries the
  alert's group so mail clients thread an alert with its updates.
- The subject is one line: CR, LF and control characters are replaced (no header injection).
- SMTP 4xx and connection problems are temporary; 5xx permanent. Recipients are judged one by
  one (smtplib reports those refused while others were accepted only as a returned dict): the
  delivery detail records ``{"recipients": {addr: {"status": "accepted"|"deferred"|"refused",
  "code", "message"}}}``. A recipient refused with 4xx is ``deferred``: the delivery is retried
  with the normal back-off *for the deferred recipients only* (the detail is the progress the
  relay hands back), with the same Message-ID, never to those who accepted; ``dead`` after
  ``max_tries`` like any delivery. A 5xx refusal is ``refused``, reported and never retried.
  Once nothing is deferred, the delivery is sent (partial, with a warning naming the refused
  addresses, when some were refused), or failed when nobody accepted it.
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from crawler.alerts.base import (
    ChannelUnavailable,
    DeliveryResult,
    PartialDeliveryError,
    RenderedMessage,
    register_channel,
)
from crawler.alerts.render import one_line
from crawler.config import ChannelConfig
from crawler.errors import PermanentDeliveryError, TemporaryDeliveryError

DONE = ("accepted", "refused")  # recipients a retry skips

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


def tls_context(name: str, cfg: ChannelConfig) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only those in ``ca_file``."""
    if cfg.ca_file is None:
        return ssl.create_default_context()
    path = Path(cfg.ca_file).expanduser()
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ChannelUnavailable(
            f"cannot load the CA bundle {path}: {getattr(exc, 'strerror', None) or exc}",
            key=f"alerts.channels.{name}.ca_file",
        ) from exc


def recipient_states(
    recipients: Sequence[str],
    progress: Mapping[str, Any] | None,
    tried: Sequence[str],
    refused: Mapping[str, tuple[int, bytes | str]],
) -> dict[str, dict[str, Any]]:
    """Each configured recipient's state after this attempt: earlier progress, then this attempt."""
    before = (progress or {}).get("recipients") or {}
    out: dict[str, dict[str, Any]] = {}
    for addr in recipients:
        prev = before.get(addr)
        out[addr] = dict(prev) if isinstance(prev, Mapping) else {"status": "pending"}
    for addr in tried:
        if addr not in refused:
            out[addr] = {"status": "accepted"}
            continue
        code, text = refused[addr]
        status = "deferred" if 400 <= code < 500 else "refused"
        out[addr] = {"status": status, "code": code, "message": _text(text)}
    return out


@register_channel("email")
class EmailChannel:
    rate_limited = True

    def __init__(self, name: str, config: ChannelConfig) -> None:
        if not (config.host and config.sender and config.recipients):
            raise PermanentDeliveryError("email needs host, sender and recipients", channel=name)
        self.name = name
        self.config = config
        self._tls = tls_context(name, config) if config.security != "none" else None

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

    async def send(
        self, message: RenderedMessage, *, idempotency_key: str, progress: Mapping[str, Any] | None = None
    ) -> DeliveryResult:
        """Send to every recipient not yet done (``progress``: the states earlier attempts recorded)."""
        msg = self.build(message, idempotency_key=idempotency_key)
        return await asyncio.to_thread(self._send_sync, msg, progress)

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.port or DEFAULT_PORTS[self.config.security]}"

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        host = cfg.host or ""
        port = cfg.port or DEFAULT_PORTS[cfg.security]
        if cfg.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=cfg.timeout, context=self._tls)
        else:
            smtp = smtplib.SMTP(host, port, timeout=cfg.timeout)
            if cfg.security == "starttls":
                try:
                    smtp.starttls(context=self._tls)
                except BaseException:
                    smtp.close()
                    raise
        if cfg.username:
            try:
                smtp.login(cfg.username, cfg.password.get_secret_value() if cfg.password else "")
            except BaseException:
                smtp.close()
                raise
        return smtp

    def _send_sync(self, msg: EmailMessage, progress: Mapping[str, Any] | None) -> DeliveryResult:
        cfg = self.config
        before = recipient_states(cfg.recipients, progress, (), {})
        todo = [r for r in cfg.recipients if before[r]["status"] not in DONE]
        refused: dict[str, tuple[int, bytes]] = {}
        try:
            if todo:
                with self._connect() as smtp:
                    refused = smtp.send_message(msg, from_addr=cfg.sender, to_addrs=todo)
        except smtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients  # nobody of this attempt accepted: judged per recipient below
        except ssl.SSLCertVerificationError as exc:
            raise self._untrusted(exc) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentDeliveryError(
                f"{self.address}: {exc} (check alerts.channels.{self.name}.security, port and username)",
                channel=self.name,
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, _text(exc.smtp_error), self.name) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryDeliveryError(f"{type(exc).__name__}: {exc}", channel=self.name) from exc
        return self._outcome(recipient_states(cfg.recipients, progress, todo, refused))

    def _outcome(self, states: Mapping[str, Mapping[str, Any]]) -> DeliveryResult:
        """Sent (maybe partial) unless someone is deferred (retry them); failed when nobody accepted."""
        detail = {"recipients": {a: dict(v) for a, v in states.items()}}
        by = {
            s: [a for a, v in states.items() if v["status"] == s] for s in ("accepted", "deferred", "refused")
        }
        if by["deferred"]:
            names = ", ".join(
                f"{a} {states[a].get('code', '')} {states[a].get('message', '')}".strip()
                for a in by["deferred"]
            )
            raise PartialDeliveryError(
                f"{len(by['deferred'])} of {len(states)} recipients deferred ({names}); "
                f"{len(by['accepted'])} accepted, {len(by['refused'])} refused: retrying the deferred only",
                channel=self.name,
                detail=detail,
            )
        if not by["accepted"]:
            names = ", ".join(
                f"{a} {states[a].get('code')} {states[a].get('message')}" for a in by["refused"]
            )
            raise PermanentDeliveryError(f"every recipient refused: {names}", channel=self.name)
        warning = None
        if by["refused"]:
            names = ", ".join(f"{a} ({states[a].get('code')})" for a in by["refused"])
            warning = f"{len(by['refused'])} of {len(states)} recipients refused: {names}"
        return DeliveryResult(self.name, 250, detail, warning)

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> PermanentDeliveryError:
        why = str(exc.verify_message or exc.reason or exc).rstrip(".")
        key = f"alerts.channels.{self.name}"
        if "mismatch" in why:
            fix = f"set {key}.host to a name the certificate is issued for"
        elif "expired" in why:
            fix = "the server's certificate must be renewed"
        else:
            fix = f"set {key}.ca_file to the CA bundle that signed it (a PEM file)"
        return PermanentDeliveryError(
            f"the TLS certificate of {self.address} could not be verified ({why}): {fix}; "
            "then `storywatch alerts retry` the failed deliveries",
            channel=self.name,
        )

    async def aclose(self) -> None:
        return None
