"""Shared fixtures: real fixture files and a collector started per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.services import session_stores
from tests.services.collector import RunningCollector, run_collector
from tests.services.ferretdb import FerretDB

#: ``shared/`` beside the checkout (/work/main → /work/shared); a worktree nested deeper
#: (/work/wt/<name>) finds the same directory further up.
SHARED = next(
    (
        parent / "shared"
        for parent in Path(__file__).resolve().parents[2:]
        if (parent / "shared" / "fixtures").is_dir()
    ),
    Path(__file__).resolve().parents[2] / "shared",
)
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
