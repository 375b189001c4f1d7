"""Issue 16 acceptance: one development across languages, end to end on a local site.

An English wire report and a Chinese report of the same vendor disclosure, plus three reprints,
give exactly one `longcat.vendor-disclosed` alert per channel (the shipped pack, `develops_on:
[vendor]`), listing both stories' sources; a later report naming another vendor is a second alert.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from crawler.cli import register_all
from crawler.cli.base import cli
from tests.alertkit import Receiver
from tests.sitekit import Site, article_page, rss

register_all(cli)

EN = [
    "Meituan confirmed on Thursday that LongCat-2.0 was pre-trained on Huawei Ascend 910C accelerators, "
    "ending weeks of speculation about the supplier.",
    "The announcement came during a briefing for analysts in Beijing, where executives also discussed "
    "the company's plans for its delivery business over the coming year.",
    "Meituan shares were little changed in Hong Kong after the statement was published on its website.",
]
ZH = [
    "美团今日确认，LongCat-2.0大模型的预训练全部在华为昇腾910C集群上完成。",
    "美团在北京举行的分析师会议上公布了这一消息，高管们还介绍了外卖业务明年的计划。",
    "消息公布后，美团在香港的股价变化不大。",
]
CAMBRICON = [
    "Meituan said on Monday that LongCat-2.0 is now also served on Cambricon MLU590 cards in its "
    "data centres, adding a second supplier for inference.",
    "The company did not say how many cards it had bought or when the deployment began.",
]
REPRINT_HEADLINES = [
    "Meituan names Huawei as LongCat chip supplier",
    "LongCat-2.0 ran on Ascend",
    "Huawei inside",
]


def _chinese(page: str) -> str:
    return page.replace('<html lang="en">', '<html lang="zh-CN">')


def _config(tmp_path: Path, site: Site, slack: Receiver, hook: Receiver) -> Path:
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(
        f"""
database: "sqlite:///{tmp_path / "sw.db"}"
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s}}
alerts:
  channels:
    slack: {{type: slack, url: "{slack.url}", rate_per_second: 50}}
    hook: {{type: webhook, url: "{hook.url}"}}
sources:
  - {{id: wire, kind: feed, url: "{site.url("/wire.xml")}"}}
  - {{id: cn-news, kind: feed, url: "{site.url("/cn.xml")}"}}
  - {{id: reprints, kind: feed, url: "{site.url("/reprints.xml")}"}}
""",
        "utf-8",
    )
    return cfg


def _vendor_events(hook: Receiver) -> list[dict]:
    bodies = [r.json() for r in hook.requests]
    return [b for b in bodies if b["alert"]["rule_id"] == "longcat.vendor-disclosed"]


def test_one_development_across_languages_and_reprints(tmp_path: Path) -> None:
    with Site() as site, Receiver() as slack, Receiver() as hook:
        site.add("/en/huawei", article_page("Huawei chips behind LongCat-2.0, Meituan confirms", EN))
        site.add("/zh/huawei", _chinese(article_page("美团LongCat-2.0训练芯片揭晓", ZH)))
        for i, headline in enumerate(REPRINT_HEADLINES):
            site.add(f"/reprint/{i}", article_page(headline, [EN[0], EN[1]]))
        wire = [{"title": "Huawei chips behind LongCat-2.0", "link": site.url("/en/huawei"), "guid": "w1"}]
        site.add("/wire.xml", rss(wire), "application/rss+xml")
        site.add(
            "/cn.xml",
            rss([{"title": "美团LongCat-2.0训练芯片揭晓", "link": site.url("/zh/huawei"), "guid": "c1"}]),
            "application/rss+xml",
        )
        reprints = [
            {"title": h, "link": site.url(f"/reprint/{i}"), "guid": f"r{i}"}
            for i, h in enumerate(REPRINT_HEADLINES)
        ]
        site.add("/reprints.xml", rss(reprints), "application/rss+xml")
        cfg = _config(tmp_path, site, slack, hook)
        runner = CliRunner()

        first = runner.invoke(cli, ["--config", str(cfg), "once", "--json"])
        assert first.exit_code == 0, first.output
        events = _vendor_events(hook)
        assert [e["event"] for e in events] == ["alert"]
        alert = events[0]["alert"]
        assert alert["captures"]["vendor"] == "Huawei"
        urls = {s["url"] for s in alert["sources"]}
        assert site.url("/en/huawei") in urls and site.url("/zh/huawei") in urls
        assert {s["source_id"] for s in alert["sources"]} >= {"wire", "cn-news"}
        assert sorted(alert["languages"]) == ["en", "zh-CN"]  # sources are fetched concurrently
        assert len(slack.requests) == 1
        assert "Huawei" in str(slack.requests[0].json())

        site.add("/en/cambricon", article_page("Cambricon joins LongCat-2.0 supply chain", CAMBRICON))
        wire.append(
            {
                "title": "Cambricon joins LongCat-2.0 supply chain",
                "link": site.url("/en/cambricon"),
                "guid": "w2",
            }
        )
        site.add("/wire.xml", rss(wire), "application/rss+xml")
        second = runner.invoke(cli, ["--config", str(cfg), "once", "--json"])
        assert second.exit_code == 0, second.output
        events = _vendor_events(hook)
        assert [e["event"] for e in events] == ["alert", "alert"]
        assert events[1]["alert"]["captures"]["vendor"] == "Cambricon"
        assert events[1]["alert"]["id"] != events[0]["alert"]["id"]
        assert len(slack.requests) == 2
