"""A database filled by a real pass over a local site, and the web app serving it on 127.0.0.1.

``filled(tmp)`` builds the site (a wire feed, a mirror reprinting one article, a hostile article),
runs ``storywatch once`` on it (twice: the mirror's reprint comes second) with a webhook that accepts and one that refuses (its URL carries a
secret that no page may show), and returns a :class:`Filled` to serve and to run more passes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from click.testing import CliRunner

from crawler.cli import register_all
from crawler.cli.base import cli
from crawler.config import Settings, load_settings
from crawler.web import WebServer, bind, create_app
from storage.db import open_database
from tests.alertkit import Receiver, Reply
from tests.sitekit import Site, article_page, rss

register_all(cli)

VENDOR = "Meituan confirmed on Thursday that LongCat-2.0 was pre-trained on Huawei Ascend 910C accelerators."
TELEMETRY = "According to Meituan engineers, LongCat-2.0's pre-training ran for 97 days and consumed 32 trillion tokens."
DENIAL = (
    "Cambricon said it did not supply chips for LongCat-2.0, adding that it does not comment on customers."
)
HOSTILE_TITLE = '<script>alert("title")</script><img src=x onerror=alert(1)> {{ 7*7 }} javascript:alert(2)'
HOSTILE = (  # another vendor than VENDOR's: a development of its own (the pack groups by vendor)
    "Cambricon said its MLU590 systems powered the pre-training of Meituan's LongCat-2.0 "
    '<img src=x onerror=alert(3)> <script>alert("evidence")</script> {{ 7*7 }} javascript:alert(4)'
)
FILLER = [
    "The announcement came during a briefing for analysts in Beijing, where executives also discussed "
    "the company's plans for its delivery business over the coming year.",
    "Meituan shares were little changed in Hong Kong after the statement was published on its website.",
]
TELEMETRY_FILLER = [
    "The report runs to ninety pages and includes ablations of the routing scheme and of the optimiser.",
    "Outside researchers said the disclosure was more detailed than what most labs publish about runs.",
]
HOSTILE_FILLER = [
    "Shipping volumes at the port rose for a third month as exporters front-loaded orders before tariffs.",
    "A spokesperson for the port authority declined to say how long the congestion would last this winter.",
]
SECRET_PATH = "/hooks/T0SECRET/B0SECRET/xoxb-not-for-your-eyes"
HOOK_SECRET = "s3cret-signing-key-value"


@dataclass
class Filled:
    tmp: Path
    site: Site
    hook: Receiver
    broken: Receiver
    config: Path
    runner: CliRunner = field(default_factory=lambda: CliRunner(env={"HOOK_SECRET": HOOK_SECRET}))

    @property
    def settings(self) -> Settings:
        return load_settings(self.config, env={"HOOK_SECRET": HOOK_SECRET})

    def once(self) -> None:
        """`storywatch once`, in a thread of its own: Playwright's sync API keeps a loop in this one."""
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(
                self.runner.invoke, cli, ["--config", str(self.config), "once", "--json"]
            ).result()
        assert result.exit_code == 0, result.output

    def cli_json(self, *args: str) -> object:
        import json

        result = self.runner.invoke(cli, ["--config", str(self.config), *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    def publish(self, path: str, title: str, paragraphs: list[str], guid: str) -> None:
        """Add an article to the wire feed (the next pass picks it up)."""
        self.site.add(path, article_page(title, paragraphs))
        self._items.append({"title": title, "link": self.site.url(path), "guid": guid})
        self.site.add("/wire.xml", rss(self._items), "application/rss+xml")

    _items: list[dict[str, str]] = field(default_factory=list)


def _config(
    tmp: Path, site: Site, hook: Receiver, broken: Receiver, extra: str, database: str | None
) -> Path:
    cfg = tmp / "storywatch.yaml"
    cfg.write_text(
        f"""
database: "{database or f"sqlite:///{tmp / 'sw.db'}"}"
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s}}
alerts:
  channels:
    hook: {{type: webhook, url: "{hook.url}", secret: "${{HOOK_SECRET}}"}}
    broken: {{type: webhook, url: "{broken.url}{SECRET_PATH}", max_tries: 1}}
sources:
  - {{id: wire, kind: feed, url: "{site.url("/wire.xml")}"}}
  - {{id: mirror, kind: feed, url: "{site.url("/mirror.xml")}"}}
{extra}""",
        "utf-8",
    )
    return cfg


@contextlib.contextmanager
def filled(
    tmp: Path,
    *,
    extra: Callable[[Site], str] | None = None,
    hostile: bool = True,
    database: str | None = None,
) -> Iterator[Filled]:
    """``extra(site)`` may add routes to the site and returns more ``sources:`` lines."""
    with Site() as site, Receiver() as hook, Receiver(default=Reply(status=400, body="bad hook")) as broken:
        more = extra(site) if extra is not None else ""
        f = Filled(tmp, site, hook, broken, _config(tmp, site, hook, broken, more, database))
        f.publish("/news/vendor", "Huawei chips behind LongCat-2.0", [VENDOR, *FILLER], "vendor")
        f.publish(
            "/news/telemetry", "LongCat-2.0 training run details", [TELEMETRY, *TELEMETRY_FILLER], "telemetry"
        )
        if hostile:
            f.publish("/news/hostile", HOSTILE_TITLE, [HOSTILE, *HOSTILE_FILLER], "hostile")
        site.add("/mirror.xml", rss([]), "application/rss+xml")
        f.once()
        # then the mirror reprints the vendor article: a corroboration, a second source
        site.add(
            "/mirror/vendor", article_page("Reprint: Huawei chips behind LongCat-2.0", [VENDOR, *FILLER])
        )
        mirror = [{"title": "Reprint", "link": site.url("/mirror/vendor"), "guid": "m1"}]
        site.add("/mirror.xml", rss(mirror), "application/rss+xml")
        f.once()
        yield f


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The app on 127.0.0.1 (a free port), for as long as the block runs; yields its base URL."""
    db = open_database(settings.database_url)
    server = WebServer(create_app(settings, db), bind("127.0.0.1:0", has_token=True, key="test")).start()
    base = f"http://{server.address}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield base
    finally:
        server.stop()
        db.dispose()
