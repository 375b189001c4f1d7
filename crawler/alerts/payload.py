"""Pure helpers that turn a match into what the outbox stores: keys, hashes and JSON payloads.

A delivery's ``payload`` is a JSON document rendered at send time, so template fixes apply to
messages still in the outbox and a digest can summarise many of them::

    {"kind": "alert" | "update" | "repeat" | "digest" | "notice" | "test",
     "alert":  {...one alert, see alert_payload()...},           # alert / update / repeat
     "repeat": {"n", "previous_at", "previous_source_count",     # repeat: what the last notice
                "previous_corroborations"},                       #   that reached the channel said
     "alerts": [{...}, ...], "period": {...},                     # digest
     "notice": {"title": str, "text": str}}                       # notice

A repeat stores what the previous notice carried, not "M new": the alert snapshot of a waiting
repeat is refreshed when more sources arrive, and the renderer computes the difference then.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from crawler.types import Match

MAX_PAYLOAD_EVIDENCE = 5000  # characters of evidence kept in a payload (the alert row keeps all)
MAX_PAYLOAD_SOURCES = 20
_WS = re.compile(r"\s+")


def normalize_sentence(text: str) -> str:
    """Lower-case, NFKC, punctuation and symbols to spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    chars = (" " if unicodedata.category(c)[0] in "PSZC" else c for c in text)
    return _WS.sub(" ", "".join(chars)).strip()


def evidence_hash(text: str) -> str:
    """sha256 of the normalised sentence: a reprint quoting the same sentence hashes the same."""
    return hashlib.sha256(normalize_sentence(text).encode("utf-8")).hexdigest()


def group_key(group_by: Iterable[str], *, rule_id: str, story_id: int, severity: str) -> str:
    """``rule=<id>|story=<id>`` for the default ``group_by: [rule, story]``."""
    values = {"rule": rule_id, "story": str(story_id), "severity": severity}
    return "|".join(f"{k}={values[k]}" for k in group_by)[:300]


def merge_sources(
    old: Sequence[Mapping[str, Any]], new: Iterable[tuple[str, str | None]]
) -> list[dict[str, Any]]:
    """Known sources plus new ones, one entry per (source id, URL), oldest first."""
    out = [dict(s) for s in old]
    seen = {(s.get("source_id"), s.get("url")) for s in out}
    for source_id, url in new:
        if (source_id, url) not in seen:
            seen.add((source_id, url))
            out.append({"source_id": source_id, "url": url})
    return out


def distinct_sources(sources: Sequence[Mapping[str, Any]]) -> int:
    return len({s.get("source_id") for s in sources})


def match_details(
    match: Match, *, sources: Sequence[Mapping[str, Any]], headline: str, link: str | None
) -> dict[str, Any]:
    """What alerts.details keeps about a match (everything a message needs besides the row)."""
    return {
        "status": match.status,
        "spans": [[sp.start, sp.end, sp.term] for sp in match.spans],
        "captures": dict(match.captures),
        "labels": dict(match.labels),
        "field": match.field,
        "headline": headline,
        "link": link,
        "sources": list(sources),
    }


def alert_payload(
    *,
    alert_id: int,
    rule_id: str,
    title: str,
    severity: str,
    evidence: str,
    story_id: int,
    group_key: str,
    source_count: int,
    corroborations: int,
    origin: str,
    created_at: datetime,
    details: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON-able snapshot of one alert that templates render."""
    spans = [s for s in details.get("spans", []) if s[1] <= MAX_PAYLOAD_EVIDENCE]
    sources = list(details.get("sources", []))
    return {
        "id": alert_id,
        "rule_id": rule_id,
        "title": title,
        "severity": severity,
        "status": details.get("status", "asserted"),
        "evidence": evidence[:MAX_PAYLOAD_EVIDENCE],
        "spans": spans,
        "captures": dict(details.get("captures", {})),
        "labels": dict(details.get("labels", {})),
        "story_id": story_id,
        "group_key": group_key,
        "headline": details.get("headline") or title,
        "link": details.get("link"),
        "source_count": source_count,
        "corroborations": corroborations,
        "sources": sources[:MAX_PAYLOAD_SOURCES],
        "more_sources": max(0, len(sources) - MAX_PAYLOAD_SOURCES),
        "languages": list(details.get("languages", [])),
        "origin": origin,
        "created_at": created_at.isoformat(),
    }


def repeat_payload(
    alert: Mapping[str, Any],
    *,
    n: int,
    previous_at: datetime,
    previous_source_count: int,
    previous_corroborations: int,
) -> dict[str, Any]:
    """The ``n``-th "still developing" repeat of an alert (``alert`` is its current snapshot)."""
    return {
        "kind": "repeat",
        "alert": dict(alert),
        "repeat": {
            "n": n,
            "previous_at": previous_at.isoformat(),
            "previous_source_count": previous_source_count,
            "previous_corroborations": previous_corroborations,
        },
    }


def repeat_view(alert: Mapping[str, Any], repeat: Mapping[str, Any]) -> dict[str, Any]:
    """A repeat's facts for templates: ``n``, ``previous_at``, ``new_sources``, ``new_reports``."""
    sources = int(alert.get("source_count", 0)) - int(repeat.get("previous_source_count", 0))
    reports = int(alert.get("corroborations", 0)) - int(repeat.get("previous_corroborations", 0))
    return {
        "n": int(repeat.get("n", 1)),
        "previous_at": str(repeat.get("previous_at", "")),
        "new_sources": max(0, sources),
        "new_reports": max(0, reports),
    }


def digest_payload(
    items: Sequence[Mapping[str, Any]], *, start: datetime | None, end: datetime, label: str
) -> dict[str, Any]:
    """One digest: the alerts (updates, repeats) of a period, newest snapshot of each alert, in order."""
    latest: dict[Any, dict[str, Any]] = {}
    for item in items:
        alert = dict(item.get("alert", {}))
        alert["is_update"] = item.get("kind") == "update"
        alert["is_repeat"] = item.get("kind") == "repeat"
        if alert["is_repeat"]:
            alert["repeat"] = repeat_view(alert, item.get("repeat", {}))
        latest[alert.get("id")] = alert
    return {
        "kind": "digest",
        "alerts": list(latest.values()),
        "period": {"start": start.isoformat() if start else None, "end": end.isoformat(), "label": label},
    }


def sample_payload(now: datetime) -> dict[str, Any]:
    """A realistic alert for ``storywatch alerts test CHANNEL``."""
    evidence = "Meituan confirmed that LongCat-2.0 was trained on Huawei Ascend 910C accelerators."
    start = evidence.index("Huawei Ascend 910C")
    details = {
        "status": "asserted",
        "spans": [[start, start + len("Huawei Ascend 910C"), "Huawei Ascend 910C"]],
        "captures": {"vendor": "Huawei Ascend 910C"},
        "headline": "storywatch test message: LongCat-2.0 hardware vendor named",
        "link": "https://example.com/storywatch-test",
        "sources": [{"source_id": "example", "url": "https://example.com/storywatch-test"}],
    }
    alert = alert_payload(
        alert_id=0,
        rule_id="storywatch.test",
        title="Test alert (storywatch alerts test)",
        severity="info",
        evidence=evidence,
        story_id=0,
        group_key="rule=storywatch.test|story=0",
        source_count=1,
        corroborations=0,
        origin="live",
        created_at=now,
        details=details,
    )
    return {"kind": "test", "alert": alert}
