"""The upload queue as a table in the embedded store's SQLite file.

Several collector processes may share the file (WAL mode, busy timeout): leasing is
one ``UPDATE … WHERE rowid = (SELECT …) RETURNING``, atomic in SQLite, and every
later transition repeats the owner and lease check in its ``WHERE``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import orjson

from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.jobs import Job, JobState
from rtcstats_server.metadata.sqlite import SqliteThread, changed_rows, open_sqlite, retry_locked

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS forward_jobs (
        session_id TEXT NOT NULL,
        forwarder TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        lease_owner TEXT,
        lease_expires REAL,
        last_error TEXT,
        result TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (session_id, forwarder)
    )""",
    "CREATE INDEX IF NOT EXISTS forward_jobs_due ON forward_jobs "
    "(forwarder, state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS forward_jobs_lease ON forward_jobs "
    "(forwarder, state, lease_expires)",
]

_COLUMNS = (
    "session_id, forwarder, state, attempts, next_attempt_at, lease_owner, lease_expires, "
    "last_error, result, created_at, updated_at"
)

#: Condition of every transition out of ``uploading``: we still hold a live lease.
_OWNED = "session_id = ? AND forwarder = ? AND state = 'uploading' AND lease_owner = ?"


def _job(row: Iterable[Any]) -> Job:
    values = list(row)
    result = values[8]
    return Job(
        session_id=values[0],
        forwarder=values[1],
        state=JobState(values[2]),
        attempts=int(values[3]),
        next_attempt_at=float(values[4]),
        lease_owner=values[5],
        lease_expires=values[6],
        last_error=values[7],
        result=orjson.loads(result) if result else None,
        created_at=float(values[9]),
        updated_at=float(values[10]),
    )


class SqliteJobQueue:
    """Every operation is one statement, run with its fetch as one function on the
    connection's thread (``SqliteThread``): one thread hop each."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: SqliteThread | None = None

    @property
    def db(self) -> SqliteThread:
        if self._db is None:
            raise StoreUnavailable("upload queue is not open")
        return self._db

    async def open(self) -> None:
        self._db = await open_sqlite(self.path, _SCHEMA, "sqlite-jobs")

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def _change(self, sql: str, params: Iterable[Any]) -> int:
        values = tuple(params)
        db = self.db
        return await retry_locked(lambda: db.run(changed_rows(sql, values)))

    async def enqueue(
        self, session_id: str, forwarder: str, now: float, *, force: bool = False
    ) -> bool:
        created = await self._change(
            f"INSERT INTO forward_jobs ({_COLUMNS}) "
            "VALUES (?, ?, 'pending', 0, ?, NULL, NULL, NULL, NULL, ?, ?) "
            "ON CONFLICT (session_id, forwarder) DO NOTHING",
            (session_id, forwarder, now, now, now),
        )
        if created or not force:
            return created > 0
        rearmed = await self._change(
            "UPDATE forward_jobs SET state = 'pending', attempts = 0, next_attempt_at = ?, "
            "lease_owner = NULL, lease_expires = NULL, last_error = NULL, updated_at = ? "
            "WHERE session_id = ? AND forwarder = ? "
            "AND NOT (state = 'uploading' AND lease_expires > ?)",
            (now, now, session_id, forwarder, now),
        )
        return rearmed > 0

    async def lease(
        self,
        forwarder: str,
        owner: str,
        now: float,
        lease_s: float,
        only: Collection[str] | None = None,
    ) -> Job | None:
        among = ""
        params: list[Any] = [owner, now + lease_s, now, forwarder, now, now]
        if only is not None:
            if not only:
                return None
            among = f" AND session_id IN ({','.join('?' for _ in only)})"
            params += list(only)
        sql = (
            "UPDATE forward_jobs SET state = 'uploading', lease_owner = ?, lease_expires = ?, "
            "attempts = attempts + 1, updated_at = ? "
            "WHERE rowid = (SELECT rowid FROM forward_jobs WHERE forwarder = ? AND ("
            "(state = 'pending' AND next_attempt_at <= ?) OR "
            f"(state = 'uploading' AND lease_expires <= ?)){among} "
            "ORDER BY next_attempt_at LIMIT 1) "
            f"RETURNING {_COLUMNS}"
        )

        db = self.db
        row = await retry_locked(lambda: db.run(lambda c: c.execute(sql, params).fetchone()))
        return _job(row) if row is not None else None

    async def renew(self, job: Job, owner: str, now: float, lease_s: float) -> bool:
        return (
            await self._change(
                f"UPDATE forward_jobs SET lease_expires = ?, updated_at = ? WHERE {_OWNED} "
                "AND lease_expires > ?",
                (now + lease_s, now, job.session_id, job.forwarder, owner, now),
            )
            > 0
        )

    async def _finish(self, job: Job, owner: str, now: float, sets: str, values: list[Any]) -> bool:
        # A transition needs the lease we took, still live or at least not taken over:
        # another owner's lease means our answer is no longer the job's.
        return (
            await self._change(
                f"UPDATE forward_jobs SET {sets}, lease_owner = NULL, lease_expires = NULL, "
                f"updated_at = ? WHERE {_OWNED}",
                (*values, now, job.session_id, job.forwarder, owner),
            )
            > 0
        )

    async def complete(self, job: Job, owner: str, now: float, result: dict[str, Any]) -> bool:
        return await self._finish(
            job,
            owner,
            now,
            "state = 'uploaded', last_error = NULL, result = ?",
            [orjson.dumps(result).decode()],
        )

    async def retry(
        self, job: Job, owner: str, now: float, next_attempt_at: float, error: str
    ) -> bool:
        return await self._finish(
            job,
            owner,
            now,
            "state = 'pending', next_attempt_at = ?, last_error = ?",
            [next_attempt_at, error],
        )

    async def fail(self, job: Job, owner: str, now: float, error: str) -> bool:
        return await self._finish(job, owner, now, "state = 'failed', last_error = ?", [error])

    async def release(self, job: Job, owner: str, now: float) -> bool:
        return await self._finish(job, owner, now, "state = 'pending', next_attempt_at = ?", [now])

    async def get(self, session_id: str, forwarder: str) -> Job | None:
        sql = f"SELECT {_COLUMNS} FROM forward_jobs WHERE session_id = ? AND forwarder = ?"
        row = await self.db.run(lambda c: c.execute(sql, (session_id, forwarder)).fetchone())
        return _job(row) if row is not None else None

    async def counts(self, forwarder: str) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        sql = "SELECT state, COUNT(*) FROM forward_jobs WHERE forwarder = ? GROUP BY state"
        rows = await self.db.run(lambda c: c.execute(sql, (forwarder,)).fetchall())
        for state, count in rows:
            counts[JobState(state)] = int(count)
        return counts
