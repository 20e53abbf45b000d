"""The package stays mypy --strict and ruff clean: checked with every test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "mypy"],
        [sys.executable, "-m", "ruff", "check", "rtcstats_server", "tests", "bench"],
        [sys.executable, "-m", "ruff", "format", "--check", "rtcstats_server", "tests"],
    ],
    ids=["mypy", "ruff-check", "ruff-format"],
)
def test_static_checks_pass(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
