"""The upload queue's contract, run against every queue backend on a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rtcstats_server.metadata.jobs import JobQueue, JobState, under_lease
from rtcstats_server.metadata.jobs_mongodb import MongoJobQueue
from rtcstats_server.metadata.jobs_sqlite import SqliteJobQueue
from tests.services import session_stores
from tests.services.collector import wait_until
from tests.services.ferretdb import FerretDB

KINDS = ("sqlite", "ferretdb", *(("mongodb",) if session_stores.real_mongodb_uri() else ()))
F = "rtcstats_com"
T0 = 1_700_000_000.0  # times are passed in: the tests move the clock, they never sleep
LEASE = 30.0


@contextmanager
def queue_factory(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], JobQueue]]:
    if kind == "sqlite":
        yield lambda: SqliteJobQueue(tmp_path / "sessions.sqlite3")
        return
    uri = (
        request.getfixturevalue("ferretdb").uri
        if kind == "ferretdb"
        else session_stores.real_mongodb_uri()
    )
    assert uri is not None
    with session_stores.mongo_collection(uri) as name:
        yield lambda: MongoJobQueue(uri, session_stores.TEST_DATABASE, name)


@pytest.fixture(params=KINDS)
async def queues(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[JobQueue, JobQueue]]:
    """Two queues on the same data: two collector processes sharing the work."""
    with queue_factory(request.param, tmp_path, request) as make:
        first, second = make(), make()
        await first.open()
        await second.open()
        try:
            yield first, second
        finally:
            await first.close()
            await second.close()


async def test_enqueue_is_idempotent(queues: tuple[JobQueue, JobQueue]) -> None:
    queue, other = queues
    assert await queue.enqueue("s1", F, T0)
    assert not await other.enqueue("s1", F, T0 + 1)
    job = await queue.get("s1", F)
    assert job is not None
    assert (job.state, job.attempts, job.next_attempt_at) == (JobState.PENDING, 0, T0)
    assert await queue.get("s1", "webhook") is None


async def test_a_live_lease_is_exclusive_and_an_expired_one_is_taken_over(
    queues: tuple[JobQueue, JobQueue],
) -> None:
    a, b = queues
    await a.enqueue("s1", F, T0)
    job = await a.lease(F, "node-a", T0, LEASE)
    assert job is not None and job.attempts == 1 and job.lease_owner == "node-a"
    assert await b.lease(F, "node-b", T0 + LEASE - 1, LEASE) is None
    assert await a.renew(job, "node-a", T0 + LEASE - 1, LEASE)  # now live until T0+2*LEASE-1
    assert await b.lease(F, "node-b", T0 + LEASE + 1, LEASE) is None
    # node-a dies; its lease runs out and node-b takes the job over.
    taken = await b.lease(F, "node-b", T0 + 2 * LEASE, LEASE)
    assert taken is not None and taken.attempts == 2 and taken.lease_owner == "node-b"
    assert not await a.renew(job, "node-a", T0 + 2 * LEASE + 1, LEASE)
    assert not await a.complete(job, "node-a", T0 + 2 * LEASE + 1, {"rtcstats_id": "late"})
    assert await b.complete(taken, "node-b", T0 + 2 * LEASE + 2, {"rtcstats_id": "x"})
    done = await a.get("s1", F)
    assert done is not None
    assert (done.state, done.result, done.lease_owner) == (
        JobState.UPLOADED,
        {"rtcstats_id": "x"},
        None,
    )
    assert await a.lease(F, "node-a", T0 + 10 * LEASE, LEASE) is None


async def test_retry_waits_for_its_time(queues: tuple[JobQueue, JobQueue]) -> None:
    queue, _ = queues
    await queue.enqueue("s1", F, T0)
    job = await queue.lease(F, "n", T0, LEASE)
    assert job is not None
    assert await queue.retry(job, "n", T0 + 1, T0 + 60, "http_500: boom")
    assert await queue.lease(F, "n", T0 + 59, LEASE) is None
    again = await queue.lease(F, "n", T0 + 60, LEASE)
    assert again is not None
    assert (again.attempts, again.last_error) == (2, "http_500: boom")


async def test_failed_jobs_stay_failed_until_forced(queues: tuple[JobQueue, JobQueue]) -> None:
    queue, _ = queues
    await queue.enqueue("s1", F, T0)
    job = await queue.lease(F, "n", T0, LEASE)
    assert job is not None
    assert await queue.fail(job, "n", T0 + 1, "no_credits: out of credits")
    assert await queue.lease(F, "n", T0 + 1000, LEASE) is None
    assert not await queue.enqueue("s1", F, T0 + 2)  # not without force
    assert await queue.enqueue("s1", F, T0 + 3, force=True)
    rearmed = await queue.get("s1", F)
    assert rearmed is not None
    assert (rearmed.state, rearmed.attempts, rearmed.last_error) == (JobState.PENDING, 0, None)
    running = await queue.lease(F, "n", T0 + 3, LEASE)
    assert running is not None
    assert not await queue.enqueue("s1", F, T0 + 4, force=True)  # never under a live lease


async def test_release_and_only(queues: tuple[JobQueue, JobQueue]) -> None:
    queue, _ = queues
    await queue.enqueue("old", F, T0)
    await queue.enqueue("new", F, T0 + 1)
    job = await queue.lease(F, "n", T0 + 2, LEASE, only={"new"})
    assert job is not None and job.session_id == "new"
    assert await queue.lease(F, "n", T0 + 2, LEASE, only={"new"}) is None
    assert await queue.release(job, "n", T0 + 3)
    counts = await queue.counts(F)
    assert counts[JobState.PENDING] == 2 and counts[JobState.UPLOADING] == 0
    first = await queue.lease(F, "n", T0 + 3, LEASE)
    assert first is not None and first.session_id == "old"  # most overdue first


async def test_racing_processes_lease_each_job_once(queues: tuple[JobQueue, JobQueue]) -> None:
    a, b = queues
    ids = [f"s{n:02d}" for n in range(30)]
    for session_id in ids:
        await a.enqueue(session_id, F, T0)
    taken: list[str] = []

    async def worker(queue: JobQueue, owner: str) -> None:
        while (job := await queue.lease(F, owner, T0 + 1, LEASE)) is not None:
            taken.append(job.session_id)

    await asyncio.gather(*(worker(q, f"{q.name}-{n}") for n in range(4) for q in (a, b)))
    assert sorted(taken) == ids  # every job once, none twice
    assert (await a.counts(F))[JobState.UPLOADING] == len(ids)


async def test_a_stale_read_does_not_lease_a_finished_job_again(
    queues: tuple[JobQueue, JobQueue],
) -> None:
    """A process slowed down between reading the due job and claiming it (load) must
    not take a job that another process leased, uploaded and completed meanwhile: the
    finished job's claims are deleted, so the claim alone would let it upload twice."""
    a, b = queues
    if not isinstance(b, MongoJobQueue):
        pytest.skip("SQLite leases in one statement: there is no read to go stale")
    await a.enqueue("s1", F, T0)
    query = {"forwarder": F, "state": JobState.PENDING.value}
    stale = await b._candidate(query)  # what the slow process saw
    assert stale is not None
    job = await a.lease(F, "node-a", T0, LEASE)
    assert job is not None
    assert await a.complete(job, "node-a", T0 + 1, {"rtcstats_id": "x"})
    assert await b._claim(stale, "node-b", T0 + 2, LEASE) is None
    done = await a.get("s1", F)
    assert done is not None
    assert (done.state, done.lease_owner, done.attempts) == (JobState.UPLOADED, None, 1)
    # Re-armed by hand, it is leased again (a later lease number), once.
    assert await a.enqueue("s1", F, T0 + 3, force=True)
    assert await b._claim(stale, "node-b", T0 + 4, LEASE) is None
    again = await b.lease(F, "node-b", T0 + 4, LEASE)
    assert again is not None and again.lease_owner == "node-b"
    assert await a.lease(F, "node-a", T0 + 4, LEASE) is None


async def test_a_renewal_the_database_cannot_answer_does_not_cut_the_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database away for a moment mid-upload: the lease we hold is still ours
    until it expires, so the upload goes on. Cutting it (as before) could abandon an
    upload whose final call had already landed, and its retry sent the session twice."""
    with FerretDB(tmp_path / "ferretdb") as server:
        queue = MongoJobQueue(server.uri, session_stores.TEST_DATABASE, "jobs")
        await queue.open()
        try:
            await queue.enqueue("s1", F, T0)
            job = await queue.lease(F, "node-a", T0, LEASE)
            assert job is not None
            upload_done = asyncio.Event()

            async def upload() -> str:
                await upload_done.wait()
                return "uploaded"

            # Renewed every 0.1 s of real time; the clock stays at T0, inside the lease.
            working = asyncio.create_task(
                under_lease(queue, job, "node-a", 0.3, lambda: T0, upload())
            )
            await asyncio.to_thread(server.stop)
            await wait_until(
                lambda: working.done() or "lease not renewed" in caplog.text,
                30,
                "a renewal to fail",
            )
            assert not working.done()
            await asyncio.to_thread(server.start)
            upload_done.set()
            assert await asyncio.wait_for(working, 30) == "uploaded"
            assert await queue.complete(job, "node-a", T0 + 1, {"rtcstats_id": "x"})
        finally:
            await queue.close()


async def test_an_orphaned_claim_does_not_block_the_job(
    queues: tuple[JobQueue, JobQueue],
) -> None:
    """A claim whose job write was lost (FerretDB lets a concurrent write of the same
    document undo it) left the job's lease number behind: every later lease tried
    that number again and the job was never uploaded. A claim older than a lease is
    passed over."""
    a, _ = queues
    if not isinstance(a, MongoJobQueue):
        pytest.skip("SQLite leases without claims")
    await a.enqueue("s1", F, T0)
    await a.claims.insert_one({"_id": f"{F}:s1#1", "job": f"{F}:s1", "owner": "x", "at": T0})
    assert await a.lease(F, "node-a", T0 + LEASE / 2, LEASE) is None  # may be mid-claim
    job = await a.lease(F, "node-a", T0 + 2 * LEASE, LEASE)
    assert job is not None and job.lease_owner == "node-a" and job.attempts == 1
    assert await a.lease(F, "node-b", T0 + 2 * LEASE, LEASE) is None
    assert await a.complete(job, "node-a", T0 + 2 * LEASE + 1, {"rtcstats_id": "x"})
