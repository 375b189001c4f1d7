"""The packaged rule pack (data) and its location."""

from pathlib import Path

PACK_DIR = Path(__file__).parent


def default_rule_paths() -> list[Path]:
    return sorted(PACK_DIR.glob("*.yaml"))
