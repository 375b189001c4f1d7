"""The library behind ``storywatch alerts [list|show ID|retry ID|silence ...|test CHANNEL] [--json]``.

The CLI is a thin wrapper: call one function, print the frozen value it returns (or
``to_jsonable(value)`` for ``--json``). Queries live in :mod:`storage.outbox_admin`.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

from crawler.alerts import routing
from crawler.alerts.base import DeliveryResult, build_channel, channel_failure, channel_secrets
from crawler.alerts.payload import sample_payload
from crawler.alerts.render import Renderer
from crawler.alerts.views import to_jsonable
from crawler.config import ConfigError, Settings
from crawler.errors import DeliveryError
from storage.outbox_admin import (
    add_silence,
    alert_facets,
    alerts_page,
    expire_silence,
    list_alerts,
    list_deliveries,
    list_silences,
    outbox_depth,
    retry_delivery,
    show_alert,
)


def check_alerts(settings: Settings) -> None:
    """Validate what the config schema cannot (time zones, quiet hours, templates) -> ConfigError."""
    routing.validate(settings.alerts)
    renderer = Renderer(_base_dir(settings))
    for name, cfg in settings.alerts.channels.items():
        if cfg.enabled:
            renderer.check(name, cfg)


async def test_channel(settings: Settings, name: str, *, now: datetime | None = None) -> DeliveryResult:
    """Send a sample alert through channel ``name`` right now (no outbox, no quiet hours).

    Raises ConfigError for an unknown channel or a bad template, a DeliveryError if sending fails.
    """
    cfg = settings.alerts.channels.get(name)
    if cfg is None:
        known = ", ".join(settings.alerts.channels) or "none"
        raise ConfigError(f"no channel named {name!r} (configured: {known})", key="alerts.channels")
    now = now or datetime.now(UTC)
    key = f"test-{name}-{now:%Y%m%dT%H%M%S%fZ}"
    message = Renderer(_base_dir(settings)).render(name, cfg, sample_payload(now), idempotency_key=key)
    secrets = channel_secrets(cfg)
    try:
        channel = build_channel(name, cfg)
    except ConfigError:
        raise
    except Exception as exc:  # the channel's boundary, as in the relay: a typed, scrubbed error
        raise channel_failure(name, exc, secrets) from None
    try:
        return await channel.send(message, idempotency_key=key)
    except DeliveryError:
        raise
    except Exception as exc:
        raise channel_failure(name, exc, secrets) from None
    finally:
        with contextlib.suppress(Exception):
            await channel.aclose()


test_channel.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported by one


def _base_dir(settings: Settings) -> Path:
    return Path(settings.path).parent if settings.path else Path.cwd()


__all__ = [
    "add_silence",
    "alert_facets",
    "alerts_page",
    "check_alerts",
    "expire_silence",
    "list_alerts",
    "list_deliveries",
    "list_silences",
    "outbox_depth",
    "retry_delivery",
    "show_alert",
    "test_channel",
    "to_jsonable",
]
