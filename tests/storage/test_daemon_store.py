"""storage.daemon_store: one daemon per database, the instance row, health notices in the outbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from crawler.config import AlertsConfig, ChannelConfig
from crawler.errors import DaemonLocked
from storage import daemon_store as ds
from storage.db import Database, open_database
from storage.models import DeliveryRow

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _instance(pid: int, host: str = "box-a") -> ds.Instance:
    return ds.Instance(f"{host}:{pid}:x", pid, host, T0)


def test_a_second_holder_is_refused_with_the_first_named(db_url: str) -> None:
    db, other = Database(db_url), Database(db_url)
    first = ds.InstanceLock(db, _instance(4242)).acquire()
    open_database(db_url).dispose()  # schema for the PostgreSQL refusal message
    ds.register_instance(open_database(db_url), _instance(4242))
    try:
        assert ds.lock_held(other) is True
        with pytest.raises(DaemonLocked) as info:
            ds.InstanceLock(other, _instance(5555, "box-b")).acquire()
        msg = str(info.value)
        assert "pid 4242" in msg and "box-a" in msg and T0.isoformat() in msg
        assert "kill -TERM 4242" in msg
    finally:
        first.release()
    assert ds.lock_held(other) is False
    again = ds.InstanceLock(other, _instance(5555, "box-b")).acquire()  # free once released
    again.release()
    db.dispose()
    other.dispose()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    """SIGKILL leaves no stale lock: the kernel drops the flock with the process."""
    url = f"sqlite:///{tmp_path / 'sw.db'}"
    code = (
        "import sys, time\nfrom datetime import UTC, datetime\n"
        "from storage.db import Database\nfrom storage import daemon_store as ds\n"
        f"lock = ds.InstanceLock(Database({url!r}), ds.Instance.current(datetime.now(UTC))).acquire()\n"
        "print('locked', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        db = Database(url)
        with pytest.raises(DaemonLocked, match=f"pid {proc.pid}"):
            ds.InstanceLock(db, _instance(1)).acquire()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    lock = ds.InstanceLock(db, _instance(1)).acquire()
    holder = (tmp_path / "sw.db.lock").read_text("utf-8")
    assert '"pid": 1' in holder  # the file names the new holder
    lock.release()


def test_status_tells_running_stopped_and_dead(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'sw.db'}")
    assert ds.daemon_status(db, now=T0) == ds.DaemonStatus(running=False, lock_held=False)
    inst = _instance(os.getpid())
    lock = ds.InstanceLock(db, inst).acquire()
    ds.register_instance(db, inst)
    ds.heartbeat(db, inst.id, T0 + timedelta(seconds=30))
    st = ds.daemon_status(db, now=T0 + timedelta(seconds=40))
    assert (st.running, st.lock_held, st.pid, st.host, st.state) == (
        True,
        True,
        os.getpid(),
        "box-a",
        "running",
    )
    assert st.heartbeat_at == T0 + timedelta(seconds=30) and st.started_at == T0
    lock.release()  # a crash: the row still says running, the lock says otherwise
    st = ds.daemon_status(db, now=T0 + timedelta(seconds=40))
    assert (st.running, st.lock_held, st.state) == (False, False, "dead")
    nxt = ds.Instance("box-a:7:y", 7, "box-a", T0 + timedelta(minutes=1))
    ds.register_instance(db, nxt)  # a new daemon marks the old row dead
    ds.mark_stopped(db, nxt.id, T0 + timedelta(minutes=5))
    st = ds.daemon_status(db, now=T0 + timedelta(minutes=6))
    assert (st.pid, st.state, st.running) == (7, "stopped", False)
    assert st.as_json()["heartbeat_at"] == (T0 + timedelta(minutes=5)).isoformat()


def test_one_notice_row_per_change_and_none_without_a_channel(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'sw.db'}")
    console = ChannelConfig.model_validate({"type": "console"})
    cfg = AlertsConfig(channels={"ops": console}, health_channel="ops")
    key = ds.notice_key("feed-1", "failing", T0)
    for _ in range(2):  # a retried enqueue of the same change adds nothing
        assert ds.enqueue_notice(db, key=key, title="t", text="x", alerts_cfg=cfg, now=T0) == ("ops",)
    later = ds.notice_key("feed-1", "ok", T0 + timedelta(minutes=1))
    ds.enqueue_notice(db, key=later, title="back", text="y", alerts_cfg=cfg, now=T0)
    silent = AlertsConfig(channels={"ops": console})
    assert ds.enqueue_notice(db, key="k3", title="t", text="x", alerts_cfg=silent, now=T0) == ()
    with db.read() as s:
        rows = list(s.scalars(select(DeliveryRow).order_by(DeliveryRow.id)))
    assert [(r.kind, r.channel, r.state) for r in rows] == [("notice", "ops", "pending")] * 2
    assert rows[0].payload["notice"]["title"] == "t" and rows[1].payload["notice"]["title"] == "back"
    assert ds.delivery_counts(db) == {"pending": 2}
    assert len(ds.notice_key("x" * 200, "failing", T0)) <= 150


def test_the_lock_session_has_tcp_keepalives_on_both_ends(pg_url: str) -> None:
    """libpq keepalives on our socket, and the server's for the lock's session: a dead holder's
    lock is freed in about a minute, not after the kernel's two hours."""
    import socket

    db = Database(pg_url)
    lock = ds.InstanceLock(db, _instance(7)).acquire()
    try:
        conn = lock._conn
        assert conn is not None
        fd = conn.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
        sock = socket.socket(fileno=os.dup(fd))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        finally:
            sock.close()
        from sqlalchemy import text

        server = {k: conn.execute(text(f"SHOW {k}")).scalar() for k in ds.SERVER_KEEPALIVES}
        assert server == {k: str(v) for k, v in ds.SERVER_KEEPALIVES.items()}
        assert lock.alive()
    finally:
        lock.release()
        db.dispose()


@pytest.mark.slow
def test_three_daemons_started_at_once_on_an_empty_postgres_one_runs_two_exit_3(
    pg_url: str, tmp_path: Path
) -> None:
    """The lock comes before the migrations: the refused ones must not query tables that the
    winner is still creating (an ``UndefinedTable`` traceback, exit 1, before the fix)."""
    config = tmp_path / "storywatch.yaml"
    config.write_text(
        f'database: "{pg_url}"\ndaemon: {{watch_files: false, shutdown_deadline: 2s}}\nsources: []\n', "utf-8"
    )
    env = {**os.environ, "STORYWATCH_DATA_DIR": str(tmp_path / "data")}
    cmd = [sys.executable, "-c", "from crawler.cli import main; main()", "--config", str(config), "run"]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    try:
        import time

        deadline = time.monotonic() + 30
        while sum(p.poll() is not None for p in procs) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        exited = [p for p in procs if p.poll() is not None]
        assert len(exited) == 2, "exactly one daemon keeps running"
        for p in exited:
            _, err = p.communicate()
            assert p.returncode == 3, err
            assert "Traceback" not in err and "another storywatch daemon" in err
    finally:
        for p in procs:
            if p.poll() is None:
                started = _wait_for_line(p, "storywatch daemon started", 60)
                p.send_signal(signal.SIGTERM)
                _, err = p.communicate(timeout=20)
                assert p.returncode == 0 and "Traceback" not in err, started + err


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """What ``proc`` wrote to stderr until a line holding ``needle`` (its signal handlers are in place
    from then on: a SIGTERM before that ends a starting daemon by the default action)."""
    import select
    import time

    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stderr], [], [], 0.5)[0]:
            line = proc.stderr.readline()
            seen.append(line)
            if needle in line:
                break
    return "".join(seen)
