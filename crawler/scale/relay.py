"""The relay role (`storywatch relay`): the outbox relay as its own process, any number of them.

Several relays share the outbox safely: claims are FOR UPDATE SKIP LOCKED, every outcome is fenced
by the lease (``storage.outbox_relay``), and each channel's ``rate_per_second`` holds for all of
them together through Redis (``crawler.scale.politeness.RedisPacer``). SIGTERM/SIGINT stop it after
the sends in flight.
"""

from __future__ import annotations

import asyncio
import logging

from crawler.alerts.relay import Relay
from crawler.config import Settings
from crawler.daemon.ops import install_signals, remove_signals
from crawler.scale.broker import redis_client, require_scale
from crawler.scale.politeness import RedisPacer
from storage.db import open_database

log = logging.getLogger("storywatch.relay")


async def run_relay(
    settings: Settings, *, handle_signals: bool = True, stop: asyncio.Event | None = None
) -> None:
    url = require_scale(settings)
    db = open_database(settings.database_url)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        install_signals(loop, stop=stop.set, reload=lambda: log.info("SIGHUP: restart the relay to reload"))
    relay = Relay.from_settings(db, settings, pacer=RedisPacer(redis_client(url)))
    log.info("relay %s delivering the outbox", relay.worker_id)
    try:
        await relay.run_forever(stop)
    finally:
        if handle_signals:
            remove_signals(loop)
        db.dispose()


__all__ = ["run_relay"]
