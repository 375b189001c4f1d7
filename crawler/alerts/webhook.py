"""JSON webhooks, signed with HMAC-SHA256 so the receiver can trust them.

Headers on every POST::

    Content-Type: application/json
    X-Storywatch-Event: alert | update | repeat | digest | notice | test
    X-Storywatch-Idempotency-Key / Idempotency-Key: the delivery's key (same on every retry)
    X-Storywatch-Timestamp: Unix seconds when this attempt was sent
    X-Storywatch-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed by `secret`>

A receiver recomputes the HMAC over the raw body, compares in constant time, and drops a
repeated idempotency key (a retry after a crash between send and mark).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from crawler.alerts.base import (
    DeliveryResult,
    RenderedMessage,
    http_client,
    post,
    register_channel,
    secret_url,
)
from crawler.config import ChannelConfig


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@register_channel("webhook")
class WebhookChannel:
    rate_limited = True

    def __init__(self, name: str, config: ChannelConfig) -> None:
        self.name = name
        self.config = config
        self._url = secret_url(name, config)
        self._secret = config.secret.get_secret_value() if config.secret else None
        self._client = http_client(config)

    async def send(
        self, message: RenderedMessage, *, idempotency_key: str, progress: Mapping[str, Any] | None = None
    ) -> DeliveryResult:
        data = dict(message.data) if message.data else {"event": message.kind, "text": message.text}
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "content-type": "application/json; charset=utf-8",
            "x-storywatch-event": message.kind,
            "x-storywatch-idempotency-key": idempotency_key,
            "idempotency-key": idempotency_key,
            "x-storywatch-timestamp": str(int(time.time())),
        }
        if self._secret:
            headers["x-storywatch-signature"] = sign(self._secret, body)
        resp = await post(self._client, self.name, self._url, body, headers)
        return DeliveryResult(self.name, resp.status_code, {"response": resp.text[:200]})

    async def aclose(self) -> None:
        await self._client.aclose()
