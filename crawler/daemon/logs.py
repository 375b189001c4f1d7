"""Structured daemon logs on stdlib logging: human lines or JSON lines (``daemon.log_format``).

Every record about a source carries ``source_id`` (pass ``extra={"source_id": ...}`` or use
:func:`source_extra`); both formats print it. Other ``extra`` keys listed in :data:`FIELDS` are
kept as JSON fields and appended as ``key=value`` to human lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from crawler.config import DaemonConfig

LOGGER = "storywatch"
FIELDS = (
    "source_id",
    "health",
    "old_health",
    "url",
    "file",
    "next_due",
    "interval",
    "error_kind",
    "new_documents",
    "new_alerts",
    "pid",
    "host",
)
_HANDLER_MARK = "_storywatch_handler"


def source_extra(source_id: str, **fields: Any) -> dict[str, Any]:
    return {"source_id": source_id, **fields}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the known fields, and exc when any."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            data["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class HumanFormatter(logging.Formatter):
    """``2026-11-23 08:00:01 WARNING [source-id] message key=value``"""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        sid = fields.pop("source_id", None)
        when = datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        parts = [when, f"{record.levelname:<7}", f"[{sid}]" if sid else "", record.getMessage()]
        line = " ".join(p for p in parts if p)
        extras = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("health", "old_health"))
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:  # exc_text: the traceback scrubbed of secrets (crawler.bounds.redact)
            line = f"{line}\n{record.exc_text or self.formatException(record.exc_info)}"
        return line


def setup_logging(cfg: DaemonConfig, stream: IO[str] | None = None) -> logging.Logger:
    """Route ``storywatch.*`` (and scheduler warnings) to ``stream`` (stderr) in the chosen format.

    Idempotent: calling it again (after a reload) replaces the handler instead of adding one.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if cfg.log_format == "json" else HumanFormatter())
    setattr(handler, _HANDLER_MARK, True)
    # the scheduler's own "missed" warning is replaced by ours, which names the source
    levels = ((LOGGER, cfg.log_level.upper()), ("apscheduler", "WARNING"), ("apscheduler.executors", "ERROR"))
    for name, level in levels:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return logging.getLogger(LOGGER)
