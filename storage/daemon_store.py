"""The daemon's footprint in the database: one instance lock, a heartbeat, health notices.

One daemon per database (RELIABILITY.md item 22):

- SQLite: an OS file lock (``fcntl.flock``) on ``<database file>.lock``. The kernel releases it
  when the process dies, even by SIGKILL, so a crashed daemon never blocks the next one. The
  file holds a JSON line ``{"pid", "host", "started"}`` naming the holder, written only after the
  lock is taken, so a refused daemon can say who is running.
- PostgreSQL: ``pg_try_advisory_lock`` on a connection held for the daemon's whole life (the
  server releases it when that session ends); the holder is named by its ``daemon_instances`` row.

Either way the ``daemon_instances`` row carries the pid, host, start time and a heartbeat that
``storywatch status`` shows.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from crawler.config import AlertsConfig
from crawler.errors import DaemonLocked, StorageError

from . import outbox
from .db import Database
from .models import DaemonRow, DeliveryRow

LOCK_RETRIES = 5  # a `storywatch status` probe holds the lock for microseconds: retry briefly
LOCK_RETRY_GAP = 0.1
# Server-side TCP keepalives of the lock's session (seconds, count): when the holder's machine dies,
# PostgreSQL ends its session, and so frees the lock, in about a minute instead of two hours.
SERVER_KEEPALIVES = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}


@dataclass(frozen=True)
class Instance:
    """Who a daemon is: written to the lock file and the ``daemon_instances`` row."""

    id: str
    pid: int
    host: str
    started: datetime

    @classmethod
    def current(cls, now: datetime) -> Instance:
        host = socket.gethostname()
        return cls(f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}", os.getpid(), host, now)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "pid": self.pid, "host": self.host, "started": self.started.isoformat()}


@dataclass(frozen=True)
class DaemonStatus:
    """What ``storywatch status`` says about the daemon."""

    running: bool  # the lock is held (or, without a lock to probe, a fresh heartbeat)
    lock_held: bool | None  # None: no lock to probe (in-memory SQLite)
    pid: int | None = None
    host: str | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    state: str | None = None  # the row's state: running | stopped | dead
    loop_lag_p99: float | None = None  # seconds, over the 5 minutes before the last heartbeat
    loop_lag_max: float | None = None

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("started_at", "heartbeat_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def _pg_key(conn: Connection) -> int:
    """The advisory-lock key: one per database and schema (schemas can hold separate deployments)."""
    schema = conn.execute(text("SELECT current_schema()")).scalar() or "public"
    digest = hashlib.sha256(f"storywatch-daemon:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_path(db: Database) -> Path | None:
    """``<database file>.lock`` for SQLite files; None for PostgreSQL and in-memory SQLite."""
    path = db.sqlite_path
    return path.with_name(path.name + ".lock") if path else None


def _refusal(pid: Any, host: Any, started: Any, where: str) -> DaemonLocked:
    return DaemonLocked(
        f"another storywatch daemon already runs on {where}: pid {pid} on host {host}, started {started}; "
        f"stop it first (kill -TERM {pid}) or point this one at another database"
    )


# ----------------------------------------------------------------------------- the lock


class InstanceLock:
    """Held for the daemon's life; ``release()`` (or process death) lets the next one start."""

    def __init__(self, db: Database, instance: Instance) -> None:
        self.db = db
        self.instance = instance
        self._file: IO[str] | None = None
        self._conn: Connection | None = None
        self._key = 0

    def acquire(self) -> InstanceLock:
        """Take the lock or raise DaemonLocked naming the holder."""
        if self.db.dialect == "postgresql":
            self._acquire_pg()
        else:
            path = lock_path(self.db)
            if path is not None:
                self._acquire_file(path)
        return self

    def _acquire_file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the daemon's life
        for attempt in range(LOCK_RETRIES):
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or attempt == LOCK_RETRIES - 1:
                    holder = _read_holder(path)
                    handle.close()
                    raise _refusal(
                        holder.get("pid", "?"),
                        holder.get("host", "?"),
                        holder.get("started", "?"),
                        str(self.db.sqlite_path),
                    ) from None
                time.sleep(LOCK_RETRY_GAP)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(self.instance.as_json()) + "\n")
        handle.flush()
        self._file = handle

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False (nothing raised) when another process holds it."""
        try:
            self.acquire()
        except DaemonLocked:
            return False
        return True

    def alive(self) -> bool:
        """Still held? PostgreSQL: the lock's session answers (a dropped session released the lock)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
            except SQLAlchemyError:
                return False
            return True
        return self._file is not None

    def _acquire_pg(self) -> None:
        conn = self.db.engine.connect()
        try:
            for name, value in SERVER_KEEPALIVES.items():  # the server notices a dead holder too
                conn.execute(text(f"SET {name} = {int(value)}"))
            self._key = _pg_key(conn)
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
            conn.commit()
        except Exception as exc:  # boundary: any driver error becomes one typed error
            conn.close()
            raise StorageError(f"cannot take the daemon lock: {exc}") from exc
        if not got:
            conn.close()
            raise _pg_refusal(self.db)
        self._conn = conn

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the session's end releases the lock anyway
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
            self._conn.close()
            self._conn = None


def _pg_refusal(db: Database) -> DaemonLocked:
    """Name the holder from its ``daemon_instances`` row. On a database the holder is still creating
    (three daemons started at once on an empty one), that table may not exist yet: say so."""
    try:
        row = _latest_running(db)
    except SQLAlchemyError:
        row = None
    if row is None:
        return DaemonLocked(
            "another storywatch daemon already holds this PostgreSQL database (it is still starting: "
            "its instance row is not written yet); stop it first or point this one at another database"
        )
    return _refusal(row.pid, row.host, row.started_at.isoformat(), "this PostgreSQL database")


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8").strip() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_held(db: Database) -> bool | None:
    """Probe the lock without keeping it. None when there is nothing to probe."""
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            key = _pg_key(conn)
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
        return not got
    path = lock_path(db)
    if path is None:
        return None
    if not path.exists():
        return False
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


# ----------------------------------------------------------------------------- instances


def register_instance(db: Database, instance: Instance) -> None:
    """Record this daemon as running; rows left "running" by a dead daemon become "dead"."""
    with db.write() as s:
        s.execute(update(DaemonRow).where(DaemonRow.state == "running").values(state="dead"))
        s.add(
            DaemonRow(
                id=instance.id,
                host=instance.host,
                pid=instance.pid,
                started_at=instance.started,
                heartbeat_at=instance.started,
                state="running",
            )
        )


def heartbeat(
    db: Database,
    instance_id: str,
    now: datetime,
    *,
    lag_p99: float | None = None,
    lag_max: float | None = None,
) -> None:
    """The daemon is alive at ``now``; its event loop's recent lag (p99, max seconds) when measured."""
    values: dict[str, Any] = {"heartbeat_at": now}
    if lag_p99 is not None:
        values.update(loop_lag_p99=lag_p99, loop_lag_max=lag_max)
    with db.write() as s:
        s.execute(update(DaemonRow).where(DaemonRow.id == instance_id).values(**values))


def mark_stopped(db: Database, instance_id: str, now: datetime) -> None:
    with db.write() as s:
        s.execute(
            update(DaemonRow).where(DaemonRow.id == instance_id).values(heartbeat_at=now, state="stopped")
        )


def _latest_running(db: Database) -> DaemonRow | None:
    with db.read() as s:
        return s.scalars(
            select(DaemonRow)
            .where(DaemonRow.state == "running")
            .order_by(DaemonRow.heartbeat_at.desc())
            .limit(1)
        ).first()


def daemon_status(db: Database, *, now: datetime, stale_after: float = 120.0) -> DaemonStatus:
    """The newest daemon row plus whether the lock is held right now."""
    with db.read() as s:
        row = s.scalars(select(DaemonRow).order_by(DaemonRow.started_at.desc()).limit(1)).first()
    held = lock_held(db)
    if row is None:
        return DaemonStatus(running=bool(held), lock_held=held)
    fresh = (now - row.heartbeat_at).total_seconds() <= stale_after
    running = held if held is not None else (row.state == "running" and fresh)
    state = row.state if not (row.state == "running" and held is False) else "dead"
    return DaemonStatus(
        running,
        held,
        row.pid,
        row.host,
        row.started_at,
        row.heartbeat_at,
        state,
        row.loop_lag_p99,
        row.loop_lag_max,
    )


# ----------------------------------------------------------------------------- health notices


def notice_key(source_id: str, new: str, at: datetime) -> str:
    """Unique per health change (source, new state, instant); hashed when it would be too long."""
    key = f"health:{source_id}:{new}:{at.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"
    return key if len(key) <= 150 else "health:" + hashlib.sha256(key.encode()).hexdigest()


def enqueue_notice(
    db: Database, *, key: str, title: str, text: str, alerts_cfg: AlertsConfig, now: datetime
) -> tuple[str, ...]:
    """One outbox row of kind "notice" per health channel (``storage.outbox``), in one transaction.

    Returns the channels queued to; a repeated ``key`` queues nothing new.
    """
    with db.write() as s:
        return outbox.enqueue_notice(s, db, key=key, title=title, text=text, alerts_cfg=alerts_cfg, now=now)


def delivery_counts(db: Database) -> dict[str, int]:
    """Outbox rows by state (pending, sent, failed, dead, held...)."""
    with db.read() as s:
        rows = s.execute(select(DeliveryRow.state, func.count()).group_by(DeliveryRow.state)).all()
    return {str(state): int(n) for state, n in rows}


__all__ = [
    "SERVER_KEEPALIVES",
    "DaemonStatus",
    "Instance",
    "InstanceLock",
    "daemon_status",
    "delivery_counts",
    "enqueue_notice",
    "heartbeat",
    "lock_held",
    "lock_path",
    "mark_stopped",
    "notice_key",
    "register_instance",
]
