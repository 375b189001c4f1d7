"""The layer contracts (pyproject.toml, [tool.importlinter]) hold, and they can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def _copy_tree(dest: Path) -> Path:
    for name in ("crawler", "storage", "rules"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_contracts_hold() -> None:
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout


def test_a_stage_importing_storage_breaks_a_contract(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    parse = tree / "crawler" / "feeds" / "parse.py"
    parse.write_text(parse.read_text(encoding="utf-8") + "\nfrom storage import db as _db  # noqa\n")
    done = _lint(tree)
    assert done.returncode != 0
    assert "the stages (and the shared vocabulary) never import storage BROKEN" in " ".join(done.stdout.split())
    assert "crawler.feeds.parse -> storage.db" in done.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_layers(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    errors = tree / "crawler" / "types.py"
    errors.write_text(errors.read_text(encoding="utf-8") + "\nimport crawler.pipeline  # noqa\n")
    done = _lint(tree)
    assert done.returncode != 0
    assert "crawler.types -> crawler.pipeline" in done.stdout
