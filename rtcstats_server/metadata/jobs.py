"""The durable upload queue: one job per (session, forwarder), shared by processes.

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

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


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
