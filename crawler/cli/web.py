"""``storywatch web``: the dashboard and JSON API, standalone, on the configured database."""

from __future__ import annotations

import click

from crawler import web
from crawler.cli.base import Ctx, err
from storage.db import open_database


@click.command("web")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Address to serve on (default: web.listen, 127.0.0.1:8087). Beyond loopback, web.token is required.",
)
@click.pass_obj
def web_cmd(obj: Ctx, listen: str | None) -> None:
    """Serve the web dashboard and the JSON API (/api/v1/) on the configured database.

    Binds 127.0.0.1 unless told otherwise; any other address is refused (exit 2) unless web.token
    is set. The daemon serves the same app on daemon.http.

    \b
    Examples:
      storywatch web                                   # http://127.0.0.1:8087/
      storywatch web --listen 127.0.0.1:9000
      STORYWATCH_WEB_TOKEN=$(openssl rand -hex 24) storywatch web --listen 0.0.0.0:8087
    """
    settings = obj.settings
    address = listen or settings.web.listen
    sock = web.bind(
        address, has_token=settings.web.token is not None, key="--listen" if listen else "web.listen"
    )
    db = open_database(settings.database_url)
    server = web.WebServer(web.create_app(settings, db), sock)
    ready = f"storywatch web: serving http://{server.address}/ (Ctrl-C to stop)"
    server.serve_forever(lambda: err.print(ready, highlight=False))


def commands() -> list[click.Command]:
    return [web_cmd]
