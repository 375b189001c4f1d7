"""The ASGI app: :func:`create_app` wires settings, the database, the guard and the routers.

Served by the daemon (``daemon.http``, with its /healthz and /metrics) or by ``storywatch web``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST

from crawler.config import Settings
from crawler.errors import StorywatchError
from rules import RuleSet
from rules.testing import RulesOverview, rules_overview
from storage.db import Database

from .present import Redactor, ago, duration, safe_href
from .security import HEADERS, SESSION_COOKIE, SID_COOKIE, Guard, new_sid

HERE = Path(__file__).parent
OPEN_PATHS = ("/healthz", "/login", "/static/")  # served without the token


class RulesCache:
    """The configured rule files, loaded again only when one of them changes on disk."""

    def __init__(self, paths: tuple[Path, ...]) -> None:
        self.paths = paths
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, float], ...] | None = None
        self._value: tuple[RulesOverview, RuleSet] | None = None

    def get(self) -> tuple[RulesOverview, RuleSet]:
        stamp = self._stamp_now()
        with self._lock:
            if self._value is None or stamp != self._stamp:
                self._value, self._stamp = rules_overview(list(self.paths)), stamp
            return self._value

    def _stamp_now(self) -> tuple[tuple[str, float], ...]:
        files: list[Path] = []
        for p in self.paths:
            files.extend(sorted(p.glob("*.y*ml")) if p.is_dir() else [p])
        return tuple((str(f), f.stat().st_mtime if f.exists() else 0.0) for f in files)


class WebContext:
    """What every handler reads (one per app). ``settings`` follows the daemon's reloads."""

    def __init__(
        self,
        current: Callable[[], Settings],
        db: Database,
        guard: Guard,
        env: Environment,
        health: Callable[[], dict[str, Any]] | None = None,
        metrics: Callable[[], bytes] | None = None,
    ) -> None:
        self._current = current
        self.db = db
        self.guard = guard
        self.env = env
        self.health = health
        self.metrics = metrics
        self._lock = threading.Lock()
        self._seen: Settings | None = None
        self._rules: RulesCache | None = None
        self._redact: Redactor | None = None

    @property
    def settings(self) -> Settings:
        settings = self._current()
        with self._lock:
            if settings is not self._seen:  # first use, or the daemon reloaded its configuration
                self._seen = settings
                self._rules = RulesCache(settings.rule_paths())
                self._redact = Redactor(settings)
        return settings

    @property
    def rules(self) -> RulesCache:
        self.settings  # noqa: B018  (refreshes the cache when the settings changed)
        assert self._rules is not None
        return self._rules

    @property
    def redact(self) -> Redactor:
        self.settings  # noqa: B018
        assert self._redact is not None
        return self._redact

    @property
    def read_only(self) -> bool:
        """``web.read_only`` as the app started with it (like the token, fixed for its life)."""
        return self.guard.read_only


def create_app(
    settings: Settings,
    db: Database,
    *,
    health: Callable[[], dict[str, Any]] | None = None,
    metrics: Callable[[], bytes] | None = None,
    current: Callable[[], Settings] | None = None,
) -> FastAPI:
    """The dashboard, the JSON API (``/api/v1/``), ``/healthz`` and (given ``metrics``) ``/metrics``.

    ``health`` returns the /healthz document (the daemon's state); ``metrics`` renders the
    Prometheus text; ``current`` returns the settings in force (the daemon's, after a reload: new
    sources, rule paths and channels show at once; the token and read-only mode are read once).
    ``db`` is only read through storage functions.
    """
    from . import api, pages

    token = settings.web.token.get_secret_value() if settings.web.token else None
    app = FastAPI(
        title="storywatch",
        version="1",
        summary="Developments, stories, documents, sources, rules and silences of a storywatch database.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = WebContext(
        current or (lambda: settings),
        db,
        Guard.create(token, read_only=settings.web.read_only),
        _environment(),
        health,
        metrics,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.add_api_route("/healthz", _healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)
    app.middleware("http")(_guard)
    app.add_exception_handler(StorywatchError, _storywatch_error)
    app.add_exception_handler(RequestValidationError, _bad_request)
    return app


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, duration=duration, safe_href=safe_href)
    return env


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Authentication (token set), the browser session id, and the security headers on every answer."""
    ctx = context(request)
    path = request.url.path
    sid = request.cookies.get(SID_COOKIE)
    page = not path.startswith(("/api/", "/static/", "/metrics", "/healthz"))
    request.state.sid = sid or (new_sid() if page else None)  # API clients without cookies: no sid
    authed = ctx.guard.authenticated(
        request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE)
    )
    if not authed and not path.startswith(OPEN_PATHS):
        if path.startswith(("/api/", "/metrics")) or request.method != "GET":
            response: Response = JSONResponse(
                {"error": "unauthorized", "detail": "send Authorization: Bearer TOKEN (web.token)"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        else:
            response = RedirectResponse("/login", status_code=303)
    else:
        response = await call_next(request)
    if sid is None and request.state.sid is not None:
        response.set_cookie(SID_COOKIE, request.state.sid, httponly=True, samesite="strict", path="/")
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _healthz(request: Request) -> JSONResponse:
    """The daemon's state (pid, start time, sources by health...); standalone: the web role."""
    ctx = context(request)
    doc = ctx.health() if ctx.health is not None else {"status": "running", "role": "web"}
    return JSONResponse(json.loads(json.dumps(doc, default=str)))


def _metrics(request: Request) -> Response:
    """Prometheus text from the daemon's own registry (only when the daemon serves this app)."""
    ctx = context(request)
    if ctx.metrics is None:
        return PlainTextResponse("no metrics here: the daemon serves /metrics on daemon.http\n", 404)
    return Response(ctx.metrics(), media_type=CONTENT_TYPE_LATEST)


async def _storywatch_error(request: Request, exc: Exception) -> Response:
    from crawler.alerts.base import AlertNotFound
    from storage.stories import StoryNotFound

    status = 404 if isinstance(exc, AlertNotFound | StoryNotFound) else 400
    if not request.url.path.startswith("/api/"):
        from .pages import error_page

        return error_page(request, status, str(exc))
    return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)
