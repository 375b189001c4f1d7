"""Acceptance 2: a backfill killed (SIGKILL) mid-way resumes and completes with no duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from storage.db import open_database
from storage.models import AlertRow, CheckpointRow, DeliveryRow, DocumentRow, MatchRow
from tests.backfillkit import (
    STANDARD_SOURCES,
    HistorySite,
    backfill,
    config_text,
    history_site,
    make_settings,
)

REPO = Path(__file__).resolve().parents[2]
WINDOW_ARGS = [
    "backfill",
    "--since",
    "2026-10-01",
    "--until",
    "2026-10-31T23:59:59",
    "--json",
    "--no-deliver",
]


def _state(db_url: str) -> dict[str, object]:
    db = open_database(db_url)
    try:
        with db.read() as s:
            return {
                "documents": sorted(
                    (d.canonical_url.split("/", 3)[-1], d.content_hash)
                    for d in s.scalars(select(DocumentRow))
                ),
                "alerts": sorted((a.rule_id, a.evidence_hash) for a in s.scalars(select(AlertRow))),
                "matches": len(s.scalars(select(MatchRow)).all()),
                "deliveries": sorted((d.kind, d.channel, d.state) for d in s.scalars(select(DeliveryRow))),
                "unfinished": [c.method for c in s.scalars(select(CheckpointRow)) if not c.done],
            }
    finally:
        db.dispose()


def _cli(cfg: Path) -> list[str]:
    return [sys.executable, "-c", "from crawler.cli.base import main; main()", "--config", str(cfg), *WINDOW_ARGS]


def test_killed_backfill_resumes_to_the_same_result(tmp_path: Path) -> None:
    site: HistorySite = history_site()
    try:
        # the reference: the same backfill, never interrupted, into its own database
        reference = make_settings(tmp_path, site, db="reference.db")
        assert not backfill(reference).failed
        expected = _state(reference.database_url)

        cfg = tmp_path / "storywatch.yaml"
        cfg.write_text(config_text(tmp_path, site, STANDARD_SOURCES, db="killed.db"), "utf-8")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        site.log.clear()
        site.hold_after = (
            9  # feed, robots, 2 articles, archive 3, 2 articles, archive 2, 1 article: then wait
        )
        proc = subprocess.Popen(
            _cli(cfg), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            while not site.reached.wait(0.1):
                assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
        assert proc.returncode == -signal.SIGKILL
        killed_url = f"sqlite:///{tmp_path / 'killed.db'}"
        midway = _state(killed_url)
        assert 0 < len(midway["documents"]) < len(expected["documents"])  # type: ignore[arg-type]
        assert midway["unfinished"] == ["archive"]

        site.hold_after = None
        site.release.set()
        done = subprocess.run(_cli(cfg), env=env, cwd=tmp_path, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)
        resumed = [m for m in report["sources"] if m["resumed"]]
        assert [(m["source_id"], m["method"]) for m in resumed] == [("blog", "archive")]
        assert site.hits("/feed.xml") == 1 and site.hits("/archive/3.xml") == 1  # stored pages not read again
        assert _state(killed_url) == {**expected, "unfinished": []}
    finally:
        site.close()
