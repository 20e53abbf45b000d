"""The embedded stores' SQLite connection thread: one hop per operation, whole
transactions, the order writes were handed over in, the same errors as before."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.embedded import EmbeddedSessionStore
from rtcstats_server.metadata.jobs_sqlite import SqliteJobQueue
from rtcstats_server.metadata.record import SessionState
from rtcstats_server.metadata.sqlite import SqliteThread, open_sqlite, transaction

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SID = "a" * 32


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedSessionStore]:
    store = EmbeddedSessionStore(tmp_path / "sessions.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteThread]:
    db = await open_sqlite(tmp_path / "t.sqlite3", ["CREATE TABLE t (n INTEGER)"], "test-sqlite")
    try:
        yield db
    finally:
        await db.close()


class HopCounter:
    """Counts the callbacks other threads hand the loop (each is a wake-up)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self._loop = loop
        self._original = loop.call_soon_threadsafe

    def __enter__(self) -> HopCounter:
        def counted(callback: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return self._original(callback, *args, **kwargs)

        self._loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        del self._loop.call_soon_threadsafe


async def test_an_upsert_costs_the_loop_one_thread_hop(store: EmbeddedSessionStore) -> None:
    fields = {"state": "streaming", "started_at": T0, "messages": 1}
    with HopCounter(asyncio.get_running_loop()) as hops:
        await store.upsert(SID, fields)  # a create: read, insert, commit
        await store.upsert(SID, {"state": "stored", "messages": 2})  # a merge
        record = await store.get(SID)
    assert hops.count == 3
    assert record is not None and (record["state"], record["messages"]) == ("stored", 2)


async def test_a_job_queue_operation_costs_one_hop(tmp_path: Path) -> None:
    queue = SqliteJobQueue(tmp_path / "jobs.sqlite3")
    await queue.open()
    try:
        with HopCounter(asyncio.get_running_loop()) as hops:
            assert await queue.enqueue(SID, "analysis", 100.0)
            job = await queue.lease("analysis", "me", 100.0, 60.0)
        assert hops.count == 2
        assert job is not None and job.session_id == SID
    finally:
        await queue.close()


async def test_a_transaction_that_fails_midway_writes_nothing(db: SqliteThread) -> None:
    def two_writes(connection: sqlite3.Connection) -> None:
        def work() -> None:
            connection.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("between the writes")

        transaction(connection, work)

    with pytest.raises(RuntimeError, match="between the writes"):
        await db.run(two_writes)
    # nothing of it stays, and the connection is out of the transaction: the next
    # one begins and commits
    assert await db.run(lambda c: c.in_transaction) is False
    await db.run(lambda c: transaction(c, lambda: c.execute("INSERT INTO t VALUES (2)")))
    assert await db.run(lambda c: c.execute("SELECT n FROM t").fetchall()) == [(2,)]


async def test_a_failed_merge_leaves_the_record_as_it_was(store: EmbeddedSessionStore) -> None:
    await store.upsert(SID, {"state": "streaming", "started_at": T0, "messages": 1})
    with pytest.raises(TypeError):  # orjson cannot encode it: after the read, before the write
        await store.upsert(SID, {"state": "stored", "messages": 2, "bad": object()})
    record = await store.get(SID)
    assert record is not None and (record["state"], record["messages"]) == ("streaming", 1)
    await store.upsert(SID, {"state": "stored", "messages": 3})  # the store goes on
    record = await store.get(SID)
    assert record is not None and (record["state"], record["messages"]) == ("stored", 3)


async def test_concurrent_upserts_of_one_store_keep_the_rank_rule(
    store: EmbeddedSessionStore,
) -> None:
    """Every state written at once, highest first: the lower ones change nothing."""
    states = list(SessionState)
    writes = [
        store.upsert(SID, {"state": state.value, "started_at": T0, "messages": rank})
        for rank, state in reversed(list(enumerate(states)))
    ]
    await asyncio.gather(*writes)
    record = await store.get(SID)
    assert record is not None
    assert (record["state"], record["messages"]) == (states[-1].value, len(states) - 1)


async def test_writes_run_in_the_order_handed_over_on_one_thread(db: SqliteThread) -> None:
    threads: set[int] = set()

    def insert(n: int) -> Any:
        def work(connection: sqlite3.Connection) -> None:
            threads.add(threading.get_ident())
            connection.execute("INSERT INTO t VALUES (?)", (n,))

        return db.run(work)

    await asyncio.gather(*(insert(n) for n in range(50)))
    rows = await db.run(lambda c: c.execute("SELECT n FROM t ORDER BY rowid").fetchall())
    assert [n for (n,) in rows] == list(range(50))
    assert len(threads) == 1 and threading.get_ident() not in threads


async def test_a_cancelled_caller_never_leaves_half_a_transaction(
    store: EmbeddedSessionStore,
) -> None:
    """A finish cancelled while its upsert is on the thread: the upsert is done whole
    (or not at all), and the store's next transactions begin cleanly."""
    for n in range(20):
        session_id = f"{n:032x}"
        task = asyncio.create_task(
            store.upsert(session_id, {"state": "stored", "started_at": T0, "messages": n})
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        record = await store.get(session_id)
        assert record is None or record["messages"] == n
    await store.upsert(SID, {"state": "streaming", "started_at": T0})
    assert await store.db.run(lambda c: c.in_transaction) is False


async def test_errors_are_the_same_as_before(tmp_path: Path) -> None:
    store = EmbeddedSessionStore(tmp_path / "sessions.sqlite3")
    with pytest.raises(StoreUnavailable):  # not open
        await store.upsert(SID, {"state": "streaming", "started_at": T0})
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):  # closed
        await store.get(SID)
    with pytest.raises(ValueError, match="started_at"):  # a record needs it
        await store.open()
        try:
            await store.upsert(SID, {"state": "streaming"})
        finally:
            await store.close()


async def test_a_broken_connection_is_unavailable_at_ping(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    store = EmbeddedSessionStore(path)
    await store.open()
    try:
        await store.db.run(lambda c: c.close())  # the connection is gone under the store
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await store.close()


async def test_a_closed_thread_refuses_work(tmp_path: Path) -> None:
    db = await open_sqlite(tmp_path / "t.sqlite3", [], "test-sqlite")
    await db.close()
    await db.close()  # twice is fine
    with pytest.raises(sqlite3.ProgrammingError):
        await db.run(lambda c: c.execute("SELECT 1"))


def test_stores_opening_a_new_file_at_once_all_open(tmp_path: Path) -> None:
    """Switching a new file to WAL races between connections: the loser is told
    "database is locked" at once, without the busy wait. It once stopped a worker of
    ``serve --workers 2`` (the workers open the host's embedded store together)."""
    schema = ["CREATE TABLE IF NOT EXISTS t (n INTEGER)"]
    failures: list[BaseException] = []
    for attempt in range(40):
        path = tmp_path / f"{attempt}.sqlite3"
        barrier = threading.Barrier(4)

        def open_one(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            async def opened() -> None:
                barrier.wait(30)
                db = await open_sqlite(path, schema, "race")
                await db.close()

            try:
                asyncio.run(opened())
            except BaseException as exc:  # collected for the assertion
                failures.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert failures == []
