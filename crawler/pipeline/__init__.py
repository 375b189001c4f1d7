"""The one orchestrator that knows the stage order, its worker processes and group commit.

``passes`` runs a pass over sources in the stage order (its docstring lists the steps);
``documents`` turns fetched bytes into documents, ``store`` decides and writes them, ``workers``
runs the CPU work in processes, ``groupwrite`` shares write transactions, ``runner`` opens and
closes the live resources of a run. Names are imported on first use (``crawler.lazy_exports``):
a worker process that imports ``crawler.pipeline.workers`` never loads the database layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crawler import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time __getattr__ imports them on first use
    from crawler.pipeline.documents import entry_document as entry_document
    from crawler.pipeline.groupwrite import GroupWriter as GroupWriter
    from crawler.pipeline.groupwrite import Submits as Submits
    from crawler.pipeline.passes import run_pass as run_pass
    from crawler.pipeline.passes import run_source as run_source
    from crawler.pipeline.runner import auto_cpu_workers as auto_cpu_workers
    from crawler.pipeline.runner import deliver_outbox as deliver_outbox
    from crawler.pipeline.runner import jsonable as jsonable
    from crawler.pipeline.runner import open_runtime as open_runtime
    from crawler.pipeline.runner import run_once as run_once
    from crawler.pipeline.runtime import Runtime as Runtime
    from crawler.pipeline.runtime import SourceOutcome as SourceOutcome
    from crawler.pipeline.runtime import load_ruleset as load_ruleset
    from crawler.pipeline.runtime import rule_files as rule_files
    from crawler.pipeline.runtime import text_params as text_params
    from crawler.pipeline.runtime import utcnow as utcnow
    from crawler.pipeline.store import evaluate as evaluate
    from crawler.pipeline.store import prepare as prepare
    from crawler.pipeline.store import prepare_many as prepare_many
    from crawler.pipeline.store import storage_write as storage_write
    from crawler.pipeline.store import store_groups as store_groups
    from crawler.pipeline.store import writer_process as writer_process
    from crawler.pipeline.workers import Offload as Offload
    from crawler.pipeline.workers import settled_heap as settled_heap

_MODULES = {
    "documents": ("entry_document",),
    "groupwrite": ("GroupWriter", "Submits"),
    "passes": ("run_pass", "run_source"),
    "runner": ("auto_cpu_workers", "deliver_outbox", "jsonable", "open_runtime", "run_once"),
    "runtime": ("Runtime", "SourceOutcome", "load_ruleset", "rule_files", "text_params", "utcnow"),
    "store": ("evaluate", "prepare", "prepare_many", "storage_write", "store_groups", "writer_process"),
    "workers": ("Offload", "settled_heap"),
}
__all__ = sorted(name for names in _MODULES.values() for name in names)
__getattr__ = lazy_exports(__name__, {n: f"{__name__}.{m}" for m, names in _MODULES.items() for n in names})
