"""The JSON API under ``/api/v1/``: every answer is ``to_jsonable`` of a storage or library value.

The same serializer prints the CLI's ``--json``; the response models below only document the
shapes in the OpenAPI schema (``/api/v1/openapi.json``), which a test checks the answers against.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, create_model

from crawler.alerts import admin
from crawler.alerts.views import AlertDetail, AlertSummary, DeliveryRef, RetryOutcome, SilenceInfo
from rules.testing import RulesOverview, test_documents
from storage import sources as source_store
from storage import stories as story_store
from storage.sources import SourceStatus
from storage.stories import StoryDetail, StoryDocument, StoryEntry

from .app import context
from .deps import csrf, csrf_token, parse_when, writable

router = APIRouter(prefix="/api/v1", tags=["api"])
Limit = Annotated[int, Query(ge=1, le=500, description="Items per page")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
Since = Annotated[str | None, Query(description="A date, an ISO time or a duration ago (24h, 7d)")]


def _page_model(item: Any, name: str) -> type[BaseModel]:
    return create_model(name, items=(list[item], ...), next_cursor=(str | None, None))


AlertPage = _page_model(AlertSummary, "AlertPage")
StoryPage = _page_model(StoryEntry, "StoryPage")
DocumentPage = _page_model(StoryDocument, "DocumentPage")


class RuleHit(BaseModel):
    rule: str
    severity: str
    status: str
    evidence: str
    field: str
    spans: list[tuple[int, int, str]]
    captures: dict[str, str]


class RuleTestResult(BaseModel):
    id: str | None
    matches: list[RuleHit]
    suppressed: list[RuleHit] = []


class RuleTestIn(BaseModel):
    """A document to try the loaded rules on (as ``storywatch rules test --text``)."""

    text: str
    title: str = ""
    source: str = ""
    url: str = ""
    suppressed: bool = True  # also list the hits that did not fire (hedged, negated)


class SilenceIn(BaseModel):
    rule: str  # a rule id glob: longcat.*
    duration: str = "2h"
    story: int | None = None
    comment: str = ""


class CsrfToken(BaseModel):
    csrf_token: str


def _json(value: Any) -> JSONResponse:
    return JSONResponse(admin.to_jsonable(value))


@router.get("/developments", response_model=AlertPage, summary="Alerts, newest first")
def developments(
    request: Request,
    rule: str | None = None,
    severity: str | None = None,
    since: Since = None,
    until: Since = None,
    story: int | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JSONResponse:
    db = context(request).db
    page = admin.alerts_page(
        db,
        rule=rule,
        severity=severity,
        since=parse_when(since),
        until=parse_when(until, "until"),
        story=story,
        limit=limit,
        cursor=cursor,
    )
    return _json(page)


@router.get("/developments/{alert_id}", response_model=AlertDetail, summary="One alert and its deliveries")
def development(request: Request, alert_id: int) -> JSONResponse:
    detail = admin.show_alert(context(request).db, alert_id)
    redact = context(request).redact
    deliveries = tuple(replace(d, last_error=redact(d.last_error) or None) for d in detail.deliveries)
    return _json(replace(detail, deliveries=deliveries))


@router.post(
    "/developments/{alert_id}/retry",
    response_model=RetryOutcome,
    dependencies=[Depends(csrf), Depends(writable)],
    summary="Queue the failed, dead or silenced deliveries of an alert again",
)
def retry_alert(request: Request, alert_id: int) -> JSONResponse:
    return _json(admin.retry_delivery(context(request).db, alert_id))


@router.get("/deliveries", response_model=list[DeliveryRef], summary="Failed and dead deliveries")
def deliveries(
    request: Request, state: Annotated[list[str] | None, Query()] = None, limit: Limit = 100
) -> JSONResponse:
    states = tuple(state or ("failed", "dead"))
    rows = admin.list_deliveries(context(request).db, states=states, limit=limit)
    redact = context(request).redact
    return _json([replace(r, last_error=redact(r.last_error) or None) for r in rows])


@router.post(
    "/deliveries/{delivery_id}/retry",
    response_model=RetryOutcome,
    dependencies=[Depends(csrf), Depends(writable)],
    summary="Queue one failed, dead or silenced delivery again",
)
def retry_one(request: Request, delivery_id: int) -> JSONResponse:
    return _json(admin.retry_delivery(context(request).db, f"d{delivery_id}"))


@router.get("/stories", response_model=StoryPage, summary="Stories, most recently updated first")
def stories(request: Request, since: Since = None, limit: Limit = 50, cursor: Cursor = None) -> JSONResponse:
    page = story_store.stories_page(context(request).db, since=parse_when(since), limit=limit, cursor=cursor)
    return _json(page)


@router.get("/stories/{story_id}", response_model=StoryDetail, summary="One story")
def story(request: Request, story_id: int) -> JSONResponse:
    return _json(story_store.story_detail(context(request).db, story_id))


@router.get("/documents", response_model=DocumentPage, summary="Documents, newest first")
def documents(
    request: Request,
    since: Since = None,
    source: str | None = None,
    story: int | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> JSONResponse:
    page = story_store.documents_page(
        context(request).db, since=parse_when(since), source=source, story=story, limit=limit, cursor=cursor
    )
    return _json(page)


@router.get("/sources", response_model=list[SourceStatus], summary="Configured sources and their health")
def sources(request: Request) -> JSONResponse:
    ctx = context(request)
    rows = source_store.list_sources(ctx.db, ctx.settings.source_specs(), now=datetime.now(UTC))
    return _json(rows)


@router.get("/rules", response_model=RulesOverview, summary="Loaded rules, lint errors, inline tests")
def rules(request: Request) -> JSONResponse:
    overview, _ = context(request).rules.get()
    return _json(overview)


@router.post(
    "/rules/test",
    response_model=RuleTestResult,
    dependencies=[Depends(csrf)],
    summary="Run the loaded rules on a text (as `storywatch rules test --json`)",
)
def rules_test(request: Request, body: RuleTestIn) -> JSONResponse:
    _, ruleset = context(request).rules.get()
    doc = {"id": "text", "title": body.title, "text": body.text, "source": body.source, "url": body.url}
    return JSONResponse(test_documents(ruleset, [doc], suppressed=body.suppressed)[0])


@router.get("/silences", response_model=list[SilenceInfo], summary="Active silences (all=true: also expired)")
def silences(request: Request, all: bool = False) -> JSONResponse:
    return _json(admin.list_silences(context(request).db, include_expired=all))


@router.post(
    "/silences",
    response_model=SilenceInfo,
    status_code=201,
    dependencies=[Depends(csrf), Depends(writable)],
    summary="Silence rules matching a glob for a while",
)
def add_silence(request: Request, body: SilenceIn) -> JSONResponse:
    info = admin.add_silence(
        context(request).db,
        body.rule,
        duration=body.duration,
        story_id=body.story,
        comment=body.comment,
        created_by="web",
    )
    return JSONResponse(admin.to_jsonable(info), status_code=201)


@router.post(
    "/silences/{silence_id}/expire",
    response_model=SilenceInfo,
    dependencies=[Depends(csrf), Depends(writable)],
    summary="End a silence now",
)
def expire_silence(request: Request, silence_id: int) -> JSONResponse:
    return _json(admin.expire_silence(context(request).db, silence_id))


@router.get("/csrf", response_model=CsrfToken, summary="The CSRF token to send as X-CSRF-Token on POSTs")
def csrf_value(request: Request) -> JSONResponse:
    return JSONResponse({"csrf_token": csrf_token(request)})
