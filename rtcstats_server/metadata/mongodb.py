"""Session records in a MongoDB collection: the production store.

The collection is a public interface (customers' backends read it directly, see
docs/metadata.md), so a document is the plain record: ``_id`` and ``id`` are both the
session id, times are BSON dates. One extra field, ``state_rank``, lets a single
``update_one`` refuse an update that would move the state backwards: its filter only
matches a stored rank at or behind the update's, so a stale update matches nothing.
A record is created by ``insert_one``, atomic on the unique ``_id``; when the record
exists already, the write becomes that conditional update. No read-modify-write, so
racing collectors and spool replays need no lock (on a server that applies an update
atomically per document, as MongoDB does).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidOperation,
    WTimeoutError,
)

from rtcstats_server.exceptions import ConfigError, StoreUnavailable
from rtcstats_server.metadata.record import (
    DOCUMENT_FILTERS,
    EQUALITY_FILTERS,
    SessionQuery,
    SessionState,
    check_update,
)

log = logging.getLogger(__name__)

Document = dict[str, Any]

_LIVE_STATES = [SessionState.STREAMING, SessionState.DETACHED, SessionState.FINISHING]

#: Index name → keys. Names are fixed so that creating them at every start is a no-op.
INDEXES: dict[str, list[tuple[str, int]]] = {
    "started_at": [("started_at", DESCENDING), ("_id", DESCENDING)],
    "state_node": [("state", ASCENDING), ("node_id", ASCENDING)],
    **{
        f"{name}_started_at": [(name, ASCENDING), ("started_at", DESCENDING)]
        for name in (*EQUALITY_FILTERS, *DOCUMENT_FILTERS, "forward_state", "findings")
    },
    "max_loss_pct": [("max_loss_pct", DESCENDING)],
}
UNIQUE_INDEX = "id_unique"

#: Stored beside the record only to make the monotonic upsert one atomic operation.
_INTERNAL_FIELDS = ("_id", "state_rank")


def _short(exc: BaseException) -> str:
    """The driver's reason without its topology dump (long, and useless in /readyz)."""
    text = str(exc).split(", Timeout:", 1)[0].split(" (configured timeouts", 1)[0]
    return text or type(exc).__name__


def _without_secrets(text: str, uri: str) -> str:
    """The driver's message may quote the URI; its user info must not reach a log."""
    userinfo = uri.partition("://")[2].rpartition("@")[0]
    for secret in (uri, userinfo):
        if secret:
            text = text.replace(secret, "***")
    return text


@contextlib.contextmanager
def unavailable_on_outage() -> Iterator[None]:
    try:
        yield
    except (ConnectionFailure, ExecutionTimeout, WTimeoutError, InvalidOperation) as exc:
        raise StoreUnavailable(f"mongodb: {_short(exc)}") from exc


def _record(doc: Document) -> Document:
    for name in _INTERNAL_FIELDS:
        doc.pop(name, None)
    return doc


def mongo_client(uri: str, timeout_ms: int, appname: str) -> AsyncMongoClient[Document]:
    """A client as every part of the collector's store uses it: UTC-aware datetimes and
    one timeout for server selection, connecting and each operation, so an outage
    surfaces within ``metadata.timeout_s`` instead of pymongo's 30 s default."""
    return AsyncMongoClient(
        uri,
        tz_aware=True,
        tzinfo=UTC,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
        appname=appname,
    )


class MongoSessionStore:
    name = "mongodb"

    def __init__(self, uri: str, database: str, collection: str, timeout_s: float = 5.0) -> None:
        self._uri = uri
        self.database = database
        self.collection_name = collection
        self.timeout_ms = max(1, round(timeout_s * 1000))
        self._client: AsyncMongoClient[Document] | None = None
        self._indexed = False

    @property
    def collection(self) -> AsyncCollection[Document]:
        if self._client is None:
            raise StoreUnavailable("mongodb store is not open")
        return self._client[self.database][self.collection_name]

    async def open(self) -> None:
        """Make the client, then the indexes; StoreUnavailable leaves the client usable
        so that ``ping`` finishes the job once the database answers."""
        if self._client is None:
            try:
                self._client = mongo_client(self._uri, self.timeout_ms, "rtcstats-collector")
            except (ConfigurationError, ValueError) as exc:  # InvalidURI is one
                problem = _without_secrets(str(exc), self._uri)
                raise ConfigError("metadata.uri", f"not a usable MongoDB URI: {problem}") from None
        await self._ensure_indexes()

    async def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        collection = self.collection
        with unavailable_on_outage():
            for index_name, keys in INDEXES.items():
                await collection.create_index(keys, name=index_name)
            await collection.create_index([("id", ASCENDING)], name=UNIQUE_INDEX, unique=True)
        self._indexed = True
        log.info("mongodb store ready: %s.%s", self.database, self.collection_name)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def ping(self) -> None:
        if self._client is None:
            raise StoreUnavailable("mongodb store is not open")
        with unavailable_on_outage():
            await self._client.admin.command("ping")
        await self._ensure_indexes()

    async def upsert(self, session_id: str, fields: dict[str, Any]) -> None:
        fields = {k: v for k, v in fields.items() if k not in ("id", *_INTERNAL_FIELDS)}
        collection = self.collection
        with unavailable_on_outage():
            if "started_at" in fields:
                # A creating write nearly always finds no record: insert, which is atomic
                # on the unique _id. (FerretDB also runs a filtered upsert as a scan.)
                state = SessionState(fields.get("state", SessionState.STREAMING))
                new = {**fields, "_id": session_id, "id": session_id, "state": state.value}
                try:
                    await collection.insert_one({**new, "state_rank": state.rank})
                    return
                except DuplicateKeyError:
                    pass  # a replay, or another writer was first: update like any write
            match: Document = {"_id": session_id}
            changes: Document = {**fields, "id": session_id}
            if "state" in fields:
                rank = SessionState(fields["state"]).rank
                match["state_rank"] = {"$lte": rank}  # else: stale, matches nothing
                changes["state_rank"] = rank
            result = await collection.update_one(match, {"$set": changes})
            if result.matched_count or "started_at" in fields:
                return
            if await collection.count_documents({"_id": session_id}, limit=1) == 0:
                raise ValueError(f"a new session record needs started_at ({session_id})")

    async def update(self, session_id: str, fields: dict[str, Any]) -> bool:
        check_update(fields)
        if not fields:
            return True
        with unavailable_on_outage():
            result = await self.collection.update_one({"_id": session_id}, {"$set": fields})
        return result.matched_count > 0

    async def get(self, session_id: str) -> Document | None:
        with unavailable_on_outage():
            doc = await self.collection.find_one({"_id": session_id})
        return None if doc is None else _record(doc)

    async def query(self, query: SessionQuery) -> list[Document]:
        clauses: list[Document] = []
        for name, value in query.equals.items():
            if name not in EQUALITY_FILTERS:
                raise ValueError(f"not a filter: {name}")
            clauses.append({name: value})
        if query.forward_state is not None:
            clauses.append({"forward_state": query.forward_state})
        if query.has_embed_url is not None:
            # {"$ne": None} also excludes a missing field; {"x": None} matches both.
            clauses.append({"embed_url": {"$ne": None} if query.has_embed_url else None})
        if query.finding is not None:
            clauses.append({"findings": query.finding})  # an array field: "contains"
        if query.min_loss_pct is not None:
            clauses.append({"max_loss_pct": {"$gte": query.min_loss_pct}})
        for name, value in query.fields.items():
            if name not in DOCUMENT_FILTERS:
                raise ValueError(f"not a filter: {name}")
            clauses.append({name: value})
        if query.findings_any:
            clauses.append({"findings": {"$in": list(query.findings_any)}})
        started: Document = {}
        if query.since is not None:
            started["$gte"] = query.since
        if query.until is not None:
            started["$lt"] = query.until
        if started:
            clauses.append({"started_at": started})
        if query.cursor is not None:
            when, last_id = query.cursor
            clauses.append(
                {
                    "$or": [
                        {"started_at": {"$lt": when}},
                        {"started_at": when, "_id": {"$lt": last_id}},
                    ]
                }
            )
        match: Document = {"$and": clauses} if len(clauses) > 1 else (clauses[0] if clauses else {})
        cursor = (
            self.collection.find(match)
            .sort([("started_at", DESCENDING), ("_id", DESCENDING)])
            .limit(query.limit)
        )
        with unavailable_on_outage():
            docs = await cursor.to_list()
        return [_record(doc) for doc in docs]

    async def unfinished(self, node_id: str) -> list[Document]:
        live = [state.value for state in _LIVE_STATES]
        with unavailable_on_outage():
            docs = await self.collection.find(
                {"state": {"$in": live}, "node_id": node_id}
            ).to_list()
        return [_record(doc) for doc in docs]

    async def started_before(self, when: datetime, limit: int) -> list[Document]:
        cursor = (
            self.collection.find({"started_at": {"$lt": when}})
            .sort([("started_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        with unavailable_on_outage():
            docs = await cursor.to_list()
        return [_record(doc) for doc in docs]

    async def delete(self, session_id: str) -> bool:
        with unavailable_on_outage():
            result = await self.collection.delete_one({"_id": session_id})
        return result.deleted_count > 0
