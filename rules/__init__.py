"""The default rule pack (data) shipped with storywatch, and the rule-file JSON Schema.

``PACK_DIR`` holds ``*.yaml`` rule files, ``schema.json`` (the format, versioned) and ``README.md``
(the format reference).
"""

from __future__ import annotations

from pathlib import Path

PACK_DIR = Path(__file__).parent
SCHEMA_PATH = PACK_DIR / "schema.json"


def default_rule_paths() -> list[Path]:
    """The rule files of the default pack, sorted by name."""
    return sorted(p for p in PACK_DIR.iterdir() if p.suffix in (".yaml", ".yml"))
