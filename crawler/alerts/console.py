"""The console channel: writes each message to a stream (stdout by default) and the log.

For dry runs and ``storywatch once`` without any real channel configured.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from crawler.alerts.base import DeliveryResult, RenderedMessage, register_channel
from crawler.config import ChannelConfig

log = logging.getLogger("storywatch.alerts")


@register_channel("console")
class ConsoleChannel:
    rate_limited = False  # a local stream: no rate limit

    def __init__(self, name: str, config: ChannelConfig, *, stream: TextIO | None = None) -> None:
        self.name = name
        self.config = config
        self._stream = stream

    async def send(
        self, message: RenderedMessage, *, idempotency_key: str, progress: Mapping[str, Any] | None = None
    ) -> DeliveryResult:
        stream = self._stream or sys.stdout
        stream.write(f"--- {message.subject}  [{idempotency_key}]\n{message.text.rstrip()}\n\n")
        stream.flush()
        log.info("alert %s: %s", idempotency_key, message.subject)
        return DeliveryResult(self.name, None, {"written": len(message.text)})

    async def aclose(self) -> None:
        return None
