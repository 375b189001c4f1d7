"""Each package's public API (``__all__``) resolves, and light modules stay light to import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = (
    "crawler.fetch",
    "crawler.feeds",
    "crawler.extract",
    "crawler.dedup",
    "crawler.pipeline",
    "crawler.daemon",
    "crawler.backfill",
    "crawler.cli",
    "crawler.bounds",
    "rules",
)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    assert package.__doc__ and package.__doc__.strip(), f"{name} has no docstring"
    assert package.__all__, f"{name} exports nothing"
    for attr in package.__all__:
        assert getattr(package, attr) is not None, f"{name}.{attr}"


def test_an_unknown_name_is_an_attribute_error() -> None:
    pipeline = importlib.import_module("crawler.pipeline")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = pipeline.nope


def test_a_worker_process_does_not_load_the_database_layer_or_the_rule_grammar() -> None:
    code = (
        "import sys, crawler.pipeline.workers, rules.textspans; "
        "print(sorted(m for m in ('sqlalchemy', 'storage', 'lark', 'httpx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
