"""The one orchestrator that knows the stage order, its worker processes and group commit.

``passes`` runs a pass over sources in the stage order (its docstring lists the steps);
``documents`` turns fetched bytes into documents, ``store`` decides and writes them, ``workers``
runs the CPU work in processes, ``groupwrite`` shares write transactions, ``runner`` opens and
closes the live resources of a run.
"""

from __future__ import annotations

from crawler.pipeline.documents import entry_document
from crawler.pipeline.groupwrite import GroupWriter
from crawler.pipeline.passes import run_pass, run_source
from crawler.pipeline.runner import auto_cpu_workers, deliver_outbox, jsonable, open_runtime, run_once
from crawler.pipeline.runtime import Runtime, SourceOutcome, load_ruleset, rule_files, text_params, utcnow
from crawler.pipeline.store import evaluate, prepare, prepare_many, writer_process
from crawler.pipeline.workers import Offload, settled_heap

__all__ = [
    "GroupWriter",
    "Offload",
    "Runtime",
    "SourceOutcome",
    "auto_cpu_workers",
    "deliver_outbox",
    "entry_document",
    "evaluate",
    "jsonable",
    "load_ruleset",
    "open_runtime",
    "prepare",
    "prepare_many",
    "rule_files",
    "run_once",
    "run_pass",
    "run_source",
    "settled_heap",
    "text_params",
    "utcnow",
    "writer_process",
]
