"""The wheel carries every package, the rule packs, the schema and the templates (`pip install .`)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_the_packages_and_their_data(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = tmp_path.glob("storywatch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "rules/__init__.py",
        "rules/engine.py",
        "rules/textspans.py",
        "rules/packs/longcat.yaml",
        "rules/schema.json",
        "rules/README.md",
        "crawler/fetch/__init__.py",
        "crawler/pipeline/passes.py",
        "crawler/cli/__init__.py",
        "crawler/data/default_config.yaml",
        "crawler/alerts/templates/email.html.j2",
        "crawler/web/__init__.py",
        "crawler/web/templates/base.html",
        "crawler/web/templates/_developments.html",
        "crawler/web/static/app.js",
        "crawler/web/static/style.css",
        "storage/migrations/env.py",
        "storage/migrations/script.py.mako",
        "storage/migrations/versions/0001_initial_schema.py",
    ):
        assert needed in names, f"{needed} is missing from {wheel.name}"
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
