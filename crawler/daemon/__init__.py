"""The daemon: adaptive scheduling policy, jobs, side tasks, metrics and logs.

``service.Daemon`` is `storywatch run`; ``jobs`` holds one APScheduler job per source, ``schedule``
the pure polling policy, ``ops`` what runs beside the jobs (relay, watcher, heartbeat, status),
``metrics`` the Prometheus registry (served by :mod:`crawler.web` on ``daemon.http``), ``logs``
the structured log setup.
"""

from __future__ import annotations

from crawler.daemon.logs import LOGGER, setup_logging, source_extra
from crawler.daemon.metrics import Metrics
from crawler.daemon.ops import collect_status
from crawler.daemon.service import Daemon

__all__ = ["LOGGER", "Daemon", "Metrics", "collect_status", "setup_logging", "source_extra"]
