"""The metadata spool: durable, ordered, replayed once the database is back."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import pytest

from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.mongodb import MongoSessionStore
from rtcstats_server.metadata.record import SessionState
from rtcstats_server.metadata.spool import SpoolingSessionStore, WriteSpool
from tests.services.collector import wait_until
from tests.services.ferretdb import FerretDB
from tests.services.session_stores import TEST_DATABASE, mongo_collection

T0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)


async def test_spool_keeps_order_and_survives_reopen(tmp_path: Path) -> None:
    spool = WriteSpool(tmp_path)
    await spool.open()
    for n in range(3):
        await spool.append(f"s{n}", {"state": "stored", "started_at": T0, "n": n})
    await spool.close()

    spool = WriteSpool(tmp_path)
    await spool.open()
    writes = await spool.read()
    assert [(w.session_id, w.fields["n"]) for w in writes] == [("s0", 0), ("s1", 1), ("s2", 2)]
    assert writes[0].fields["started_at"] == T0
    await spool.mark_applied(writes[0])
    await spool.close()

    spool = WriteSpool(tmp_path)
    await spool.open()  # progress survives a restart: s0 is not replayed again
    assert (spool.entries, [w.session_id for w in await spool.read()]) == (2, ["s1", "s2"])
    for write in await spool.read():
        await spool.mark_applied(write)
    assert await spool.reset_if_replayed() is True
    assert spool.path.stat().st_size == 0
    await spool.close()


async def test_a_torn_last_entry_is_cut(tmp_path: Path) -> None:
    spool = WriteSpool(tmp_path)
    await spool.open()
    await spool.append("whole", {"started_at": T0})
    await spool.close()
    whole_size = spool.path.stat().st_size
    entry = msgpack.packb(["torn", {"x": "y" * 100}])
    with spool.path.open("ab") as handle:  # a crash in the middle of a write
        handle.write(entry[: len(entry) // 2])

    spool = WriteSpool(tmp_path)
    await spool.open()
    assert [w.session_id for w in await spool.read()] == ["whole"]
    assert spool.path.stat().st_size == whole_size
    await spool.append("after", {"n": 1})
    assert [w.session_id for w in await spool.read()] == ["whole", "after"]
    await spool.close()


@pytest.fixture
def own_ferretdb(tmp_path: Path) -> Iterator[FerretDB]:
    """A server of this test alone: the test stops and restarts it."""
    with FerretDB(tmp_path / "ferretdb") as server:
        yield server


@pytest.fixture
def collection(own_ferretdb: FerretDB) -> Iterator[str]:
    with mongo_collection(own_ferretdb.uri) as name:
        yield name


def spooling_store(server: FerretDB, collection: str, data: Path) -> SpoolingSessionStore:
    backend = MongoSessionStore(server.uri, TEST_DATABASE, collection, timeout_s=0.5)
    return SpoolingSessionStore(backend, data / "spool", retry_interval_s=0.1)


@pytest.fixture
async def spooled(
    own_ferretdb: FerretDB, collection: str, tmp_path: Path
) -> AsyncIterator[SpoolingSessionStore]:
    store = spooling_store(own_ferretdb, collection, tmp_path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_outage_writes_are_spooled_and_replayed_in_order(
    own_ferretdb: FerretDB, collection: str, tmp_path: Path
) -> None:
    store = spooling_store(own_ferretdb, collection, tmp_path)
    await store.open()
    await store.upsert("a" * 32, {"state": "streaming", "started_at": T0, "messages": 0})
    assert store.spool.entries == 0  # written through

    await asyncio.to_thread(own_ferretdb.stop)
    await store.upsert("a" * 32, {"conference_id": "room"})
    await store.upsert("a" * 32, {"state": "stored", "messages": 5})
    await store.upsert("b" * 32, {"state": "streaming", "started_at": T0})
    await store.upsert("b" * 32, {"state": "detached"})
    assert await store.update("a" * 32, {"findings": ["high_rtt"]})  # a step, spooled too
    assert store.spool.entries == 5
    with pytest.raises(StoreUnavailable, match="5 record writes spooled"):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.get("a" * 32)  # answers at once: the outage is known
    with pytest.raises(StoreUnavailable):
        await store.unfinished("node")
    await store.close()

    # A restart while the database is still away: open does not fail, nothing is lost.
    store = spooling_store(own_ferretdb, collection, tmp_path)
    await store.open()
    assert store.spool.entries == 5
    await store.upsert("b" * 32, {"state": "stored", "messages": 9})
    await asyncio.to_thread(own_ferretdb.start)
    await wait_until(lambda: store.healthy, what="spool replayed")
    try:
        await store.ping()
        a, b = await store.get("a" * 32), await store.get("b" * 32)
        assert a is not None and b is not None
        assert (a["state"], a["messages"], a["conference_id"]) == ("stored", 5, "room")
        assert a["findings"] == ["high_rtt"]
        assert (b["state"], b["messages"]) == ("stored", 9)
        assert store.spool.path.stat().st_size == 0
        assert store.replayed == 6
        # And writes go straight through again.
        await store.upsert("c" * 32, {"state": "streaming", "started_at": T0})
        assert store.spool.entries == 0
        assert await store.get("c" * 32) is not None
    finally:
        await store.close()


async def test_one_collectors_writes_to_a_session_keep_their_order(
    spooled: SpoolingSessionStore,
) -> None:
    """Concurrent writes of one session land in the order they were made, even on a
    server without atomic updates (FerretDB 1.x): the last write made wins."""
    writes = []
    for n in range(20):
        for rank, state in enumerate(SessionState):
            fields = {"state": state.value, "started_at": T0 + timedelta(seconds=n)}
            writes.append((f"{n:032x}", {**fields, "messages": rank}))
    random.Random(7).shuffle(writes)
    await asyncio.gather(*(spooled.upsert(s, f) for s, f in writes))
    # On a loaded machine a burst of 140 writes can outlast the 0.5 s timeout: the
    # late ones then go through the spool, which must keep the same order.
    await wait_until(lambda: spooled.healthy and spooled.spool.entries == 0, what="spool replayed")
    for n in range(20):
        record = await spooled.get(f"{n:032x}")
        assert record is not None
        assert (record["state"], record["messages"]) == ("stored", len(SessionState) - 1)
