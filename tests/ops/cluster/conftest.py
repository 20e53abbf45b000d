"""A cluster's shared services: FerretDB (tests/conftest.py) and one SeaweedFS for the
test session; each test its own collection and key prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.services.ferretdb import FerretDB
from tests.services.seaweedfs import SeaweedFS
from tests.services.session_stores import mongo_collection
from tests.storage.conftest import seaweedfs

__all__ = ["seaweedfs"]


@pytest.fixture
def collection(ferretdb: FerretDB) -> Iterator[str]:
    with mongo_collection(ferretdb.uri) as name:
        yield name


@pytest.fixture
def shared_prefix() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> SeaweedFS:
    if not seaweedfs.running:
        seaweedfs.process = None
        seaweedfs.start()
    return seaweedfs
