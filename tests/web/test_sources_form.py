"""The Sources page's add form: the library of `storywatch sources add --yes` (probe through the
guarded Fetcher, a checked round-trip edit of the config file the app runs on), behind CSRF and
read-only mode, with refusals shown escaped on the page."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import yaml

from crawler.config import load_settings, parse_settings
from tests.sitekit import Site, page_with_feeds
from tests.web.webkit import serving

CONFIG = """\
# my storywatch config: keep this comment
database: "sqlite:///{db}"
fetch:
  allow_private_networks: ["127.0.0.1/32"]  # the test site
  per_host_min_gap: 0s
{web}sources:
  # --- feeds I read every day
  - id: known
    kind: feed
    url: "https://news.example.com/feed.xml"
  # --- the end of my list
"""


def _config(tmp: Path, web: str = "") -> Path:
    cfg = tmp / "storywatch.yaml"
    cfg.write_text(CONFIG.format(db=tmp / "sw.db", web=web), "utf-8")
    return cfg


def _csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def test_the_form_adds_the_first_feed_of_a_page_and_keeps_the_comments(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with Site() as site, serving(load_settings(cfg)) as base, httpx.Client(base_url=base) as client:
        home = page_with_feeds(site)
        page = client.get("/sources")
        assert 'id="add-source"' in page.text
        added = client.post(
            "/sources",
            data={
                "url": home,
                "kind": "auto",
                "interval": "30m",
                "tags": "publisher, daily",
                "csrf_token": _csrf_from(page.text),
            },
        )
        assert added.status_code == 303 and added.headers["location"] == "/sources"
        shown = client.get("/sources").text  # the flash message, once
        assert "Added source" in shown and site.url("/feed.xml") in shown
        assert "also offers" in shown and site.url("/atom.xml") in shown
        assert "Added source" not in client.get("/sources").text
    text = cfg.read_text("utf-8")
    assert "# my storywatch config: keep this comment" in text and "# --- the end of my list" in text
    entries = yaml.safe_load(text)["sources"]
    assert entries[0]["id"] == "known" and len(entries) == 2
    assert entries[1]["url"] == site.url("/feed.xml") and entries[1]["kind"] == "feed"
    assert entries[1]["interval"] == "30m" and entries[1]["tags"] == ["publisher", "daily"]
    assert [s.id for s in load_settings(cfg).sources][1] == entries[1]["id"]


def test_a_duplicate_or_a_bad_address_is_refused_with_the_loaders_message(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    before = cfg.read_text("utf-8")
    with serving(load_settings(cfg)) as base, httpx.Client(base_url=base) as client:
        csrf = _csrf_from(client.get("/sources").text)
        twin = client.post(
            "/sources", data={"url": "https://news.example.com/feed.xml?utm_source=x", "csrf_token": csrf}
        )
        assert twin.status_code == 400
        assert "is already watched by source &#39;known&#39;" in twin.text and "Traceback" not in twin.text
        hostile = client.post("/sources", data={"url": "javascript:alert(1)<script>", "csrf_token": csrf})
        assert hostile.status_code == 400 and "ConfigError" in hostile.text
        assert "alert(1)<script>" not in hostile.text and "alert(1)&lt;script&gt;" in hostile.text
    assert cfg.read_text("utf-8") == before


def test_read_only_refuses_and_a_missing_csrf_token_is_403(tmp_path: Path) -> None:
    cfg = _config(tmp_path, web="web: {read_only: true}\n")
    with serving(load_settings(cfg)) as base, httpx.Client(base_url=base) as client:
        page = client.get("/sources")
        assert 'id="add-source"' not in page.text
        refused = client.post(
            "/sources",
            data={
                "url": "https://a.example/feed.xml",
                "kind": "feed",
                "csrf_token": _csrf_from(client.get("/rules").text),
            },
        )
        assert refused.status_code == 403
    writable = _config(tmp_path)
    with serving(load_settings(writable)) as base, httpx.Client(base_url=base) as client:
        client.get("/sources")
        assert (
            client.post("/sources", data={"url": "https://a.example/feed.xml", "kind": "feed"}).status_code
            == 403
        )
    assert "a.example" not in writable.read_text("utf-8")


def test_without_a_user_config_file_the_form_says_to_run_init(tmp_path: Path) -> None:
    settings = parse_settings(f'database: "sqlite:///{tmp_path / "sw.db"}"\n')
    with serving(settings) as base, httpx.Client(base_url=base) as client:
        page = client.get("/sources")
        assert 'id="add-source"' not in page.text and "storywatch init" in page.text
        csrf = _csrf_from(client.get("/rules").text)
        refused = client.post("/sources", data={"url": "https://a.example/feed.xml", "csrf_token": csrf})
        assert refused.status_code == 400 and "storywatch init" in refused.text
