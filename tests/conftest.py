"""Shared fixtures: database URLs for both backends, the shared corpora, a local site server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STORYWATCH_SHARED") or REPO.parent / "shared")  # the corpora beside the repo
PG_URL = os.environ.get("STORYWATCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared corpora live beside the repo in CI)")
    return path


def _pg_available() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'storywatch[postgres]')"
    try:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=2):
            return None
    except Exception as exc:  # any connection failure means: skip
        return f"no PostgreSQL server at 127.0.0.1:5432 ({type(exc).__name__})"


_PG_REASON: str | bool | None = False


def pg_skip_reason() -> str | None:
    global _PG_REASON
    if _PG_REASON is False:
        _PG_REASON = _pg_available()
    return _PG_REASON  # type: ignore[return-value]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test (dropped afterwards)."""
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"sw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on SQLite (a temp file) and on PostgreSQL (skipped with a reason if absent)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'storywatch.db'}"
    else:
        yield request.getfixturevalue("pg_url")


REDIS_URL = os.environ.get("STORYWATCH_TEST_REDIS", "redis://127.0.0.1:6379/14")


def _redis_available() -> str | None:
    try:
        import redis
    except ImportError:
        return "redis (dramatiq[redis]) is not installed (pip install 'storywatch[scale]')"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # any connection failure means: skip
        return f"no Redis server at {REDIS_URL} ({type(exc).__name__})"
    return None


@pytest.fixture
def redis_url() -> Iterator[str]:
    """An empty Redis database for one test (flushed before and after)."""
    reason = _redis_available()
    if reason:
        pytest.skip(reason)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()
