"""Everything about rules: the query language, loading, evaluation, negation, text spans, tests, packs.

Public API::

    from rules import load_rules, lint_paths, RuleInput, RuleSet
    ruleset = load_rules([PACK_DIR])                    # raises RuleError (file:line:column, rule id)
    matches = ruleset.evaluate(RuleInput(title=..., text=...))

The modules, in the order a rule travels: ``lang`` (grammar) and ``nodes`` (the AST), ``schema_check``
and ``load`` (YAML -> validated rules), ``terms`` (term matchers), ``textspans`` (paragraphs,
sentences, clauses: the one sentence splitter of storywatch), ``negation`` (asserted, hedged,
negated), ``evaluate`` (one query on one document), ``engine`` (the compiled RuleSet), ``testing``
(inline tests and reports). ``packs/`` holds the shipped rule files; ``schema.json`` and
``README.md`` are the format and its reference.
"""

from __future__ import annotations

from rules.engine import RuleInput, RuleResult, RuleSet, lint_paths, load_rules
from rules.paths import PACK_DIR, README_PATH, RULES_DIR, SCHEMA_PATH, default_rule_paths
from rules.textspans import split_sentences

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
