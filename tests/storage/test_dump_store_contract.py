"""The DumpStore contract, run against every backend: local directory, S3 (SeaweedFS) and
Azure Blob Storage (Azurite)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rtcstats_server.config import build_config
from rtcstats_server.exceptions import NotFound
from rtcstats_server.storage.base import DumpStore, dump_key
from rtcstats_server.storage.local import LocalDumpStore
from rtcstats_server.storage.objects import ObjectDumpStore, open_object_store
from tests.services.azurite import Azurite
from tests.services.collector import wait_until
from tests.services.seaweedfs import SeaweedFS

BACKENDS = ["local", "s3", "azure"]


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> AsyncIterator[DumpStore]:
    made: DumpStore
    if request.param == "local":
        made = LocalDumpStore(tmp_path / "dumps")
    else:
        server: SeaweedFS | Azurite = request.getfixturevalue(
            "s3" if request.param == "s3" else "azurite"
        )
        config = build_config(
            {"storage": server.storage_settings(prefix), "server": {"data_dir": str(tmp_path)}},
            environ={},
        )
        made = ObjectDumpStore(open_object_store(config.storage), config.storage, config.outbox_dir)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


async def settled(store: DumpStore, key: str) -> None:
    """Its record written, wait until a put dump sits where it will stay (the bucket,
    for object stores)."""
    await store.recorded(key)
    if isinstance(store, ObjectDumpStore):
        await wait_until(lambda: store.outbox.files == 0, what="upload of the outbox")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def read_all(store: DumpStore, key: str) -> list[bytes]:
    return [chunk async for chunk in store.read(key)]


def key_for(prefix: str, session_id: str = "0123456789abcdef0123456789abcdef") -> str:
    return dump_key(session_id, datetime(2024, 5, 17, 12, 0, tzinfo=UTC), prefix)


async def test_put_then_read_returns_the_bytes(
    store: DumpStore, tmp_path: Path, prefix: str
) -> None:
    data = os.urandom(100_000)
    source = write(tmp_path, "a.zst", data)
    key = key_for(prefix)
    stored = await store.put(key, source)
    assert stored.key == key
    assert stored.size == len(data)
    assert not source.exists()  # the spool copy belongs to the store now
    assert b"".join(await read_all(store, key)) == data  # readable at once
    await settled(store, key)
    assert b"".join(await read_all(store, key)) == data  # and from where it stays


async def test_key_layout_is_date_first_under_the_prefix(prefix: str) -> None:
    assert key_for(prefix, "ab" * 16) == f"{prefix}/2024/05/17/{'ab' * 16}.rtcstats.zst"


async def test_missing_key_is_not_found(store: DumpStore, prefix: str) -> None:
    with pytest.raises(NotFound):
        await read_all(store, key_for(prefix))


async def test_delete_removes_and_is_idempotent(
    store: DumpStore, tmp_path: Path, prefix: str
) -> None:
    key = key_for(prefix)
    await store.put(key, write(tmp_path, "b.zst", b"dump bytes"))
    await settled(store, key)
    await store.delete(key)
    with pytest.raises(NotFound):
        await read_all(store, key)
    await store.delete(key)  # retention may retry a delete: no error


async def test_put_overwrites_the_same_key(store: DumpStore, tmp_path: Path, prefix: str) -> None:
    key = key_for(prefix)
    await store.put(key, write(tmp_path, "first.zst", b"first"))
    await settled(store, key)
    await store.put(key, write(tmp_path, "second.zst", b"second"))
    await settled(store, key)
    assert b"".join(await read_all(store, key)) == b"second"


async def test_read_streams_in_bounded_chunks(
    store: DumpStore, tmp_path: Path, prefix: str
) -> None:
    data = os.urandom(3 << 20)
    key = key_for(prefix)
    await store.put(key, write(tmp_path, "c.zst", data))
    await settled(store, key)
    chunks = await read_all(store, key)
    assert b"".join(chunks) == data
    assert len(chunks) >= 3
    assert max(len(chunk) for chunk in chunks) <= 1 << 20


async def test_ping_succeeds_when_reachable(store: DumpStore) -> None:
    await store.ping()
