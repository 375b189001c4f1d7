"""storywatch: a news-monitoring crawler with rules and alerts (packages per stage: docs/ARCHITECTURE.md)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each exported name on first use.

    A package whose API spans heavy modules (the pipeline: storage, the HTTP client, the relay)
    keeps the import of one light module cheap: a worker process importing
    ``crawler.pipeline.workers`` does not load the database layer.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
