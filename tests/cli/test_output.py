"""Issue 17: no Python repr in any command's human output, on a database with alerts.

Every command of the CLI (the list is checked against the click tree, so a new command must be
added here) runs once without --json; its output must not contain a dataclass repr
(``RelayReport(attempts=...``), a dict or list repr (``{'``, ``['``) or a datetime repr. The
same database shows the other readable-output promises: once's delivery summary per channel,
one-line error cells without the URL again (``--verbose`` gives the whole message), captures as
``name: value`` and sources as a list with canonical URLs in ``alerts show``.
"""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from crawler.cli import register_all
from crawler.cli.base import cli
from tests.sitekit import Site, article_page, rss

register_all(cli)

REPR = re.compile(
    r"\b[A-Z][A-Za-z]+\((?:[a-z_]+=|\))"  # Attempt(delivery_id=..., RelayReport()
    r"|\{'|\['|datetime\.datetime\(|mappingproxy\("
)
VENDOR = (
    "Meituan confirmed on Thursday that LongCat-2.0 was pre-trained on Huawei Ascend 910C accelerators, "
    "ending weeks of speculation about the supplier."
)
FILLER = [
    "The announcement came during a briefing for analysts in Beijing, where executives also discussed "
    "the company's plans for its delivery business over the coming year.",
    "Meituan shares were little changed in Hong Kong after the statement was published on its website.",
]
RULES = """version: 1
lists:
  vendors:
    capture: vendor
    terms:
      Huawei: [Huawei, Ascend]
      Nvidia: [Nvidia, H20]
rules:
  - id: out.vendor
    title: Chip vendor named
    severity: high
    query: 'SENT(@vendors AND (confirm* OR said))'
    tests:
      - text: Meituan confirmed the Ascend 910C chips.
        fires: true
        captures: {vendor: Huawei}
"""


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> set[str]:
    out: set[str] = set()
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        if isinstance(cmd, click.Group):
            out |= leaf_commands(cmd, path)
            if getattr(cmd, "invoke_without_command", False):
                out.add(" ".join(path))
        else:
            out.add(" ".join(path))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> object:
    tmp = tmp_path_factory.mktemp("out")
    with Site() as site:
        site.add("/news/vendor", article_page("Huawei chips behind LongCat-2.0", [VENDOR, *FILLER]))
        link = site.url("/news/vendor") + "?utm_source=feed&utm_medium=rss"
        site.add(
            "/feed",
            rss([{"title": "Huawei chips behind LongCat-2.0", "link": link, "guid": "1"}]),
            "application/rss+xml",
        )
        site.add("/other.xml", rss([]), "application/rss+xml")
        (tmp / "rules.yaml").write_text(RULES, "utf-8")
        cfg = tmp / "storywatch.yaml"
        cfg.write_text(
            f"""# a config for the output test
database: "sqlite:///{tmp / "sw.db"}"
fetch: {{allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s, deadline: 5s}}
rules: {{paths: ["{tmp / "rules.yaml"}"]}}
alerts:
  channels:
    console: {{type: console}}
backfill: {{cdx_url: "{site.url("/cdx")}", max_pages: 2}}
sources:
  - {{id: wire, kind: feed, url: "{site.url("/feed")}"}}
  - {{id: gone, kind: feed, url: "{site.url("/gone.xml")}"}}
""",
            "utf-8",
        )
        first = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["once", "--config", str(cfg)])
        assert first.exit_code == 1, first.output  # `gone` failed
        yield {"cfg": cfg, "site": site, "tmp": tmp, "first": first.output}


CASES = Path(__file__).resolve().parents[1] / "data" / "rules" / "longcat_cases.jsonl"

def outputs(world: dict[str, object]) -> dict[str, list[str]]:
    cfg, site, tmp = str(world["cfg"]), world["site"], world["tmp"]
    assert isinstance(site, Site) and isinstance(tmp, Path)
    opml = tmp / "in.opml"
    opml.write_text(
        f'<opml version="2.0"><body><outline text="Other" xmlUrl="{site.url("/other.xml")}"/></body></opml>',
        "utf-8",
    )
    return {
        "init": ["init", str(tmp / "init")],
        "db upgrade": ["db", "upgrade", "--config", cfg],
        "db current": ["db", "current", "--config", cfg],
        "once": ["once", "--config", cfg],
        "status": ["status", "--config", cfg],
        "sources": ["sources", "--config", cfg],
        "sources import": ["sources", "import", str(opml), "--config", cfg],
        "sources add": ["sources", "add", site.url("/news/vendor"), "--kind", "page", "--config", cfg],
        "sources export": ["sources", "export", "--config", cfg],
        "sources remove": ["sources", "remove", "other", "--config", cfg],
        "stories": ["stories", "--documents", "--config", cfg],
        "alerts list": ["alerts", "list", "--config", cfg],
        "alerts show": ["alerts", "show", "1", "--config", cfg],
        "alerts retry": ["alerts", "retry", "1", "--config", cfg],
        "alerts silence add": [
            "alerts",
            "silence",
            "add",
            "out.*",
            "--for",
            "1h",
            "--comment",
            "c",
            "--config",
            cfg,
        ],
        "alerts silence list": ["alerts", "silence", "list", "--all", "--config", cfg],
        "alerts silence expire": ["alerts", "silence", "expire", "1", "--config", cfg],
        "alerts test": ["alerts", "test", "console", "--config", cfg],
        "rules lint": ["rules", "lint", "--config", cfg],
        "rules test": ["rules", "test", "--text", VENDOR, "--config", cfg],
        "rules eval": ["rules", "eval", str(CASES), "--split", "check", "--config", cfg],
        "backfill": [
            "backfill",
            "--since",
            "2026-11-01",
            "--alerts",
            "none",
            "--source",
            "wire",
            "--config",
            cfg,
        ],
        "rescan": ["rescan", "--config", cfg],
    }


def test_no_command_prints_a_python_repr(world: dict[str, object]) -> None:
    table = outputs(world)
    assert leaf_commands(cli) - set(SERVERS) - SCALE_OUT == set(table), (
        "every command needs a line in outputs()"
    )
    assert not REPR.search(str(world["first"])), world["first"]
    runner = CliRunner(env={"COLUMNS": "200"})
    for name, argv in table.items():
        result = runner.invoke(cli, argv)
        assert result.exit_code in (0, 1), f"{name}: {result.output}"
        found = REPR.search(result.output)
        assert not found, f"`storywatch {name}` printed a repr ({found.group(0)!r}):\n{result.output}"


SERVERS = {  # commands that serve until stopped: run in a subprocess, stopped with Ctrl-C
    "run": ["run"],
    "web": ["web", "--listen", "127.0.0.1:0"],
}


SCALE_OUT = {"scheduler", "worker", "relay"}  # need Redis and PostgreSQL: tests/scale/ runs them


def test_the_scale_out_roles_on_an_embedded_config_say_what_is_missing_without_a_repr(
    world: dict[str, object],
) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    for name in sorted(SCALE_OUT):
        result = runner.invoke(cli, [name, "--config", str(world["cfg"])])
        assert result.exit_code == 2 and "broker: redis://" in result.output, result.output
        assert not REPR.search(result.output), result.output


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_the_daemon_and_the_web_server_print_no_repr(world: dict[str, object], name: str) -> None:
    exe = Path(sys.executable).with_name("storywatch")
    proc = subprocess.Popen(
        [str(exe), *SERVERS[name], "--config", str(world["cfg"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as a background job starts (CI): SIGINT ignored, so the process's own handlers must be in
        # place before its ready line, or the SIGINT below is lost and the server keeps serving
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    marker = "daemon" if name == "run" else "serving http://127.0.0.1:"
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60  # start-up includes worker processes: slow on a loaded machine
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        line = proc.stdout.readline() if ready else ""
        lines.append(line)
        if marker in line.lower() or proc.poll() is not None:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    out = "".join(lines) + rest
    assert marker in out.lower(), out
    assert not REPR.search(out), out


def test_once_summarises_deliveries_and_keeps_error_cells_short(world: dict[str, object]) -> None:
    first = str(world["first"])
    assert "deliveries:\n  console: 1 sent" in first
    site = world["site"]
    assert isinstance(site, Site)
    gone_row = next(line for line in first.splitlines() if "│ gone" in line)
    assert "http: HTTP 404" in gone_row and site.url("/gone.xml") not in gone_row
    assert "back-off" not in first  # `once` retries nothing
    verbose = CliRunner(env={"COLUMNS": "250"}).invoke(
        cli, ["once", "--verbose", "--no-deliver", "--source", "gone", "--config", str(world["cfg"])]
    )
    assert site.url("/gone.xml") in verbose.output and "HTTP 404" in verbose.output


def test_alerts_show_prints_captures_as_name_value_and_canonical_sources_as_a_list(
    world: dict[str, object],
) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    shown = runner.invoke(cli, ["alerts", "show", "1", "--config", str(world["cfg"])]).output
    site = world["site"]
    assert isinstance(site, Site)
    assert "captures:\n  vendor: Huawei\n" in shown
    assert f"sources (1):\n  - wire: {site.url('/news/vendor')}\n" in shown
    assert "utm_" not in shown
    data = json.loads(
        runner.invoke(cli, ["alerts", "show", "1", "--json", "--config", str(world["cfg"])]).output
    )
    assert data["details"]["sources"] == [{"source_id": "wire", "url": site.url("/news/vendor")}]


def test_fifteen_failing_sources_take_one_line_each_at_80_columns(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a/long/path/to/the/feed.xml?with=query&and=more"
    sources = "".join(f'  - {{id: src-{i:02d}, kind: feed, url: "{url}&n={i}"}}\n' for i in range(15))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f'database: "sqlite:///{tmp_path / "sw.db"}"\n'
        'fetch: {allow_private_networks: ["127.0.0.1/32"], per_host_min_gap: 0s, connect_timeout: 2s}\n'
        f"sources:\n{sources}",
        "utf-8",
    )
    runner = CliRunner(env={"COLUMNS": "80"})
    once = runner.invoke(cli, ["once", "--no-deliver", "--config", str(cfg)])
    assert once.exit_code == 1
    rows = [line for line in once.output.splitlines() if "│ src-" in line]
    assert len(rows) == 15 and len(once.output.splitlines()) == 15 + 5  # title, borders, header
    assert all("fetch: cannot connect to 127.0.0.1" in row and "/a/long/path" not in row for row in rows)
    assert all(len(line) <= 80 for line in once.output.splitlines())
    listing = runner.invoke(cli, ["sources", "--config", str(cfg)]).output.splitlines()
    below = [line for line in listing if line.startswith("src-")]  # no room for an error column
    assert len(below) == 15 and all(len(line) <= 80 and "/a/long/path" not in line for line in below)
    verbose = CliRunner(env={"COLUMNS": "80"}).invoke(
        cli, ["once", "--verbose", "--no-deliver", "--config", str(cfg)]
    )
    assert "/a/long/path" in verbose.output
