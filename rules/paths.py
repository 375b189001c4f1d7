"""Where the rule files shipped with storywatch live: the packs, the JSON Schema and the reference."""

from __future__ import annotations

from pathlib import Path

RULES_DIR = Path(__file__).parent
PACK_DIR = RULES_DIR / "packs"
SCHEMA_PATH = RULES_DIR / "schema.json"
README_PATH = RULES_DIR / "README.md"


def default_rule_paths() -> list[Path]:
    """The rule files of the default pack, sorted by name."""
    return sorted(p for p in PACK_DIR.iterdir() if p.suffix in (".yaml", ".yml"))
