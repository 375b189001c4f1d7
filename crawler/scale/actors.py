"""The module Dramatiq's worker imports (``storywatch worker`` hands it to Dramatiq's CLI): it sets
the broker from the config file named by ``$STORYWATCH_CONFIG`` and declares the ``poll`` actor.

Retries are off: a poll that fails is recorded by the pipeline and rescheduled by its policy, and a
poll that never finished is dispatched again when its lease expires (``storage.dispatch``).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal

import dramatiq

from crawler.config import load_settings
from crawler.scale.broker import POLL_ACTOR, POLL_QUEUE, make_broker, require_scale
from crawler.scale.worker import FlushWrites, WorkerHeartbeat
from crawler.scale.worker import poll as _poll

faulthandler.register(signal.SIGUSR2, all_threads=True)  # kill -USR2 <worker pid>: stacks to stderr
_settings = load_settings(os.environ.get("STORYWATCH_CONFIG"))
broker = make_broker(require_scale(_settings))
broker.add_middleware(WorkerHeartbeat(require_scale(_settings)))
broker.add_middleware(FlushWrites())
dramatiq.set_broker(broker)
logging.getLogger("storywatch").setLevel(_settings.daemon.log_level.upper())
logging.getLogger("alembic").setLevel(logging.WARNING)  # every process checks the schema at start
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is the site's log, not ours

poll = dramatiq.actor(
    actor_name=POLL_ACTOR,
    queue_name=POLL_QUEUE,
    broker=broker,
    max_retries=0,
    time_limit=int(_settings.scale.lease * 1000),
)(_poll)

__all__ = ["broker", "poll"]
