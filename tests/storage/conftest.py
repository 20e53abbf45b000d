"""One real S3 server (SeaweedFS) and one Azure Blob server (Azurite) for the whole test
session, each started on first use; each test its own prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.azurite import Azurite
from tests.services.seaweedfs import SeaweedFS


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs") / "data")
    seconds = server.start()
    print(f"\nSeaweedFS serving S3 at {server.endpoint} after {seconds:.2f} s")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(seaweedfs: SeaweedFS) -> SeaweedFS:
    """The shared server, running: a test that stopped it must not break the next."""
    if not seaweedfs.running:
        seaweedfs.process = None
        seaweedfs.start()
    return seaweedfs


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(tmp_path_factory.mktemp("azurite") / "data")
    seconds = server.start()
    print(f"\nAzurite serving blobs at {server.endpoint} after {seconds:.2f} s")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """Keys of one test never meet another's in the shared bucket."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
