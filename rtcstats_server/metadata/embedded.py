"""Session records in one SQLite file under the data dir: the zero-setup default.

Filterable fields are real indexed columns; the whole record is kept as a JSON
document beside them, so new fields need no migration.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.record import (
    DATETIME_FIELDS,
    DOCUMENT_FILTERS,
    EQUALITY_FILTERS,
    SessionQuery,
    SessionState,
    check_update,
)
from rtcstats_server.metadata.sqlite import open_sqlite, retry_locked

_LIVE_STATES = (SessionState.STREAMING, SessionState.DETACHED, SessionState.FINISHING)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        started_us INTEGER NOT NULL,
        state TEXT NOT NULL,
        state_rank INTEGER NOT NULL,
        node_id TEXT,
        conference_id TEXT,
        user_id TEXT,
        client_session_id TEXT,
        app TEXT,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_us DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS sessions_state ON sessions (state, node_id)",
    *(
        f"CREATE INDEX IF NOT EXISTS sessions_{name} ON sessions ({name}, started_us DESC)"
        for name in ("conference_id", "user_id", "client_session_id", "app")
    ),
    # forwarding filters read the JSON document: no column, no migration
    "CREATE INDEX IF NOT EXISTS sessions_forward_state ON sessions "
    "(json_extract(doc, '$.forward_state'), started_us DESC)",
    # quality filters read the JSON document too; loss is a range, so it gets an index
    "CREATE INDEX IF NOT EXISTS sessions_max_loss ON sessions "
    "(json_extract(doc, '$.max_loss_pct'))",
]


def _micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def _encode(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS).decode()


def _decode(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(text)
    for name in DATETIME_FIELDS & doc.keys():
        if isinstance(doc[name], str):
            doc[name] = datetime.fromisoformat(doc[name]).astimezone(UTC)
    return doc


class EmbeddedSessionStore:
    name = "embedded"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # One connection serves every coroutine: transactions must not interleave.
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreUnavailable("embedded store is not open")
        return self._db

    async def open(self) -> None:
        self._db = await open_sqlite(self.path, _SCHEMA)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> None:
        try:
            await self.db.execute("SELECT 1")
        except aiosqlite.Error as exc:
            raise StoreUnavailable(f"embedded store: {exc}") from exc

    async def upsert(self, session_id: str, fields: dict[str, Any]) -> None:
        async with self._write_lock:
            await retry_locked(lambda: self._upsert(session_id, fields))

    async def _upsert(self, session_id: str, fields: dict[str, Any]) -> None:
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute("SELECT doc FROM sessions WHERE id = ?", (session_id,)) as cursor:
                row = await cursor.fetchone()
            doc = _decode(row[0]) if row else {"id": session_id}
            stored = SessionState(doc.get("state", SessionState.STREAMING))
            new_state = SessionState(fields.get("state", stored))
            if row and new_state.rank < stored.rank:
                await db.execute("ROLLBACK")
                return
            doc.update(fields)
            doc["id"] = session_id
            started = doc.get("started_at")
            if not isinstance(started, datetime):
                raise ValueError("a session record needs started_at as a datetime")
            await db.execute(
                """INSERT INTO sessions (id, started_us, state, state_rank, node_id,
                       conference_id, user_id, client_session_id, app, doc)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET started_us=excluded.started_us,
                       state=excluded.state, state_rank=excluded.state_rank,
                       node_id=excluded.node_id, conference_id=excluded.conference_id,
                       user_id=excluded.user_id, client_session_id=excluded.client_session_id,
                       app=excluded.app, doc=excluded.doc""",
                (
                    session_id,
                    _micros(started),
                    new_state.value,
                    new_state.rank,
                    doc.get("node_id"),
                    doc.get("conference_id"),
                    doc.get("user_id"),
                    doc.get("client_session_id"),
                    doc.get("app"),
                    _encode({**doc, "state": new_state.value}),
                ),
            )
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise

    async def update(self, session_id: str, fields: dict[str, Any]) -> bool:
        """One ``UPDATE ... json_set`` of the named fields: no read, no column moves
        (``check_update`` keeps the columns out)."""
        check_update(fields)
        if not fields:
            return True
        paths: list[str] = []
        params: list[Any] = []
        for name, value in fields.items():
            paths.append("?, json(?)")
            params += [f"$.{name}", _encode(value)]
        async with self._write_lock:
            cursor = await retry_locked(
                lambda: self.db.execute(
                    f"UPDATE sessions SET doc = json_set(doc, {', '.join(paths)}) WHERE id = ?",
                    (*params, session_id),
                )
            )
        return cursor.rowcount > 0

    async def get(self, session_id: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT doc FROM sessions WHERE id = ?", (session_id,)) as cur:
            row = await cur.fetchone()
        return _decode(row[0]) if row else None

    async def query(self, query: SessionQuery) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        for name, value in query.equals.items():
            if name not in EQUALITY_FILTERS:
                raise ValueError(f"not a filter: {name}")
            where.append(f"{name} = ?")
            params.append(value)
        if query.forward_state is not None:
            where.append("json_extract(doc, '$.forward_state') = ?")
            params.append(query.forward_state)
        if query.has_embed_url is not None:
            nullness = "IS NOT NULL" if query.has_embed_url else "IS NULL"
            where.append(f"json_extract(doc, '$.embed_url') {nullness}")
        if query.finding is not None:
            where.append(
                "EXISTS (SELECT 1 FROM json_each(doc, '$.findings') WHERE json_each.value = ?)"
            )
            params.append(query.finding)
        if query.min_loss_pct is not None:
            where.append("json_extract(doc, '$.max_loss_pct') >= ?")
            params.append(query.min_loss_pct)
        for name, value in query.fields.items():
            if name not in DOCUMENT_FILTERS:
                raise ValueError(f"not a filter: {name}")
            where.append(f"json_extract(doc, '$.{name}') = ?")
            params.append(value)
        if query.findings_any:
            marks = ",".join("?" for _ in query.findings_any)
            where.append(
                "EXISTS (SELECT 1 FROM json_each(doc, '$.findings') "
                f"WHERE json_each.value IN ({marks}))"
            )
            params.extend(query.findings_any)
        if query.since is not None:
            where.append("started_us >= ?")
            params.append(_micros(query.since))
        if query.until is not None:
            where.append("started_us < ?")
            params.append(_micros(query.until))
        if query.cursor is not None:
            when, last_id = query.cursor
            where.append("(started_us < ? OR (started_us = ? AND id < ?))")
            params += [_micros(when), _micros(when), last_id]
        sql = "SELECT doc FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_us DESC, id DESC LIMIT ?"
        params.append(query.limit)
        async with self.db.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [_decode(row[0]) for row in rows]

    async def unfinished(self, node_id: str) -> list[dict[str, Any]]:
        marks = ",".join("?" for _ in _LIVE_STATES)
        async with self.db.execute(
            f"SELECT doc FROM sessions WHERE node_id = ? AND state IN ({marks})",
            (node_id, *(state.value for state in _LIVE_STATES)),
        ) as cur:
            rows = await cur.fetchall()
        return [_decode(row[0]) for row in rows]

    async def started_before(self, when: datetime, limit: int) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT doc FROM sessions WHERE started_us < ? ORDER BY started_us LIMIT ?",
            (_micros(when), limit),
        ) as cur:
            rows = await cur.fetchall()
        return [_decode(row[0]) for row in rows]

    async def delete(self, session_id: str) -> bool:
        async with self._write_lock:
            cursor = await retry_locked(
                lambda: self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            )
        return cursor.rowcount > 0
