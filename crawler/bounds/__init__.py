"""Bounds on hostile input shared by the stages: markup nesting depth, and secrets kept out of output.

``markup`` counts how deep HTML or XML nests before a parser sees it (``extract.max_depth``);
``redact`` masks every secret of the configuration (and any fragment of one) in messages, logs,
tracebacks and stored errors; ``urls`` says which configured URLs a sender will accept, without
showing a secret. Names are imported on first use: ``redact`` sits below
``crawler.errors`` (which masks URLs with it) and ``markup`` above (it raises ``NestingTooDeep``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crawler import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time __getattr__ imports them on first use
    from crawler.bounds.markup import DEFAULT_MAX_DEPTH as DEFAULT_MAX_DEPTH
    from crawler.bounds.markup import check_depth as check_depth
    from crawler.bounds.markup import html_depth as html_depth
    from crawler.bounds.markup import xml_depth as xml_depth
    from crawler.bounds.redact import scrub as scrub
    from crawler.bounds.redact import show_url as show_url
    from crawler.bounds.urls import check_url as check_url
    from crawler.bounds.urls import source_url_problem as source_url_problem

_MODULES = {
    "markup": ("DEFAULT_MAX_DEPTH", "check_depth", "html_depth", "xml_depth"),
    "redact": ("scrub", "show_url"),
    "urls": ("check_url", "source_url_problem"),
}
__all__ = sorted(name for names in _MODULES.values() for name in names)
__getattr__ = lazy_exports(__name__, {n: f"{__name__}.{m}" for m, names in _MODULES.items() for n in names})
