"""Scale-out roles: `storywatch scheduler`, `worker` and `relay`. Registered by ``crawler.cli``."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import click

from crawler.cli.base import EXIT_OK, Ctx
from crawler.errors import ConfigError


def scale_module() -> Any:
    """``crawler.scale``, or a ConfigError (exit 2) saying what to install when Dramatiq is missing."""
    try:
        import crawler.scale
    except ImportError as exc:
        raise ConfigError(
            f"scale-out mode needs Dramatiq and Redis's client ({exc.name} is missing): "
            "pip install 'storywatch[scale]'",
            key="broker",
        ) from exc
    return crawler.scale


def run_scheduler(obj: Ctx) -> None:
    from crawler.daemon.logs import setup_logging

    scale = scale_module()
    Scheduler, require_scale = scale.Scheduler, scale.require_scale

    settings = obj.settings
    require_scale(settings)  # ConfigError: exit 2, naming what is missing
    setup_logging(settings.daemon)
    asyncio.run(Scheduler(settings).run())
    sys.exit(EXIT_OK)


@click.command("scheduler")
@click.pass_obj
def scheduler(obj: Ctx) -> None:
    """Scale-out: dispatch due sources to the workers (the same as `run --role scheduler`).

    Holds the leader lock; a second scheduler waits as a standby and takes over when the leader
    stops or dies. Each due source gets a lease and a generation number and one `poll` message
    on the Redis queue. Needs `broker:` and a PostgreSQL `database:` in the config (exit 2
    otherwise). SIGHUP reloads the config and rules and publishes the new version to the workers.

    \b
    Examples:
      storywatch --config scale.yaml scheduler
      storywatch --config scale.yaml run --role scheduler
      systemctl --user enable --now storywatch-scheduler   # see docs/storywatch-scheduler.service
    """
    run_scheduler(obj)


@click.command("worker")
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: scale.processes).",
)
@click.option(
    "--threads",
    "-t",
    type=click.IntRange(min=1),
    default=None,
    help="Polls at once per process (default: scale.threads).",
)
@click.option(
    "--queues", "-Q", multiple=True, help="Queues to consume (default: all; the polls are on `poll`)."
)
@click.pass_obj
def worker(obj: Ctx, processes: int | None, threads: int | None, queues: tuple[str, ...]) -> None:
    """Scale-out: run polls from the Redis queue (Dramatiq worker processes).

    Each poll fetches with the guarded client (per-host politeness, Retry-After pauses and
    robots.txt shared through Redis), parses and extracts, and stores with the usual ingest
    transaction, one writer thread per process grouping the polls that finish together (group
    commit); the source's next due time is saved only if its generation still matches. Start as
    many as you like, on as many machines as you like, with the same config and rule files.

    \b
    Examples:
      storywatch --config scale.yaml worker
      storywatch --config scale.yaml worker --processes 4 --threads 16
      systemctl --user enable --now storywatch-worker@1   # see docs/storywatch-worker@.service
    """
    settings = obj.settings
    scale_module().require_scale(settings)
    import dramatiq.cli

    if settings.path:
        os.environ["STORYWATCH_CONFIG"] = os.path.abspath(settings.path)  # read by crawler.scale.actors
    argv = [
        "crawler.scale.actors",
        "--processes",
        str(processes or settings.scale.processes),
        "--threads",
        str(threads or settings.scale.threads),
    ]
    if queues:
        argv += ["--queues", *queues]
    # Dramatiq prefetches 2 messages per thread by default; a poll is long, so one process would
    # hoard a burst of due sources while others idle: take no more than it can start.
    os.environ.setdefault("dramatiq_queue_prefetch", str(threads or settings.scale.threads))
    args = dramatiq.cli.make_argument_parser().parse_args(argv)
    sys.exit(dramatiq.cli.main(args))


@click.command("relay")
@click.pass_obj
def relay(obj: Ctx) -> None:
    """Scale-out: deliver the alert outbox (start any number of relay processes).

    Relays share the outbox through leases (an outcome is recorded only while its lease is
    held) and each channel's `rate_per_second` through Redis. SIGTERM stops it.

    \b
    Examples:
      storywatch --config scale.yaml relay
      systemctl --user enable --now storywatch-relay   # see docs/storywatch-relay.service
    """
    from crawler.daemon.logs import setup_logging

    scale = scale_module()
    settings = obj.settings
    scale.require_scale(settings)
    setup_logging(settings.daemon)
    asyncio.run(scale.run_relay(settings))
    sys.exit(EXIT_OK)


def commands() -> list[click.Command]:
    return [scheduler, worker, relay]
