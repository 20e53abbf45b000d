"""Analysis worker processes (analysis/processes.py) on the real queues, SQLite and
MongoDB (FerretDB): a worker SIGKILLed while it holds a job loses nothing (the pool
starts another, which takes the job once its lease ran out), and SIGTERM gives a
held job back at once.

The dump is a FIFO in the local dump store: a worker that takes the job blocks
reading it until the test writes the dump, so "killed mid-job" is a fact, not a race.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.analysis.processes import WorkerPool, available_cpus, worker_count
from rtcstats_server.analysis.worker import ANALYSIS
from rtcstats_server.config import AnalysisConfig, Config, build_config
from rtcstats_server.dumps.codecs import compress_frame
from rtcstats_server.metadata.factory import make_job_queue, make_session_store
from rtcstats_server.metadata.jobs import Job, JobQueue, JobState
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import dump_key
from tests.services import session_stores
from tests.services.cli import cli_env
from tests.services.ferretdb import FerretDB

SESSION = "b" * 32
STARTED = datetime(2025, 1, 1, tzinfo=UTC)
LEASE_S = 2.0


@pytest.fixture(params=["embedded", "ferretdb"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    analysis = {"workers": 1, "lease_s": LEASE_S, "poll_interval_s": 0.2}
    data = {"server": {"data_dir": str(tmp_path / "data")}, "analysis": analysis}
    if request.param == "embedded":
        yield build_config(data, environ={})
        return
    ferretdb: FerretDB = request.getfixturevalue("ferretdb")
    with session_stores.mongo_collection(ferretdb.uri) as collection:
        metadata = {
            "backend": "mongodb",
            "uri": ferretdb.uri,
            "database": session_stores.TEST_DATABASE,
            "collection": collection,
        }
        yield build_config({**data, "metadata": metadata}, environ={})


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if value := await check():
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


@asynccontextmanager
async def stored_fifo_session(config: Config) -> AsyncIterator[tuple[Path, JobQueue]]:
    """A stored session whose dump is a FIFO, its analysis job queued."""
    key = dump_key(SESSION, STARTED)
    fifo = config.dumps_dir / key
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    records = make_session_store(config, spool=False)
    await records.open()
    queue = make_job_queue(config)
    await queue.open()
    try:
        await records.upsert(SESSION, {"state": "stored", "started_at": STARTED, "dump_key": key})
        assert await queue.enqueue(SESSION, ANALYSIS, time.time())
        yield fifo, queue
    finally:
        await queue.close()
        await records.close()


def feed(fifo: Path, dump: bytes) -> None:
    """Blocks until a worker opens the FIFO, then hands it the dump."""
    with fifo.open("wb") as handle:
        handle.write(dump)


async def job_in(queue: JobQueue, state: JobState, attempts: int) -> Job | None:
    job = await queue.get(SESSION, ANALYSIS)
    return job if job and job.state is state and job.attempts == attempts else None


async def test_a_worker_killed_mid_job_loses_nothing(config: Config, fixtures_dir: Path) -> None:
    source = fixtures_dir / "real" / "jitsi-chrome-standard-pc-failed.jsonl"
    dump = compress_frame(source.read_bytes(), 3)
    metrics = Metrics()
    pool = WorkerPool(config, "test-node", 1, metrics)
    async with stored_fifo_session(config) as (fifo, queue):
        await pool.start()
        try:
            pool.wake()
            taken = await until(
                lambda: job_in(queue, JobState.UPLOADING, 1), "the first worker takes the job"
            )
            (first_pid,) = pool.pids
            assert first_pid is not None and "/analysis-0-0/" in str(taken.lease_owner)
            os.kill(first_pid, signal.SIGKILL)  # blocked reading the dump: mid-job

            async def restarted() -> bool:
                (pid,) = pool.pids
                return pid != first_pid and pool.workers[0].process.is_alive()

            await until(restarted, "the pool starts a new worker")
            # The job stays with the dead worker until its lease runs out, then the new
            # worker takes it (a second attempt) and reads the dump.
            retaken = await until(
                lambda: job_in(queue, JobState.UPLOADING, 2), "the new worker takes the job"
            )
            assert retaken.lease_owner != taken.lease_owner
            assert retaken.updated_at >= taken.lease_expires
            await asyncio.to_thread(feed, fifo, dump)
            done = await until(
                lambda: job_in(queue, JobState.UPLOADED, 2), "the new worker finishes"
            )
            assert done.last_error is None
        finally:
            await pool.stop()
        records = make_session_store(config, spool=False)
        await records.open()
        try:
            record = await records.get(SESSION)
        finally:
            await records.close()
    assert record is not None and record["pc_count"] == 3
    assert "connection_failed" in record["findings"]
    assert record["features"]["connections"][0]["id"] == "PC_0"
    assert metrics.analyses.labels("done")._value.get() == 1  # counted in the pool
    assert metrics.analysis_worker_restarts._value.get() == 1


async def test_sigterm_gives_the_job_back(config: Config) -> None:
    """A worker stopped (SIGTERM) mid-job releases it, due now: no lease to wait out."""
    pool = WorkerPool(config, "test-node", 1, Metrics())
    async with stored_fifo_session(config) as (_fifo, queue):
        await pool.start()
        try:
            pool.wake()
            await until(lambda: job_in(queue, JobState.UPLOADING, 1), "a worker takes the job")
        finally:
            await pool.stop()
        job = await queue.get(SESSION, ANALYSIS)
    assert job is not None and job.state is JobState.PENDING and job.lease_owner is None
    assert job.next_attempt_at <= time.time()


def test_the_default_worker_count_follows_the_usable_cpus() -> None:
    """Unset: one fewer than the CPUs this process may use (at least 1); 0 stays 0."""
    usable = available_cpus()
    assert 1 <= usable <= (os.cpu_count() or 1)
    assert usable <= len(os.sched_getaffinity(0))
    assert worker_count(AnalysisConfig()) == max(1, usable - 1)
    assert worker_count(AnalysisConfig(workers=3)) == 3
    assert worker_count(AnalysisConfig(workers=0)) == 0


EMBEDDED = """
import asyncio, sys
from rtcstats_server.analysis.processes import WorkerPool
from rtcstats_server.config import build_config
from rtcstats_server.metrics import Metrics

async def main():
    config = build_config({"server": {"data_dir": sys.argv[1]}}, environ={})
    metrics = Metrics()
    pool = WorkerPool(config, "embedded", 1, metrics)
    await pool.start()
    await asyncio.sleep(3)
    alive = pool.workers[0].process.is_alive()
    await pool.stop()
    print(alive, metrics.analysis_worker_restarts._value.get())

asyncio.run(main())
"""


async def test_workers_start_from_a_main_that_cannot_be_run_again(tmp_path: Path) -> None:
    """The parent's ``__main__`` is not run again in a worker: here it is code read from
    stdin, which a spawned child could not even find (it would die, again and again)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-",
        str(tmp_path / "data"),
        env=cli_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(EMBEDDED.encode()), 60)
    assert process.returncode == 0, err.decode()
    assert out.decode().split() == ["True", "0.0"], err.decode()
