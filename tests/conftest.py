"""Shared fixtures: real fixture files and a collector started per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.services import session_stores
from tests.services.collector import RunningCollector, run_collector
from tests.services.ferretdb import FerretDB
from tests.services.shared import FIXTURES

# A collector a test starts as a process runs as one process, as before
# ``server.workers`` existed (its default is one worker per CPU); the tests of the
# workers (tests/ops/test_workers.py) set it themselves.
os.environ.setdefault("RTCSTATS_SERVER__WORKERS", "1")


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"../shared/fixtures not found at {FIXTURES}: clone with shared/ beside it")
    return FIXTURES


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    async with run_collector(tmp_path / "data") as running:
        yield running


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretDB]:
    """One FerretDB (MongoDB wire protocol) for the whole test session."""
    try:
        server = FerretDB(tmp_path_factory.mktemp("ferretdb"))
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    with server:
        yield server


@pytest.fixture(params=session_stores.KINDS)
def session_store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[session_stores.StoreFactory]:
    """Makes unopened stores of one kind, all on the same data (see tests/services)."""
    kind: str = request.param
    uri: str | None = None
    if kind == "ferretdb":
        uri = request.getfixturevalue("ferretdb").uri
    elif kind == "mongodb":
        uri = session_stores.real_mongodb_uri()
    with session_stores.store_factory(kind, tmp_path, uri) as factory:
        yield factory
