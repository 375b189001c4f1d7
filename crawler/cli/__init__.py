"""The ``storywatch`` command line: the click group (``base``) and one module per command group."""

from __future__ import annotations

import importlib

import click

from crawler.cli.base import EXIT_FAILED, EXIT_OK, EXIT_STORAGE, EXIT_USAGE, add_config_option, cli, main

# module -> function returning a list of click commands
_MODULES = (
    "crawler.cli.daemon",
    "crawler.cli.rules",
    "crawler.cli.alerts",
    "crawler.cli.stories",
    "crawler.cli.backfill",
    "crawler.cli.web",
    "crawler.cli.sources",
    "crawler.cli.scale",
)


def register_all(group: click.Group) -> None:
    for name in _MODULES:
        module = importlib.import_module(name)
        for command in module.commands():
            if command.name not in group.commands:
                group.add_command(command)
    for command in group.commands.values():  # `storywatch once --config F` as well as before `once`
        add_config_option(command)


__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_STORAGE", "EXIT_USAGE", "cli", "main", "register_all"]
