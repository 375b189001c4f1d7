"""The web dashboard and JSON API: developments, stories, sources, rules and silences (FastAPI)."""

from .app import WebContext, create_app
from .security import check_listen, parse_listen
from .server import WebServer, bind

__all__ = ["WebContext", "WebServer", "bind", "check_listen", "create_app", "parse_listen"]
