"""Retention: old records and their dumps go, on every store; live and new ones stay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rtcstats_server.config import RetentionConfig
from rtcstats_server.exceptions import NotFound
from rtcstats_server.http.keys import DUMPS, RECORDS
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.sessions.retention import RetentionSweeper
from rtcstats_server.storage.base import dump_key
from rtcstats_server.storage.local import LocalDumpStore
from tests.services.collector import run_collector, wait_until
from tests.services.session_stores import StoreFactory

NOW = datetime(2024, 6, 30, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def store(session_store_factory: StoreFactory) -> AsyncIterator[SessionStore]:
    store = session_store_factory()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def add_session(
    store: SessionStore, dumps: LocalDumpStore, n: int, age_days: float, state: str, tmp: Path
) -> tuple[str, str]:
    session_id = f"{n:032x}"
    started = NOW - timedelta(days=age_days)
    key = dump_key(session_id, started)
    source = tmp / f"{session_id}.zst"
    source.write_bytes(b"dump")
    await dumps.put(key, source)
    await store.upsert(session_id, {"state": state, "started_at": started, "dump_key": key})
    return session_id, key


async def dump_exists(dumps: LocalDumpStore, key: str) -> bool:
    try:
        async for _ in dumps.read(key):
            pass
    except NotFound:
        return False
    return True


async def test_sweep_deletes_old_records_and_their_dumps(
    store: SessionStore, tmp_path: Path
) -> None:
    dumps = LocalDumpStore(tmp_path / "dumps")
    await dumps.open()
    old = [await add_session(store, dumps, n, 31 + n, "stored", tmp_path) for n in range(3)]
    live = await add_session(store, dumps, 10, 45, "streaming", tmp_path)
    young = await add_session(store, dumps, 11, 29, "stored", tmp_path)
    # A record whose dump already went (a crash between the two deletes) goes too.
    orphan = await add_session(store, dumps, 12, 40, "stored", tmp_path)
    await dumps.delete(orphan[1])

    sweeper = RetentionSweeper(RetentionConfig(days=30), store, dumps)
    assert await sweeper.sweep(NOW) == 4
    for session_id, key in [*old, orphan]:
        assert await store.get(session_id) is None
        assert not await dump_exists(dumps, key)
    for session_id, key in (live, young):
        assert await store.get(session_id) is not None
        assert await dump_exists(dumps, key)
    assert await sweeper.sweep(NOW) == 0

    keep_forever = RetentionSweeper(RetentionConfig(days=0), store, dumps)
    assert await keep_forever.sweep(NOW + timedelta(days=10_000)) == 0
    assert await store.get(young[0]) is not None


async def test_sweep_goes_through_more_than_one_batch(store: SessionStore, tmp_path: Path) -> None:
    dumps = LocalDumpStore(tmp_path / "dumps")
    await dumps.open()
    for n in range(25):
        started = NOW - timedelta(days=100, seconds=n)
        await store.upsert(f"{n:032x}", {"state": "stored", "started_at": started})
    sweeper = RetentionSweeper(RetentionConfig(days=1), store, dumps, batch=10)
    assert await sweeper.sweep(NOW) == 25
    assert await store.started_before(NOW, 10) == []


async def test_the_running_server_sweeps_periodically(tmp_path: Path) -> None:
    settings = {"retention": {"days": 7, "sweep_interval_s": 0.1}}
    async with run_collector(tmp_path / "data", settings) as collector:
        records, dumps = collector.app[RECORDS], collector.app[DUMPS]
        session_id = "f" * 32
        started = datetime.now(UTC) - timedelta(days=8)
        key = dump_key(session_id, started)
        source = tmp_path / "dump.zst"
        source.write_bytes(b"dump")
        await dumps.put(key, source)
        await records.upsert(
            session_id, {"state": "stored", "started_at": started, "dump_key": key}
        )

        async def gone() -> bool:
            return await records.get(session_id) is None

        await wait_until(gone, timeout=10, what="the retention sweep")
        await collector.get_json(f"/v1/sessions/{session_id}", status=404)
        async with collector.http.get(f"{collector.base_url}/v1/sessions?limit=10") as response:
            assert (await response.json())["sessions"] == []
