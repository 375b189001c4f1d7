"""The channel interface, the channel registry and the values a channel trades.

A channel is one way out (Slack, email, a webhook...). It receives a :class:`RenderedMessage`
(already rendered from a delivery's payload by :mod:`crawler.alerts.render`), an idempotency
key and the ``progress`` earlier attempts of the same delivery recorded (its stored detail), and
either returns a :class:`DeliveryResult` or raises
:class:`~crawler.errors.TemporaryDeliveryError` (retry later, ``retry_after`` when the receiver
said), :class:`PartialDeliveryError` (part of it is done: the relay stores ``detail`` as the
progress and retries the rest) or :class:`~crawler.errors.PermanentDeliveryError` (never retried).

Channel types register themselves with :func:`register_channel`; :func:`build_channel` picks the
class by ``ChannelConfig.type``: a table, not a chain of ifs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

import httpx

from crawler.bounds import redact
from crawler.config import ChannelConfig
from crawler.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    StorywatchError,
    TemporaryDeliveryError,
)
from crawler.fetch import politeness

MAX_RETRY_AFTER = 6 * 3600.0  # absurd Retry-After values are clamped to this


class TemplateError(ConfigError):
    """A message template is invalid, unsafe (sandbox violation) or produced bad output."""


class ChannelUnavailable(ConfigError):
    """A channel cannot be built (unknown type, optional dependency missing)."""


class PartialDeliveryError(TemporaryDeliveryError):
    """Part of a delivery went out (e.g. some email recipients accepted), the rest must be retried.

    ``detail`` records what is done; the relay stores it on the delivery and hands it back to the
    channel as ``progress`` on the next attempt, so the done part is never sent twice.
    """

    def __init__(
        self, message: str, *, channel: str, detail: Mapping[str, Any], retry_after: float | None = None
    ) -> None:
        super().__init__(message, channel=channel, retry_after=retry_after)
        self.detail = dict(detail)


class AlertNotFound(StorywatchError):
    """No alert, delivery or silence with that id."""


@dataclass(frozen=True)
class RenderedMessage:
    """What a channel sends: one subject line, a plain-text body and format-specific parts.

    ``data`` is the structured body for JSON channels (Slack blocks, webhook JSON); ``html`` the
    HTML alternative for email; ``thread`` a stable key (the alert's group) for threading.
    """

    kind: str  # alert | update | repeat | digest | notice | test
    subject: str
    text: str
    html: str | None = None
    data: Mapping[str, Any] | None = None
    thread: str | None = None


@dataclass(frozen=True)
class DeliveryResult:
    """A successful (possibly partial) delivery. ``detail`` is stored on the delivery row."""

    channel: str
    status: int | None = None  # HTTP status or SMTP reply code
    detail: Mapping[str, Any] = field(default_factory=dict)
    warning: str | None = None  # e.g. "1 of 2 recipients refused"

    @property
    def partial(self) -> bool:
        return self.warning is not None


@runtime_checkable
class Channel(Protocol):
    """One configured alert channel."""

    name: str
    config: ChannelConfig
    rate_limited: bool  # False: the relay ignores rate_per_second (console)

    async def send(
        self,
        message: RenderedMessage,
        *,
        idempotency_key: str,
        progress: Mapping[str, Any] | None = None,
    ) -> DeliveryResult:
        """Send; ``progress`` is what earlier attempts recorded (channels that cannot resume ignore it)."""
        ...

    async def aclose(self) -> None: ...


ChannelFactory = Callable[[str, ChannelConfig], Channel]
_REGISTRY: dict[str, ChannelFactory] = {}
_F = TypeVar("_F", bound=ChannelFactory)


def register_channel(type_name: str) -> Callable[[_F], _F]:
    """Class decorator: make ``type_name`` (a ``ChannelConfig.type``) build this channel."""

    def deco(factory: _F) -> _F:
        _REGISTRY[type_name] = factory
        return factory

    return deco


def channel_types() -> tuple[str, ...]:
    _load_builtin()
    return tuple(sorted(_REGISTRY))


def build_channel(name: str, cfg: ChannelConfig) -> Channel:
    """The channel object for ``channels.<name>``; ChannelUnavailable names what is wrong."""
    _load_builtin()
    factory = _REGISTRY.get(cfg.type)
    if factory is None:
        raise ChannelUnavailable(f"unknown channel type {cfg.type!r}", key=f"alerts.channels.{name}.type")
    return factory(name, cfg)


def _load_builtin() -> None:
    # Importing the modules runs their @register_channel decorators.
    from crawler.alerts import apprise_channel, console, email, slack, webhook  # noqa: F401


# ------------------------------------------------------------------ shared helpers for channels


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header, clamped; None if absent or garbage (the fetcher's parser)."""
    return politeness.parse_retry_after(value, now or datetime.now(UTC), max_seconds=MAX_RETRY_AFTER)


# What a channel raises when its settings cannot work (a URL httpx refuses, a port out of range...):
# retrying never helps, so the delivery fails for good until the setting is fixed.
SETTINGS_FAULTS: tuple[type[Exception], ...] = (
    httpx.InvalidURL,
    httpx.UnsupportedProtocol,
    ValueError,  # UnicodeError too
    OverflowError,
    TypeError,
    LookupError,
    AttributeError,
)


def channel_failure(channel: str, exc: BaseException, secrets: Iterable[str] = ()) -> DeliveryError:
    """Whatever a channel raised, as a typed delivery error whose message holds no secret.

    Delivery and template errors keep their kind; a settings fault (``SETTINGS_FAULTS``) or another
    storywatch error is permanent; anything else (OSError, a library's own error) is temporary.
    Messages are scrubbed of ``secrets`` and of every registered one (:mod:`crawler.bounds.redact`);
    a settings fault is named by its type only, as its text may quote a piece of the URL.
    """
    if isinstance(exc, TemplateError):
        return PermanentDeliveryError(redact.scrub(str(exc), secrets), channel=channel)
    if isinstance(exc, DeliveryError):
        return exc
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # anyio wraps what a connect raised
        exc = next((e for e in exc.exceptions if isinstance(e, SETTINGS_FAULTS)), exc.exceptions[0])
    if isinstance(exc, SETTINGS_FAULTS):
        return PermanentDeliveryError(
            f"{type(exc).__name__}: this channel's settings cannot work (its URL, host or port?); "
            f"fix alerts.channels.{channel}, then `storywatch alerts retry`",
            channel=channel,
        )
    text = redact.scrub(f"{type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, StorywatchError):
        return PermanentDeliveryError(text, channel=channel)
    return TemporaryDeliveryError(text, channel=channel)


async def post(
    client: httpx.AsyncClient, channel: str, url: str, content: bytes, headers: Mapping[str, str]
) -> httpx.Response:
    """POST and classify: 2xx returned; timeouts/transport errors/5xx/429 temporary; other 4xx and a URL
    that cannot be used permanent. No message quotes the URL (a secret) or a piece of it."""
    try:
        resp = await client.post(url, content=content, headers=dict(headers))
    except httpx.TimeoutException as exc:
        raise TemporaryDeliveryError(f"timed out ({type(exc).__name__})", channel=channel) from None
    except Exception as exc:  # transport errors, and a URL that httpx or the socket refuses
        raise channel_failure(channel, exc, [url]) from None
    if 200 <= resp.status_code < 300:
        return resp
    body = redact.scrub(resp.text[:2000], [url])
    raise http_status_error(channel, resp.status_code, body, resp.headers.get("retry-after"))


def channel_secrets(cfg: ChannelConfig) -> tuple[str, ...]:
    """The secret values of a channel's settings (URLs, webhook key, SMTP password), for scrubbing."""
    values = [cfg.url, cfg.secret, cfg.password, *cfg.urls]
    return tuple(v.get_secret_value() for v in values if v is not None)


def secret_url(name: str, cfg: ChannelConfig) -> str:
    """The channel's configured URL (a secret); a channel without one cannot deliver anything."""
    if cfg.url is None:
        raise PermanentDeliveryError("no webhook url configured", channel=name)
    return cfg.url.get_secret_value()


def http_client(cfg: ChannelConfig) -> httpx.AsyncClient:
    """A client for one channel: its timeout, no proxies from the environment, no redirects."""
    return httpx.AsyncClient(timeout=cfg.timeout, trust_env=False, follow_redirects=False)


def http_status_error(channel: str, status: int, body: str, retry_after: str | None) -> Exception:
    """The typed error for a non-2xx HTTP answer: 429/408/5xx temporary, other 4xx permanent."""
    snippet = " ".join(body.split())[:200]
    msg = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status == 429 or status == 408 or status >= 500:
        return TemporaryDeliveryError(msg, channel=channel, retry_after=parse_retry_after(retry_after))
    return PermanentDeliveryError(msg, channel=channel)


__all__ = [
    "AlertNotFound",
    "Channel",
    "ChannelUnavailable",
    "DeliveryResult",
    "PartialDeliveryError",
    "RenderedMessage",
    "TemplateError",
    "build_channel",
    "channel_failure",
    "channel_secrets",
    "channel_types",
    "http_client",
    "http_status_error",
    "parse_retry_after",
    "post",
    "register_channel",
]
