"""Shared fixtures: real fixture files and a collector started per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.services.collector import RunningCollector, run_collector

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"../shared/fixtures not found at {FIXTURES}: clone with shared/ beside it")
    return FIXTURES


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    async with run_collector(tmp_path / "data") as running:
        yield running
