"""Slack incoming webhooks: Block Kit messages, Slack's size limits, Slack's status codes.

Feed text arrives already escaped (``& < >``, see :mod:`crawler.alerts.render`); this module
enforces Slack's limits on whatever the template produced: 3000 characters per text object
(150 for headers), 50 blocks, truncating with a marker and never inside an ``&entity;`` or a
``<link>``. 429 + Retry-After is a temporary error that pauses the channel (the relay does
that); 400/403/404/410 are permanent; 5xx and timeouts are temporary.
"""

from __future__ import annotations

import json
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
from crawler.alerts.render import slack_escape
from crawler.config import ChannelConfig

TEXT_LIMIT = 3000
HEADER_LIMIT = 150
MAX_BLOCKS = 50
MARK = " …[truncated]"


def truncate_mrkdwn(text: str, limit: int = TEXT_LIMIT) -> str:
    """Cut to ``limit`` characters with a marker, never splitting an entity or a <...> link."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(MARK)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut + MARK


def _fit(node: Any, limit: int) -> Any:
    if isinstance(node, dict):
        inner = HEADER_LIMIT if node.get("type") == "header" else limit
        return {
            k: (truncate_mrkdwn(v, inner) if k == "text" and isinstance(v, str) else _fit(v, inner))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_fit(v, limit) for v in node]
    return node


def fit_blocks(data: dict[str, Any]) -> dict[str, Any]:
    """Apply Slack's limits to a message body (text lengths, number of blocks)."""
    out = _fit(data, TEXT_LIMIT)
    blocks = out.get("blocks")
    if isinstance(blocks, list) and len(blocks) > MAX_BLOCKS:
        more = len(blocks) - (MAX_BLOCKS - 1)
        note = {"type": "context", "elements": [{"type": "mrkdwn", "text": f"…{more} more blocks truncated"}]}
        out["blocks"] = [*blocks[: MAX_BLOCKS - 1], note]
    return out


@register_channel("slack")
class SlackChannel:
    rate_limited = True

    def __init__(self, name: str, config: ChannelConfig) -> None:
        self.name = name
        self.config = config
        self._url = secret_url(name, config)
        self._client = http_client(config)

    async def send(
        self, message: RenderedMessage, *, idempotency_key: str, progress: Mapping[str, Any] | None = None
    ) -> DeliveryResult:
        body = fit_blocks(dict(message.data) if message.data else {"text": slack_escape(message.subject)})
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {
            "content-type": "application/json; charset=utf-8",
            "x-storywatch-idempotency-key": idempotency_key,
        }
        resp = await post(self._client, self.name, self._url, content, headers)
        return DeliveryResult(self.name, resp.status_code, {"response": resp.text[:200]})

    async def aclose(self) -> None:
        await self._client.aclose()
