"""The dashboard in a real browser (Debian's chromium driven by Playwright), on a database filled by a
real pass over a local site: evidence highlighted, filters, the playground, a silence added from
the page, hostile article text that must stay text, a screenshot of each page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.webkit import DENIAL, HOSTILE, HOSTILE_TITLE, VENDOR, Filled, filled, serving

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install -y chromium)"
)
SERVED = "LONGCAT 2.0 is now served on Cambricon MLU590 cards in Meituan's data centres, the company said."
SERVED_FILLER = [
    "The cards were installed over the summer in two halls that previously hosted storage servers.",
    "Cambricon's shares rose in Shanghai trading after the remarks were reported by local media.",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Filled, str]]:
    with filled(tmp_path_factory.mktemp("browser")) as f, serving(f.settings) as base:
        yield f, base


class Tab:
    """A page that fails the test on any dialog (alert, confirm, prompt) a script might open."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.base = base
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def go(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, path
        return self.page

    def shot(self, tmp_path: Path, name: str) -> Path:
        target = tmp_path / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        assert target.stat().st_size > 5000
        return target

    def close(self) -> None:
        self.context.close()
        assert self.dialogs == [], f"a script ran and opened dialogs: {self.dialogs}"
        assert self.errors == [], self.errors


@pytest.fixture
def tab(browser: Any, site: tuple[Filled, str]) -> Iterator[Tab]:
    t = Tab(browser, site[1])
    yield t
    t.close()


def test_developments_show_the_alert_with_its_evidence_highlighted(tab: Tab, tmp_path: Path) -> None:
    page = tab.go("/")
    card = page.locator("article.dev", has_text=VENDOR)
    assert card.count() == 1
    marks = card.locator("q.evidence mark").all_inner_texts()
    assert marks[:4] == ["LongCat-2.0", "pre-trained", "Huawei", "Ascend"]
    assert card.locator("q.evidence").inner_text() == VENDOR
    assert "longcat.vendor-disclosed" in card.locator("code.rule").inner_text()
    assert "2 sources" in card.locator("p.sources").inner_text()
    assert card.locator(".delivery").all_inner_texts() == ["hook: sent", "broken: failed"]
    assert card.locator("dl.captures").inner_text().split()[:2] == ["model", "LongCat-2.0"]
    tab.shot(tmp_path, "developments")


def test_a_filter_narrows_the_list(tab: Tab, tmp_path: Path) -> None:
    page = tab.go("/")
    everything = page.locator("article.dev").count()
    assert everything == 3
    page.select_option("select[name=severity]", "medium")  # the page's script submits on change
    page.wait_for_url("**/?*severity=medium*")
    rules = page.locator("article.dev code.rule").all_inner_texts()
    assert rules == ["longcat.training-telemetry"]
    page.select_option("select[name=severity]", "")
    page.wait_for_url(lambda url: "severity=medium" not in url)
    page.select_option("select[name=rule]", "longcat.vendor-disclosed")
    page.wait_for_url("**rule=longcat.vendor-disclosed*")
    assert set(page.locator("article.dev code.rule").all_inner_texts()) == {"longcat.vendor-disclosed"}
    assert page.locator("article.dev").count() == 2
    tab.shot(tmp_path, "developments-filtered")


def test_the_playground_fires_on_a_vendor_sentence_and_shows_negated_on_a_denial(
    tab: Tab, tmp_path: Path
) -> None:
    page = tab.go("/rules")
    assert page.locator("table.rules code", has_text="longcat.vendor-disclosed").count() == 1
    assert page.locator(".lint-ok").count() == 1
    page.fill("textarea[name=text]", VENDOR)
    page.click("#playground button[type=submit]")
    fired = page.locator("li.hit.fires", has_text="longcat.vendor-disclosed")
    assert fired.count() == 1 and "asserted" in fired.locator(".status").inner_text()
    assert "LongCat-2.0" in fired.locator("mark").all_inner_texts()
    tab.shot(tmp_path, "rules-fires")
    page.fill("textarea[name=text]", DENIAL)
    page.click("#playground button[type=submit]")
    assert page.locator("li.hit.fires").count() == 0
    denied = page.locator("li.hit.no", has_text="longcat.vendor-disclosed")
    assert denied.locator(".status").inner_text() == "negated"
    assert denied.locator(".verdict").inner_text() == "does not fire"
    tab.shot(tmp_path, "rules-negated")


def test_hostile_article_text_runs_no_script_and_reads_literally(tab: Tab, site: tuple[Filled, str]) -> None:
    del site  # the module world: only its served pages are read
    page = tab.go("/")
    card = page.locator("article.dev", has_text="javascript:alert(4)")
    assert card.locator("a.headline").inner_text() == HOSTILE_TITLE
    evidence = card.locator("q.evidence").inner_text()
    assert evidence == HOSTILE and "{{ 7*7 }}" in evidence and "49" not in evidence
    assert page.locator("img").count() == 0 and page.locator("main script").count() == 0
    story = card.locator("a.headline").get_attribute("href")
    page = tab.go(story or "/")
    assert page.locator("h1").inner_text() == HOSTILE_TITLE
    assert page.locator("img").count() == 0
    assert all(
        (href or "").startswith(("/", "http://", "https://"))
        for href in page.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    )
    page = tab.go("/rules")
    page.fill("input[name=title]", HOSTILE_TITLE)
    page.fill("textarea[name=text]", HOSTILE)
    page.click("#playground button[type=submit]")
    assert page.locator("input[name=title]").input_value() == HOSTILE_TITLE
    assert page.locator("li.hit.fires q.evidence").first.inner_text() == HOSTILE
    assert page.locator("img").count() == 0
    page.wait_for_timeout(300)  # a script that did slip through would have opened its dialog by now


def test_a_screenshot_of_every_page(tab: Tab, site: tuple[Filled, str], tmp_path: Path) -> None:
    _f, base = site
    vendor_story = next(
        a["story_id"]
        for a in httpx.get(f"{base}/api/v1/developments").json()["items"]
        if a["evidence"] == VENDOR
    )
    for path, name in (
        ("/", "developments"),
        ("/stories", "stories"),
        (f"/stories/{vendor_story}", "story"),
        ("/sources", "sources"),
        ("/rules", "rules"),
        ("/silences", "silences"),
    ):
        page = tab.go(path)
        assert page.locator("h1").count() == 1
        tab.shot(tmp_path, name)
    page = tab.go("/sources")
    assert page.locator("svg.chart rect").count() == 2 * 14
    assert page.locator("tr.health-ok").count() == 2
    page = tab.go(f"/stories/{vendor_story}")
    assert page.locator("ol.timeline li").count() == 1
    assert "mirror" in page.locator("ol.timeline li .src").inner_text()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        f"{n}.png" for n in ("developments", "stories", "story", "sources", "rules", "silences")
    )


def test_a_silence_added_on_the_page_records_the_next_alert_unsent(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    with filled(tmp_path_factory.mktemp("silence"), hostile=False) as f, serving(f.settings) as base:
        tab = Tab(browser, base)
        try:
            page = tab.go("/silences")
            page.fill("input[name=rule]", "longcat.vendor-disclosed")
            page.fill("input[name=duration]", "1h")
            page.fill("input[name=comment]", "known rumour")
            page.click("#add-silence button[type=submit]")
            page.wait_for_url("**/silences?done=silenced")
            row = page.locator("table.silences tbody tr").first
            assert "longcat.vendor-disclosed" in row.inner_text() and "active" in row.inner_text()
            tab.shot(tmp_path, "silences")
            sent_before = len(f.hook.requests)

            f.publish(
                "/news/served", "LongCat-2.0 now served on Cambricon", [SERVED, *SERVED_FILLER], "served"
            )
            f.once()

            alerts = httpx.get(f"{base}/api/v1/developments").json()["items"]
            new = next(a for a in alerts if a["evidence"] == SERVED)
            assert new["rule_id"] == "longcat.vendor-disclosed"
            assert new["deliveries"] == {"hook": "silenced", "broken": "silenced"}  # recorded, not sent
            assert len(f.hook.requests) == sent_before
            page = tab.go("/")
            card = page.locator("article.dev", has_text=SERVED)
            assert card.locator(".delivery").all_inner_texts() == ["hook: silenced", "broken: silenced"]
        finally:
            tab.close()


def test_the_developments_list_refreshes_itself(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with filled(tmp_path_factory.mktemp("refresh"), hostile=False) as f, serving(f.settings) as base:
        tab = Tab(browser, base)
        try:
            page = tab.go("/?refresh=1")
            page.evaluate("window.__same_page = true")
            assert page.locator("article.dev").count() == 2
            f.publish(
                "/news/served", "LongCat-2.0 now served on Cambricon", [SERVED, *SERVED_FILLER], "served"
            )
            f.once()
            page.locator("article.dev", has_text=SERVED).wait_for(timeout=10_000)
            assert page.evaluate("window.__same_page") is True  # no reload: the list was replaced in place
            assert page.locator("article.dev").count() == 3
        finally:
            tab.close()


def test_with_a_token_the_browser_logs_in_through_the_form(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    token = "browser-login-token-0123456789"

    def web(site: Any) -> str:
        return f'web: {{token: "{token}"}}\n'

    with filled(tmp_path_factory.mktemp("login"), hostile=False, extra=web) as f, serving(f.settings) as base:
        tab = Tab(browser, base)
        try:
            tab.page.goto(base + "/rules")
            assert tab.page.url == base + "/login"
            tab.page.fill("input[name=token]", "not-the-token-at-all")
            tab.page.click("#login button[type=submit]")
            assert tab.page.locator("p.fail").inner_text() == "That is not the token."
            tab.page.fill("input[name=token]", token)
            tab.page.click("#login button[type=submit]")
            tab.page.wait_for_url(base + "/")
            assert tab.page.locator("article.dev").count() == 2
            assert token not in tab.page.url and all(token not in c["value"] for c in tab.context.cookies())
            tab.shot(tmp_path, "login-then-developments")
        finally:
            tab.close()
