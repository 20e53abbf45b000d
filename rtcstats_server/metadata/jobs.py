"""The durable job queue: one job per (session, worker), shared by processes.

Workers are the forwarders (named by ``Forwarder.name``) and the analysis
(``analysis``). The states are named after the first user, uploads: for the analysis
``uploading`` means running and ``uploaded`` done.

    pending ──lease──▶ uploading ──▶ uploaded
       ▲                   │    └──▶ failed
       └── retry/release ──┘

A worker leases a due job (pending and due, or uploading with an expired lease),
which counts an attempt and names the owner until ``lease_expires``. Every later
transition is conditional on still owning a live lease, so two processes never
finish the same job, and a process that died mid-upload only delays its jobs until
their lease expires. Times are epoch seconds (wall clock: shared between hosts),
passed in by the caller so tests can move time without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from rtcstats_server.exceptions import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class JobState(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    session_id: str
    forwarder: str
    state: JobState
    attempts: int
    next_attempt_at: float
    lease_owner: str | None
    lease_expires: float | None
    last_error: str | None
    result: dict[str, Any] | None
    created_at: float
    updated_at: float


class JobQueue(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def enqueue(
        self, session_id: str, forwarder: str, now: float, *, force: bool = False
    ) -> bool:
        """Create a pending job; True if one was created or, with ``force``, re-armed.

        Without ``force`` an existing job is left alone (enqueueing is idempotent).
        With ``force`` a finished or waiting job starts over (attempts 0, due now);
        a job under a live lease is never touched.
        """

    async def lease(
        self,
        forwarder: str,
        owner: str,
        now: float,
        lease_s: float,
        only: Collection[str] | None = None,
    ) -> Job | None:
        """Atomically take the most overdue job (optionally among ``only`` sessions)."""

    async def renew(self, job: Job, owner: str, now: float, lease_s: float) -> bool:
        """Extend a live lease; False when it was lost (then the upload must stop)."""

    async def complete(self, job: Job, owner: str, now: float, result: dict[str, Any]) -> bool: ...

    async def retry(
        self, job: Job, owner: str, now: float, next_attempt_at: float, error: str
    ) -> bool: ...

    async def fail(self, job: Job, owner: str, now: float, error: str) -> bool: ...

    async def release(self, job: Job, owner: str, now: float) -> bool:
        """Give a leased job back, due now (a clean shutdown mid-upload)."""

    async def get(self, session_id: str, forwarder: str) -> Job | None: ...

    async def counts(self, forwarder: str) -> dict[JobState, int]: ...


class LeaseLost(Exception):
    """Our lease on a job was taken over while we worked on it."""


async def under_lease(
    queue: JobQueue,
    job: Job,
    owner: str,
    lease_s: float,
    clock: Callable[[], float],
    work: Coroutine[Any, Any, T],
) -> T:
    """Run ``work`` while renewing the lease on ``job`` every third of ``lease_s``.

    LeaseLost (and ``work`` cancelled) as soon as a renewal says the lease is no longer
    ours: another process holds the job now, and two must never finish it. A renewal
    that could not be asked (the database slow or away for a moment) is not a lost
    lease: the lease we hold runs until its expiry whatever the database answers, so
    the work goes on and the next renewal tries again. Cancelling there used to cut an
    upload whose final call may already have landed, and the retry sent it again.
    Only once the lease has run out unrenewed is the work given up (LeaseLost).
    """
    task = asyncio.ensure_future(work)
    period = lease_s / 3
    expires = job.lease_expires if job.lease_expires is not None else clock() + lease_s
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=period)
            if done:
                return task.result()
            now = clock()
            try:
                renewed = await queue.renew(job, owner, now, lease_s)
            except (StoreUnavailable, sqlite3.OperationalError) as exc:
                if clock() < expires:
                    log.warning(
                        "job %s/%s: lease not renewed (%s); live until its expiry, trying again",
                        job.forwarder,
                        job.session_id,
                        exc,
                    )
                    continue
                raise LeaseLost from exc
            if not renewed:
                raise LeaseLost
            expires = now + lease_s
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def backoff_s(
    attempts: int, base: float, ceiling: float, retry_after: float | None = None
) -> float:
    """Exponential in the attempts made, with jitter so that many processes that
    failed together do not come back together."""
    delay = min(ceiling, base * 2 ** max(attempts - 1, 0))
    delay = random.uniform(delay / 2, delay)
    if retry_after is not None:
        delay = max(delay, min(retry_after, ceiling))
    return delay
