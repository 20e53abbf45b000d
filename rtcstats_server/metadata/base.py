"""What every session-record store must do; one contract test suite checks each."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from rtcstats_server.metadata.record import SessionQuery


class SessionStore(Protocol):
    """Durable session records.

    ``upsert`` is idempotent and monotonic: an update whose ``state`` ranks behind the
    stored one is ignored whole, so replays and racing processes never move a
    session backwards or overwrite final counts with live ones. It is the session
    layer's write (live states, the final record); the steps that follow a stored
    session write through ``update`` only (see ``steps.record_step``).
    """

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot serve requests now."""

    async def upsert(self, session_id: str, fields: dict[str, Any]) -> None: ...

    async def update(self, session_id: str, fields: dict[str, Any]) -> bool:
        """Set exactly ``fields`` on the existing record (a ``$set`` of named fields):
        never creates a record, never reads it first, never moves its ``state``. False
        when there is no such record (a store that queues the write answers True)."""

    async def get(self, session_id: str) -> dict[str, Any] | None: ...

    async def query(self, query: SessionQuery) -> list[dict[str, Any]]:
        """Records matching the query, newest ``started_at`` first, after the cursor."""

    async def unfinished(self, node_id: str) -> list[dict[str, Any]]:
        """Records of ``node_id`` that a crash may have left in a live state."""

    async def started_before(self, when: datetime, limit: int) -> list[dict[str, Any]]:
        """Oldest records started before ``when``; retention deletes them."""

    async def delete(self, session_id: str) -> bool: ...
