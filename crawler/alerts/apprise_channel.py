"""The apprise channel: any of apprise's 100+ services (Telegram, Discord, ntfy, Matrix...).

apprise is an optional dependency (``pip install 'storywatch[apprise]'``), imported only when an
apprise channel is built. apprise reports success as one boolean, so a failure is temporary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from crawler.alerts.base import ChannelUnavailable, DeliveryResult, RenderedMessage, register_channel
from crawler.config import ChannelConfig
from crawler.errors import TemporaryDeliveryError


def _load_apprise() -> Any:
    try:
        import apprise
    except ImportError as exc:
        raise ChannelUnavailable(
            "the apprise channel needs the optional dependency apprise: pip install 'storywatch[apprise]'",
            key="alerts.channels",
        ) from exc
    return apprise


@register_channel("apprise")
class AppriseChannel:
    rate_limited = True

    def __init__(self, name: str, config: ChannelConfig) -> None:
        apprise = _load_apprise()
        self.name = name
        self.config = config
        self._apprise = apprise.Apprise()
        for url in config.urls:
            if not self._apprise.add(url.get_secret_value()):
                raise ChannelUnavailable(
                    "apprise does not understand one of the urls", key=f"alerts.channels.{name}.urls"
                )

    async def send(
        self, message: RenderedMessage, *, idempotency_key: str, progress: Mapping[str, Any] | None = None
    ) -> DeliveryResult:
        ok = await asyncio.to_thread(self._apprise.notify, body=message.text, title=message.subject)
        if not ok:
            raise TemporaryDeliveryError("apprise reported a failure for at least one url", channel=self.name)
        return DeliveryResult(self.name, None, {"urls": len(self.config.urls)})

    async def aclose(self) -> None:
        return None
