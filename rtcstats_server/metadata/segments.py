"""Where a cluster's collectors meet over one session (``server.cluster``).

Behind a load balancer without stickiness, each connection of a session may land on
another collector. Each connection writes its own *segment*, and the collection
``<metadata.collection>_segments`` beside the records lists them: one document per
segment (``<session id>:<segment id>``: node, seq range, key, state), written only
by the collector that feeds it, so no two collectors ever update one document.
Exclusion between collectors comes from unique ``_id`` inserts, which every
MongoDB-compatible server makes atomic (FerretDB on SQLite, used by the tests, does
not make a read-modify-write of one document atomic: concurrent ``$set``/``$inc``
on the record lose updates, measured):

- ``join`` inserts a live segment, *then* looks for the session's claim: found,
  the session is being finished and the segment withdraws (a session of its own);
- ``claim`` inserts the claim (``<session id>#claim``), *then* looks at the
  segments: one still live, or the grace not passed after the last end without a
  final one, and the claim withdraws.

Each writes before it reads the other's document, so at least one of two racing
sees the other: a session is never finished while a segment joins it. A claim is
confirmed once its check passed; an unconfirmed one is what a finisher that died
mid-check left, removed by the next holder of the finish job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.mongodb import mongo_client, unavailable_on_outage

log = logging.getLogger(__name__)

Document = dict[str, Any]

#: How long a join waits for a claim being checked to resolve; a claim left
#: unconfirmed longer is a dead finisher's, and the join gives up (a new session).
CLAIM_WAIT_S = 5.0

#: A claim this old whose session is not stored yet is a dead finisher's.
STALE_CLAIM_S = 120.0

#: A segment's ``state``.
LIVE, ENDED = "live", "ended"


def _claim_id(session_id: str) -> str:
    return f"{session_id}#claim"


class SegmentDirectory:
    """The segments of a cluster's sessions (MongoDB only: a cluster's store)."""

    def __init__(self, uri: str, database: str, collection: str, timeout_s: float = 5.0) -> None:
        self._uri = uri
        self.database = database
        self.collection_name = collection
        self.timeout_ms = max(1, round(timeout_s * 1000))
        self._client: AsyncMongoClient[Document] | None = None
        self._indexed = False

    @classmethod
    def from_config(cls, metadata: Any) -> SegmentDirectory:
        uri = metadata.uri
        uri = uri.get_secret_value() if hasattr(uri, "get_secret_value") else str(uri)
        return cls(uri, str(metadata.database), str(metadata.collection), metadata.timeout_s)

    def _collection(self, name: str) -> AsyncCollection[Document]:
        if self._client is None:
            raise StoreUnavailable("segment directory is not open")
        return self._client[self.database][name]

    @property
    def records(self) -> AsyncCollection[Document]:
        return self._collection(self.collection_name)

    @property
    def segments(self) -> AsyncCollection[Document]:
        return self._collection(f"{self.collection_name}_segments")

    async def open(self) -> None:
        self._client = mongo_client(self._uri, self.timeout_ms, "rtcstats-collector-segments")
        with contextlib.suppress(StoreUnavailable):
            await self._ensure_indexes()

    async def _ensure_indexes(self) -> None:
        if not self._indexed:
            with unavailable_on_outage():
                await self.segments.create_index([("session_id", ASCENDING)], name="session")
            self._indexed = True

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def get(self, session_id: str) -> Document | None:
        """The session's record."""
        with unavailable_on_outage():
            return await self.records.find_one({"_id": session_id})

    async def find_resumable(
        self, client_session_id: str, dialect: str, limit: int = 5
    ) -> list[Document]:
        """The live session records of this client id, newest first (a stranger
        reusing the id has sessions of its own: the caller picks by holder)."""
        with unavailable_on_outage():
            docs = (
                await self.records.find(
                    {"client_session_id": client_session_id, "dialect": dialect, "state_rank": 0}
                )
                .sort([("started_at", -1)])
                .limit(limit)
                .to_list()
            )
        return docs

    async def of_session(self, session_id: str) -> list[Document]:
        """Every segment of the session (withdrawn ones are deleted)."""
        await self._ensure_indexes()
        with unavailable_on_outage():
            return await self.segments.find({"session_id": session_id, "kind": "segment"}).to_list()

    async def register(self, session_id: str, segment_id: str, entry: Document) -> None:
        """The session's first segment."""
        with unavailable_on_outage():
            try:
                await self.segments.insert_one(self._segment(session_id, segment_id, entry))
            except DuplicateKeyError:
                pass  # a replay

    async def join(
        self, session_id: str, segment_id: str, entry: Document
    ) -> list[Document] | None:
        """Add a live segment; the session's segments then, or None when the session
        is being finished (the segment is withdrawn: the caller starts a new session)."""
        with unavailable_on_outage():
            await self.segments.insert_one(self._segment(session_id, segment_id, entry))
            if not await self._unclaimed(session_id):
                await self.segments.delete_one({"_id": f"{session_id}:{segment_id}"})
                return None
        return await self.of_session(session_id)

    async def _unclaimed(self, session_id: str) -> bool:
        """After our segment is in: no claim, or one that withdraws (its check saw our
        segment, or the session not final). An unconfirmed claim is waited for: a
        claimer checks at once, so it resolves within a few round trips."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLAIM_WAIT_S
        while True:
            claim = await self.segments.find_one({"_id": _claim_id(session_id)})
            if claim is None:
                return True
            if claim.get("confirmed") or loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)

    def _segment(self, session_id: str, segment_id: str, entry: Document) -> Document:
        return {
            **entry,
            "_id": f"{session_id}:{segment_id}",
            "kind": "segment",
            "session_id": session_id,
            "segment_id": segment_id,
            "state": LIVE,
        }

    async def end(self, session_id: str, segment_id: str, entry: Document, *, final: bool) -> None:
        """The segment is ended and its bytes are where ``entry["key"]`` says (only its
        own collector writes it: one writer per document)."""
        fields = {**self._segment(session_id, segment_id, entry), "state": ENDED, "final": final}
        del fields["_id"]
        with unavailable_on_outage():
            await self.segments.update_one(  # upsert: also when its register failed
                {"_id": f"{session_id}:{segment_id}"}, {"$set": fields}, upsert=True
            )

    async def claim(self, session_id: str, node_id: str, now: float, grace_s: float) -> bool:
        """True for the one collector that may finish the session now.

        A confirmed claim of this node (an earlier try that stopped) is taken up again;
        one of another node is left alone unless older than ``STALE_CLAIM_S`` (its
        finisher died): then it is removed and claimed anew.
        """
        claims = self.segments
        claim_id = _claim_id(session_id)
        with unavailable_on_outage():
            if not final_now(await self.of_session(session_id), now, grace_s):
                return False  # read first: a claim inserted for nothing delays joins
            found = await claims.find_one({"_id": claim_id})
            if found is not None:
                if found.get("confirmed") and found.get("node") == node_id:
                    return True
                if float(found.get("at") or 0) > now - STALE_CLAIM_S:
                    return False
                await claims.delete_one({"_id": claim_id, "at": found.get("at")})
            try:
                await claims.insert_one(
                    {
                        "_id": claim_id,
                        "kind": "claim",
                        "session_id": session_id,
                        "node": node_id,
                        "at": now,
                    }
                )
            except DuplicateKeyError:
                return False
            if not final_now(await self.of_session(session_id), now, grace_s):
                await claims.delete_one({"_id": claim_id})
                return False
            await claims.update_one({"_id": claim_id}, {"$set": {"confirmed": True}})
        return True

    async def forget(self, session_id: str) -> None:
        """The session is stored: its segment documents and claim are history."""
        with unavailable_on_outage():
            await self.segments.delete_many({"session_id": session_id})


def final_now(segments: list[Document], now: float, grace_s: float) -> bool:
    """No segment is live, and the client said it is done or the grace has passed."""
    if not segments or any(s.get("state") != ENDED for s in segments):
        return False
    if any(s.get("final") for s in segments):
        return True
    last = max(float(s.get("ended_at") or 0) for s in segments)
    return last <= now - grace_s
