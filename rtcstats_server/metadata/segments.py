"""The session record as the meeting point of a cluster's collectors (``server.cluster``).

Behind a load balancer without stickiness, each connection of a session may land on
another collector. Each connection writes its own *segment*, and the session record
in the shared MongoDB collection lists them under ``segments.<segment id>`` (node,
seq range, key, state), with ``live_segments`` counting those still fed and
``last_segment_end`` the epoch seconds of the latest end. Every change here is one
atomic update of that one document, so collectors never need to talk to each other:

- ``register``: the first segment, once the record exists;
- ``join``: a resume on any collector adds a segment, only while the session is live
  (``state_rank`` 0): a session a finisher claimed is never joined again;
- ``end``: a segment's end (idempotent: only a segment still live is counted down);
- ``claim``: exactly one collector wins the finish, only once no segment is live
  and the client said it is done (``final``) or ``resume_grace_s`` has passed.

Records keep the monotonic ``state_rank`` of ``metadata/mongodb.py``: a claim moves
the record to ``finishing`` (rank 1), and the final record (``stored``) follows.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.mongodb import unavailable_on_outage
from rtcstats_server.metadata.record import SessionState

log = logging.getLogger(__name__)

Document = dict[str, Any]

#: A segment's ``state``.
LIVE, ENDED = "live", "ended"


class SegmentDirectory:
    """The segment fields of the shared session records (MongoDB only: a cluster's)."""

    def __init__(self, uri: str, database: str, collection: str, timeout_s: float = 5.0) -> None:
        self._uri = uri
        self.database = database
        self.collection_name = collection
        self.timeout_ms = max(1, round(timeout_s * 1000))
        self._client: AsyncMongoClient[Document] | None = None

    @classmethod
    def from_config(cls, metadata: Any) -> SegmentDirectory:
        uri = metadata.uri
        uri = uri.get_secret_value() if hasattr(uri, "get_secret_value") else str(uri)
        return cls(uri, str(metadata.database), str(metadata.collection), metadata.timeout_s)

    @property
    def records(self) -> AsyncCollection[Document]:
        if self._client is None:
            raise StoreUnavailable("segment directory is not open")
        return self._client[self.database][self.collection_name]

    async def open(self) -> None:
        self._client = AsyncMongoClient(
            self._uri,
            tz_aware=True,
            serverSelectionTimeoutMS=self.timeout_ms,
            connectTimeoutMS=self.timeout_ms,
            socketTimeoutMS=self.timeout_ms,
            appname="rtcstats-collector-segments",
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def get(self, session_id: str) -> Document | None:
        with unavailable_on_outage():
            return await self.records.find_one({"_id": session_id})

    async def find_resumable(self, client_session_id: str, dialect: str) -> Document | None:
        """The newest live session of this client id (None: none is live any more)."""
        with unavailable_on_outage():
            docs = (
                await self.records.find(
                    {"client_session_id": client_session_id, "dialect": dialect, "state_rank": 0}
                )
                .sort([("started_at", -1)])
                .limit(1)
                .to_list()
            )
        return docs[0] if docs else None

    async def register(self, session_id: str, segment_id: str, entry: Document) -> None:
        """The session's first segment. Creates a bare record if the opening write is
        still in the metadata spool (the spool's insert then updates it)."""
        with unavailable_on_outage():
            await self.records.update_one(
                {"_id": session_id, f"segments.{segment_id}": {"$exists": False}},
                {
                    "$set": {f"segments.{segment_id}": entry},
                    "$inc": {"live_segments": 1},
                    "$setOnInsert": {
                        "id": session_id,
                        "state": SessionState.STREAMING.value,
                        "state_rank": 0,
                    },
                },
                upsert=True,
            )

    async def join(self, session_id: str, segment_id: str, entry: Document) -> Document | None:
        """Add a segment to a live session; the record after it, or None when the
        session is no longer live (claimed for its finish, or gone)."""
        with unavailable_on_outage():
            return await self.records.find_one_and_update(
                {"_id": session_id, "state_rank": 0},
                {
                    "$set": {
                        f"segments.{segment_id}": entry,
                        "state": SessionState.STREAMING.value,
                        "final": False,
                    },
                    "$inc": {"live_segments": 1},
                },
                return_document=ReturnDocument.AFTER,
            )

    async def update(self, session_id: str, segment_id: str, fields: Document) -> None:
        """Progress of a live segment (its seq range), for ``sn`` on a resume elsewhere."""
        changes = {f"segments.{segment_id}.{name}": value for name, value in fields.items()}
        with unavailable_on_outage():
            await self.records.update_one(
                {"_id": session_id, f"segments.{segment_id}.state": LIVE}, {"$set": changes}
            )

    async def end(
        self, session_id: str, segment_id: str, entry: Document, *, final: bool, now: float
    ) -> None:
        """The segment is ended and its bytes are where ``entry["key"]`` says."""
        changes: Document = {f"segments.{segment_id}": {**entry, "state": ENDED}}
        if final:
            changes["final"] = True
        with unavailable_on_outage():
            await self.records.update_one(
                {"_id": session_id, f"segments.{segment_id}.state": LIVE},
                {"$set": changes, "$inc": {"live_segments": -1}, "$max": {"last_segment_end": now}},
            )
            await self.records.update_one(
                {"_id": session_id, "state": SessionState.STREAMING.value, "live_segments": 0},
                {"$set": {"state": SessionState.DETACHED.value}},
            )

    async def claim(self, session_id: str, node_id: str, now: float, grace_s: float) -> bool:
        """True for the one collector that may finish the session now."""
        with unavailable_on_outage():
            result = await self.records.update_one(
                {
                    "_id": session_id,
                    "state_rank": 0,
                    "live_segments": {"$lte": 0},
                    "$or": [{"final": True}, {"last_segment_end": {"$lte": now - grace_s}}],
                },
                {
                    "$set": {
                        "state": SessionState.FINISHING.value,
                        "state_rank": SessionState.FINISHING.rank,
                        "finisher": node_id,
                    }
                },
            )
        return result.modified_count > 0
