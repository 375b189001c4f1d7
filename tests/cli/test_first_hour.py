"""Issue 17 acceptance: a new user's first hour, through the real CLI in subprocesses, on a local site.

init -> (the user edits the file as in an editor) -> sources add of a page with two feeds, answered
at a terminal prompt -> sources add --yes -> sources import of a 20-feed OPML file -> once --config F
-> status --config F -> sources export --opml (imports again to the same set) -> sources remove.
Every command exits 0 and the file keeps the comments `init` wrote and the user's own.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.sitekit import Site, article_page, atom, rss

pytestmark = pytest.mark.slow

STORYWATCH = [str(Path(sys.executable).with_name("storywatch"))]  # the installed console script
VENDOR = (
    "Meituan confirmed on Thursday that LongCat-2.0 was pre-trained on Huawei Ascend 910C accelerators, "
    "ending weeks of speculation about the supplier."
)
FILLER = [
    "The announcement came during a briefing for analysts in Beijing, where executives also discussed "
    "the company's plans for its delivery business over the coming year.",
    "Meituan shares were little changed in Hong Kong after the statement was published on its website.",
]
USER_COMMENT = "# my own sources, added with `storywatch sources add URL`"


def build_site(site: Site) -> None:
    """Home page with an RSS and an Atom feed, a blog with a JSON Feed and RSS, 20 more feeds."""
    story = site.url("/news/longcat-chips")
    site.add("/news/longcat-chips", article_page("Huawei chips behind LongCat-2.0", [VENDOR, *FILLER]))
    item = [{"title": "Huawei chips behind LongCat-2.0", "link": story + "?utm_source=rss", "guid": "n1"}]
    site.add("/news.rss", rss(item, title="Example News"), "application/rss+xml")
    site.add(
        "/news.atom",
        atom([{"title": item[0]["title"], "link": story}], title="Example News (Atom)"),
        "application/atom+xml",
    )
    site.add(
        "/",
        """<!doctype html><html><head><title>Example News</title>
<link rel="alternate" type="application/rss+xml" title="Example News" href="/news.rss">
<link rel="alternate" type="application/atom+xml" title="Example News (Atom)" href="/news.atom">
</head><body><main><h1>Example News</h1></main></body></html>""",
    )
    site.add("/blog/post", article_page("A quiet week", FILLER))
    site.add(
        "/blog/feed.json",
        '{"version": "https://jsonfeed.org/version/1.1", "title": "Example Blog", '
        f'"items": [{{"id": "b1", "url": "{site.url("/blog/post")}", "title": "A quiet week"}}]}}',
        "application/feed+json",
    )
    site.add("/blog/rss.xml", rss([], title="Example Blog RSS"), "application/rss+xml")
    site.add(
        "/blog/",
        """<html><head><title>Blog</title>
<link rel="alternate" type="application/feed+json" title="Example Blog" href="/blog/feed.json">
<link rel="alternate" type="application/rss+xml" title="Example Blog RSS" href="/blog/rss.xml">
</head><body><main>posts</main></body></html>""",
    )
    for n in range(20):
        path = f"/f/{n:02d}"
        site.add(path + "/story", article_page(f"Feed {n} story", [f"Story number {n}. ", *FILLER]))
        site.add(
            path + ".xml",
            rss(
                [{"title": f"Feed {n} story", "link": site.url(path + "/story"), "guid": f"f{n}"}],
                title=f"Feed {n:02d}",
            ),
            "application/rss+xml",
        )


def opml_of_twenty(site: Site) -> str:
    def outline(n: int) -> str:
        return f'<outline text="Feed {n:02d}" title="Feed {n:02d}" type="rss" xmlUrl="{site.url(f"/f/{n:02d}.xml")}"/>'

    tech = "".join(outline(n) for n in range(12))
    world = "".join(outline(n) for n in range(12, 20))
    return (
        '<?xml version="1.0" encoding="UTF-8"?><opml version="2.0"><head><title>Reader export</title></head>'
        f'<body><outline text="Tech">{tech}</outline><outline text="World">'
        f'<outline text="Asia">{world}</outline></outline></body></opml>'
    )


class Walk:
    def __init__(self, tmp: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STORYWATCH_")},
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "home" / ".config"),
            "STORYWATCH_DATA_DIR": str(tmp / "data"),
            "COLUMNS": "100",
        }
        self.cwd = Path(__file__).resolve().parents[1]

    def run(self, *args: str, tty_input: str | None = None) -> subprocess.CompletedProcess[str]:
        if tty_input is None:
            result = subprocess.run(
                [*STORYWATCH, *args],
                capture_output=True,
                text=True,
                env=self.env,
                cwd=self.cwd,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
        else:
            result = self._run_at_a_terminal(list(args), tty_input)
        assert result.returncode == 0, (
            f"storywatch {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result

    def _run_at_a_terminal(self, args: list[str], typed: str) -> subprocess.CompletedProcess[str]:
        """stdin is a pseudo-terminal with the user's answer typed ahead."""
        leader, follower = pty.openpty()
        try:
            proc = subprocess.Popen(
                [*STORYWATCH, *args],
                stdin=follower,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self.env,
                cwd=self.cwd,
            )
            os.write(leader, typed.encode())
            out, err = proc.communicate(timeout=120)
        finally:
            os.close(follower)
            os.close(leader)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_new_users_first_hour(tmp_path: Path) -> None:
    walk = Walk(tmp_path)
    with Site() as site:
        build_site(site)
        # 1. init: writes the file and says how to use it
        init = walk.run("init", str(tmp_path / "watch"))
        cfg = tmp_path / "watch" / "storywatch.yaml"
        assert f"storywatch once --config {cfg}" in init.stdout

        # 2. the user edits the file in an editor: allow the local site, start from no sources
        text = cfg.read_text("utf-8")
        text = text.replace("allow_private_networks: []", 'allow_private_networks: ["127.0.0.1/32"]')
        text = text.replace("per_host_min_gap: 1s", "per_host_min_gap: 0s")
        text = text[: text.index("\nsources:\n")] + f"\n{USER_COMMENT}\nsources: []\n"
        cfg.write_text(text, "utf-8")
        written = [line for line in text.splitlines() if line.lstrip().startswith("#")]

        # 3. sources add of a page with two feeds, at a terminal: the user picks the second (Atom)
        add = walk.run("sources", "add", site.url("/"), "--config", str(cfg), tty_input="2\n")
        assert "offers 2 feeds" in add.stdout and "1. " + site.url("/news.rss") in add.stdout
        assert "added source example-news-atom: feed " + site.url("/news.atom") in add.stdout

        # 4. sources add --yes: the first feed of the blog (its JSON Feed)
        yes = walk.run("sources", "add", site.url("/blog/"), "--yes", "--tag", "blog", "--config", str(cfg))
        assert "added source example-blog: feed " + site.url("/blog/feed.json") in yes.stdout

        # 5. sources import of a reader's OPML export with 20 feeds
        opml = tmp_path / "reader.opml"
        opml.write_text(opml_of_twenty(site), "utf-8")
        imported = walk.run("sources", "import", str(opml), "--config", str(cfg))
        assert "imported 20 of 20 feeds" in imported.stdout
        sources = yaml.safe_load(cfg.read_text("utf-8"))["sources"]
        assert len(sources) == 22
        assert {tuple(s.get("tags", ())) for s in sources[2:]} == {("tech",), ("world", "asia")}

        # 6. once --config F (after the command): every source ok, the alert delivered to the console
        once = walk.run("once", "--config", str(cfg))
        assert "pass: 22 sources" in once.stdout and "│ error" not in once.stdout
        assert "deliveries:" in once.stdout and "console: " in once.stdout and " sent" in once.stdout
        assert "RelayReport(" not in once.stdout and "Attempt(" not in once.stdout

        # 7. status --config F
        status = walk.run("status", "--config", str(cfg))
        assert "example-news-atom" in status.stdout and "daemon not running" in status.stdout
        assert "at daemon start" in status.stdout  # polled by `once` only: the daemon polls it first

        # 8. sources export --opml: importing it into a fresh file gives the same sources
        export = walk.run("sources", "export", "--opml", "--config", str(cfg))
        (tmp_path / "export.opml").write_text(export.stdout, "utf-8")
        fresh = tmp_path / "fresh" / "storywatch.yaml"
        walk.run("init", str(fresh.parent))
        fresh_text = fresh.read_text("utf-8")
        fresh.write_text(fresh_text[: fresh_text.index("\nsources:\n")] + "\nsources: []\n", "utf-8")
        walk.run("sources", "import", str(tmp_path / "export.opml"), "--config", str(fresh))

        def as_set(path: Path) -> set[tuple[str, str, tuple[str, ...]]]:
            items = yaml.safe_load(path.read_text("utf-8"))["sources"]
            return {(s["id"], s["url"], tuple(s.get("tags", ()))) for s in items}

        assert as_set(fresh) == as_set(cfg) and len(as_set(cfg)) == 22

        # 9. sources remove
        removed = walk.run("sources", "remove", "feed-07", "--config", str(cfg))
        assert "removed source feed-07" in removed.stdout
        assert "feed-07" not in {s["id"] for s in yaml.safe_load(cfg.read_text("utf-8"))["sources"]}

    final = cfg.read_text("utf-8")
    assert USER_COMMENT in final
    assert all(line.strip() in final for line in written), "a comment of the file was lost"
