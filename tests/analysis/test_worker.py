"""The analysis step (analysis/worker.py) on the durable, leased job queue: a job is
only a session id; a worker that dies holding one delays it until its lease expires
and then another takes it; a job whose record is not there yet waits and is retried.

Real parts: the embedded store and job table (SQLite), the local dump store, a real
dump. Time is the queue's clock, moved by the test (the lease is LEASE_S long).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rtcstats_server.analysis.worker import ANALYSIS, LEASE_S, Analysis
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.codecs import compress_frame
from rtcstats_server.metadata.embedded import EmbeddedSessionStore
from rtcstats_server.metadata.jobs import JobState
from rtcstats_server.metadata.jobs_sqlite import SqliteJobQueue
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import dump_key
from rtcstats_server.storage.local import LocalDumpStore

SESSION = "a" * 32
STARTED = datetime(2025, 1, 1, tzinfo=UTC)
NOW = 1_000_000.0


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Bed:
    records: EmbeddedSessionStore
    dumps: LocalDumpStore
    metrics: Metrics
    clock: Clock
    path: Path

    def analysis(self, node: str) -> Analysis:
        queue = SqliteJobQueue(self.path)
        return Analysis(
            QualityConfig(), queue, self.records, self.dumps, self.metrics, node, self.clock
        )


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    path = tmp_path / "sessions.sqlite3"
    records = EmbeddedSessionStore(path)
    dumps = LocalDumpStore(tmp_path / "dumps")
    await records.open()
    await dumps.open()
    try:
        yield Bed(records, dumps, Metrics(), Clock(), path)
    finally:
        await records.close()


async def store_session(bed: Bed, fixtures_dir: Path, tmp_path: Path) -> str:
    """A stored session (dump and final record), as the finish leaves it."""
    source = fixtures_dir / "real" / "jitsi-chrome-standard-pc-failed.jsonl"
    staged = tmp_path / "staged.zst"
    staged.write_bytes(compress_frame(source.read_bytes(), 3))
    stored = await bed.dumps.put(dump_key(SESSION, STARTED), staged)
    await bed.records.upsert(
        SESSION, {"state": "stored", "started_at": STARTED, **stored.record_fields()}
    )
    return stored.key


async def test_a_job_held_by_a_dead_worker_is_taken_over_after_its_lease(
    bed: Bed, fixtures_dir: Path, tmp_path: Path
) -> None:
    key = await store_session(bed, fixtures_dir, tmp_path)
    first, second = bed.analysis("node-a"), bed.analysis("node-b")
    await first.start(runners=0)
    await second.start(runners=0)
    try:
        await first.stored({"id": SESSION, "dump_key": key})
        await first.stored({"id": SESSION, "dump_key": key})  # a retried finish: one job
        # node-a takes the job and dies with it (nothing ever completes it).
        assert await first.queue.lease(ANALYSIS, first.owner, bed.clock(), LEASE_S) is not None
        assert not await second.run_once()  # leased: nobody else may run it
        record = await bed.records.get(SESSION)
        assert record is not None and record.get("quality") is None

        bed.clock.now += LEASE_S + 1  # the lease runs out
        assert await second.run_once()
        job = await second.queue.get(SESSION, ANALYSIS)
        assert job is not None and (job.state, job.attempts) == (JobState.UPLOADED, 2)
        record = await bed.records.get(SESSION)
        assert record is not None
        assert record["pc_count"] == 3 and "connection_failed" in record["findings"]
        assert record["quality"]["peer_connections"][0]["pc_id"] == "PC_0"
        assert record["state"] == "stored" and record["dump_key"] == key  # the rest as it was
        assert not await second.run_once()  # done: nothing left
    finally:
        await first.stop()
        await second.stop()


async def test_a_job_before_its_record_waits_for_it(
    bed: Bed, fixtures_dir: Path, tmp_path: Path
) -> None:
    """The finish queues after the record is written, but a record write may wait in
    the metadata spool (a database outage): the job is retried, not lost."""
    analysis = bed.analysis("node-a")
    await analysis.start(runners=0)
    try:
        await analysis.stored({"id": SESSION, "dump_key": "2025/01/01/x.rtcstats.zst"})
        assert await analysis.run_once()
        job = await analysis.queue.get(SESSION, ANALYSIS)
        assert job is not None and job.state is JobState.PENDING
        assert job.next_attempt_at > bed.clock() and "NotFound" in (job.last_error or "")
        assert not await analysis.run_once()  # not due yet

        await store_session(bed, fixtures_dir, tmp_path)
        bed.clock.now = job.next_attempt_at
        assert await analysis.run_once()
        record = await bed.records.get(SESSION)
        assert record is not None and record["pc_count"] == 3
    finally:
        await analysis.stop()


async def test_nothing_is_queued_when_the_summary_is_off(bed: Bed) -> None:
    analysis = Analysis(
        QualityConfig(enabled=False),
        SqliteJobQueue(bed.path),
        bed.records,
        bed.dumps,
        bed.metrics,
        "node-a",
        bed.clock,
    )
    await analysis.start(runners=0)
    try:
        await analysis.stored({"id": SESSION, "dump_key": "2025/01/01/x.rtcstats.zst"})
        assert await analysis.queue.get(SESSION, ANALYSIS) is None
    finally:
        await analysis.stop()
