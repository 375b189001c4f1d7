"""Docs are part of the product: fail when a command, option or setting is undocumented."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from crawler.cli import register_all
from crawler.cli.base import cli
from crawler.config import ChannelConfig, Settings, SourceConfig, default_config_text, parse_settings
from crawler.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text("utf-8")
register_all(cli)


def _commands(group: click.Group, prefix: str = "storywatch") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, path))
    return out


COMMANDS = _commands(cli)


def test_every_command_is_in_the_readme() -> None:
    missing = [path for path, cmd in COMMANDS if path not in README and not _documented_as_subcommand(path)]
    assert not missing, f"README.md does not mention: {missing}"


def _documented_as_subcommand(path: str) -> bool:
    """`storywatch alerts silence add` is documented by the `alerts ... silence ...` row."""
    parts = path.split()
    return len(parts) > 3 and f"{parts[0]} {parts[1]}" in README and parts[2] in README and parts[3] in README


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS])
def test_every_command_help_has_examples(path: str) -> None:
    result = CliRunner().invoke(cli, [*path.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`{path} --help` has no examples"


def test_every_option_of_the_main_commands_is_in_the_readme() -> None:
    skip = {"--help", "-h", "--version"}
    missing = []
    for path, cmd in COMMANDS:
        if isinstance(cmd, click.Group):
            continue
        for param in cmd.params:
            if isinstance(param, click.Option):
                names = [o for o in param.opts if o.startswith("--") and o not in skip]
                if names and not any(n in README for n in names):
                    missing.append(f"{path} {names[0]}")
    assert not missing, f"README.md does not mention these options: {missing}"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_keys(ann, key + "."))
        else:
            keys.append(key)
    return keys


def test_every_setting_is_in_the_readme() -> None:
    leaf = [k for k in _keys(Settings) if k not in ("version", "sources", "alerts.channels")]
    missing = [k for k in leaf if f"`{k}`" not in README and f"`{k.split('.')[-1]}`" not in README]
    assert not missing, f"README.md config reference lacks: {missing}"
    for model in (SourceConfig, ChannelConfig):
        for name in model.model_fields:
            assert f"`{name}`" in README, f"README.md config reference lacks {model.__name__}.{name}"


def test_default_config_is_valid_and_names_every_section() -> None:
    text = default_config_text()
    settings = parse_settings(text, name="default_config.yaml", env={})
    assert settings.sources and all(s.id for s in settings.sources)
    for section in ("fetch:", "rules:", "dedup:", "alerts:", "daemon:", "backfill:", "sources:"):
        assert section in text


def test_init_writes_the_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["init", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "storywatch.yaml").read_text("utf-8") == default_config_text()
    again = runner.invoke(cli, ["init", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_config_errors_exit_2_and_name_file_key_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sources:\n  - id: x\n    kind: feed\n    url: file:///etc/passwd\n", "utf-8")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "sources"])
    assert result.exit_code == 2
    assert f"{cfg}:sources[0].url: line 4:" in result.output and "only http:// and https://" in result.output


def test_changelog_exists_with_entries() -> None:
    text = (REPO / "CHANGELOG.md").read_text("utf-8")
    assert text.count("\n- ") >= 5


def test_repeat_interval_is_validated_and_negative_durations_are_refused() -> None:
    text = "alerts:\n  repeat_interval: 6h\n  channels:\n    a: {type: console}\n"
    text += "    b: {type: console, repeat_interval: 30m}\n    c: {type: console, repeat_interval: 0}\n"
    alerts = parse_settings(text, name="x.yaml").alerts
    assert alerts.repeat_interval == 6 * 3600
    assert [alerts.repeat_interval_for(c) for c in "abc"] == [6 * 3600, 1800, 0]
    assert parse_settings("alerts: {}\n", name="x.yaml").alerts.repeat_interval == 0  # off by default
    for bad, key in [
        ("alerts:\n  repeat_interval: -4h\n", "alerts.repeat_interval: line 2"),
        ("alerts:\n  repeat_interval: -60\n", "alerts.repeat_interval: line 2"),
        (
            "alerts:\n  channels:\n    a: {type: console, repeat_interval: -1m}\n",
            "alerts.channels.a.repeat_interval",
        ),
    ]:
        with pytest.raises(ConfigError, match="is negative: repeat_interval is 0 \\(never repeat\\)") as err:
            parse_settings(bad, name="x.yaml")
        assert f"x.yaml:{key}" in str(err.value)
    with pytest.raises(ConfigError, match="'often' is not a duration"):
        parse_settings("alerts:\n  repeat_interval: often\n", name="x.yaml")


def test_config_after_the_command_works_and_every_help_shows_it(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sources:\n  - id: x\n    kind: feed\n    url: file:///etc/passwd\n", "utf-8")
    for argv in (
        ["--config", str(cfg), "status"],
        ["status", "--config", str(cfg)],
        ["alerts", "list", "-c", str(cfg)],
        ["alerts", "--config", str(cfg), "list"],
    ):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2, (argv, result.output)  # the bad file was read: --config was taken
        assert f"{cfg}:sources[0].url: line 4:" in result.output, argv
    env = CliRunner(env={"STORYWATCH_CONFIG": str(tmp_path / "nope.yaml")})
    assert "cannot read config file" in env.invoke(cli, ["status"]).output
    assert env.invoke(cli, ["status", "--config", str(cfg)]).exit_code == 2  # the option wins over the env
    assert "only http://" in env.invoke(cli, ["status", "--config", str(cfg)]).output
    for path, _cmd in COMMANDS:
        help_text = CliRunner().invoke(cli, [*path.split()[1:], "--help"]).output
        assert "--config" in help_text, f"`{path} --help` does not show --config"


def test_every_config_problem_is_listed_with_did_you_mean() -> None:
    text = "fetch:\n  per_host_concurency: 2\n  respect_robot: true\nsources:\n  - {id: a, kind: feed, url: 'x'}\n"
    with pytest.raises(ConfigError) as err:
        parse_settings(text, name="x.yaml")
    lines = str(err.value).splitlines()
    assert lines == [
        "x.yaml: 3 problems:",
        "  x.yaml:fetch.per_host_concurency: line 2: unknown setting: did you mean `per_host_concurrency`?",
        "  x.yaml:fetch.respect_robot: line 3: unknown setting: did you mean `respect_robots`?",
        "  x.yaml:sources[0].url: line 5: 'x': only http:// and https:// URLs can be watched",
    ]
    with pytest.raises(
        ConfigError, match=r"alerts\.channels\.c\.max_try: line 3: .*did you mean `max_tries`\?$"
    ):
        parse_settings("alerts:\n  channels:\n    c: {type: console, max_try: 3}\n", name="x.yaml")
    with pytest.raises(ConfigError, match=r"zzz: line 1: unknown setting \(check the spelling"):
        parse_settings("zzz: 1\n", name="x.yaml")


def test_init_says_how_to_use_the_file_and_refusing_to_overwrite_is_a_usage_error(tmp_path: Path) -> None:
    first = CliRunner().invoke(cli, ["init", str(tmp_path)])
    target = tmp_path / "storywatch.yaml"
    assert f"storywatch once --config {target}" in first.output
    assert f"export STORYWATCH_CONFIG={target}" in first.output
    again = CliRunner().invoke(cli, ["init", str(tmp_path)])
    assert again.exit_code == 2 and "configuration" not in again.output
    assert f"{target} already exists: edit it, or pass --force" in again.output


def test_rules_test_json_is_json_lines_as_the_rules_readme_says() -> None:
    text = "Meituan confirmed LongCat-2.0 was pre-trained on Huawei Ascend 910C chips."
    result = CliRunner().invoke(cli, ["rules", "test", "--json", "--text", text])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert (
        len(rows) == 1
        and rows[0]["id"] == "text"
        and rows[0]["matches"][0]["rule"] == "longcat.vendor-disclosed"
    )
    inline = CliRunner().invoke(cli, ["rules", "test", "--json"])
    tests = [json.loads(line) for line in inline.output.splitlines()]
    assert tests and all({"rule_id", "index", "passed"} <= set(t) for t in tests)
    rules_readme = (REPO / "rules" / "README.md").read_text("utf-8")
    assert "With `--json` it prints JSON Lines, one\nobject per document" in rules_readme
    assert "--json`: JSON Lines" in README


def test_trustme_is_in_the_test_extra() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["optional-dependencies"]
    assert any(dep.startswith("trustme") for dep in extras["test"])
