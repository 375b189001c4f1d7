"""Registers the subcommands that live in their own modules (kept out of cli.py to keep it thin)."""

from __future__ import annotations

import importlib

import click

# module -> function returning a list of click commands
_MODULES = (
    "crawler.cli_daemon",
    "crawler.cli_rules",
    "crawler.cli_alerts",
    "crawler.cli_stories",
    "crawler.cli_backfill",
)


def register_all(group: click.Group) -> None:
    for name in _MODULES:
        module = importlib.import_module(name)
        for command in module.commands():
            if command.name not in group.commands:
                group.add_command(command)
