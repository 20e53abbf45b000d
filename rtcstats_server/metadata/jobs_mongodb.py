"""The upload queue as a MongoDB collection beside the session records.

Collection ``<metadata.collection>_jobs``, one document per (session, forwarder)
with ``_id`` ``"<forwarder>:<session id>"``. Leasing is one ``find_one_and_update``
(atomic on one document), every later transition is an ``update_one`` whose filter
repeats the owner check, so processes on different hosts share the work safely.
Times are BSON dates (readable by backends); ``now`` values are epoch seconds. A
database that does not answer raises StoreUnavailable (also at open: the indexes are
made once it answers), so a collector starts and ingests through an outage.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.jobs import Job, JobState
from rtcstats_server.metadata.mongodb import unavailable_on_outage

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _on_outage(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """A database that does not answer is StoreUnavailable, as for the session store."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        with unavailable_on_outage():
            return await method(*args, **kwargs)

    return guarded


#: Lost races in a row before lease() gives up until the next poll.
_LEASE_TRIES = 8


def _date(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return when.timestamp()
    return float(value)


def _job(doc: dict[str, Any]) -> Job:
    expires = doc.get("lease_expires")
    return Job(
        session_id=doc["session_id"],
        forwarder=doc["forwarder"],
        state=JobState(doc["state"]),
        attempts=int(doc.get("attempts", 0)),
        next_attempt_at=_seconds(doc["next_attempt_at"]),
        lease_owner=doc.get("lease_owner"),
        lease_expires=_seconds(expires) if expires is not None else None,
        last_error=doc.get("last_error"),
        result=doc.get("result"),
        created_at=_seconds(doc["created_at"]),
        updated_at=_seconds(doc["updated_at"]),
    )


class MongoJobQueue:
    name = "mongodb"

    def __init__(self, uri: str, database: str, collection: str) -> None:
        self.uri = uri
        self.database = database
        self.collection_name = collection
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._jobs: AsyncCollection[dict[str, Any]] | None = None
        self._claims: AsyncCollection[dict[str, Any]] | None = None
        self._indexed = False

    @classmethod
    def from_config(cls, metadata: Any) -> MongoJobQueue:
        """Shares ``metadata.uri`` / ``database``; the collection is ``<collection>_jobs``."""
        uri = metadata.uri
        uri = uri.get_secret_value() if hasattr(uri, "get_secret_value") else str(uri)
        collection = str(getattr(metadata, "collection", "sessions"))
        return cls(uri, str(metadata.database), f"{collection}_jobs")

    @property
    def jobs(self) -> AsyncCollection[dict[str, Any]]:
        if self._jobs is None:
            raise StoreUnavailable("upload queue is not open")
        return self._jobs

    @property
    def claims(self) -> AsyncCollection[dict[str, Any]]:
        if self._claims is None:
            raise StoreUnavailable("upload queue is not open")
        return self._claims

    async def open(self) -> None:
        self._client = AsyncMongoClient(self.uri, tz_aware=True, serverSelectionTimeoutMS=5000)
        self._jobs = self._client[self.database][self.collection_name]
        self._claims = self._client[self.database][f"{self.collection_name}_claims"]
        try:
            await self._ensure_indexes()
        except StoreUnavailable as exc:
            log.warning("job queue: indexes made once the database answers: %s", exc)

    async def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        try:
            await self.jobs.create_index(
                [("forwarder", ASCENDING), ("state", ASCENDING), ("next_attempt_at", ASCENDING)],
                name="due",
            )
            await self.jobs.create_index(
                [("forwarder", ASCENDING), ("state", ASCENDING), ("lease_expires", ASCENDING)],
                name="lease",
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"job queue: {exc}") from exc
        self._indexed = True

    async def close(self) -> None:
        if self._client is not None:
            client, self._client, self._jobs, self._claims = self._client, None, None, None
            await client.close()

    @_on_outage
    async def enqueue(
        self, session_id: str, forwarder: str, now: float, *, force: bool = False
    ) -> bool:
        await self._ensure_indexes()
        key = f"{forwarder}:{session_id}"
        when = _date(now)
        try:
            await self.jobs.insert_one(
                {
                    "_id": key,
                    "session_id": session_id,
                    "forwarder": forwarder,
                    "state": JobState.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": when,
                    "lease_owner": None,
                    "lease_expires": None,
                    "last_error": None,
                    "result": None,
                    "created_at": when,
                    "updated_at": when,
                }
            )
            return True
        except DuplicateKeyError:
            if not force:
                return False
        outcome = await self.jobs.update_one(
            {
                "_id": key,
                "$nor": [{"state": JobState.UPLOADING.value, "lease_expires": {"$gt": when}}],
            },
            {
                "$set": {
                    "state": JobState.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": when,
                    "lease_owner": None,
                    "lease_expires": None,
                    "last_error": None,
                    "updated_at": when,
                }
            },
        )
        return outcome.modified_count > 0

    @_on_outage
    async def lease(
        self,
        forwarder: str,
        owner: str,
        now: float,
        lease_s: float,
        only: Collection[str] | None = None,
    ) -> Job | None:
        await self._ensure_indexes()
        when = _date(now)
        query: dict[str, Any] = {
            "forwarder": forwarder,
            "$or": [
                {"state": JobState.PENDING.value, "next_attempt_at": {"$lte": when}},
                {"state": JobState.UPLOADING.value, "lease_expires": {"$lte": when}},
            ],
        }
        if only is not None:
            if not only:
                return None
            query["session_id"] = {"$in": list(only)}
        # Not find_one_and_update: FerretDB (our test server) runs findAndModify, and
        # conditional updates, as a read then a write, so two racing processes could
        # both win. Inserting a claim with a unique _id (job, lease number) is atomic
        # on every server: exactly one process wins each lease.
        for _ in range(_LEASE_TRIES):
            seen = await self._candidate(query)
            if seen is None:
                return None
            job = await self._claim(seen, owner, now, lease_s)
            if job is not None:
                return job
        return None

    async def _candidate(self, query: dict[str, Any]) -> dict[str, Any] | None:
        """The most overdue job as read now (it may be leased by others before we claim)."""
        return await self.jobs.find_one(query, sort=[("next_attempt_at", ASCENDING)])

    async def _claim(
        self, seen: dict[str, Any], owner: str, now: float, lease_s: float
    ) -> Job | None:
        """Take the lease after the one ``seen`` had; None when another process did.

        The unique claim settles a race between processes that read the same lease
        number. It does not settle a stale read: the claims of a finished job are
        deleted, so a process that read the job before another leased, uploaded and
        completed it could insert the same claim again and upload the session twice
        (seen once under load on FerretDB). The job document is therefore taken only
        if it still holds the lease number and the due state that were read; otherwise
        the claim is withdrawn.

        A claim whose job never took its number (the claimer's job write lost to a
        concurrent write of the same document, which FerretDB allows) would block the
        job for good; one older than a lease is passed over with the next number.
        """
        number = int(seen.get("leases", 0)) + 1
        while True:
            claim = {
                "_id": f"{seen['_id']}#{number}",
                "job": seen["_id"],
                "owner": owner,
                "at": now,
            }
            try:
                await self.claims.insert_one(claim)
                break
            except DuplicateKeyError:
                held = await self.claims.find_one({"_id": claim["_id"]})
                if held is None or not now - float(held.get("at", now)) > lease_s:
                    return None  # another process took this lease first: look again
                number += 1  # an orphan: its claimer never took the job
        when = _date(now)
        fields = {
            "state": JobState.UPLOADING.value,
            "lease_owner": owner,
            "lease_expires": _date(now + lease_s),
            "updated_at": when,
            "attempts": int(seen["attempts"]) + 1,
            "leases": number,
        }
        unchanged: dict[str, Any] = {
            "_id": seen["_id"],
            "state": seen["state"],
            "leases": seen["leases"] if "leases" in seen else {"$exists": False},
            "$or": [
                {"state": JobState.PENDING.value, "next_attempt_at": {"$lte": when}},
                {"state": JobState.UPLOADING.value, "lease_expires": {"$lte": when}},
            ],
        }
        outcome = await self.jobs.update_one(unchanged, {"$set": fields})
        if outcome.matched_count == 0:
            await self.claims.delete_one({"_id": claim["_id"], "owner": owner})
            return None
        return _job({**seen, **fields})

    def _owned(self, job: Job, owner: str) -> dict[str, Any]:
        return {
            "_id": f"{job.forwarder}:{job.session_id}",
            "state": JobState.UPLOADING.value,
            "lease_owner": owner,
        }

    @_on_outage
    async def renew(self, job: Job, owner: str, now: float, lease_s: float) -> bool:
        query = {**self._owned(job, owner), "lease_expires": {"$gt": _date(now)}}
        outcome = await self.jobs.update_one(
            query,
            {"$set": {"lease_expires": _date(now + lease_s), "updated_at": _date(now)}},
        )
        return outcome.matched_count > 0

    @_on_outage
    async def _finish(self, job: Job, owner: str, now: float, fields: dict[str, Any]) -> bool:
        outcome = await self.jobs.update_one(
            self._owned(job, owner),
            {
                "$set": {
                    **fields,
                    "lease_owner": None,
                    "lease_expires": None,
                    "updated_at": _date(now),
                }
            },
        )
        return outcome.matched_count > 0

    @_on_outage
    async def _forget_claims(self, job: Job, finished: bool) -> bool:
        """Claims of a finished job are history; a later lease gets a higher number."""
        if finished:
            await self.claims.delete_many({"job": f"{job.forwarder}:{job.session_id}"})
        return finished

    async def complete(self, job: Job, owner: str, now: float, result: dict[str, Any]) -> bool:
        fields = {"state": JobState.UPLOADED.value, "last_error": None, "result": result}
        return await self._forget_claims(job, await self._finish(job, owner, now, fields))

    async def retry(
        self, job: Job, owner: str, now: float, next_attempt_at: float, error: str
    ) -> bool:
        return await self._finish(
            job,
            owner,
            now,
            {
                "state": JobState.PENDING.value,
                "next_attempt_at": _date(next_attempt_at),
                "last_error": error,
            },
        )

    async def fail(self, job: Job, owner: str, now: float, error: str) -> bool:
        fields = {"state": JobState.FAILED.value, "last_error": error}
        return await self._forget_claims(job, await self._finish(job, owner, now, fields))

    async def release(self, job: Job, owner: str, now: float) -> bool:
        return await self._finish(
            job, owner, now, {"state": JobState.PENDING.value, "next_attempt_at": _date(now)}
        )

    @_on_outage
    async def get(self, session_id: str, forwarder: str) -> Job | None:
        doc = await self.jobs.find_one({"_id": f"{forwarder}:{session_id}"})
        return _job(doc) if doc is not None else None

    @_on_outage
    async def counts(self, forwarder: str) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        for state in JobState:
            counts[state] = await self.jobs.count_documents(
                {"forwarder": forwarder, "state": state.value}
            )
        return counts
