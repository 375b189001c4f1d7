"""Issue 3 acceptance: reprints fold into one story, one alert per development, quiet pages."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from crawler.config import Settings, parse_settings
from crawler.pipeline import run_once
from storage.db import open_database
from storage.models import AlertRow, AliasRow, DocumentRow, SightingRow, StoryRow
from tests.sitekit import Site, article_page, rss

REPO = Path(__file__).resolve().parents[2]

WIRE = [
    "Meituan said on Tuesday that its LongCat-2.0 model was trained on a cluster of about 50,000 "
    "domestic accelerator cards, making it one of the largest training runs disclosed in China.",
    "The company said the cluster used its own scheduling software and that device memory was the "
    "main bottleneck during training, according to a statement released in Beijing.",
    "Meituan did not say which company manufactured the accelerators used in the cluster, and a "
    "spokesperson declined to comment further on the hardware supplier.",
    "The model has 1.6 trillion parameters and a context window of one million tokens, the company "
    "said, and its weights were published for researchers to download.",
    "Independent evaluations of the model's performance have not yet been published by the major "
    "leaderboards, which typically take several weeks to test new systems.",
    "Shares of Meituan rose in Hong Kong trading after the announcement, extending gains for a third "
    "consecutive session as investors welcomed the company's push into artificial intelligence.",
]
NEW_SENTENCE = (
    "In a later filing, Meituan said the cluster was built from Huawei Ascend 910C "
    "accelerators supplied under a multi-year agreement."
)
OTHER_1 = [
    "Chinese technology companies are racing to build their own large language models as export "
    "controls limit access to the most advanced foreign chips, analysts at several brokerages wrote.",
    "Several firms have announced plans to spend billions of yuan on data centres over the next two "
    "years, with most of the capacity reserved for training rather than serving models to users.",
]
OTHER_2 = [
    "A survey of developers in Shanghai found that most teams now test at least three open-weight "
    "models before choosing one for production use, citing cost and licence terms as key factors.",
    "The survey, conducted over two months, also found growing interest in smaller models that can "
    "run on a single server, especially among start-ups with limited budgets.",
]

RULE = """version: 1
rules:
  - id: test.cluster
    title: Cluster size disclosed
    severity: high
    query: 'cluster AND (accelerator* OR cards)'
"""


def _settings(tmp_path: Path, db_url: str, sources: str) -> Settings:
    (tmp_path / "rules.yaml").write_text(RULE, "utf-8")
    return parse_settings(
        f"""
database: "{db_url}"
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s, per_host_concurrency: 8, deadline: 10s}}
rules: {{paths: ["{tmp_path / "rules.yaml"}"]}}
alerts: {{channels: {{console: {{type: console}}}}}}
sources:
{sources}
""",
        name="test.yaml",
    )


def _wire_site(site: Site, *, extended: bool = True) -> str:
    u = site.url
    site.add("/a/wire", article_page("Meituan trains LongCat-2.0 on 50,000 cards", WIRE))
    site.add("/a/other-1", article_page("China's AI build-out", OTHER_1))
    site.add("/b/story", article_page("LongCat cluster: what we know", WIRE, canonical=u("/b/story")))
    site.add("/b/other-2", article_page("Developers weigh open models", OTHER_2))
    site.add("/c/story", article_page("Meituan's big cluster", WIRE, canonical=u("/c/story")))
    site.add("/c/story/amp", article_page("Meituan's big cluster", WIRE, canonical=u("/c/story")))
    site.add("/d/story", article_page("Inside the LongCat cluster", WIRE[:4]))
    site.redirect("/rss/articles/CBMiQWh0", u("/d/story"))  # a search feed's opaque redirect link
    site.add("/e/story", article_page("LongCat chips named", [*WIRE, NEW_SENTENCE]))
    feeds = {
        "a": [("Meituan trains LongCat-2.0", "/a/wire"), ("AI build-out", "/a/other-1")],
        "b": [
            ("What we know", "/b/story?utm_source=twitter&utm_medium=social&fbclid=abc"),
            ("Developers weigh open models", "/b/other-2"),
        ],
        "c": [("Meituan's big cluster", "/c/story/amp")],
        "d": [("Inside the LongCat cluster", "/rss/articles/CBMiQWh0")],
        "e": [("LongCat chips named", "/e/story")] if extended else [],
    }
    lines = []
    for outlet, items in feeds.items():
        site.add(
            f"/feeds/{outlet}",
            rss([{"title": t, "link": u(p), "guid": f"{outlet}{i}"} for i, (t, p) in enumerate(items)]),
            "application/rss+xml",
        )
        lines.append(f"  - {{id: outlet-{outlet}, kind: feed, url: '{u('/feeds/' + outlet)}'}}")
    return "\n".join(lines)


def _counts(db_url: str) -> tuple[int, int, list[AlertRow]]:
    db = open_database(db_url)
    with db.read() as s:
        docs = s.scalar(select(func.count()).select_from(DocumentRow)) or 0
        stories = s.scalar(select(func.count()).select_from(StoryRow)) or 0
        alerts = list(s.scalars(select(AlertRow).order_by(AlertRow.id)))
    db.dispose()
    return docs, stories, alerts


def test_wire_story_reprinted_by_five_outlets_is_one_story_with_two_alerts(
    tmp_path: Path, db_url: str
) -> None:
    with Site() as site:
        settings = _settings(tmp_path, db_url, _wire_site(site, extended=False))
        report = asyncio.run(run_once(settings, settings.source_specs()))
        assert not report.failed, [o.result.error for o in report.failed]
        first = [a for a in _counts(db_url)[2] if a.rule_id == "test.cluster"]
        assert len(first) == 1 and first[0].source_count == 4  # the wire copy alerts once
        _wire_site(site, extended=True)  # later, an outlet extends the story with a new sentence
        report = asyncio.run(run_once(settings, settings.source_specs()))
        assert not report.failed, [o.result.error for o in report.failed]
        docs, stories, alerts = _counts(db_url)
        assert (docs, stories) == (5, 3)  # B and C reprint the wire text verbatim: aliases, not documents
        db = open_database(db_url)
        with db.read() as s:
            wire_doc, wire_story = s.execute(
                select(DocumentRow.id, DocumentRow.story_id)
                .join(AliasRow, AliasRow.document_id == DocumentRow.id)
                .where(AliasRow.url == site.url("/a/wire"))
            ).one()
            members = s.scalars(
                select(SightingRow.source_id)
                .join(DocumentRow, DocumentRow.id == SightingRow.document_id)
                .where(DocumentRow.story_id == wire_story)
            ).all()
            aliases = set(s.scalars(select(AliasRow.url).where(AliasRow.document_id == wire_doc)))
        assert sorted(set(members)) == [f"outlet-{x}" for x in "abcde"]
        assert {site.url(p) for p in ("/a/wire", "/b/story", "/c/story", "/c/story/amp")} <= aliases
        rule_alerts = [a for a in alerts if a.rule_id == "test.cluster"]
        assert len(rule_alerts) == 2, [a.evidence for a in rule_alerts]
        assert any("Huawei Ascend 910C" in a.evidence for a in rule_alerts)
        wire_alert = next(a for a in rule_alerts if "Huawei" not in a.evidence)
        assert wire_alert.source_count == 5
        assert wire_alert.story_id == wire_story

        again = asyncio.run(run_once(settings, settings.source_specs()))
        assert again.new_documents == 0 and again.new_alerts == 0
        key = [(a.id, a.evidence_hash, a.source_count) for a in alerts]
        assert [(a.id, a.evidence_hash, a.source_count) for a in _counts(db_url)[2]] == key


PAGE = """<html><body><div class="ad-slot">{ad}</div><main>
<p class="stamp">Updated {stamp} · {views} views</p>
<table><tr><th>Model</th><th>Score</th><th>Votes</th></tr>
<tr><td>Gemini 3.1 Pro</td><td>1420</td><td>21,004</td></tr>
{rows}</table></main></body></html>"""


def test_page_changes_only_timestamps_and_ads_then_a_row(tmp_path: Path, db_url: str) -> None:
    with Site() as site:
        url = site.add("/board", PAGE.format(ad="Buy now", stamp="5 minutes ago", views="1,204", rows=""))
        settings = _settings(
            tmp_path,
            db_url,
            f"  - {{id: board, kind: page, url: '{url}', selector: main, tags: [leaderboard]}}",
        )
        specs = settings.source_specs()
        first = asyncio.run(run_once(settings, specs))
        assert first.new_documents == 0  # the first snapshot is the baseline
        site.add("/board", PAGE.format(ad="Sale!", stamp="2 hours ago", views="9,876", rows=""))
        second = asyncio.run(run_once(settings, specs))
        assert second.outcomes[0].result.status == "ok" and second.new_documents == 0
        row = "<tr><td>LongCat-2.0</td><td>1402</td><td>9,123</td></tr>"
        site.add("/board", PAGE.format(ad="Other ad", stamp="1 minute ago", views="10,001", rows=row))
        third = asyncio.run(run_once(settings, specs))
        assert third.new_documents == 1
        db = open_database(db_url)
        with db.read() as s:
            texts = s.scalars(select(DocumentRow.text)).all()
        assert texts == ["LongCat-2.0 | 1402 | 9,123"]


def test_selector_that_stops_matching_is_a_source_error(tmp_path: Path, db_url: str) -> None:
    with Site() as site:
        url = site.add("/board", "<html><body><main><p>Board</p></main></body></html>")
        settings = _settings(tmp_path, db_url, f"  - {{id: board, kind: page, url: '{url}', selector: main}}")
        asyncio.run(run_once(settings, settings.source_specs()))
        site.add("/board", "<html><body><div>redesigned</div></body></html>")
        report = asyncio.run(run_once(settings, settings.source_specs()))
        result = report.outcomes[0]
        assert result.result.status == "error" and result.error_kind == "selector"


VARIANTS = [
    "/x/story",
    "/x/story?utm_source=a",
    "/x/story?utm_campaign=b&utm_medium=c",
    "/x/story#comments",
    "/x/story?fbclid=123",
    "/x/story?gclid=9&mc_cid=1",
    "/x/story/amp",
    "/x/story?ref=homepage",
    "/x/story?utm_content=z&ocid=rss",
    "/x/story/?utm_term=q",
]


def test_same_article_under_ten_url_variants_is_one_document_one_alert(tmp_path: Path, db_url: str) -> None:
    with Site() as site:
        page = article_page("Cluster", WIRE, canonical=site.url("/x/story"))
        for path in {v.split("?")[0].split("#")[0] for v in VARIANTS}:
            site.add(path, page)
        items = [{"title": f"v{i}", "link": site.url(v), "guid": f"v{i}"} for i, v in enumerate(VARIANTS)]
        feed = site.add("/feed", rss(items), "application/rss+xml")
        settings = _settings(tmp_path, db_url, f"  - {{id: x, kind: feed, url: '{feed}'}}")
        asyncio.run(run_once(settings, settings.source_specs()))
        docs, stories, alerts = _counts(db_url)
        assert (docs, stories, len(alerts)) == (1, 1, 1)


def test_two_processes_ingesting_the_same_feeds_at_once(tmp_path: Path, db_url: str) -> None:
    with Site() as site:
        sources = _wire_site(site, extended=False)
        _settings(tmp_path, db_url, sources)  # writes the rule file both processes read
        cfg = tmp_path / "storywatch.yaml"
        cfg.write_text(
            f'database: "{db_url}"\n'
            'fetch: {allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s, per_host_concurrency: 8}\n'
            f'rules: {{paths: ["{tmp_path / "rules.yaml"}"]}}\nalerts: {{channels: {{console: {{type: console}}}}}}\n'
            f"sources:\n{sources}\n",
            "utf-8",
        )
        open_database(db_url).dispose()  # migrate once up front, as the daemon would
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [
            sys.executable,
            "-c",
            "from crawler.cli.base import main; main()",
            "--config",
            str(cfg),
            "once",
            "--json",
            "--no-deliver",
        ]
        procs = [
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        reports = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=120)
            assert p.returncode == 0, stderr.decode()[-2000:]
            reports.append(json.loads(stdout))
        assert [r["failed"] for r in reports] == [[], []]
        # every document was stored by exactly one of the two processes
        assert sum(r["new_documents"] for r in reports) == 4
        docs, stories, alerts = _counts(db_url)
        assert stories == 3
        assert len([a for a in alerts if a.rule_id == "test.cluster"]) == 1
        assert docs == 4  # the same four documents a single pass stores


def test_article_updated_in_place_is_reread_on_its_changed_sentences_only(tmp_path: Path, db_url: str) -> None:
    update = "Update: Meituan later said the cluster's accelerator cards were supplied by Huawei."
    with Site() as site:
        site.add("/u/story", article_page("Meituan trains LongCat-2.0", WIRE))
        site.add("/feed", rss([{"title": "Meituan trains LongCat-2.0", "link": site.url("/u/story"), "guid": "u1"}]),
                 "application/rss+xml")
        settings = _settings(tmp_path, db_url, f"  - {{id: u, kind: feed, url: '{site.url('/feed')}'}}")
        asyncio.run(run_once(settings, settings.source_specs()))
        assert [a.evidence for a in _counts(db_url)[2]] == [WIRE[0]]
        # the same guid, a new headline; the page gains an "Update:" paragraph
        site.add("/u/story", article_page("UPDATE 1-Meituan trains LongCat-2.0 on Huawei chips", [*WIRE, update]))
        site.add("/feed", rss([{"title": "UPDATE 1-Meituan trains LongCat-2.0 on Huawei chips",
                                "link": site.url("/u/story"), "guid": "u1"}]), "application/rss+xml")
        report = asyncio.run(run_once(settings, settings.source_specs()))
        assert report.new_documents == 1 and report.new_alerts == 1
        docs, stories, alerts = _counts(db_url)
        assert (docs, stories) == (1, 1)
        assert [a.evidence for a in alerts] == [WIRE[0], update]
        db = open_database(db_url)
        with db.read() as s:
            doc = s.scalars(select(DocumentRow)).one()
        assert update in doc.text and doc.title.startswith("UPDATE 1-")
        # nothing changed since: nothing is read again
        again = asyncio.run(run_once(settings, settings.source_specs()))
        assert again.new_documents == 0 and again.new_alerts == 0
