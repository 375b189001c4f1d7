"""Acceptance 4: after a rule is added, rescan reports the matches it would have caught, with evidence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from crawler.backfill import RescanOptions, run_rescan
from crawler.config import Settings, parse_settings
from crawler.pipeline import deliver_outbox
from crawler.types import Match
from storage import backfill_store
from storage.db import open_database
from storage.models import AlertRow, DeliveryRow, DocumentRow, MatchRow
from tests.backfillkit import RULES, HistorySite, backfill, config_text, make_settings, rows

SOURCES = """
  - {{id: gsearch, kind: feed, url: "{base}/search?q=longcat",
     backfill_query: "{base}/search?q=longcat&after={{after}}&before={{before}}"}}
  - {{id: watch, kind: page, url: "{base}/watch", selector: "#updates"}}
"""
NEW_RULES = (
    RULES
    + """  - id: t.weights
    title: Open weights released
    severity: medium
    query: '"open weights"'
"""
)


def _table(settings: Settings, model: Any) -> list[tuple[Any, ...]]:
    """Every row of a table, every column: to prove it did not change."""
    db = open_database(settings.database_url)
    try:
        with db.read() as s:
            cols = model.__table__.columns.keys()
            return [tuple(getattr(r, c) for c in cols) for r in s.scalars(select(model).order_by(model.id))]
    finally:
        db.dispose()


def _backfilled(tmp_path: Path, site: HistorySite) -> Settings:
    """October backfilled with the old rules (one alert per Ascend story, held then released)."""
    settings = make_settings(tmp_path, site, SOURCES)
    report = backfill(settings)
    assert report.total("new") == 6 and report.total("alerts") == 2
    (tmp_path / "rules.yaml").write_text(NEW_RULES, "utf-8")  # a rule is added
    return parse_settings(config_text(tmp_path, site, SOURCES, rules=NEW_RULES), name="test.yaml")


def test_rescan_reports_what_a_new_rule_would_have_caught(tmp_path: Path, site: HistorySite) -> None:
    settings = _backfilled(tmp_path, site)
    outbox_before = _table(settings, DeliveryRow)
    assert outbox_before, "the backfill queued its digest deliveries"

    report = asyncio.run(run_rescan(settings, RescanOptions(alerts="none"), deliver=True))
    new = [f for f in report.findings if f.new]
    assert [(f.rule_id, f.status, f.outcome) for f in new] == [("t.weights", "asserted", "alerted")]
    found = new[0]
    assert found.evidence == "Update one: open weights were released today."
    assert found.url == f"{site.base}/watch"
    docs = {d.id: d for d in rows(settings, DocumentRow)}
    assert (
        docs[found.document_id].story_id == found.story_id and "open weights" in docs[found.document_id].text
    )
    # the old rule's matches were recorded by the backfill: reported, nothing new
    assert sorted((f.rule_id, f.outcome) for f in report.findings if not f.new) == [("t.ascend", "known")] * 2
    # --alerts none: the match and its alert row are recorded, the outbox is untouched
    assert _table(settings, DeliveryRow) == outbox_before and site.posts == []
    assert {(a.rule_id, a.origin) for a in rows(settings, AlertRow)} >= {("t.weights", "rescan")}

    # a second rescan finds the same matches and changes nothing
    again = asyncio.run(run_rescan(settings, RescanOptions(alerts="digest", rule_ids=("t.weights",))))
    assert [(f.rule_id, f.outcome) for f in again.findings] == [("t.weights", "known")]
    assert _table(settings, DeliveryRow) == outbox_before


def test_rescan_digest_alerts_once_and_only_for_stories_that_never_alerted(
    tmp_path: Path, site: HistorySite
) -> None:
    settings = _backfilled(tmp_path, site)
    db = open_database(settings.database_url)
    try:
        asyncio.run(deliver_outbox(settings, db))  # the backfill's digest
    finally:
        db.dispose()
    assert [h["x-storywatch-event"] for h, _ in site.posts] == ["digest"]
    site.posts.clear()

    # a different sentence for a rule and story that already alerted: recorded, but no alert
    ascend = next(a for a in rows(settings, AlertRow) if a.rule_id == "t.ascend")
    hit = backfill_store.RescanHit(
        ascend.document_id,
        ascend.story_id,
        "gsearch",
        f"{site.base}/n/2",
        Match(
            "t.ascend",
            "Trained on Ascend",
            "high",
            "asserted",
            "A second sentence: it was trained on Ascend.",
        ),
    )
    db = open_database(settings.database_url)
    try:
        alerts_before = len(rows(settings, AlertRow))
        records = backfill_store.record_rescan(
            db, [hit], alerts_cfg=settings.alerts, policy="all", now=ascend.created_at
        )
    finally:
        db.dispose()
    assert [r.outcome for r in records] == ["pair-alerted"]
    assert len(rows(settings, AlertRow)) == alerts_before and len(rows(settings, MatchRow)) == 3

    report = asyncio.run(
        run_rescan(settings, RescanOptions(alerts="digest", rule_ids=("t.weights",)), deliver=True)
    )
    assert report.new_alerts == 1 and report.released == 1
    assert [h["x-storywatch-event"] for h, _ in site.posts] == ["digest"]
    assert b"open weights" in site.posts[0][1]


def test_cli_rescan_json_with_evidence(tmp_path: Path, site: HistorySite) -> None:
    from crawler.cli.backfill import commands
    from crawler.cli.base import cli

    for command in commands():
        cli.add_command(command)
    settings = _backfilled(tmp_path, site)
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(config_text(tmp_path, site, SOURCES, rules=NEW_RULES), "utf-8")
    outbox_before = _table(settings, DeliveryRow)
    args = [
        "--config",
        str(cfg),
        "rescan",
        "--since",
        "2026-10-01",
        "--rule",
        "t.weights",
        "--alerts",
        "none",
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["rules"] == ["t.weights"] and data["new_matches"] == 1
    finding = data["findings"][0]
    assert {k: finding[k] for k in ("rule_id", "status", "evidence", "url")} == {
        "rule_id": "t.weights",
        "status": "asserted",
        "evidence": "Update one: open weights were released today.",
        "url": f"{site.base}/watch",
    }
    assert isinstance(finding["story_id"], int)
    assert _table(settings, DeliveryRow) == outbox_before
    unknown = CliRunner().invoke(cli, ["--config", str(cfg), "rescan", "--rule", "t.nope"])
    assert unknown.exit_code == 2
