"""The alert outbox: alerts, their deliveries and the relay's claims, as database queries.

Write side (inside the ingest transaction, same session as the document)::

    record_alert(...)  -> matches row + alerts row (unique rule, story, evidence hash)
                          + one deliveries row per routed channel, all committed together.

Rules, precisely:

- A new (rule, story, evidence hash) is a new alert; the same rule and evidence hash already
  alerted (in this story or, for a reprint that landed in another story, any story) is a
  *corroboration*: ``source_count``/``corroborations`` go up, and when ``notify_updates`` is on and
  the number of distinct sources grew, an ``update`` delivery is queued for each channel the alert
  already reached. Updates coalesce: while an alert, update or repeat row for that alert and
  channel is still waiting (pending/held), its alert snapshot is refreshed instead of adding a row.
- A match whose rule declares ``develops_on`` carries a development key (``vendor=Huawei``): the
  latest alert of the same rule and key created within the rule's window (``develops_within``) is
  the same development, in any story and any language, so the match corroborates it (its sources
  and languages are added) instead of alerting again. Another key (``vendor=Cambricon``) or a
  match after the window is a new development.
- The same document recording the same match again is a ``duplicate``: nothing changes.
- An active silence matching the rule (see crawler.alerts.routing.silence_matches) creates the
  alert, and its deliveries in state ``silenced``: they are never sent by the relay, stay visible
  in ``alerts show``, and ``alerts retry`` sends them on demand. Alerts after the silence ends are
  delivered normally (a silence does not replay what it suppressed).
- origin ``backfill``/``rescan`` with policy ``none``: alert rows, no deliveries; ``digest``:
  deliveries ``held`` until :func:`release_held`, then one summary per channel; ``all``: as live.
- Digest channels: deliveries are ``held`` until their period ends; the relay's
  ``compose_digests`` turns the due ones into ONE ``digest`` delivery per channel and period
  and marks them ``digested``.
- Repeats are not written here: the relay's ``compose_repeats`` queues a ``repeat`` row when an
  alert kept being corroborated after its last notice and the repeat interval has passed (see
  :mod:`crawler.alerts.repeats`).

Concurrent writers (PostgreSQL): the lookups of an existing alert or development hold an advisory
lock on (rule, evidence hash) and (rule, develops_on key) until the transaction ends, so two writers
recording the same one at once make one alert; a transaction recording many matches takes all
their locks first, sorted, with :func:`lock_matches`.

The relay's queries (claims, leases, digests, marks) are in :mod:`storage.outbox_relay`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crawler.alerts.payload import (
    alert_payload,
    distinct_sources,
    evidence_hash,
    group_key,
    match_details,
    merge_sources,
)
from crawler.alerts.routing import (
    HELD_UNTIL_RELEASED,
    quiet_until,
    routed_channels,
    schedule,
    silence_matches,
)
from crawler.alerts.views import AlertOutcome
from crawler.config import AlertsConfig
from crawler.errors import StorageError
from crawler.types import Match

from . import locks
from .db import Database
from .models import AlertRow, DeliveryRow, DocumentRow, MatchRow, SilenceRow, StoryRow, utcnow

Origin = Literal["live", "backfill", "rescan"]
BackfillPolicy = Literal["none", "digest", "all"]
WAITING = ("pending", "held")
REACHED = ("sent", "sending", "digested")


@dataclass(frozen=True)
class _Ctx:
    """One record_alert call: where, what and when."""

    session: Session
    db: Database
    match: Match
    story_id: int
    document_id: int
    ev_hash: str
    match_id: int | None
    cfg: AlertsConfig
    origin: str
    policy: str  # none | digest | all (live alerts are always "all")
    now: datetime
    language: str | None = None


def record_alert(
    session: Session,
    db: Database,
    *,
    match: Match,
    story_id: int,
    document_id: int,
    source_count: int,
    sources: Sequence[tuple[str, str | None]],
    alerts_cfg: AlertsConfig,
    origin: Origin = "live",
    backfill_policy: BackfillPolicy = "digest",
    now: datetime | None = None,
    headline: str | None = None,
    link: str | None = None,
    language: str | None = None,
) -> AlertOutcome:
    """Record one match in the caller's transaction; see the module docstring for the rules.

    ``sources``: (source id, URL) of every source known to report the story; ``headline``/``link``
    default to the story's title and the document's URL; ``language``: the document's, listed on
    the alert with the languages of the reports that corroborate it.
    """
    now = now or utcnow()
    ev_hash = evidence_hash(match.evidence)
    match_id = insert_match(session, db, match, document_id, story_id, ev_hash, now)
    locks.lock_keys(session, locks.ALERTS, [_alert_key(match.rule_id, ev_hash)])
    existing = _find_alert(session, match.rule_id, story_id, ev_hash)
    existing = existing or _find_development(session, match, now)
    if match_id is None and existing is not None:
        return AlertOutcome("duplicate", existing.id, None, existing.source_count)
    policy = backfill_policy if origin != "live" else "all"
    ctx = _Ctx(
        session, db, match, story_id, document_id, ev_hash, match_id, alerts_cfg, origin, policy, now,
        language,
    )
    if existing is None:
        created = _new_alert(ctx, source_count, sources, headline, link)
        if created is not None:
            return created
        existing = _find_alert(session, match.rule_id, story_id, ev_hash)  # lost a race to another writer
        if existing is None:
            raise StorageError(f"alert for rule {match.rule_id} in story {story_id} vanished during insert")
    return _corroborate(ctx, existing, source_count, sources)


def _new_alert(
    ctx: _Ctx,
    source_count: int,
    sources: Sequence[tuple[str, str | None]],
    headline: str | None,
    link: str | None,
) -> AlertOutcome | None:
    """Insert the alert and its deliveries; None if another writer inserted the same key first."""
    m = ctx.match
    head, url = _headline(ctx.session, ctx.story_id, ctx.document_id, m, headline, link)
    merged = merge_sources([], sources)
    details = match_details(m, sources=merged, headline=head, link=url)
    if ctx.language:
        details["languages"] = [ctx.language]
    silence = active_silence(ctx.session, m.rule_id, ctx.story_id, m.labels, ctx.now)
    if silence is not None:
        details["silenced_by"] = silence
    values: dict[str, Any] = {
        "rule_id": m.rule_id,
        "story_id": ctx.story_id,
        "evidence_hash": ctx.ev_hash,
        "title": m.title,
        "severity": m.severity,
        "evidence": m.evidence,
        "document_id": ctx.document_id,
        "source_count": max(source_count, distinct_sources(merged), 1),
        "corroborations": 0,
        "details": details,
        "origin": ctx.origin,
        "created_at": ctx.now,
        "updated_at": ctx.now,
        "group_key": group_key(
            ctx.cfg.group_by, rule_id=m.rule_id, story_id=ctx.story_id, severity=m.severity
        ),
        "development_key": m.development,
    }
    stmt = ctx.db.insert(AlertRow).values(**values).on_conflict_do_nothing().returning(AlertRow.id)
    alert_id = ctx.session.execute(stmt).scalar()
    if alert_id is None:
        return None
    _link_match(ctx.session, ctx.match_id, alert_id)
    channels = _enqueue(ctx, _snapshot(alert_id, values), "alert", silence)
    return AlertOutcome("new", alert_id, ctx.match_id, values["source_count"], channels, silence)


def insert_match(
    s: Session, db: Database, m: Match, doc_id: int, story_id: int, ev_hash: str, now: datetime
) -> int | None:
    """Record a match (ON CONFLICT DO NOTHING); its id, or None when the document already had it."""
    stmt = (
        db.insert(MatchRow)
        .values(
            document_id=doc_id,
            story_id=story_id,
            rule_id=m.rule_id,
            title=m.title,
            severity=m.severity,
            status=m.status,
            evidence=m.evidence,
            evidence_hash=ev_hash,
            spans={"spans": [[sp.start, sp.end, sp.term] for sp in m.spans]},
            captures=dict(m.captures),
            labels=dict(m.labels),
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(MatchRow.id)
    )
    return s.execute(stmt).scalar()


def _link_match(s: Session, match_id: int | None, alert_id: int) -> None:
    if match_id is not None:
        s.execute(update(MatchRow).where(MatchRow.id == match_id).values(alert_id=alert_id))


def lock_matches(s: Session, matches: Iterable[Match]) -> None:
    """Take the locks :func:`record_alert` takes for ``matches``, all at once in sorted order.

    A transaction recording many matches (an ingest group, a rescan batch) calls this first: taken
    one match at a time, in match order, two such transactions could deadlock (PostgreSQL would
    abort one). The per-match locks of :func:`record_alert` are then re-entrant no-ops.
    """
    ms = list(matches)
    keys = [_alert_key(m.rule_id, evidence_hash(m.evidence)) for m in ms]
    keys += [_development_key(m.rule_id, m.development) for m in ms if m.development is not None]
    locks.lock_keys(s, locks.ALERTS, keys)


def _alert_key(rule_id: str, ev_hash: str) -> str:
    return f"alert|{rule_id}|{ev_hash}"


def _development_key(rule_id: str, development: str) -> str:
    return f"development|{rule_id}|{development}"


def _find_alert(s: Session, rule_id: str, story_id: int, ev_hash: str) -> AlertRow | None:
    """The alert for this rule and evidence: in this story first, else in any story (a reprint).

    Two writers recording the same evidence for two stories at once (reprints that dedup put in
    different stories) must not both create it: ``FOR UPDATE`` locks nothing while no row exists,
    so :func:`record_alert` holds the (rule, evidence) advisory lock (:mod:`storage.locks`) first.
    """
    base = select(AlertRow).where(AlertRow.rule_id == rule_id, AlertRow.evidence_hash == ev_hash)
    order = (AlertRow.story_id != story_id, AlertRow.id)
    return s.scalars(base.order_by(*order).limit(1).with_for_update()).first()


def _find_development(s: Session, m: Match, now: datetime) -> AlertRow | None:
    """The latest alert of the match's development (same rule and develops_on key, created within
    the rule's window), in any story; None when the rule declares no ``develops_on``.

    Two writers recording the first reports of one development at once (the English and the
    Chinese story in two processes) must not both create it: on PostgreSQL the lookup holds a
    transaction-scoped advisory lock on (rule, key) until the caller commits; SQLite's write
    transactions are serialised already.
    """
    if m.development is None:
        return None
    locks.lock_keys(s, locks.ALERTS, [_development_key(m.rule_id, m.development)])
    since = now - (m.development_window or timedelta(0))
    query = (
        select(AlertRow)
        .where(
            AlertRow.rule_id == m.rule_id,
            AlertRow.development_key == m.development,
            AlertRow.created_at >= since,
        )
        .order_by(AlertRow.created_at.desc(), AlertRow.id.desc())
        .limit(1)
        .with_for_update()
    )
    return s.scalars(query).first()


def _headline(
    s: Session, story_id: int, doc_id: int, m: Match, headline: str | None, link: str | None
) -> tuple[str, str | None]:
    story = s.execute(select(StoryRow.title).where(StoryRow.id == story_id)).scalar()
    doc = s.execute(
        select(DocumentRow.title, DocumentRow.url, DocumentRow.canonical_url).where(DocumentRow.id == doc_id)
    ).first()
    head = headline or story or (doc.title if doc else None) or m.title
    return head, link or ((doc.canonical_url or doc.url) if doc else None)  # no tracking parameters


def active_silences(s: Session, now: datetime) -> list[tuple[int, dict[str, Any]]]:
    """(id, matcher) of every silence active at ``now``."""
    rows = s.execute(
        select(SilenceRow.id, SilenceRow.matcher).where(SilenceRow.starts_at <= now, SilenceRow.ends_at > now)
    ).all()
    return [(int(sid), dict(matcher)) for sid, matcher in rows]


def active_silence(
    s: Session, rule_id: str, story_id: int, labels: Mapping[str, str], now: datetime
) -> int | None:
    """The id of a silence matching this rule, story and labels at ``now``, or None."""
    for sid, matcher in active_silences(s, now):
        if silence_matches(matcher, rule_id=rule_id, story_id=story_id, labels=labels):
            return sid
    return None


def _snapshot(alert_id: int, v: Mapping[str, Any]) -> dict[str, Any]:
    return alert_payload(
        alert_id=alert_id,
        rule_id=v["rule_id"],
        title=v["title"],
        severity=v["severity"],
        evidence=v["evidence"],
        story_id=v["story_id"],
        group_key=v["group_key"],
        source_count=v["source_count"],
        corroborations=v["corroborations"],
        origin=v["origin"],
        created_at=v["created_at"],
        details=v["details"],
    )


def alert_snapshot(row: AlertRow) -> dict[str, Any]:
    """The current payload snapshot of a stored alert (what a repeat shows)."""
    return _snapshot(row.id, _row_values(row))


def _row_values(row: AlertRow) -> dict[str, Any]:
    names = (
        "rule_id",
        "title",
        "severity",
        "evidence",
        "story_id",
        "group_key",
        "source_count",
        "corroborations",
        "origin",
        "created_at",
        "details",
    )
    return {n: getattr(row, n) for n in names}


def _corroborate(
    ctx: _Ctx, row: AlertRow, source_count: int, sources: Sequence[tuple[str, str | None]]
) -> AlertOutcome:
    """Another source for a known alert: count it; queue an update when the source count grew."""
    details = dict(row.details or {})
    details["sources"] = merge_sources(details.get("sources", []), sources)
    if ctx.language and ctx.language not in details.get("languages", []):
        details["languages"] = [*details.get("languages", []), ctx.language]
    old = row.source_count
    count = max(old, source_count, distinct_sources(details["sources"]))
    values = _row_values(row) | {
        "source_count": count,
        "corroborations": row.corroborations + 1,
        "details": details,
    }
    ctx.session.execute(
        update(AlertRow)
        .where(AlertRow.id == row.id)
        .values(
            source_count=count, corroborations=values["corroborations"], details=details, updated_at=ctx.now
        )
    )
    _link_match(ctx.session, ctx.match_id, row.id)
    channels: tuple[str, ...] = ()
    silence = active_silence(ctx.session, row.rule_id, row.story_id, ctx.match.labels, ctx.now)
    if count > old and ctx.cfg.notify_updates:
        channels = _enqueue(ctx, _snapshot(row.id, values), "update", silence)
    return AlertOutcome("corroborated", row.id, ctx.match_id, count, channels, silence)


def _enqueue(ctx: _Ctx, snap: Mapping[str, Any], kind: str, silence: int | None) -> tuple[str, ...]:
    """One delivery per routed channel (``alert``), or coalesced/new ``update`` rows."""
    if ctx.policy == "none":
        return ()
    out = []
    alert_id = int(snap["id"])
    labels = ctx.match.labels
    for ch in routed_channels(ctx.cfg, rule_id=snap["rule_id"], severity=snap["severity"], labels=labels):
        if kind == "update":
            done = _coalesce(ctx.session, alert_id, ch, snap)
            if done is not None:
                out += [ch] if done else []
                continue
        key = f"{kind}-{alert_id}-{ch}-" + ("r0" if kind == "alert" else str(snap["corroborations"]))
        sch = schedule(ch, ctx.cfg.channels[ch], ctx.now, hold=ctx.policy == "digest")
        state, at = ("silenced", ctx.now) if silence is not None else (sch.state, sch.at)
        row = {
            "idempotency_key": key,
            "channel": ch,
            "kind": kind,
            "alert_id": alert_id,
            "state": state,
            "payload": {"kind": kind, "alert": dict(snap)},
            "tries": 0,
            "next_attempt_at": at,
            "detail": {"silenced_by": silence} if silence is not None else None,
            "created_at": ctx.now,
        }
        ctx.session.execute(ctx.db.insert(DeliveryRow).values(**row).on_conflict_do_nothing())
        out.append(ch)
    return tuple(out)


def _coalesce(s: Session, alert_id: int, channel: str, snap: Mapping[str, Any]) -> bool | None:
    """True: a waiting row now carries the new snapshot; False: the alert never reached this channel
    (silenced, failed...), so no update; None: it did, queue a new update row.

    A waiting repeat keeps its ``repeat`` facts (what the previous notice said) and gets the new
    snapshot, so it reports every source that arrived before it is sent.
    """
    rows = s.execute(
        select(DeliveryRow.id, DeliveryRow.kind, DeliveryRow.state, DeliveryRow.payload).where(
            DeliveryRow.alert_id == alert_id, DeliveryRow.channel == channel
        )
    ).all()
    for rid, kind, state, payload in rows:
        if state in WAITING and kind in ("alert", "update", "repeat"):
            res = s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == rid, DeliveryRow.state.in_(WAITING))
                .values(payload={**dict(payload or {}), "kind": kind, "alert": dict(snap)})
            )
            if getattr(res, "rowcount", 0):
                return True
    return None if any(k == "alert" and st in REACHED for _, k, st, _p in rows) else False


def enqueue_notice(
    session: Session,
    db: Database,
    *,
    key: str,
    title: str,
    text: str,
    alerts_cfg: AlertsConfig,
    now: datetime | None = None,
    channels: Iterable[str] | None = None,
) -> tuple[str, ...]:
    """A ``notice`` (e.g. source health) to ``channels`` (default: ``alerts.health_channel``).

    Notices skip digests but respect quiet hours; ``key`` makes repeats idempotent per channel.
    """
    now = now or utcnow()
    names = tuple(channels) if channels is not None else tuple(filter(None, [alerts_cfg.health_channel]))
    out = []
    for ch in names:
        cfg = alerts_cfg.channels.get(ch)
        if cfg is None or not cfg.enabled:
            continue
        s_at = quiet_until(ch, cfg, now) or now
        session.execute(
            db.insert(DeliveryRow)
            .values(
                idempotency_key=f"notice-{key}-{ch}"[:200],
                channel=ch,
                kind="notice",
                alert_id=None,
                payload={"kind": "notice", "notice": {"title": title, "text": text}},
                state="pending",
                tries=0,
                next_attempt_at=s_at,
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        out.append(ch)
    return tuple(out)


def release_held(db: Database, *, now: datetime | None = None) -> int:
    """Release deliveries held for a backfill/rescan summary: the relay then sends one digest per channel.

    Call once when the backfill or rescan run is over. Returns the number of rows released.
    """
    now = now or utcnow()
    with db.write() as s:
        res = s.execute(
            update(DeliveryRow)
            .where(
                DeliveryRow.state == "held",
                DeliveryRow.next_attempt_at >= HELD_UNTIL_RELEASED,
            )
            .values(next_attempt_at=now)
        )
        return int(getattr(res, "rowcount", 0) or 0)
