"""Session records in one SQLite file under the data dir: the zero-setup default.

Filterable fields are real indexed columns; the whole record is kept as a JSON
document beside them, so new fields need no migration.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from rtcstats_server.metadata.sqlite import (
    SqliteThread,
    changed_rows,
    open_sqlite,
    retry_locked,
    transaction,
)

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
    """Every operation is one function on the connection's thread (``SqliteThread``):
    the loop pays one hop per upsert, read or delete, and the JSON of the documents
    is decoded and encoded there too."""

    name = "embedded"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: SqliteThread | None = None
        # Writes keep their order, retries included: a write that waits out a lock
        # another process holds is not overtaken by a later write of the same record.
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> SqliteThread:
        if self._db is None:
            raise StoreUnavailable("embedded store is not open")
        return self._db

    async def open(self) -> None:
        self._db = await open_sqlite(self.path, _SCHEMA, "sqlite-sessions")

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def ping(self) -> None:
        try:
            await self.db.run(_ping)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"embedded store: {exc}") from exc

    async def upsert(self, session_id: str, fields: dict[str, Any]) -> None:
        db = self.db
        async with self._write_lock:
            await retry_locked(lambda: db.run(lambda c: _upsert(c, session_id, fields)))

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
        sql = f"UPDATE sessions SET doc = json_set(doc, {', '.join(paths)}) WHERE id = ?"
        values = (*params, session_id)
        db = self.db
        async with self._write_lock:
            count = await retry_locked(lambda: db.run(changed_rows(sql, values)))
        return count > 0

    async def get(self, session_id: str) -> dict[str, Any] | None:
        return await self.db.run(lambda c: _get(c, session_id))

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
        return await self.db.run(lambda c: _documents(c, sql, params))

    async def unfinished(self, node_id: str) -> list[dict[str, Any]]:
        marks = ",".join("?" for _ in _LIVE_STATES)
        sql = f"SELECT doc FROM sessions WHERE node_id = ? AND state IN ({marks})"
        params = (node_id, *(state.value for state in _LIVE_STATES))
        return await self.db.run(lambda c: _documents(c, sql, params))

    async def started_before(self, when: datetime, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT doc FROM sessions WHERE started_us < ? ORDER BY started_us LIMIT ?"
        params = (_micros(when), limit)
        return await self.db.run(lambda c: _documents(c, sql, params))

    async def delete(self, session_id: str) -> bool:
        db = self.db
        async with self._write_lock:
            count = await retry_locked(
                lambda: db.run(changed_rows("DELETE FROM sessions WHERE id = ?", (session_id,)))
            )
        return count > 0


# -- on the connection's thread --------------------------------------------------------


def _ping(connection: sqlite3.Connection) -> None:
    connection.execute("SELECT 1").fetchone()


def _get(connection: sqlite3.Connection, session_id: str) -> dict[str, Any] | None:
    row = connection.execute("SELECT doc FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return _decode(row[0]) if row else None


def _documents(
    connection: sqlite3.Connection, sql: str, params: Sequence[Any]
) -> list[dict[str, Any]]:
    return [_decode(row[0]) for row in connection.execute(sql, params).fetchall()]


_UPSERT = """INSERT INTO sessions (id, started_us, state, state_rank, node_id,
        conference_id, user_id, client_session_id, app, doc)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(id) DO UPDATE SET started_us=excluded.started_us,
        state=excluded.state, state_rank=excluded.state_rank,
        node_id=excluded.node_id, conference_id=excluded.conference_id,
        user_id=excluded.user_id, client_session_id=excluded.client_session_id,
        app=excluded.app, doc=excluded.doc"""


def _upsert(connection: sqlite3.Connection, session_id: str, fields: dict[str, Any]) -> None:
    """Merge ``fields`` into the record in one transaction; a state of lower rank than
    the stored one changes nothing (a late live write never undoes a finish)."""

    def merge() -> None:
        row = connection.execute("SELECT doc FROM sessions WHERE id = ?", (session_id,)).fetchone()
        doc = _decode(row[0]) if row else {"id": session_id}
        stored = SessionState(doc.get("state", SessionState.STREAMING))
        new_state = SessionState(fields.get("state", stored))
        if row and new_state.rank < stored.rank:
            connection.execute("ROLLBACK")
            return
        doc.update(fields)
        doc["id"] = session_id
        started = doc.get("started_at")
        if not isinstance(started, datetime):
            raise ValueError("a session record needs started_at as a datetime")
        connection.execute(
            _UPSERT,
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

    transaction(connection, merge)
