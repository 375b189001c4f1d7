"""The HTML pages: developments (home), stories, sources, rules (with the playground), silences.

Every value reaches the page through an autoescaping Jinja2 template; every form is a POST with
the CSRF token; writes go through the same library functions as the CLI.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crawler.alerts import admin
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


@router.get("/sources", response_class=HTMLResponse)
def sources(request: Request) -> HTMLResponse:
    ctx = context(request)
    now = datetime.now(UTC)
    rows = source_store.list_sources(ctx.db, ctx.settings.source_specs(), now=now)
    per_day = source_store.items_per_day(ctx.db, [r.id for r in rows], now=now, days=14)
    charts = {sid: bars(values) for sid, values in per_day.items()}
    return _render(request, "sources.html", rows=rows, charts=charts, now=now)


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
