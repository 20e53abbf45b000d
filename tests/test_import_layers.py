"""The package's layers (pyproject.toml, ``[tool.importlinter]``) hold: checked with
every test run by import-linter, on the code of this checkout.

import-linter analyses whichever ``rtcstats_server`` Python finds first, and the
shared environment has an editable install that may point at another tree; so it
runs in a subprocess with this checkout first on ``PYTHONPATH``, and the test checks
that this is the package it found. A second test breaks a layer on purpose in a copy
of the package and expects the contract to catch it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def run_python(code: str, *args: str, source_root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=source_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def lint_imports(source_root: Path) -> subprocess.CompletedProcess[str]:
    return run_python(LINT, "--no-cache", "--no-logo", str(PYPROJECT), source_root=source_root)


def test_layers_hold_in_this_checkout() -> None:
    found = run_python("import rtcstats_server; print(rtcstats_server.__file__)", source_root=ROOT)
    assert Path(found.stdout.strip()).resolve() == ROOT / "rtcstats_server" / "__init__.py"
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout, result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "rtcstats_server",
        tmp_path / "rtcstats_server",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    layout = tmp_path / "rtcstats_server" / "dumps" / "layout.py"
    layout.write_text(layout.read_text() + "\nfrom rtcstats_server.http import keys  # upward\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "rtcstats_server.dumps.layout -> rtcstats_server.http.keys" in result.stdout, (
        result.stdout
    )
