"""Serving the app: uvicorn in a thread of its own (the daemon's loop is never blocked), or in front.

The socket is bound before the thread starts, so a busy port or a refused address is an error at
once, and port 0 reports the port it got.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from crawler.errors import ConfigError

from .security import check_listen, parse_listen


def bind(listen: str, *, has_token: bool, key: str) -> socket.socket:
    """A listening socket on ``host:port``; ConfigError (naming ``key``) if refused or busy."""
    host, port = parse_listen(listen, key=key)
    check_listen(host, has_token=has_token, key=key)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: no 40 ms Nagle / delayed-ACK stall between headers and body
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}", key=key) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class WebServer:
    """``WebServer(app, sock).start()`` ... ``.stop()``: uvicorn serving ``app`` from a daemon thread."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        # log_config=None: uvicorn leaves logging alone (its errors reach the daemon's own handlers)
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="storywatch-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> WebServer:
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def serve_forever(self, announce: Callable[[], None] | None = None) -> None:
        """Run in this thread until Ctrl-C / SIGTERM. Our handlers are in place before ``announce``
        (the "serving" line) runs, so a signal sent as soon as that line is read stops the server,
        even in a process started with SIGINT ignored (a background job); uvicorn installs its own
        while it runs and puts ours back after."""

        def stop(_signum: int, _frame: object) -> None:
            self.server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        if announce is not None:
            announce()
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()
