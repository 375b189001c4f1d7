"""The HTML pages: developments (home), stories, sources, rules (with the playground), silences.

Every value reaches the page through an autoescaping Jinja2 template; every form is a POST with
the CSRF token; writes go through the same library functions as the CLI.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crawler.alerts import admin
from crawler.errors import ConfigError, FetchError
from crawler.fetch import Fetcher, fetch_settings
from crawler.sources import NewSource, Probe, SourcesFile, probe
from rules.testing import test_documents
from storage import sources as source_store
from storage import stories as story_store
from storage.stories import StoryNotFound

from .app import WebContext, context
from .deps import csrf, csrf_token, parse_when, writable
from .present import bars, highlight
from .security import SESSION_COOKIE

router = APIRouter(include_in_schema=False)
SINCE_CHOICES = (
    ("", "any time"),
    ("1h", "last hour"),
    ("24h", "last 24 h"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
)
DONE = {"silenced": "Silence added.", "expired": "Silence expired.", "retried": "Queued again."}


def _render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    ctx = context(request)
    html = ctx.env.get_template(name).render(
        request=request,
        csrf=csrf_token(request),
        read_only=ctx.read_only,
        has_token=ctx.guard.token is not None,
        highlight=highlight,
        nav=request.url.path,
        **values,
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """A page naming what went wrong (a bad filter, a missing story...)."""
    return _render(request, "error.html", status=status, message=message, status_code=status)


# ----------------------------------------------------------------------------- developments


def _int(value: str | None, default: int, low: int, high: int) -> int:
    """A bounded integer query parameter (anything else: the default)."""
    return min(max(int(value), low), high) if value and value.isdigit() else default


def _developments(ctx: WebContext, request: Request) -> dict[str, Any]:
    q = request.query_params
    filters = {"rule": q.get("rule", ""), "severity": q.get("severity", ""), "since": q.get("since", "")}
    page = admin.alerts_page(
        ctx.db,
        rule=filters["rule"] or None,
        severity=filters["severity"] or None,
        since=parse_when(filters["since"]),
        limit=_int(q.get("limit"), 50, 1, 200),
        cursor=q.get("cursor") or None,
    )
    query = urlencode({k: v for k, v in filters.items() if v})
    return {"page": page, "filters": filters, "query": query}


@router.get("/", response_class=HTMLResponse)
def developments(request: Request) -> HTMLResponse:
    ctx = context(request)
    rules, severities = admin.alert_facets(ctx.db)
    every = _int(request.query_params.get("refresh"), 15, 1, 3600)
    return _render(
        request,
        "developments.html",
        rules=rules,
        severities=severities,
        since_choices=SINCE_CHOICES,
        refresh=every,
        **_developments(ctx, request),
    )


@router.get("/fragments/developments", response_class=HTMLResponse)
def developments_fragment(request: Request) -> HTMLResponse:
    """The list alone: what the page's script fetches to refresh itself."""
    return _render(request, "_developments.html", **_developments(context(request), request))


# ----------------------------------------------------------------------------- stories


@router.get("/stories", response_class=HTMLResponse)
def stories(request: Request) -> HTMLResponse:
    since = request.query_params.get("since", "7d")
    page = story_store.stories_page(context(request).db, since=parse_when(since), limit=100, documents=False)
    return _render(request, "stories.html", page=page, since=since, since_choices=SINCE_CHOICES)


@router.get("/stories/{story_id}", response_class=HTMLResponse)
def story(request: Request, story_id: int) -> HTMLResponse:
    try:
        detail = story_store.story_detail(context(request).db, story_id)
    except StoryNotFound as exc:
        return error_page(request, 404, str(exc))
    timeline = sorted(detail.story.documents, key=lambda d: (d.published or d.discovered, d.id))
    return _render(request, "story.html", d=detail, timeline=timeline)


# ----------------------------------------------------------------------------- sources


FLASH_COOKIE = "sw_flash"
KINDS = ("auto", "feed", "page")
NO_USER_FILE = (
    "This dashboard runs on the packaged default configuration: there is no config file to add "
    "sources to. Run `storywatch init` to write one, then start the dashboard with it "
    "(`storywatch --config FILE web`)."
)


@router.get("/sources", response_class=HTMLResponse)
def sources(request: Request) -> HTMLResponse:
    flash = request.cookies.get(FLASH_COOKIE)
    response = _sources_page(request, flash=_unflash(flash) if flash else None)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/sources")
    return response


def _sources_page(
    request: Request,
    status: int = 200,
    *,
    flash: str | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    ctx = context(request)
    now = datetime.now(UTC)
    rows = source_store.list_sources(ctx.db, ctx.settings.source_specs(), now=now)
    per_day = source_store.items_per_day(ctx.db, [r.id for r in rows], now=now, days=14)
    charts = {sid: bars(values) for sid, values in per_day.items()}
    return _render(
        request,
        "sources.html",
        status=status,
        rows=rows,
        charts=charts,
        now=now,
        config_file=ctx.settings.path,
        no_user_file=NO_USER_FILE,
        kinds=KINDS,
        form=form or {"kind": "auto"},
        flash=flash,
        error=error,
    )


@router.post("/sources", response_class=HTMLResponse, dependencies=[Depends(csrf), Depends(writable)])
async def add_source(
    request: Request,
    url: Annotated[str, Form()],
    source_id: Annotated[str, Form(alias="id")] = "",
    kind: Annotated[str, Form()] = "auto",
    interval: Annotated[str, Form()] = "",
    tags: Annotated[str, Form()] = "",
    selector: Annotated[str, Form()] = "",
) -> Response:
    """The add form: the same library as `storywatch sources add --yes` (probe, then a checked edit of
    the config file the app was started with); a refusal is shown on the page, never a traceback."""
    form = {
        "url": url,
        "id": source_id,
        "kind": kind,
        "interval": interval,
        "tags": tags,
        "selector": selector,
    }
    try:
        message = await _add_source(context(request).settings.path, form)
    except (ConfigError, FetchError) as exc:
        return _sources_page(request, 400, error=f"{type(exc).__name__}: {exc}", form=form)
    response = RedirectResponse("/sources", status_code=303)
    response.set_cookie(
        FLASH_COOKIE, _flash(message), httponly=True, samesite="strict", path="/sources", max_age=300
    )
    return response


async def _add_source(config_file: str | None, form: dict[str, str]) -> str:
    """Add the source the form describes to ``config_file``; returns what was done (ConfigError or
    FetchError when it cannot be added)."""
    if not config_file:
        raise ConfigError(NO_USER_FILE)
    kind = form["kind"] if form["kind"] in KINDS else "auto"
    sf = SourcesFile(Path(config_file))
    base = NewSource(
        url=form["url"].strip(),
        id=form["id"].strip() or None,
        interval=form["interval"].strip() or None,
        tags=tuple(t for t in form["tags"].replace(",", " ").split() if t),
        selector=form["selector"].strip() or None,
    )
    sf.check(base)  # a bad address, one already watched, an id in use: refused before any fetch
    notes: list[str] = []
    if kind == "feed":
        new = replace(base, kind="feed")
    elif base.selector and kind == "page":
        new = replace(base, kind="page")
    elif kind == "page":
        raise ConfigError("a watched page needs a CSS selector of the region to watch (e.g. main)")
    else:
        async with Fetcher(fetch_settings(sf.validate())) as fetcher:
            new = _from_probe(await probe(fetcher, base.url), base, notes)
    sid = sf.add(new)
    settings = sf.save()
    what = f"page (region `{new.selector}`)" if new.kind == "page" else "feed"
    reload = (
        "a running daemon reloads the file by itself"
        if settings.daemon.watch_files
        else "a running daemon fetches it after its next reload (SIGHUP)"
    )
    return " ".join([f"Added source {sid}: {what} {new.url} to {sf.path}.", *notes, f"({reload})"])


def _from_probe(found: Probe, base: NewSource, notes: list[str]) -> NewSource:
    """What to add for a probed address: the feed, else the first feed found (like ``--yes``), else
    the page itself when a selector was given."""
    if found.kind == "feed":
        return replace(base, kind="feed", title=found.title)
    if not found.feeds:
        if base.selector:
            notes.append(f"No feed found for {found.url}: watching the page itself.")
            return replace(base, kind="page", title=found.title)
        hint = f" (this page suggests `{found.selector}`)" if found.selector else ""
        raise ConfigError(
            f"no feed found for {found.url}: to watch the page itself, choose kind page and give "
            f"a CSS selector of the region to watch{hint}"
        )
    feed, others = found.feeds[0], found.feeds[1:]
    notes.append(f"Chose the feed {feed.url} ({feed.title or 'untitled'}).")
    if others:
        notes.append(
            "The page also offers: " + ", ".join(f"{f.url} ({f.title or 'untitled'})" for f in others) + "."
        )
    return replace(base, kind="feed", url=feed.url, title=feed.title or found.title)


def _flash(message: str) -> str:
    return base64.urlsafe_b64encode(message[:2000].encode("utf-8")).decode("ascii")


def _unflash(value: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(value.encode("ascii")).decode("utf-8")
    except ValueError:
        return None


# ----------------------------------------------------------------------------- rules


@router.get("/rules", response_class=HTMLResponse)
def rules(request: Request) -> HTMLResponse:
    overview, _ = context(request).rules.get()
    return _render(request, "rules.html", overview=overview, doc=None, result=None)


@router.post("/rules", response_class=HTMLResponse, dependencies=[Depends(csrf)])
def rules_playground(
    request: Request,
    text: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """The playground: the same library as `storywatch rules test`, hedged and negated hits included."""
    overview, ruleset = context(request).rules.get()
    doc = {"id": "text", "title": title, "text": text, "source": source}
    result = test_documents(ruleset, [doc], suppressed=True)[0]
    return _render(request, "rules.html", overview=overview, doc=doc, result=result)


# ----------------------------------------------------------------------------- silences, deliveries


@router.get("/silences", response_class=HTMLResponse)
def silences(request: Request) -> HTMLResponse:
    ctx = context(request)
    show_all = request.query_params.get("all") == "1"
    rows = admin.list_silences(ctx.db, include_expired=show_all)
    failed = admin.list_deliveries(ctx.db, states=("failed", "dead"), limit=100)
    done = DONE.get(request.query_params.get("done", ""))
    return _render(
        request,
        "silences.html",
        silences=rows,
        failed=failed,
        show_all=show_all,
        done=done,
        redact=ctx.redact,
    )


@router.post("/silences", dependencies=[Depends(csrf), Depends(writable)])
def add_silence(
    request: Request,
    rule: Annotated[str, Form()],
    duration: Annotated[str, Form()] = "2h",
    story: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
) -> Response:
    admin.add_silence(
        context(request).db,
        rule.strip(),
        duration=duration,
        story_id=int(story) if story.strip().isdigit() else None,
        comment=comment,
        created_by="web",
    )
    return RedirectResponse("/silences?done=silenced", status_code=303)


@router.post("/silences/{silence_id}/expire", dependencies=[Depends(csrf), Depends(writable)])
def expire_silence(request: Request, silence_id: int) -> Response:
    admin.expire_silence(context(request).db, silence_id)
    return RedirectResponse("/silences?done=expired", status_code=303)


@router.post("/deliveries/{delivery_id}/retry", dependencies=[Depends(csrf), Depends(writable)])
def retry_delivery(request: Request, delivery_id: int) -> Response:
    admin.retry_delivery(context(request).db, f"d{delivery_id}")
    return RedirectResponse("/silences?done=retried", status_code=303)


# ----------------------------------------------------------------------------- login


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _render(request, "login.html", failed=False)


@router.post("/login", dependencies=[Depends(csrf)])
def login(request: Request, token: Annotated[str, Form()] = "") -> Response:
    guard = context(request).guard
    if not guard.password_ok(token):
        return _render(request, "login.html", status=401, failed=True)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, guard.session_value, httponly=True, samesite="strict", path="/")
    return response


@router.post("/logout", dependencies=[Depends(csrf)])
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
