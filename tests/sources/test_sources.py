"""`storywatch sources add/remove/import/export`: feed discovery on a real local site, round-trip
edits of the config file (comments kept), duplicates and bad addresses refused, OPML in and out,
and a running daemon picking up an edit."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from crawler.cli import register_all
from crawler.cli.base import cli
from crawler.config import Settings, load_settings, parse_settings
from crawler.daemon import Daemon
from crawler.errors import ConfigError
from crawler.sources import NewSource, SourceExists, SourcesFile, read_opml, write_opml
from tests.sitekit import Site, page_with_feeds, rss

register_all(cli)
DATA = Path(__file__).resolve().parents[1] / "data" / "sources"

USER_CONFIG = """\
# my storywatch config: keep this comment
database: "sqlite:///{db}"
fetch:
  allow_private_networks: ["127.0.0.1/32"]  # the test site
  per_host_min_gap: 0s
daemon: {{watch_files: true, shutdown_deadline: 4s}}
alerts:
  channels:
    slack: {{type: slack, url: "${{SLACK_URL_NOT_SET_HERE}}"}}  # a secret the shell does not have
sources:
  # --- feeds I read every day
  - id: known
    kind: feed
    url: "https://news.example.com/feed.xml?utm_source=x"
    tags: [daily]
  # --- the end of my list
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(USER_CONFIG.format(db=tmp_path / "sw.db"), "utf-8")
    return cfg


def loaded(path: Path) -> Settings:
    """The file as the daemon loads it (where the secret the editing shell lacked is set)."""
    return parse_settings(
        path.read_text("utf-8"), name=str(path), env={"SLACK_URL_NOT_SET_HERE": "https://h.example/"}
    )


def invoke(*args: str, input: str | None = None) -> object:
    return CliRunner().invoke(cli, list(args), input=input)


# ----------------------------------------------------------------------------- editing the file


def test_add_keeps_comments_order_and_quoting_and_refuses_a_second_source_for_the_same_address(
    config: Path,
) -> None:
    before = config.read_text("utf-8")
    sf = SourcesFile(config)
    sid = sf.add(
        NewSource(url="https://blog.example.org/feed", title="Example Blog!", tags=("blog",), interval="30m")
    )
    assert sid == "example-blog"
    sf.save()
    new = (
        '  - id: example-blog\n    kind: feed\n    url: "https://blog.example.org/feed"\n'
        "    interval: 30m\n    tags: [blog]\n"
    )
    closing = "  # --- the end of my list\n"
    # everything else is byte for byte the same, the list's closing comment stays last
    assert config.read_text("utf-8") == before.removesuffix(closing) + new + closing
    assert [s.id for s in loaded(config).sources] == ["known", "example-blog"]
    with pytest.raises(SourceExists, match=r"already watched by source 'known' \(sources\[0\], line 12\)"):
        # the same page without tracking parameters, over https, with www: one canonical URL
        SourcesFile(config).add(NewSource(url="https://www.news.example.com/feed.xml"))
    with pytest.raises(SourceExists, match="the id 'known' is already used"):
        SourcesFile(config).add(NewSource(url="https://other.example/feed", id="known"))


def test_bad_addresses_get_the_loaders_message_and_a_broken_result_is_never_written(config: Path) -> None:
    before = config.read_text("utf-8")
    with pytest.raises(
        ConfigError, match=r"sources\[1\]\.url: 'file:///etc/passwd': only http:// and https://"
    ):
        SourcesFile(config).add(NewSource(url="file:///etc/passwd"))
    sf = SourcesFile(config)
    sf.add(NewSource(url="https://x.example/", kind="page", selector="main[[["))
    with pytest.raises(ConfigError, match=r"storywatch\.yaml:sources\[1\]: line \d+: selector 'main\[\[\['"):
        sf.save()
    assert config.read_text("utf-8") == before


def test_remove_keeps_the_other_entries_and_their_comments(config: Path) -> None:
    sf = SourcesFile(config)
    sf.add(NewSource(url="https://a.example/feed", id="a"))
    sf.add(NewSource(url="https://b.example/feed", id="b"))
    sf.save()
    sf = SourcesFile(config)
    sf.remove("a")
    sf.save()
    text = config.read_text("utf-8")
    assert "# --- feeds I read every day" in text and "# --- the end of my list" in text
    assert "# my storywatch config: keep this comment" in text and "# the test site" in text
    assert [s.id for s in loaded(config).sources] == ["known", "b"]
    with pytest.raises(ConfigError, match=r"no source with id 'zzz' \(known: known, b\)"):
        SourcesFile(config).remove("zzz")


# ----------------------------------------------------------------------------- OPML


def test_miniflux_export_imports_with_folders_as_tags(config: Path) -> None:
    entries = read_opml((DATA / "miniflux.opml").read_bytes())
    sf = SourcesFile(config)
    result = sf.add_all(entries)
    sf.save()
    assert result.added == ["ars-technica", "the-register", "hugging-face-blog", "scmp-tech", "36kr"]
    assert not result.skipped
    by_id = {s.id: s for s in loaded(config).sources}
    assert by_id["hugging-face-blog"].url == "https://huggingface.co/blog/feed.xml"
    assert by_id["hugging-face-blog"].tags == ("ai-labs",)
    assert by_id["36kr"].tags == ("china-tech",)


def test_nested_outlines_import_with_every_folder_as_a_tag_and_skip_twins_and_bad_urls(config: Path) -> None:
    entries = read_opml((DATA / "nested.opml").read_bytes(), tags=("imported",))
    sf = SourcesFile(config)
    result = sf.add_all(entries)
    sf.save()
    assert result.added == ["top-level-feed", "caixin-global", "nikkei-asia-tech", "wire-copy", "arxiv-cs-cl"]
    reasons = {s.url: s.reason for s in result.skipped}
    assert reasons["https://wire.example.com/feed"].startswith(
        "https://wire.example.com/feed is already watched by source 'wire-copy'"
    )
    assert reasons["file:///home/me/notes.xml"].endswith("only http:// and https:// URLs can be watched")
    by_id = {s.id: s for s in loaded(config).sources}
    assert by_id["nikkei-asia-tech"].tags == ("imported", "chips", "news", "asia")
    assert by_id["top-level-feed"].tags == ("imported",)


def test_opml_export_imports_again_to_the_same_sources(config: Path, tmp_path: Path) -> None:
    sf = SourcesFile(config)
    sf.add_all(read_opml((DATA / "nested.opml").read_bytes()))
    sf.save()
    exported = write_opml(SourcesFile(config).sources())
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text("sources: []  # empty\n", "utf-8")
    again = SourcesFile(fresh)
    assert not again.add_all(read_opml(exported.encode())).skipped
    again.save()
    original = {(s.id, s.url, s.tags) for s in loaded(config).sources}
    assert {(s.id, s.url, s.tags) for s in loaded(fresh).sources} == original


# ----------------------------------------------------------------------------- the CLI on a real site


def test_a_page_with_several_feeds_without_a_terminal_lists_them_and_exits_2(config: Path) -> None:
    with Site() as site:
        page = page_with_feeds(site)
        before = config.read_text("utf-8")
        result = invoke("sources", "add", page, "--config", str(config))
        assert result.exit_code == 2, result.output
        assert f"{page} offers 3 feeds:" in result.output
        lines = result.output.splitlines()
        first = next(i for i, line in enumerate(lines) if "1. " in line)
        assert site.url("/feed.xml") in lines[first] and "Example RSS (1 entries)" in lines[first]
        assert site.url("/atom.xml") in lines[first + 1] and "Atom" in lines[first + 1]
        assert site.url("/comments.xml") in lines[first + 2]  # comment feeds come last
        assert "--yes" in result.output
        assert config.read_text("utf-8") == before


def test_yes_takes_the_first_feed_and_a_feed_url_is_added_as_it_is(config: Path) -> None:
    with Site() as site:
        page = page_with_feeds(site)
        result = invoke("sources", "add", page, "--yes", "--tag", "example", "--config", str(config))
        assert result.exit_code == 0, result.output
        assert "added source example-rss: feed" in result.output
        atom_url = site.url("/atom.xml")
        direct = invoke(
            "sources", "add", atom_url, "--id", "ex-atom", "--interval", "1h", "--config", str(config)
        )
        assert direct.exit_code == 0, direct.output
        twin = invoke("sources", "add", site.url("/feed.xml"), "--config", str(config))
        assert twin.exit_code == 2 and "is already watched by source 'example-rss'" in twin.output
        home = invoke("sources", "add", page, "--kind", "page", "--id", "home", "--config", str(config))
        assert home.exit_code == 0 and "added source home: page (region `main`)" in home.output, home.output
    by_id = {s.id: s for s in loaded(config).sources}
    assert (by_id["example-rss"].url, by_id["example-rss"].tags) == (site.url("/feed.xml"), ("example",))
    assert (by_id["ex-atom"].url, by_id["ex-atom"].interval) == (atom_url, 3600)


def test_a_page_without_feeds_falls_back_to_the_usual_paths_then_to_watching_the_page(config: Path) -> None:
    with Site() as site:
        site.add("/blog/", "<html><head><title>Blog</title></head><body><main>posts</main></body></html>")
        site.add(
            "/blog/index.xml",
            rss([{"title": "p", "link": site.url("/p"), "guid": "p"}], title="Blog feed"),
            "application/rss+xml",
        )
        found = invoke("sources", "add", site.url("/blog/"), "--config", str(config))
        assert found.exit_code == 0, found.output
        assert f"using feed {site.url('/blog/index.xml')}" in found.output
        site.add(
            "/board",
            "<html><head><title>Leaderboard</title></head><body><article>1. x</article></body></html>",
        )
        page = invoke("sources", "add", site.url("/board"), "--tag", "leaderboard", "--config", str(config))
        assert page.exit_code == 0, page.output
        assert (
            "no feed found" in page.output
            and "added source leaderboard: page (region `article`)" in page.output
        )
        assert len(site.requests_to("/feed")) == 1  # the usual paths were tried, each once
    by_id = {s.id: s for s in loaded(config).sources}
    assert by_id["blog-feed"].url == site.url("/blog/index.xml")
    assert (by_id["leaderboard"].kind, by_id["leaderboard"].selector) == ("page", "article")


def test_refusals_exit_2_before_fetching_and_unreachable_addresses_exit_1(
    config: Path, tmp_path: Path
) -> None:
    bad = invoke("sources", "add", "ftp://example.com/feed", "--config", str(config))
    assert (
        bad.exit_code == 2
        and "'ftp://example.com/feed': only http:// and https:// URLs can be watched" in bad.output
    )
    with Site() as site:
        gone = site.url("/missing")
        result = invoke("sources", "add", gone, "--config", str(config))
        assert result.exit_code == 1 and f"cannot fetch {gone}: HTTP 404" in result.output, result.output
    none = invoke("sources", "add", "https://example.com/", "--config", str(tmp_path / "nope.yaml"))
    assert none.exit_code == 2 and "storywatch init" in none.output
    unknown = invoke("sources", "remove", "zzz", "--config", str(config))
    assert unknown.exit_code == 2 and "no source with id 'zzz'" in unknown.output


def test_export_prints_yaml_or_opml(config: Path) -> None:
    sf = SourcesFile(config)
    sf.add(NewSource(url="https://b.example/feed", id="b", interval="90m"))
    sf.add(NewSource(url="https://c.example/", id="c", kind="page", selector="main", interval="45s"))
    sf.save()
    plain = invoke("sources", "export", "--config", str(config))
    assert plain.exit_code == 0
    assert yaml.safe_load(plain.output) == {
        "sources": [
            {
                "id": "known",
                "kind": "feed",
                "url": "https://news.example.com/feed.xml?utm_source=x",
                "tags": ["daily"],
            },
            {"id": "b", "kind": "feed", "url": "https://b.example/feed", "interval": "90m"},
            {"id": "c", "kind": "page", "url": "https://c.example/", "interval": "45s", "selector": "main"},
        ]
    }
    assert [s.id for s in parse_settings(plain.output).sources] == ["known", "b", "c"]  # valid as is
    opml = invoke("sources", "export", "--opml", "--config", str(config))
    assert opml.exit_code == 0 and [s.url for s in read_opml(opml.stdout.encode())] == [
        "https://news.example.com/feed.xml?utm_source=x",
        "https://b.example/feed",
    ]
    assert "1 watched page(s) left out: OPML lists feeds only" in opml.output


# ----------------------------------------------------------------------------- a running daemon


def test_a_running_daemon_reloads_after_an_edit(config: Path) -> None:
    with Site() as site:
        site.add(
            "/new.xml", rss([{"title": "n", "link": site.url("/n"), "guid": "n"}]), "application/rss+xml"
        )
        site.add("/n", "<html><body><p>n</p></body></html>")
        text = config.read_text("utf-8").replace(
            '"https://news.example.com/feed.xml?utm_source=x"', f'"{site.url("/old.xml")}"'
        )
        site.add("/old.xml", rss([]), "application/rss+xml")
        config.write_text(text.replace("slack: {type: slack", "slack: {enabled: false, type: slack"), "utf-8")

        async def main() -> Daemon:
            daemon = Daemon(load_settings(config), handle_signals=False, rng=random.Random(7), tick=0.5)
            task = asyncio.create_task(daemon.run())
            try:
                for _ in range(200):
                    if daemon.state == "running":
                        break
                    await asyncio.sleep(0.05)

                def edit() -> None:
                    sf = SourcesFile(config)
                    sf.add(NewSource(url=site.url("/new.xml"), id="new", interval="1s"))
                    sf.save()

                await asyncio.to_thread(edit)
                for _ in range(200):
                    if site.requests_to("/new.xml"):
                        break
                    await asyncio.sleep(0.05)
                assert site.requests_to("/new.xml"), "the daemon did not reload the edited file"
                assert daemon.reloads >= 1
            finally:
                daemon.request_stop()
                await asyncio.wait_for(task, 15)
            return daemon

        asyncio.run(main())


def test_a_daemon_that_does_not_watch_files_gets_a_sighup_after_an_edit(config: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from crawler.daemon.ops import ask_reload

    with Site() as site:
        site.add("/old.xml", rss([]), "application/rss+xml")
        site.add("/new.xml", rss([]), "application/rss+xml")
        text = config.read_text("utf-8").replace("watch_files: true", "watch_files: false")
        text = text.replace('"https://news.example.com/feed.xml?utm_source=x"', f'"{site.url("/old.xml")}"')
        config.write_text(text.replace("slack: {type: slack", "slack: {enabled: false, type: slack"), "utf-8")
        assert ask_reload(loaded(config)) is None  # no database yet: no daemon, nothing created
        assert not (tmp_path / "sw.db").exists()
        exe = Path(sys.executable).with_name("storywatch")
        log = (tmp_path / "daemon.log").open("w")
        proc = subprocess.Popen(
            [str(exe), "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )

        def log_says(what: str) -> bool:
            deadline = time.monotonic() + 30
            while what not in (tmp_path / "daemon.log").read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            return what in (tmp_path / "daemon.log").read_text()

        try:
            assert log_says("scheduling 1 source(s)"), (tmp_path / "daemon.log").read_text()
            result = invoke(
                "sources",
                "add",
                site.url("/new.xml"),
                "--kind",
                "feed",
                "--id",
                "new",
                "--config",
                str(config),
            )
            assert result.exit_code == 0, result.output
            assert f"asked the running daemon (pid {proc.pid}) to reload the file" in result.output
            assert log_says("reloaded (SIGHUP): 2 source(s); +1 -0"), (tmp_path / "daemon.log").read_text()
        finally:
            proc.send_signal(2)
            proc.wait(30)
            log.close()


TRICKY = """\
sources:
  # news
  - id: a
    kind: feed
    url: "https://a.example/f"
  # --- social
  - id: b
    kind: feed
    url: "https://b.example/f"
    tags: [x]
  # --- research (ruamel.yaml's own round-trip drops this comment: edits must not re-dump the file)
  - {id: c, kind: feed, url: "https://c.example/f"}  # flow
  # the end of my list
daemon: {watch_files: false}  # after the list
"""


@pytest.mark.parametrize("removed", ["a", "b", "c"])
def test_every_comment_survives_adding_and_removing_anywhere_in_the_list(
    tmp_path: Path, removed: str
) -> None:
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(TRICKY, "utf-8")
    sf = SourcesFile(cfg)
    sf.add(NewSource(url="https://d.example/feed", id="d", tags=("q",)))
    sf.remove(removed)
    sf.save()
    text = cfg.read_text("utf-8")
    for line in TRICKY.splitlines():
        if line.lstrip().startswith("#") or "daemon:" in line:
            assert line in text, f"lost {line!r} removing {removed}"
    kept = [s.id for s in loaded(cfg).sources]
    assert kept == [i for i in ("a", "b", "c", "d") if i != removed]
    assert text.index("  - id: d") < text.index("  # the end of my list")  # added inside the list


def test_at_a_terminal_the_user_picks_a_feed_or_0_for_the_page_itself(config: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("storywatch"))

    def at_terminal(args: list[str], typed: str) -> subprocess.CompletedProcess[str]:
        leader, follower = pty.openpty()
        try:
            proc = subprocess.Popen(
                [exe, *args], stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            os.write(leader, typed.encode())
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(follower)
            os.close(leader)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    config.write_text(
        config.read_text("utf-8").replace("slack: {type: slack", "slack: {enabled: false, type: slack")
    )
    with Site() as site:
        page = page_with_feeds(site)
        second = at_terminal(["sources", "add", page, "--config", str(config)], "2\n")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "0. none of them: watch the page itself" in second.stdout
        assert f"added source example-atom: feed {site.url('/atom.xml')}" in second.stdout
        other = (
            '<html><head><title>Other</title><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
            '<link rel="alternate" type="application/atom+xml" href="/comments.xml"></head>'
            "<body><article>x</article></body></html>"
        )
        site.add("/other", other)
        zero = at_terminal(["sources", "add", site.url("/other"), "--config", str(config)], "0\n")
        assert zero.returncode == 0, zero.stdout + zero.stderr
        assert "added source other: page (region `article`)" in zero.stdout
    by_id = {s.id: s for s in loaded(config).sources}
    assert by_id["example-atom"].url == site.url("/atom.xml")
    assert (by_id["other"].kind, by_id["other"].url) == ("page", site.url("/other"))
