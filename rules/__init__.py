"""Everything about rules: the query language, loading, evaluation, negation, text spans, tests, packs.

Public API::

    from rules import load_rules, lint_paths, RuleInput, RuleSet
    ruleset = load_rules([PACK_DIR])                    # raises RuleError (file:line:column, rule id)
    matches = ruleset.evaluate(RuleInput(title=..., text=...))

The modules, in the order a rule travels: ``lang`` (grammar) and ``nodes`` (the AST), ``schema_check``
and ``load`` (YAML -> validated rules), ``terms`` (term matchers), ``textspans`` (paragraphs,
sentences, clauses: the one sentence splitter of storywatch), ``negation`` (asserted, hedged,
negated), ``evaluate`` (one query on one document), ``engine`` (the compiled RuleSet), ``testing``
(inline tests and reports), ``scoring`` (back-testing on labelled cases:
``storywatch rules eval``). ``packs/`` holds the shipped rule files; ``schema.json`` and
``README.md`` are the format and its reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crawler import lazy_exports
from rules.paths import PACK_DIR, README_PATH, RULES_DIR, SCHEMA_PATH, default_rule_paths
from rules.textspans import split_sentences

if TYPE_CHECKING:  # the engine is imported on first use: text spans and paths stay cheap to import
    from rules.engine import RuleInput as RuleInput
    from rules.engine import RuleResult as RuleResult
    from rules.engine import RuleSet as RuleSet
    from rules.engine import lint_paths as lint_paths
    from rules.engine import load_rules as load_rules

__all__ = [
    "PACK_DIR",
    "README_PATH",
    "RULES_DIR",
    "SCHEMA_PATH",
    "RuleInput",
    "RuleResult",
    "RuleSet",
    "default_rule_paths",
    "lint_paths",
    "load_rules",
    "split_sentences",
]
_ENGINE = ("RuleInput", "RuleResult", "RuleSet", "lint_paths", "load_rules")
__getattr__ = lazy_exports(__name__, dict.fromkeys(_ENGINE, "rules.engine"))
